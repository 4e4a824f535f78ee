"""`mlp`: two layers (ReLU hidden layer, then a softmax over {weak, strong}) on the prompt
embedding, trained with scikit-learn's MLPClassifier (Adam, L2 ``alpha``, early stopping on a
held-out tenth when there are enough examples). Ties count half: each becomes a weak and a
strong example of weight 1/2. For two classes scikit-learn's output unit is the logistic
sigmoid of one logit z, which is the two-way softmax over logits (0, z).

Scoring and the saved form use only the weight arrays (a NumPy forward pass), so a saved router
does not depend on pickles or on the scikit-learn version that trained it.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from confroute.routers.base import register
from confroute.routers.features import EmbeddingRouter, hard_targets


@register("mlp")
class MLPRouter(EmbeddingRouter):
    def __init__(self, embedder=None, threshold: Optional[float] = None, hidden: int = 128,
                 alpha: float = 1e-3, max_iter: int = 300, seed: int = 0):
        super().__init__(embedder, threshold)
        if not isinstance(hidden, int) or hidden < 1:
            raise ValueError(f"hidden must be a positive integer, got {hidden!r}")
        self.hidden, self.alpha, self.max_iter, self.seed = hidden, float(alpha), max_iter, seed

    def _fit(self, X, y):
        import warnings

        from sklearn.exceptions import ConvergenceWarning
        from sklearn.neural_network import MLPClassifier

        Xh, yh, w = hard_targets(X, y)
        if len(np.unique(yh)) < 2:
            raise ValueError("the labels hold only one outcome (every row the same winner): "
                             "a classifier needs both")
        clf = MLPClassifier(hidden_layer_sizes=(self.hidden,), activation="relu",
                            alpha=self.alpha, max_iter=self.max_iter, random_state=self.seed,
                            early_stopping=len(yh) >= 200, n_iter_no_change=20)
        with warnings.catch_warnings():  # small label sets stop on max_iter; that is fine
            warnings.simplefilter("ignore", ConvergenceWarning)
            clf.fit(Xh, yh, sample_weight=w)
        self.info["mlp_iterations"] = int(clf.n_iter_)
        self._w1, self._w2 = clf.coefs_
        self._b1, self._b2 = clf.intercepts_

    def _score(self, X):
        h = np.maximum(X @ self._w1 + self._b1, 0.0)
        z = (h @ self._w2 + self._b2)[:, 0]
        return 1.0 / (1.0 + np.exp(-z))

    def _params(self):
        return {"hidden": self.hidden, "alpha": self.alpha, "max_iter": self.max_iter,
                "seed": self.seed}

    def _arrays(self):
        return {"w1": self._w1, "b1": self._b1, "w2": self._w2, "b2": self._b2}

    def _restore(self, arrays, directory):
        self._w1, self._b1, self._w2, self._b2 = (arrays[k] for k in ("w1", "b1", "w2", "b2"))
        if self._w1.shape[0] != self.dim:
            raise ValueError(f"{directory}: weights do not match the embedding dimension")
