"""Requantizing a GGUF file with llama.cpp (the store's derived models)."""
from __future__ import annotations

import ctypes
import os
from pathlib import Path


def requantize(source: Path, dest: Path, ftype: str, threads: int = 0) -> None:
    """Writes ``source``'s weights to ``dest`` as llama.cpp file type ``ftype`` (e.g. "Q8_0").
    ValueError for an unknown type; RuntimeError when llama.cpp fails."""
    import llama_cpp
    from llama_cpp import _logger

    code = getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{ftype.upper()}", None)
    if code is None:
        raise ValueError(f"unknown llama.cpp file type {ftype!r}")
    p = llama_cpp.llama_model_quantize_default_params()
    p.ftype = code
    p.allow_requantize = True   # the source is already quantized
    p.nthread = threads or min(os.cpu_count() or 1, 8)
    _logger.set_verbose(False)  # llama.cpp logs every tensor otherwise
    rc = llama_cpp.llama_model_quantize(str(source).encode(), str(dest).encode(),
                                        ctypes.byref(p))
    if rc != 0 or not os.path.isfile(dest):
        raise RuntimeError(f"llama.cpp could not requantize {source} to {ftype} (code {rc})")
