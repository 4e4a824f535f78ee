"""Sentence embedders for clustering answers by meaning. One small protocol, three backends.

An ``Embedder`` has ``dim`` and ``embed(texts) -> float32 [len(texts), dim]`` with unit-length
rows (cosine similarity = dot product). The default is all-MiniLM-L6-v2 (int8 ONNX) on
onnxruntime with the ``tokenizers`` library: no torch. The others: llama.cpp embeddings from a
GGUF, and any OpenAI-compatible ``/v1/embeddings`` endpoint.
"""
from __future__ import annotations

import os
from typing import List, Optional, Protocol, Sequence, runtime_checkable

import numpy as np


@runtime_checkable
class Embedder(Protocol):
    dim: int

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        ...


def _check_texts(texts) -> List[str]:
    if isinstance(texts, str):
        raise ValueError("embed() takes a list of strings, not one string")
    texts = list(texts)
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise ValueError(f"texts[{i}] must be a string, got {type(t).__name__}")
    return texts


def _unit_rows(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norm, 1e-12)


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 int8 ONNX: mean pooling over the attention mask, then L2
    normalization (the sentence-transformers recipe). Texts longer than ``max_length`` word
    pieces are truncated (the model was trained on up to 256)."""

    def __init__(self, model_path=None, tokenizer_path=None, max_length: int = 256,
                 batch_size: int = 64, n_threads: Optional[int] = None):
        import onnxruntime as ort
        from tokenizers import Tokenizer

        from confroute.models import store

        if model_path is None:
            model_path = store.model_path(store.DEFAULT_EMBEDDER, "model.onnx")
        if tokenizer_path is None:
            tokenizer_path = store.model_path(store.DEFAULT_EMBEDDER, "tokenizer.json")
        for p in (model_path, tokenizer_path):
            if not os.path.isfile(p):
                raise ValueError(f"{p} does not exist")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = n_threads or min(os.cpu_count() or 1, 4)
        opts.log_severity_level = 3
        self._session = ort.InferenceSession(os.fspath(model_path), opts,
                                             providers=["CPUExecutionProvider"])
        self._tok = Tokenizer.from_file(os.fspath(tokenizer_path))
        self._tok.enable_truncation(max_length)
        self._tok.enable_padding(pad_id=0, pad_token="[PAD]")  # pad to the batch's longest
        self._inputs = {i.name for i in self._session.get_inputs()}
        self.batch_size = batch_size
        self.dim = int(self._session.get_outputs()[0].shape[-1])
        self.name = "all-MiniLM-L6-v2-int8"

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        texts = _check_texts(texts)
        out = np.empty((len(texts), self.dim), np.float32)
        for start in range(0, len(texts), self.batch_size):
            enc = self._tok.encode_batch(texts[start:start + self.batch_size])
            ids = np.array([e.ids for e in enc], np.int64)
            mask = np.array([e.attention_mask for e in enc], np.int64)
            feed = {"input_ids": ids, "attention_mask": mask,
                    "token_type_ids": np.zeros_like(ids)}
            hidden = self._session.run(None, {k: v for k, v in feed.items()
                                              if k in self._inputs})[0]
            m = mask[:, :, None].astype(np.float32)
            pooled = (hidden * m).sum(axis=1) / np.maximum(m.sum(axis=1), 1.0)
            out[start:start + len(enc)] = _unit_rows(pooled)
        return out


class LlamaEmbedder:
    """Embeddings from a GGUF model through llama.cpp, mean-pooled. Prefer a real embedding
    model; a chat model's pooled states cluster meaning poorly (SmolLM2: paraphrase 0.955 vs
    unrelated 0.728)."""

    def __init__(self, path, n_ctx: int = 512, n_threads: Optional[int] = None):
        import llama_cpp
        from llama_cpp import Llama

        if not os.path.isfile(path):
            raise ValueError(f"model file {path!r} does not exist")
        # Mean pooling gives one vector per text also for generative models, whose GGUF names
        # no pooling of its own.
        from confroute.models.llama.probe import safe_defaults

        with safe_defaults(path):  # no AMX kernels where they crash (see llama.probe)
            self._llm = Llama(model_path=os.fspath(path), embedding=True, n_ctx=n_ctx,
                              pooling_type=llama_cpp.LLAMA_POOLING_TYPE_MEAN,
                              n_threads=n_threads or min(os.cpu_count() or 1, 8),
                              verbose=False)
        self.dim = int(self._llm.n_embd())
        self.name = os.path.basename(os.fspath(path))

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        texts = _check_texts(texts)
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        # An empty string has no tokens to pool; a space does.
        vecs = self._llm.embed([t if t else " " for t in texts], normalize=False,
                               truncate=True)
        return _unit_rows(np.asarray(vecs, np.float32).reshape(len(texts), -1))


class OpenAIEmbedder:
    """Any OpenAI-compatible ``POST {base_url}/embeddings``."""

    def __init__(self, base_url: str, model: str, api_key: Optional[str] = None,
                 timeout: float = 30.0, max_retries: int = 3, batch_size: int = 256):
        from confroute.models.cloud import HttpClient

        self._http = HttpClient(base_url, api_key, timeout, max_retries)
        self.model = model
        self.batch_size = batch_size
        self.name = model
        self.dim = int(self.embed(["dimension probe"]).shape[1])

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        texts = _check_texts(texts)
        rows = []
        for start in range(0, len(texts), self.batch_size):
            chunk = texts[start:start + self.batch_size]
            data = self._http.post_json("/embeddings", {"model": self.model, "input": chunk})
            items = sorted(data.get("data", []), key=lambda d: d.get("index", 0))
            if len(items) != len(chunk):
                from confroute.models.cloud import CloudError

                raise CloudError(f"{self._http.base_url}/embeddings returned {len(items)} "
                                 f"vectors for {len(chunk)} texts")
            rows += [d["embedding"] for d in items]
        if not rows:
            return np.zeros((0, getattr(self, "dim", 0)), np.float32)
        return _unit_rows(np.asarray(rows, np.float32))
