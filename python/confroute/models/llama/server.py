"""``python -m confroute.models.llama.server --model X.gguf [--fresh-prompts] [llama_cpp.server
options]``:
llama-cpp-python's OpenAI-compatible server, loading the model with the params that
:mod:`confroute.models.llama.probe` found safe on this CPU (its plain ``python -m
llama_cpp.server`` segfaults where llama.cpp's AMX kernels fault). The tests' cloud runs on it.

``--fresh-prompts`` evaluates every request's prompt from scratch. llama-cpp-python otherwise
reuses the previous request's matching prefix, and a prompt evaluated in two pieces gives
slightly different logits, so the same request with the same seed would depend on the request
before it. Reproducible scores need the flag; throughput is better without it.
"""
from __future__ import annotations

import sys
from typing import List, Optional


def _model_arg(argv: List[str]) -> str:
    for i, a in enumerate(argv):
        if a == "--model" and i + 1 < len(argv):
            return argv[i + 1]
        if a.startswith("--model="):
            return a.split("=", 1)[1]
    raise ValueError("--model PATH is required (a GGUF file)")


FRESH = "--fresh-prompts"


def _fresh_prompts() -> None:
    import llama_cpp

    generate = llama_cpp.Llama.generate

    def fresh(self, tokens, *args, **kwargs):
        self.reset()   # no prefix kept from the previous request
        return generate(self, tokens, *args, **kwargs)

    llama_cpp.Llama.generate = fresh


def main(argv: Optional[List[str]] = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if FRESH in argv:
        argv.remove(FRESH)
        _fresh_prompts()
    from confroute.models.llama.probe import safe_defaults

    with safe_defaults(_model_arg(argv)):
        from llama_cpp.server.__main__ import main as serve

        sys.argv = ["llama_cpp.server", *argv]
        serve()


if __name__ == "__main__":
    main()
