"""Which llama.cpp CPU paths are safe on this machine: decided once per machine and model file.

pip builds llama-cpp-python with ``-march=native``. On a CPU that advertises AMX, ggml then
compiles its AMX kernels, and inside some VMs the kernel grants the AMX permission
(``arch_prctl(ARCH_REQ_XCOMP_PERM)``) yet the tile instructions fault: SIGSEGV in
``ggml_backend_amx_mul_mat`` on the first decode. Those kernels, like the repacked weight
layouts, are llama.cpp's *extra buffer types* (``llama_model_params.use_extra_bufts``); with
them off the plain CPU kernels run, which work everywhere the build runs at all.

A segfault cannot be caught in-process, so the first load of a model file on a machine decodes a
few tokens in a child process with extra buffer types on. If the child dies by a signal, they
are turned off for that file (and a second child checks that the plain path works; if it does
not, the build itself does not fit this CPU and :class:`ModelError` names the rebuild). The
verdict is cached in ``$CONFROUTE_HOME/llama_probe.json``, keyed by the llama.cpp build, the CPU
and the file, so later loads cost nothing.

``CONFROUTE_EXTRA_BUFTS=on|off`` forces the choice without a probe; ``auto`` (default) probes.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Dict, Iterator, List, Optional

ENV = "CONFROUTE_EXTRA_BUFTS"
REBUILD = ('CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON '
           '-DGGML_F16C=ON" pip install --force-reinstall --no-cache-dir --no-binary '
           'llama-cpp-python llama-cpp-python')
PROBE_TIMEOUT_S = 300.0

# The child: load with the given extra-buffer setting, decode a short prompt (matrix-matrix
# kernels) and two single tokens (matrix-vector kernels), then say so.
_CHILD = r"""
import sys, llama_cpp
from llama_cpp import _internals
path, extra = sys.argv[1], sys.argv[2] == "1"
llama_cpp.llama_backend_init()
p = llama_cpp.llama_model_default_params()
p.use_extra_bufts = extra
m = _internals.LlamaModel(path_model=path, params=p, verbose=False)
cp = llama_cpp.llama_context_default_params()
cp.n_ctx, cp.n_batch, cp.n_ubatch, cp.n_threads, cp.n_threads_batch = 128, 64, 64, 1, 1
ctx = llama_cpp.llama_init_from_model(m.model, cp)
toks = m.tokenize(b"The capital of France is Paris, and the capital of Italy is", add_bos=True, special=False)
for chunk in (toks, toks[:1], toks[:1]):
    arr = (llama_cpp.llama_token * len(chunk))(*chunk)
    if llama_cpp.llama_decode(ctx, llama_cpp.llama_batch_get_one(arr, len(chunk))) != 0:
        sys.exit(3)
print("probe-ok", flush=True)
"""


@dataclass(frozen=True)
class CpuChoice:
    """Whether llama.cpp's extra buffer types (AMX kernels, repacked weights) are used."""

    extra_bufts: bool
    source: str    # "env" | "probe" | "cache"
    reason: str


_lock = threading.Lock()
_memo: Dict[str, CpuChoice] = {}


def system_info() -> Dict[str, str]:
    """What llama.cpp was compiled with, from ``llama_print_system_info`` ('AVX2': '1', ...)."""
    import llama_cpp

    text = llama_cpp.llama_print_system_info().decode("utf-8", "replace")
    out: Dict[str, str] = {}
    for part in text.replace("\n", "|").split("|"):
        if "=" in part:
            k, v = part.split("=", 1)
            out[k.strip().split(":")[-1].strip()] = v.strip()
    return out


def cpu_flags() -> List[str]:
    """The CPU's advertised feature flags that matter to ggml (Linux /proc/cpuinfo)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = line.split(":", 1)[1].split()
                    return sorted(x for x in flags
                                  if x.startswith(("avx", "amx", "fma", "f16c", "sse4")))
    except OSError:
        pass
    return []


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine()


def _key(path: str) -> str:
    import llama_cpp

    st = os.stat(path)
    raw = json.dumps([getattr(llama_cpp, "__version__", "?"), sorted(system_info().items()),
                      _cpu_name(), cpu_flags(), os.path.realpath(path), st.st_size,
                      int(st.st_mtime)])
    return hashlib.sha256(raw.encode()).hexdigest()[:24]


def _cache_file() -> Path:
    from confroute.models.store import home

    return home() / "llama_probe.json"


def _read_cache() -> Dict[str, dict]:
    try:
        return json.loads(_cache_file().read_text())
    except (OSError, ValueError):
        return {}


def _write_cache(key: str, choice: CpuChoice, path: str) -> None:
    f = _cache_file()
    data = _read_cache()
    data[key] = dict(asdict(choice), model=os.path.basename(path))
    try:
        f.parent.mkdir(parents=True, exist_ok=True)
        tmp = f.with_name(f"{f.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data, indent=1))
        os.replace(tmp, f)
    except OSError:  # a read-only cache only costs a probe next time
        pass


def _run_child(path: str, extra: bool, child: str) -> Optional[int]:
    """The child's fate: 0 if it decoded, -signal if a signal killed it, None if it failed in
    another way (a load error: not the CPU's fault, left to the real load to report)."""
    env = dict(os.environ, GGML_LOG_LEVEL="error")
    try:
        r = subprocess.run([sys.executable, "-c", child, path, "1" if extra else "0"],
                           capture_output=True, text=True, timeout=PROBE_TIMEOUT_S, env=env)
    except subprocess.TimeoutExpired:
        return None
    if r.returncode == 0 and "probe-ok" in r.stdout:
        return 0
    return r.returncode if r.returncode < 0 else None


def _signame(rc: int) -> str:
    try:
        return signal.Signals(-rc).name
    except ValueError:
        return f"signal {-rc}"


def _forced() -> Optional[CpuChoice]:
    v = os.environ.get(ENV, "auto").strip().lower()
    if v in ("", "auto"):
        return None
    if v in ("on", "1", "true", "yes"):
        return CpuChoice(True, "env", f"{ENV}={v}: forced on")
    if v in ("off", "0", "false", "no"):
        return CpuChoice(False, "env", f"{ENV}={v}: forced off")
    raise ValueError(f"{ENV} must be on, off or auto, got {v!r}")


def choose(path, child: str = _CHILD) -> CpuChoice:
    """The extra-buffer choice for the GGUF at ``path`` on this machine (see the module doc)."""
    from confroute.models.store import ModelError

    forced = _forced()
    if forced is not None:
        return forced
    path = os.fspath(path)
    key = _key(path)
    with _lock:
        if key in _memo:
            return _memo[key]
        cached = _read_cache().get(key)
        if cached is not None:
            choice = CpuChoice(bool(cached["extra_bufts"]), "cache", cached["reason"])
            _memo[key] = choice
            return choice
        rc = _run_child(path, True, child)
        if rc is None or rc == 0:
            amx = any(k.startswith("AMX") and v == "1" for k, v in system_info().items())
            choice = CpuChoice(True, "probe",
                               ("a probe decoded with the AMX kernels and repacked weights"
                                if amx else "no AMX kernels compiled in; a probe decoded with "
                                "repacked weights") + " on this CPU"
                               if rc == 0 else "the probe could not load the model; default on")
            if rc is None:  # nothing learned about the CPU: do not cache
                return choice
        else:
            crash = _signame(rc)
            rc_plain = _run_child(path, False, child)
            if rc_plain is not None and rc_plain < 0:
                raise ModelError(
                    f"llama.cpp crashes on this CPU ({crash} with extra buffer types, "
                    f"{_signame(rc_plain)} without) loading {path}: the installed "
                    f"llama-cpp-python was built for another processor (a native build, e.g. "
                    f"from pip's cache). Rebuild it portably: {REBUILD}")
            choice = CpuChoice(False, "probe",
                               f"extra buffer types crashed a probe here ({crash}; llama.cpp's "
                               f"AMX kernels fault on some VMs); plain CPU kernels used. A "
                               f"portable build avoids the probe: {REBUILD}")
            print(f"confroute: {choice.reason}", file=sys.stderr)
        _memo[key] = choice
        _write_cache(key, choice, path)
        return choice


def model_params(path):
    """``llama_model_params`` for loading ``path`` safely here."""
    import llama_cpp

    p = llama_cpp.llama_model_default_params()
    p.use_extra_bufts = choose(path).extra_bufts
    return p


@contextlib.contextmanager
def safe_defaults(path) -> Iterator[CpuChoice]:
    """For loaders that build their own params (``llama_cpp.Llama``, ``llama_cpp.server``):
    while the block runs, llama-cpp-python's default model params carry the safe choice."""
    import llama_cpp.llama_cpp as low

    choice = choose(path)
    original = low.llama_model_default_params

    def patched():
        p = original()
        p.use_extra_bufts = choice.extra_bufts
        return p

    low.llama_model_default_params = patched
    try:
        yield choice
    finally:
        low.llama_model_default_params = original


def report() -> Dict[str, object]:
    """For ``confroute info``: the build, the CPU and the verdicts cached on this machine."""
    info = system_info()
    compiled = sorted(k for k, v in info.items() if v == "1")
    flags = cpu_flags()
    return {
        "llama_cpp_version": __import__("llama_cpp").__version__,
        "compiled_simd": compiled,
        "amx_compiled": any(k.startswith("AMX") for k in compiled),
        "cpu": _cpu_name(),
        "cpu_advertises": flags,
        "setting": os.environ.get(ENV, "auto"),
        "verdicts": list(_read_cache().values()),
    }
