"""Baseline routers for replay evaluation: ``oracle``, ``scores`` and ``se`` (``random``, which
the server can serve too, is :mod:`confroute.routers.random`).

* ``oracle``: knows the recorded outcomes and sends first the prompts where the strong model
  gains most over the weak one. An upper bound for any router on that table, not a router.
* ``scores``: reads one score per prompt from a CSV/JSONL file, so any signal computed
  elsewhere (e.g. semantic entropy) can be evaluated.
* ``se``: the edge model's live semantic entropy on each prompt. No training: every prompt is
  sampled ``n`` times on the edge model and its SE of ``kind`` (nats) becomes the score
  1 - exp(-SE), a monotone map into [0, 1): replay and calibration use only the order, and a
  threshold t on the score is the SE threshold -ln(1 - t) of the ``SECascade`` policy. Slow by
  design (n samples per prompt): it is the baseline the trained routers try to match without
  sampling.
"""
from __future__ import annotations

import json
import os
from typing import Dict, Optional, Sequence

import numpy as np

from confroute.routers.base import Router, register


@register("oracle")
class OracleRouter(Router):
    """Scores (q_strong - q_weak) rescaled to [0, 1]; prompts repeated in the table get their
    mean gain. ``table`` is an OutcomeTable (its weak/strong pair is used)."""

    needs_table = True

    def __init__(self, table=None):
        if table is None:
            raise ValueError("the oracle router needs the outcome table (table=...)")
        gain = table.q_strong - table.q_weak
        sums: Dict[str, list] = {}
        for p, g in zip(table.prompts, gain):
            sums.setdefault(p, []).append(float(g))
        lo, hi = float(gain.min()), float(gain.max())
        span = hi - lo if hi > lo else 1.0
        self._gain = {p: (np.mean(v) - lo) / span for p, v in sums.items()}

    def score(self, prompts: Sequence[str]) -> np.ndarray:
        try:
            return np.array([self._gain[p] for p in prompts], dtype=np.float64)
        except KeyError as e:
            raise ValueError(f"oracle: prompt not in its outcome table: {str(e)[:80]}") from None


@register("scores")
class ScoresRouter(Router):
    """Per-prompt scores from ``path`` (CSV or JSONL with a ``prompt`` column and ``column``).

    ``higher``: 'cloud' if a higher value means "needs the cloud" (an entropy), 'edge' if it
    means "the edge is fine" (a log-probability, a confidence) — those are negated. Values
    outside [0, 1] are min-max rescaled over the file (order is kept, and replay uses only the
    order); ``rescale=False`` refuses them instead."""

    def __init__(self, path: Optional[str] = None, column: str = "score",
                 higher: str = "cloud", rescale: bool = True, prompt_column: str = "prompt"):
        if path is None:
            raise ValueError("the scores router needs a file: scores:path=FILE[,column=NAME]")
        if higher not in ("cloud", "edge"):
            raise ValueError(f"scores: higher must be 'cloud' or 'edge', got {higher!r}")
        self.path, self.column, self.higher = os.fspath(path), column, higher
        from confroute.eval.data import parse_quality, read_csv
        from confroute.runtime.checkpoint import read_jsonl

        if self.path.endswith((".jsonl", ".json")):
            rows = ((f"line {n}", o) for n, o in read_jsonl(self.path))
        else:
            rows = read_csv(self.path)[1]
        values: Dict[str, float] = {}
        for where, row in rows:
            where = f"{self.path}: {where}"
            for c in (prompt_column, column):
                if c not in row:
                    raise ValueError(f"{where}: missing column {c!r}")
            v = parse_quality(row[column], where, column)
            p = row[prompt_column]
            if p in values and values[p] != v:
                raise ValueError(f"{where}: prompt repeated with a different score")
            values[p] = v
        if not values:
            raise ValueError(f"{self.path}: no rows")
        v = np.array(list(values.values()))
        if higher == "edge":
            v = -v
        lo, hi = float(v.min()), float(v.max())
        if lo < 0 or hi > 1:
            if not rescale:
                raise ValueError(f"{self.path}: column {column!r} holds values outside [0, 1]")
            v = (v - lo) / (hi - lo) if hi > lo else np.zeros_like(v)
        self._scores = dict(zip(values, v.tolist()))

    def score(self, prompts: Sequence[str]) -> np.ndarray:
        missing = [p for p in prompts if p not in self._scores]
        if missing:
            raise ValueError(f"{self.path}: no score for {len(missing)} of {len(prompts)} "
                             f"prompts, e.g. {missing[0][:80]!r}")
        return np.array([self._scores[p] for p in prompts], dtype=np.float64)


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

            self._scorer = ConfidenceScorer(similarity=self.similarity)
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
