"""The labelled-prompt index of the neighbour routers (kNN, SW), on the core's VectorIndex.

``exact`` is the core's flat index (every stored vector compared: ~7 ms for one query against
100k 384-d prompts on 2 cores). ``ivf`` is FAISS's inverted-file index behind the same
interface: k-means cells, only ``nprobe`` cells searched per query, so large training sets
score in well under a millisecond at a small loss of recall (bench/bench_routers.py measures
both). ``auto`` picks ivf from ``IVF_FROM`` stored prompts on.
"""
from __future__ import annotations

import math
import os

import numpy as np

from confroute.confidence.index import VectorIndex, load_faiss

IVF_FROM = 50_000


class IVFIndex(VectorIndex):
    """VectorIndex over faiss.IndexIVFFlat (inner product); trains its cells on the first add.
    Saved and loaded by VectorIndex's save/load (FAISS's file keeps nlist and nprobe)."""

    def __init__(self, dim: int, nlist: int, nprobe: int):
        super().__init__(dim)
        faiss = load_faiss()
        self._quantizer = faiss.IndexFlatIP(self.dim)  # must outlive the IVF index
        self._index = faiss.IndexIVFFlat(self._quantizer, self.dim, int(nlist),
                                         faiss.METRIC_INNER_PRODUCT)
        self._index.nprobe = int(nprobe)

    def add(self, vectors) -> np.ndarray:
        a = self._check(vectors, "vectors")
        if not self._index.is_trained:
            # k-means on a seeded sample of 64 points per cell: seconds, not minutes, at 100k
            n_train = min(len(a), 64 * self._index.nlist)
            pick = np.random.default_rng(0).choice(len(a), n_train, replace=False)
            self._index.train(a[np.sort(pick)])
        return super().add(a)


def build_index(X: np.ndarray, kind: str = "auto", nprobe: int = 16) -> VectorIndex:
    """An index holding the unit rows of X (ids = row numbers)."""
    if kind not in ("auto", "exact", "ivf"):
        raise ValueError(f"index kind must be 'auto', 'exact' or 'ivf', got {kind!r}")
    n, d = X.shape
    if kind == "auto":
        kind = "ivf" if n >= IVF_FROM else "exact"
    if kind == "exact":
        index = VectorIndex(d)
    else:
        nlist = max(1, min(n // 39, int(math.sqrt(n))))  # FAISS wants >= 39 points a cell
        index = IVFIndex(d, nlist, min(nprobe, nlist))
    index.add(X)
    return index


def save_index(index: VectorIndex, directory: str) -> None:
    index.save(os.path.join(directory, "index.faiss"))


def load_index(directory: str) -> VectorIndex:
    return VectorIndex.load(os.path.join(directory, "index.faiss"))


def index_kind(index: VectorIndex) -> str:
    return "ivf" if "IVF" in type(index._index).__name__ else "exact"


class IndexedLabels:
    """Persistence for routers that keep the labelled prompts' targets ``_y`` beside a vector
    index ``_index`` of their embeddings (kNN and SW): arrays.npz holds y, index.faiss the
    index, and a pair that does not match is refused on load."""

    def _arrays(self):
        return {"y": self._y}

    def _save_extra(self, directory):
        save_index(self._index, directory)

    def _restore(self, arrays, directory):
        self._y = arrays["y"]
        self._index = load_index(directory)
        if self._index.dim != self.dim or len(self._index) != len(self._y):
            raise ValueError(f"{directory}: index.faiss does not match router.json/arrays.npz")
