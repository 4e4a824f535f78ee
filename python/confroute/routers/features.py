"""The shared part of the trained routers: prompts -> unit embeddings -> a score.

A trained router holds an embedder (any object with ``embed(texts) -> float32 [n, d]``, and
optionally ``dim`` and ``name``; default: the package's default embedder, loaded on first use),
learns from label rows (:mod:`confroute.labels`) and scores embeddings. Saved as a directory:
``router.json`` (name, format version, embedder name/dim, models, threshold, parameters),
``arrays.npz`` (learned arrays) and, for the neighbour routers, ``index.faiss``.
"""
from __future__ import annotations

import abc
import json
import os
from collections import OrderedDict
from typing import Optional, Sequence

import numpy as np

from confroute.confidence.index import normalize_rows
from confroute.labels import pair_targets, read_labels
from confroute.routers.base import FORMAT_VERSION, Router, prompt_list, read_config



_SHARED = None


def default_embedder():
    """One process-wide default embedder (the package's MiniLM ONNX model) behind a cache, so
    routers loaded side by side (a replay of several routers) embed each prompt once; the
    cache is also kept on disk (:func:`disk_cache_dir`), so the next process (the next router
    trained on the same prompts) embeds nothing again."""
    global _SHARED
    if _SHARED is None:
        from confroute.models import default_embedder as make

        # CONFROUTE_N_THREADS caps onnxruntime's threads too: on a busy machine its spinning
        # pool costs more than it gives (as llama.cpp's does)
        threads = int(os.environ.get("CONFROUTE_N_THREADS") or 0) or None
        _SHARED = CachingEmbedder(make(n_threads=threads), disk=disk_cache_dir())
    return _SHARED


def disk_cache_dir() -> Optional[str]:
    """``$CONFROUTE_HOME/embeddings`` (see :func:`confroute.models.store.home`); None when
    ``CONFROUTE_EMBED_CACHE=0``."""
    if os.environ.get("CONFROUTE_EMBED_CACHE", "1") in ("0", "", "off", "no"):
        return None
    from confroute.models.store import home

    return str(home() / "embeddings")


class CachingEmbedder:
    """Wraps an embedder; remembers the vectors of up to ``max_items`` texts (oldest out).

    With ``disk`` (a folder), vectors are also stored there, keyed by the embedder's name and
    the text (SHA-256), one ``.npz`` shard per batch of new texts (written to a temporary
    name, then renamed: concurrent processes never see half a shard). Shards are read once,
    on the first ``embed``; vectors of other embedders are never mixed in (a folder per
    embedder name and dimension)."""

    def __init__(self, embedder, max_items: int = 50_000, disk: Optional[str] = None):
        self.inner, self.max_items = embedder, max_items
        self.name = embedder_name(embedder)
        self.dim = getattr(embedder, "dim", None)
        self._cache: "OrderedDict[str, np.ndarray]" = OrderedDict()
        self.disk = None
        if disk is not None:
            safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in self.name)
            self.disk = os.path.join(os.fspath(disk), f"{safe}-{self.dim or 'd'}")
        self._disk: Optional[dict] = None  # key -> vector, read lazily
        self.embedded = 0  # texts sent to the inner embedder (for tests and benches)

    def _key(self, text: str) -> bytes:
        import hashlib

        return hashlib.sha256(f"{self.name}\0{text}".encode("utf-8")).digest()

    def _load_disk(self) -> dict:
        if self._disk is None:
            self._disk = {}
            if self.disk and os.path.isdir(self.disk):
                for fn in sorted(os.listdir(self.disk)):
                    if not fn.endswith(".npz"):
                        continue
                    try:
                        with np.load(os.path.join(self.disk, fn)) as z:
                            keys, vecs = z["keys"], z["vecs"]
                    except (OSError, ValueError, KeyError):
                        continue  # a damaged shard is ignored: those texts are embedded again
                    if vecs.ndim != 2 or (self.dim and vecs.shape[1] != self.dim):
                        continue
                    for k, v in zip(keys, vecs):
                        self._disk[bytes(k)] = v
        return self._disk

    def _store(self, texts, vecs) -> None:
        if not self.disk or not texts:
            return
        import uuid

        os.makedirs(self.disk, exist_ok=True)
        keys = np.frombuffer(b"".join(self._key(t) for t in texts), dtype="S32")
        base = os.path.join(self.disk, f"shard-{uuid.uuid4().hex}")
        np.savez(base + ".tmp.npz", keys=keys, vecs=np.asarray(vecs, np.float32))
        os.replace(base + ".tmp.npz", base + ".npz")
        for t, v in zip(texts, vecs):
            self._disk[self._key(t)] = v

    def _embed_new(self, texts):
        self.embedded += len(texts)
        return np.asarray(self.inner.embed(texts), dtype=np.float32)

    def embed(self, texts) -> np.ndarray:
        texts = list(texts)
        new = list(dict.fromkeys(t for t in texts if t not in self._cache))
        if new and self.disk:
            disk = self._load_disk()
            still = []
            for t in new:
                v = disk.get(self._key(t))
                if v is None:
                    still.append(t)
                else:
                    self._cache[t] = v
            new = still
        for start in range(0, len(new), 256):  # batches, so a long list streams
            chunk = new[start:start + 256]
            vecs = self._embed_new(chunk)
            for t, v in zip(chunk, vecs):
                self._cache[t] = v
            self._store(chunk, vecs)
        while len(self._cache) > self.max_items:
            self._cache.popitem(last=False)
        if not texts:
            return np.zeros((0, self.dim or 0), np.float32)
        # texts evicted above (a list longer than the cache) are embedded again
        missing = [t for t in texts if t not in self._cache]
        disk = self._disk or {}
        extra = {t: disk[self._key(t)] for t in missing if self._key(t) in disk}
        missing = [t for t in missing if t not in extra]
        extra.update(zip(missing, self.inner.embed(missing)) if missing else {})
        return np.stack([self._cache[t] if t in self._cache else extra[t] for t in texts])


def embedder_name(embedder) -> str:
    return str(getattr(embedder, "name", type(embedder).__name__))


class EmbeddingRouter(Router):
    """Subclasses implement ``_fit(X, y)``, ``_score(X)``, ``_params()``/``_arrays()`` and
    ``_restore(params, arrays, directory)``. X rows are unit vectors; y = P(strong wins)."""

    def __init__(self, embedder=None, threshold: Optional[float] = None):
        self._embedder = embedder
        self.threshold = threshold
        self.dim: Optional[int] = None
        self.strong: Optional[str] = None
        self.weak: Optional[str] = None
        self.embedder_name: Optional[str] = None if embedder is None else embedder_name(embedder)
        self.info: dict = {}  # free-form facts kept in router.json (training counts, calibration)

    # -- embeddings -------------------------------------------------------------------------
    @property
    def embedder(self):
        if self._embedder is None:
            self._embedder = default_embedder()
        return self._embedder

    def embed(self, prompts: Sequence[str]) -> np.ndarray:
        prompts = prompt_list(prompts)
        emb = self.embedder
        want = getattr(emb, "dim", None)
        if self.dim is not None and want is not None and int(want) != self.dim:
            raise ValueError(f"router {self.name!r} was trained on {self.dim}-dimensional "
                             f"embeddings ({self.embedder_name}), the embedder gives {want}")
        if not prompts:
            return np.zeros((0, self.dim or int(want or 0)), np.float32)
        return self._check_dim(normalize_rows(emb.embed(prompts), "prompt embeddings"))

    def _check_dim(self, X: np.ndarray) -> np.ndarray:
        if self.dim is not None and X.shape[1] != self.dim:
            raise ValueError(f"router {self.name!r} was trained on {self.dim}-dimensional "
                             f"embeddings ({self.embedder_name}), got {X.shape[1]}")
        return X

    # -- the Router interface -----------------------------------------------------------------
    def score(self, prompts: Sequence[str]) -> np.ndarray:
        self._require_fitted()
        X = self.embed(prompts)
        return self.score_embeddings(X) if len(X) else np.zeros(0)

    def score_embeddings(self, X) -> np.ndarray:
        """Scores of precomputed embeddings [n, dim] (normalized here): float64 in [0, 1]."""
        self._require_fitted()
        X = self._check_dim(normalize_rows(X, "embeddings"))
        return np.clip(np.asarray(self._score(X), dtype=np.float64), 0.0, 1.0)

    def fit(self, labels, strong: Optional[str] = None, weak: Optional[str] = None,
            embeddings=None) -> "EmbeddingRouter":
        """Trains on label rows (a list of dicts or a JSONL path). ``embeddings`` [n, d] may
        be given for the rows' prompts (skips the embedder)."""
        rows = read_labels(labels) if isinstance(labels, (str, os.PathLike)) else list(labels)
        prompts, y, self.strong, self.weak = pair_targets(rows, strong, weak)
        if embeddings is None:
            self.dim = None
            X = self.embed(prompts)
        else:
            X = normalize_rows(embeddings, "embeddings")
            if X.shape[0] != len(rows):
                raise ValueError(f"{X.shape[0]} embeddings for {len(rows)} label rows")
            if len(prompts) != len(rows):
                raise ValueError("with precomputed embeddings every row must compare the "
                                 "same two models")
        return self.fit_embeddings(X, y)

    def fit_embeddings(self, X, y) -> "EmbeddingRouter":
        """Trains on embeddings [n, d] and targets y = P(strong wins) in {0, 0.5, 1}."""
        X = normalize_rows(X, "embeddings")
        y = np.asarray(y, dtype=np.float64)
        if X.shape[0] == 0:
            raise ValueError("no training examples")
        if y.shape != (X.shape[0],):
            raise ValueError(f"{X.shape[0]} embeddings but targets of shape {y.shape}")
        if not np.isin(y, (0.0, 0.5, 1.0)).all():
            raise ValueError("targets must be 0 (weak wins), 0.5 (tie) or 1 (strong wins)")
        want = getattr(self._embedder, "dim", None) if self._embedder is not None else None
        if want is not None and int(want) != X.shape[1]:
            raise ValueError(f"embeddings have dimension {X.shape[1]}, the embedder {want}")
        self.dim = int(X.shape[1])
        if self._embedder is not None:
            self.embedder_name = embedder_name(self._embedder)
        self.strong = self.strong or "strong"
        self.weak = self.weak or "weak"
        self.info.update(n_train=int(len(y)), n_strong=int((y == 1).sum()),
                         n_weak=int((y == 0).sum()), n_tie=int((y == 0.5).sum()))
        self._fit(X, y)
        return self

    def _require_fitted(self):
        if self.dim is None:
            raise ValueError(f"router {self.name!r} is not trained: call fit or load one")

    # -- persistence ----------------------------------------------------------------------------
    def save(self, directory) -> None:
        self._require_fitted()
        directory = os.fspath(directory)
        os.makedirs(directory, exist_ok=True)
        config = {
            "name": self.name,
            "format_version": FORMAT_VERSION,
            "embedder": {"name": self.embedder_name, "dim": self.dim},
            "strong": self.strong,
            "weak": self.weak,
            "threshold": self.threshold,
            "params": self._params(),
            "info": self.info,
        }
        np.savez(os.path.join(directory, "arrays.npz"), **self._arrays())
        self._save_extra(directory)
        # router.json last: a directory without it is not a (half-written) router
        with open(os.path.join(directory, "router.json"), "w") as f:
            json.dump(config, f, indent=1)

    @classmethod
    def load(cls, directory, embedder=None) -> "EmbeddingRouter":
        directory = os.fspath(directory)
        config = read_config(directory, cls.name)
        obj = cls(embedder=embedder, **config["params"])
        obj.dim = int(config["embedder"]["dim"])
        obj.embedder_name = config["embedder"]["name"]
        obj.strong, obj.weak = config["strong"], config["weak"]
        obj.threshold = config["threshold"]
        obj.info = config.get("info", {})
        with np.load(os.path.join(directory, "arrays.npz")) as z:
            arrays = {k: z[k] for k in z.files}
        obj._restore(arrays, directory)
        if embedder is not None:
            obj.embed([])  # dimension check now, not at the first query
        return obj

    def _save_extra(self, directory: str) -> None:
        pass

    # -- what each router defines ---------------------------------------------------------------
    @abc.abstractmethod
    def _fit(self, X: np.ndarray, y: np.ndarray) -> None: ...

    @abc.abstractmethod
    def _score(self, X: np.ndarray) -> np.ndarray: ...

    def _params(self) -> dict:
        return {}

    @abc.abstractmethod
    def _arrays(self) -> dict: ...

    @abc.abstractmethod
    def _restore(self, arrays: dict, directory: str) -> None: ...


def hard_targets(X: np.ndarray, y: np.ndarray):
    """For classifiers that need class labels: a tie becomes one 'weak' and one 'strong' copy
    of the example with weight 1/2 each (so ties count half, as in the BT fit)."""
    tie = y == 0.5
    Xh = np.concatenate([X, X[tie]])
    yh = np.concatenate([np.where(tie, 0, y), np.ones(int(tie.sum()))]).astype(int)
    w = np.concatenate([np.where(tie, 0.5, 1.0), np.full(int(tie.sum()), 0.5)])
    return Xh, yh, w
