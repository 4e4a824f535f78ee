"""Baseline routers for replay evaluation: ``random``, ``oracle`` and ``scores``.

* ``random``: a seeded uniform score per prompt. The score depends only on (seed, prompt), so
  it does not change with batching or order. Its expected replay curve is the straight line
  from the weak to the strong model (APGR 0.5).
* ``oracle``: knows the recorded outcomes and sends first the prompts where the strong model
  gains most over the weak one. An upper bound for any router on that table, not a router.
* ``scores``: reads one score per prompt from a CSV/JSONL file, so any signal computed
  elsewhere (e.g. semantic entropy) can be evaluated.
"""
from __future__ import annotations

import hashlib
import json
import os
from typing import Dict, Optional, Sequence

import numpy as np

from confroute.routers.base import Router, register


@register("random")
class RandomRouter(Router):
    def __init__(self, seed: int = 0):
        self.seed = int(seed)

    def score(self, prompts: Sequence[str]) -> np.ndarray:
        out = np.empty(len(prompts))
        for i, p in enumerate(prompts):
            h = hashlib.blake2b(f"{self.seed}\0{p}".encode("utf-8"), digest_size=8).digest()
            out[i] = int.from_bytes(h, "little") / 2.0**64
        return out

    def save(self, directory) -> None:
        _save(directory, {"name": self.name, "seed": self.seed})

    @classmethod
    def load(cls, directory) -> "RandomRouter":
        return cls(seed=_read(directory).get("seed", 0))


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
        from confroute.eval.data import parse_quality, read_csv, read_jsonl

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


def _save(directory, config: dict) -> None:
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, "router.json"), "w") as f:
        json.dump(config, f)


def _read(directory) -> dict:
    with open(os.path.join(os.fspath(directory), "router.json")) as f:
        return json.load(f)
