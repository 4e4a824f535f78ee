"""`sw`: similarity-weighted Bradley-Terry (RouteLLM's SW ranking), for two models.

For a query q every labelled prompt q_i gets the weight w_i = gamma^(1 + S(q, q_i)), with
S(q, q_i) = cos(q, q_i) / max_j cos(q, q_j) (``scale="query"``: the nearest labelled prompt
gets S = 1; this is what RouteLLM's released code computes). The paper's formula divides by
q_i's own largest similarity to the training set, which is 1 because q_i is in that set;
``scale="none"`` is that literal reading (S = plain cosine).

The BT fit at query time: with two models, BT has one free coefficient, d = xi_strong -
xi_weak, and the weighted logistic loss -sum_i w_i [y_i ln s(d) + (1 - y_i) ln(1 - s(d))]
(ties y = 1/2, i.e. half a win each way) is minimized where s(d) = sum_i w_i y_i / sum_i w_i.
So the fitted P(strong wins | q) is that weighted mean, exactly (tests check it against
scikit-learn's weighted logistic regression); a one-sided neighbourhood gives 0 or 1 (the MLE
at d = -inf/+inf).

With many labelled prompts only the ``top_k`` nearest (FAISS) enter the fit; ``top_k=None``
means all of them up to ``FULL_UP_TO`` prompts and the nearest 1,000 beyond.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from confroute.routers.base import register
from confroute.routers.features import EmbeddingRouter
from confroute.routers.neighbors import IndexedLabels, build_index, index_kind

FULL_UP_TO = 10_000
TOP_K_LARGE = 1_000
SIMILARITY_BUDGET = 12_500_000  # entries of one query-chunk x labelled-prompt matrix


def sw_probability(sims: np.ndarray, y: np.ndarray, gamma: float = 10.0,
                   scale: str = "query") -> np.ndarray:
    """P(strong wins) per query from similarities [q, m] to m labelled prompts with targets
    y [q, m] (or [m]); entries with similarity -inf (missing neighbours) get no weight."""
    sims = np.asarray(sims, dtype=np.float64)
    valid = np.isfinite(sims)
    s = np.where(valid, sims, 0.0)
    if scale == "query":
        top = np.max(np.where(valid, sims, -np.inf), axis=1, keepdims=True)
        # a query whose nearest prompt has cosine <= 0 has no meaningful scale: keep cosine
        s = np.where(top > 0, s / np.where(top > 0, top, 1.0), s)
    elif scale != "none":
        raise ValueError(f"scale must be 'query' or 'none', got {scale!r}")
    # gamma^(1+S) / gamma^(1+max S): the common factor cancels in the ratio and keeps exp finite
    logw = (s - np.max(np.where(valid, s, -np.inf), axis=1, keepdims=True)) * np.log(gamma)
    w = np.where(valid, np.exp(logw), 0.0)
    return (w * y).sum(axis=1) / w.sum(axis=1)


@register("sw")
class SWRouter(IndexedLabels, EmbeddingRouter):
    def __init__(self, embedder=None, threshold: Optional[float] = None, gamma: float = 10.0,
                 top_k: Optional[int] = None, scale: str = "query", index: str = "auto"):
        super().__init__(embedder, threshold)
        if not gamma > 1:
            raise ValueError(f"gamma must be > 1 (nearer prompts weigh more), got {gamma}")
        if top_k is not None and (not isinstance(top_k, int) or top_k < 1):
            raise ValueError(f"top_k must be a positive integer or None, got {top_k!r}")
        if scale not in ("query", "none"):
            raise ValueError(f"scale must be 'query' or 'none', got {scale!r}")
        self.gamma, self.top_k, self.scale, self.index_kind = float(gamma), top_k, scale, index

    def neighbours_used(self) -> int:
        n = len(self._y)
        k = self.top_k if self.top_k is not None else (n if n <= FULL_UP_TO else TOP_K_LARGE)
        return min(k, n)

    def _fit(self, X, y):
        self._y = y.copy()
        self._index = build_index(X, self.index_kind)
        # the index's own copy (it re-normalizes), so scores before and after save/load agree
        self._vectors = self._index.vectors() if self.neighbours_used() == len(y) else None

    def _score(self, X):
        # in chunks: a [queries x labelled prompts] similarity matrix stays under ~100 MB
        step = max(1, SIMILARITY_BUDGET // max(1, self.neighbours_used()))
        return np.concatenate([self._score_chunk(X[i:i + step]) for i in range(0, len(X), step)])

    def _score_chunk(self, X):
        k = self.neighbours_used()
        if k == len(self._y):  # every labelled prompt: one matrix product, no search
            if self._vectors is None:  # after load: read the vectors back once
                if index_kind(self._index) == "ivf":
                    self._index._index.make_direct_map()
                self._vectors = self._index.vectors()
            sims = (X @ self._vectors.T).astype(np.float64)  # float32 product: no 2x copy
            return sw_probability(sims, self._y[None, :], self.gamma, self.scale)
        sims, ids = self._index.search(X, k)
        return sw_probability(sims, self._y[np.maximum(ids, 0)], self.gamma, self.scale)

    def _params(self):
        return {"gamma": self.gamma, "top_k": self.top_k, "scale": self.scale,
                "index": self.index_kind}

    def _restore(self, arrays, directory):
        super()._restore(arrays, directory)
        self._vectors = None
