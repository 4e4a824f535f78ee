"""Outcome tables: prompt x model -> quality, and the weak/strong pair that routing chooses from.

A table comes from recorded outcomes (:mod:`confroute.eval.data`) or is built live by running
models over a benchmark (:func:`build_outcomes`, checkpointed after every answer).
"""
from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass, field
from typing import Dict, Optional, Sequence, Tuple

import numpy as np


@dataclass(frozen=True)
class OutcomeTable:
    """``quality[i, j]`` is model ``models[j]``'s quality on ``prompts[i]`` (0/1 correctness or a
    judge score). ``weak`` and ``strong`` name the pair routing picks from (edge, cloud).
    ``ids`` identify rows (question ids, file:row); ``groups`` hold a subject or category."""

    prompts: Tuple[str, ...]
    models: Tuple[str, ...]
    quality: np.ndarray
    weak: str
    strong: str
    name: str = "table"
    ids: Tuple[str, ...] = ()
    groups: Tuple[str, ...] = ()
    scale: Tuple[float, float] = (0.0, 1.0)  # the quality range, for plots

    def __post_init__(self):
        q = np.array(self.quality, dtype=np.float64)  # own copy, then read-only
        object.__setattr__(self, "prompts", tuple(self.prompts))
        object.__setattr__(self, "models", tuple(self.models))
        n, m = len(self.prompts), len(self.models)
        if n == 0:
            raise ValueError(f"{self.name}: the outcome table has no prompts")
        if q.shape != (n, m):
            raise ValueError(f"{self.name}: quality has shape {q.shape}, expected ({n}, {m})")
        if not np.all(np.isfinite(q)):
            raise ValueError(f"{self.name}: quality holds NaN or infinite values")
        if len(set(self.models)) != m:
            raise ValueError(f"{self.name}: model names repeat: {self.models}")
        for role, model in (("weak", self.weak), ("strong", self.strong)):
            if model not in self.models:
                raise ValueError(f"{self.name}: unknown {role} model {model!r}; "
                                 f"the table has {', '.join(self.models)}")
        if self.weak == self.strong:
            raise ValueError(f"{self.name}: weak and strong are the same model {self.weak!r}")
        ids = tuple(self.ids) if self.ids else tuple(str(i) for i in range(n))
        groups = tuple(self.groups) if self.groups else ("",) * n
        if len(ids) != n or len(groups) != n:
            raise ValueError(f"{self.name}: ids/groups must have one entry per prompt")
        object.__setattr__(self, "ids", ids)
        object.__setattr__(self, "groups", groups)
        q.setflags(write=False)
        object.__setattr__(self, "quality", q)

    def __len__(self) -> int:
        return len(self.prompts)

    def column(self, model: str) -> np.ndarray:
        if model not in self.models:
            raise ValueError(f"{self.name}: unknown model {model!r}; the table has "
                             f"{', '.join(self.models)}")
        return self.quality[:, self.models.index(model)]

    @property
    def q_weak(self) -> np.ndarray:
        return self.column(self.weak)

    @property
    def q_strong(self) -> np.ndarray:
        return self.column(self.strong)

    @property
    def is_binary(self) -> bool:
        q = self.quality[:, [self.models.index(self.weak), self.models.index(self.strong)]]
        return bool(np.all((q == 0) | (q == 1)))

    def with_pair(self, weak: str, strong: str) -> "OutcomeTable":
        return _replace(self, weak=weak, strong=strong)

    def subset(self, rows) -> "OutcomeTable":
        """The rows given by a boolean mask or index array, in that order."""
        idx = np.arange(len(self))[np.asarray(rows)]
        return _replace(
            self,
            prompts=[self.prompts[i] for i in idx],
            quality=self.quality[idx],
            ids=[self.ids[i] for i in idx],
            groups=[self.groups[i] for i in idx],
        )

    def save(self, path) -> None:
        """Writes the plain user format (prompt, id, group, one column per model) as CSV or
        JSONL by extension; :func:`confroute.eval.data.load_table` reads it back."""
        path = os.fspath(path)
        rows = []
        for i, p in enumerate(self.prompts):
            row = {"prompt": p, "id": self.ids[i], "group": self.groups[i]}
            row.update({m: float(self.quality[i, j]) for j, m in enumerate(self.models)})
            rows.append(row)
        tmp = path + ".tmp"
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            if path.endswith(".jsonl"):
                for row in rows:
                    f.write(json.dumps(row, ensure_ascii=False) + "\n")
            else:
                w = csv.DictWriter(f, fieldnames=list(rows[0]))
                w.writeheader()
                w.writerows(rows)
        os.replace(tmp, path)  # never leave a half-written table behind


def _replace(t: OutcomeTable, **kw) -> OutcomeTable:
    base = dict(prompts=t.prompts, models=t.models, quality=t.quality, weak=t.weak,
                strong=t.strong, name=t.name, ids=t.ids, groups=t.groups, scale=t.scale)
    base.update(kw)
    return OutcomeTable(**base)
