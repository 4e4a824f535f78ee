"""`knn`: the share of "strong wins" among the k labelled prompts nearest by cosine (ties
count half). k = 1, as in the paper, gives scores in {0, 0.5, 1}: calibration then reaches a
requested cloud share only as closely as those three levels allow."""
from __future__ import annotations

from typing import Optional

import numpy as np

from confroute.routers.base import register
from confroute.routers.features import EmbeddingRouter
from confroute.routers.neighbors import IndexedLabels, build_index


@register("knn")
class KNNRouter(IndexedLabels, EmbeddingRouter):
    def __init__(self, embedder=None, threshold: Optional[float] = None, k: int = 1,
                 index: str = "auto"):
        super().__init__(embedder, threshold)
        if not isinstance(k, int) or k < 1:
            raise ValueError(f"k must be a positive integer, got {k!r}")
        self.k, self.index_kind = k, index

    def _fit(self, X, y):
        self._y = y.copy()
        self._index = build_index(X, self.index_kind)

    def _score(self, X):
        sims, ids = self._index.search(X, min(self.k, len(self._y)))
        found = ids >= 0  # an IVF search may find fewer than k in the probed cells
        total = np.where(found, self._y[np.maximum(ids, 0)], 0.0).sum(axis=1)
        count = found.sum(axis=1)
        return np.where(count > 0, total / np.maximum(count, 1), 0.5)

    def _params(self):
        return {"k": self.k, "index": self.index_kind}
