"""Synthetic embeddings and label rows for the router tests (test_routers, test_calibrate)."""
from __future__ import annotations

import numpy as np

from confroute.labels import make_row


class TableEmbedder:
    """Prompt 'p<i>' -> row i of a fixed matrix: synthetic embeddings behind the embedder API."""

    name = "table"

    def __init__(self, X):
        self.X = np.asarray(X, dtype=np.float32)
        self.dim = self.X.shape[1]

    def embed(self, texts):
        return self.X[[int(t[1:]) for t in texts]]


def planted(n=600, d=32, seed=0):
    """Prompts near centre A: the strong model wins; near centre B: the weak one; in between
    (near C) ties. Returns embeddings, targets and the embedder."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((3, d)) * 3
    which = rng.integers(0, 3, n)
    X = centres[which] + rng.standard_normal((n, d))
    y = np.array([1.0, 0.0, 0.5])[which]
    return X, y, TableEmbedder(X)


def prompts(idx):
    return [f"p{i}" for i in idx]


def rows_for(idx, y):
    win = {1.0: "strong", 0.0: "weak", 0.5: "tie"}
    return [make_row(f"p{i}", "edge", "cloud", win[y[i]]) for i in idx]
