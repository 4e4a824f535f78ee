"""`se`: the online router — the edge model's live semantic entropy on each prompt.

No training: every prompt is sampled ``n`` times on the edge model (issue 3's backend and
confidence scorer) and its SE of ``kind`` (nats) becomes the score 1 - exp(-SE), a monotone
map into [0, 1): replay and calibration use only the order, and a threshold t on the score is
the SE threshold -ln(1 - t) of the ``SECascade`` policy. Slow by design (n samples per
prompt): it is the baseline the trained routers try to match without sampling.
"""
from __future__ import annotations

import json
import os
from typing import Optional, Sequence

import numpy as np

from confroute.routers.base import Router, register


@register("se")
class SERouter(Router):
    def __init__(self, edge=None, scorer=None, kind: str = "kuhn", n: int = 4,
                 max_tokens: int = 24, temperature: float = 0.7, seed: int = 0,
                 similarity: float = 0.8, threshold: Optional[float] = None,
                 threads: Optional[int] = None):
        if kind not in ("discrete", "weighted", "kuhn"):
            raise ValueError(f"unknown SE kind {kind!r}: use discrete, weighted or kuhn")
        if n < 2:
            raise ValueError(f"n must be >= 2 samples, got {n}")
        self._edge, self._scorer = edge, scorer
        self.kind, self.n, self.max_tokens = kind, int(n), int(max_tokens)
        self.temperature, self.seed, self.similarity = float(temperature), int(seed), similarity
        self.threshold, self.threads = threshold, threads

    @property
    def edge(self):
        if self._edge is None:
            from confroute.models import default_edge

            self._edge = default_edge(**({} if self.threads is None else
                                         {"n_threads": self.threads}))
        return self._edge

    @property
    def scorer(self):
        if self._scorer is None:
            from confroute.confidence.scorer import ConfidenceScorer

            self._scorer = ConfidenceScorer(threshold=self.similarity)
        return self._scorer

    def entropy(self, prompt: str) -> float:
        conf = self.scorer.score([{"role": "user", "content": prompt}], self.edge, n=self.n,
                                 max_tokens=self.max_tokens, temperature=self.temperature,
                                 seed=self.seed)
        return float(conf.se(self.kind))

    def score(self, prompts: Sequence[str]) -> np.ndarray:
        if isinstance(prompts, str):
            raise ValueError("prompts must be a list of strings, not one string")
        se = np.array([self.entropy(p) for p in prompts], dtype=np.float64)
        se = np.where(np.isnan(se), np.inf, se)  # an undefined SE escalates, as in SECascade
        return 1.0 - np.exp(-se)

    def _params(self) -> dict:
        return {"kind": self.kind, "n": self.n, "max_tokens": self.max_tokens,
                "temperature": self.temperature, "seed": self.seed,
                "similarity": self.similarity}

    def save(self, directory) -> None:
        os.makedirs(directory, exist_ok=True)
        with open(os.path.join(os.fspath(directory), "router.json"), "w") as f:
            json.dump({"name": self.name, "threshold": self.threshold,
                       "params": self._params()}, f, indent=1)

    @classmethod
    def load(cls, directory, edge=None, scorer=None) -> "SERouter":
        with open(os.path.join(os.fspath(directory), "router.json")) as f:
            config = json.load(f)
        return cls(edge=edge, scorer=scorer, threshold=config.get("threshold"),
                   **config.get("params", {}))
