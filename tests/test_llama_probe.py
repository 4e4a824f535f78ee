"""The CPU-safety probe for llama.cpp (confroute.models.llama.probe): the real probe on SmolLM2,
and the decision logic against child processes that really crash (SIGSEGV), standing in for a
llama.cpp build whose AMX kernels fault — this machine may have no AMX to crash."""
import json
import subprocess
import sys

import pytest

from confroute.models import store
from confroute.models.llama import probe as llama_probe
from confroute.models.store import ModelError

SEGV_IF_EXTRA = ("import os, signal, sys\n"
                 "if sys.argv[2] == '1': os.kill(os.getpid(), signal.SIGSEGV)\n"
                 "print('probe-ok')\n")
SEGV_ALWAYS = "import os, signal; os.kill(os.getpid(), signal.SIGSEGV)\n"
LOAD_ERROR = "import sys; sys.exit(1)\n"


@pytest.fixture
def fresh(tmp_path, monkeypatch):
    """An empty probe cache and memo, no forcing variable."""
    monkeypatch.setenv("CONFROUTE_HOME", str(tmp_path))
    monkeypatch.delenv(llama_probe.ENV, raising=False)
    monkeypatch.setattr(llama_probe, "_memo", {})
    return tmp_path


@pytest.fixture(scope="module")
def smol():
    return store.model_path(store.DEFAULT_EDGE)


def _cache(home):
    return json.loads((home / "llama_probe.json").read_text())


@pytest.mark.models
def test_real_probe_decides_once_and_caches(fresh, smol):
    first = llama_probe.choose(smol)
    assert first.source == "probe"
    entry, = _cache(fresh).values()
    assert entry["extra_bufts"] == first.extra_bufts and entry["model"] == smol.name
    llama_probe._memo.clear()
    again = llama_probe.choose(smol)
    assert again.source == "cache" and again.extra_bufts == first.extra_bufts


@pytest.mark.models
def test_crash_with_extra_bufts_turns_them_off(fresh, smol, capsys):
    c = llama_probe.choose(smol, child=SEGV_IF_EXTRA)
    assert (c.extra_bufts, c.source) == (False, "probe")
    assert "SIGSEGV" in c.reason and "GGML_NATIVE=OFF" in c.reason
    assert "SIGSEGV" in capsys.readouterr().err   # the user is told once, on stderr
    assert _cache(fresh)[next(iter(_cache(fresh)))]["extra_bufts"] is False


@pytest.mark.models
def test_build_that_crashes_either_way_names_the_rebuild(fresh, smol):
    with pytest.raises(ModelError, match="--no-binary llama-cpp-python"):
        llama_probe.choose(smol, child=SEGV_ALWAYS)
    assert not (fresh / "llama_probe.json").exists()


@pytest.mark.models
def test_load_error_is_left_to_the_real_load_and_not_cached(fresh, smol):
    c = llama_probe.choose(smol, child=LOAD_ERROR)
    assert c.extra_bufts is True and "could not load" in c.reason
    assert not (fresh / "llama_probe.json").exists()


@pytest.mark.models
@pytest.mark.parametrize("value,expected", [("off", False), ("0", False), ("on", True)])
def test_environment_forces_without_probe(fresh, smol, monkeypatch, value, expected):
    monkeypatch.setenv(llama_probe.ENV, value)
    c = llama_probe.choose(smol, child=SEGV_ALWAYS)   # would raise if it probed
    assert (c.extra_bufts, c.source) == (expected, "env")


@pytest.mark.models
def test_bad_environment_value_is_a_value_error(fresh, smol, monkeypatch):
    monkeypatch.setenv(llama_probe.ENV, "sometimes")
    with pytest.raises(ValueError, match="CONFROUTE_EXTRA_BUFTS must be on, off or auto"):
        llama_probe.choose(smol)


@pytest.mark.models
def test_edge_model_forced_off_loads_and_answers_like_the_probed_default(fresh, smol,
                                                                        monkeypatch):
    from confroute.models.llama.model import EdgeModel

    msgs = [{"role": "user", "content": "What is the capital of France? Answer in one word."}]
    default = EdgeModel(smol, n_ctx=256, n_seq_max=1, seed=0)
    monkeypatch.setenv(llama_probe.ENV, "off")
    plain = EdgeModel(smol, n_ctx=256, n_seq_max=1, seed=0)
    assert plain.cpu_choice.extra_bufts is False
    a = default.generate(msgs, max_tokens=12)
    b = plain.generate(msgs, max_tokens=12)
    assert "Paris" in a.text and "Paris" in b.text


def test_server_launcher_needs_a_model():
    from confroute.models.llama.server import main

    with pytest.raises(ValueError, match="--model PATH is required"):
        main(["--port", "1"])


@pytest.mark.models
def test_info_reports_llama_build_and_choice(smol):
    out = subprocess.run([sys.executable, "-m", "confroute.cli", "info", "--json"],
                         capture_output=True, text=True, timeout=300, check=True)
    ll = json.loads(out.stdout)["llama_cpp"]
    assert "AVX2" in ll["compiled_simd"] or "SSE3" in ll["compiled_simd"]
    assert isinstance(ll["amx_compiled"], bool) and ll["setting"] == "auto"
    edge = ll["models"][store.DEFAULT_EDGE]
    assert isinstance(edge["extra_bufts"], bool) and edge["reason"]
