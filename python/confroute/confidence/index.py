"""A FAISS index of unit vectors (prompts or samples): exact inner product = cosine.

The routers keep their training prompts here; clustering that spans many vectors (beyond one
query's handful of samples) uses :meth:`VectorIndex.components`. FAISS loads on first use.
"""
from __future__ import annotations

import os

import numpy as np


def load_faiss():
    import faiss  # faiss-cpu wheel; imported here so `import confroute` stays light

    return faiss


def normalize_rows(x, name: str = "vectors") -> np.ndarray:
    """float32 C-contiguous copy of ``x`` [n, d] with unit rows; ValueError on a zero-norm,
    NaN or infinite row."""
    a = np.asarray(x)
    if a.ndim != 2:
        raise ValueError(f"{name} must be 2-D [n, d], got shape {a.shape}")
    if a.dtype.kind not in "fiu":
        raise ValueError(f"{name} must hold real numbers, got dtype {a.dtype}")
    a = np.array(a, dtype=np.float32, order="C", copy=True)
    if not np.isfinite(a).all():
        bad = int(np.argwhere(~np.isfinite(a))[0, 0])
        raise ValueError(f"{name} row {bad} has a NaN or infinite value")
    norms = np.linalg.norm(a, axis=1)
    if a.shape[0] and (norms == 0).any():
        raise ValueError(f"{name} row {int(np.argmin(norms))} has zero norm")
    a /= norms[:, None]
    return a


class VectorIndex:
    """Exact cosine search over unit vectors (faiss.IndexFlatIP). Ids are insertion order."""

    def __init__(self, dim: int):
        if not isinstance(dim, (int, np.integer)) or dim < 1:
            raise ValueError(f"dim must be a positive integer, got {dim!r}")
        self.dim = int(dim)
        self._index = load_faiss().IndexFlatIP(self.dim)

    def __len__(self) -> int:
        return int(self._index.ntotal)

    def _check(self, x, name: str) -> np.ndarray:
        a = normalize_rows(x, name)
        if a.shape[1] != self.dim:
            raise ValueError(f"{name} have dimension {a.shape[1]}, the index has {self.dim}")
        return a

    def add(self, vectors) -> np.ndarray:
        """Adds rows (normalized inside); returns their ids."""
        a = self._check(vectors, "vectors")
        start = len(self)
        self._index.add(a)
        return np.arange(start, start + a.shape[0], dtype=np.int64)

    def vectors(self) -> np.ndarray:
        """All stored unit vectors [n, dim] (a copy)."""
        return self._index.reconstruct_n(0, len(self)) if len(self) else np.zeros((0, self.dim), np.float32)

    def search(self, queries, k: int):
        """The k most similar stored vectors per query: (similarities [q, k], ids [q, k]);
        where fewer than k are stored the tail holds id -1 and similarity -inf."""
        if not isinstance(k, (int, np.integer)) or k < 1:
            raise ValueError(f"k must be a positive integer, got {k!r}")
        q = self._check(queries, "queries")
        sims, ids = self._index.search(q, int(k))
        sims = sims.astype(np.float64)
        sims[ids < 0] = -np.inf
        return sims, ids

    def range_search(self, queries, similarity: float):
        """Every stored vector with cosine >= ``similarity``, per query: a ragged result
        (offsets [q+1], similarities, ids), ordered by id within each query."""
        if not -1.0 <= float(similarity) <= 1.0:
            raise ValueError(f"similarity is a cosine in [-1, 1], got {similarity}")
        q = self._check(queries, "queries")
        # FAISS keeps results with inner product > radius; step just below the similarity.
        radius = np.nextafter(np.float32(similarity), np.float32(-np.inf))
        lims, sims, ids = self._index.range_search(q, float(radius))
        lims = lims.astype(np.int64)
        for i in range(q.shape[0]):  # FAISS returns each query's hits in no set order
            lo, hi = lims[i], lims[i + 1]
            order = np.argsort(ids[lo:hi], kind="stable")
            ids[lo:hi], sims[lo:hi] = ids[lo:hi][order], sims[lo:hi][order]
        return lims, sims.astype(np.float64), ids.astype(np.int64)

    def components(self, similarity: float) -> np.ndarray:
        """Clusters every stored vector: connected components of the graph with an edge where
        cosine >= ``similarity``. Returns int32 ids in order of first appearance."""
        n = len(self)
        if n == 0:
            return np.zeros(0, np.int32)
        lims, _, ids = self.range_search(self.vectors(), similarity)
        parent = np.arange(n)

        def root(i):
            while parent[i] != i:
                parent[i] = parent[parent[i]]
                i = parent[i]
            return i

        src = np.repeat(np.arange(n), np.diff(lims))
        for a, b in zip(src.tolist(), ids.tolist()):
            ra, rb = root(a), root(b)
            if ra != rb:
                parent[max(ra, rb)] = min(ra, rb)
        roots = np.array([root(i) for i in range(n)])
        _, first, labels = np.unique(roots, return_index=True, return_inverse=True)
        rank = np.argsort(np.argsort(first))  # number clusters by first appearance
        return rank[labels].astype(np.int32)

    def save(self, path) -> None:
        """Writes the index to one file (FAISS's format)."""
        load_faiss().write_index(self._index, os.fspath(path))

    @classmethod
    def load(cls, path) -> "VectorIndex":
        path = os.fspath(path)
        if not os.path.exists(path):
            raise ValueError(f"no index file at {path}")
        index = load_faiss().read_index(path)
        obj = cls.__new__(cls)
        obj.dim = int(index.d)
        obj._index = index
        return obj
