"""`mf`: matrix factorization (RouteLLM's MF router, for the two models of the labels).

Each model M has a learned embedding v_M (``rank`` numbers) and a bias b_M; a prompt's unit
embedding x is projected to P x (P: rank x dim). The bilinear score is s(M, x) = v_M . (P x)
+ b_M, and P(strong wins | x) = sigmoid(s(strong, x) - s(weak, x)). Trained by minimizing the
weighted logistic loss (ties as half a win each way) plus L2 on v and P, with SciPy's L-BFGS
on the analytic gradient. The biases carry the base rate (RouteLLM's MF has none, which ties
the base rate to the mean embedding direction).

With two models only v_strong - v_weak matters, so the score is a logistic model on x whose
weight vector P^T (v_strong - v_weak) is learned in factored form; the factored form is kept
so the same code serves more models later. Scoring one prompt is one dot product.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from confroute.routers.base import register
from confroute.routers.features import EmbeddingRouter


def _loss_and_grad(theta, X, y, w, rank, lam):
    d = X.shape[1]
    V = theta[: 2 * rank].reshape(2, rank)  # row 0 weak, row 1 strong
    b = theta[2 * rank: 2 * rank + 2]
    P = theta[2 * rank + 2:].reshape(rank, d)
    Z = X @ P.T  # [n, rank]
    dv = V[1] - V[0]
    logit = Z @ dv + (b[1] - b[0])
    # weighted mean of -[y ln s + (1-y) ln(1-s)], in a form that cannot overflow
    loss = np.sum(w * (np.logaddexp(0.0, logit) - y * logit)) + lam * (np.sum(V**2) + np.sum(P**2))
    g = w * (1.0 / (1.0 + np.exp(-logit)) - y)  # d loss / d logit
    gz = Z.T @ g
    gV = np.stack([-gz, gz]) + 2 * lam * V
    gb = np.array([-g.sum(), g.sum()])
    gP = np.outer(dv, g @ X) + 2 * lam * P
    return loss, np.concatenate([gV.ravel(), gb, gP.ravel()])


@register("mf")
class MFRouter(EmbeddingRouter):
    def __init__(self, embedder=None, threshold: Optional[float] = None, rank: int = 16,
                 l2: float = 1e-3, max_iter: int = 500, seed: int = 0):
        super().__init__(embedder, threshold)
        if not isinstance(rank, int) or rank < 1:
            raise ValueError(f"rank must be a positive integer, got {rank!r}")
        self.rank, self.l2, self.max_iter, self.seed = rank, float(l2), max_iter, seed

    def _fit(self, X, y):
        from scipy.optimize import minimize

        n, d = X.shape
        w = np.full(n, 1.0 / n)
        rng = np.random.default_rng(self.seed)
        theta0 = np.concatenate([rng.normal(0, 0.1, 2 * self.rank), np.zeros(2),
                                 rng.normal(0, 1 / np.sqrt(d), self.rank * d)])
        res = minimize(_loss_and_grad, theta0, args=(X.astype(np.float64), y, w, self.rank,
                                                     self.l2),
                       jac=True, method="L-BFGS-B", options={"maxiter": self.max_iter})
        if not np.isfinite(res.fun):
            raise ValueError(f"MF training diverged ({res.message})")
        self.info["mf_loss"] = float(res.fun)
        self.info["mf_iterations"] = int(res.nit)
        r = self.rank
        self._V = res.x[: 2 * r].reshape(2, r)
        self._b = res.x[2 * r: 2 * r + 2]
        self._P = res.x[2 * r + 2:].reshape(r, d)
        self._prepare()

    def _prepare(self):
        # s(strong) - s(weak) = (P^T (v_s - v_w)) . x + (b_s - b_w): fold into one vector
        self._u = self._P.T @ (self._V[1] - self._V[0])
        self._c = float(self._b[1] - self._b[0])

    def _score(self, X):
        return 1.0 / (1.0 + np.exp(-(X @ self._u + self._c)))

    def model_scores(self, X) -> np.ndarray:
        """The bilinear scores s(M, x) [n, 2] (weak, strong) of unit embeddings X."""
        return (X @ self._P.T) @ self._V.T + self._b

    def _params(self):
        return {"rank": self.rank, "l2": self.l2, "max_iter": self.max_iter, "seed": self.seed}

    def _arrays(self):
        return {"model_embeddings": self._V, "model_bias": self._b, "projection": self._P}

    def _restore(self, arrays, directory):
        self._V, self._b, self._P = (arrays[k] for k in
                                     ("model_embeddings", "model_bias", "projection"))
        if self._P.shape != (self.rank, self.dim):
            raise ValueError(f"{directory}: projection does not match rank/dimension")
        self._prepare()
