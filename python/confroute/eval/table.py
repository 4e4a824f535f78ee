"""Outcome tables: prompt x model -> quality, and the weak/strong pair that routing chooses from.

A table comes from recorded outcomes (:mod:`confroute.eval.data`) or is built live by running
models over a benchmark (:func:`confroute.eval.build.build_outcomes`, checkpointed after every
answer).
"""
from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
from dataclasses import dataclass, field
from typing import Mapping, Tuple

import numpy as np


@dataclass(frozen=True)
class OutcomeTable:
    """``quality[i, j]`` is model ``models[j]``'s quality on ``prompts[i]`` (0/1 correctness or a
    judge score). ``weak`` and ``strong`` name the pair routing picks from (edge, cloud).
    ``ids`` identify rows (question ids, file:row); ``groups`` hold a subject or category.
    ``signals``: name -> one value per prompt (the edge's confidence signals of a live table;
    NaN where a prompt has none); ``meta``: how the table was made (which models, live or
    recorded, the settings, which way each signal points), saved beside the table."""

    prompts: Tuple[str, ...]
    models: Tuple[str, ...]
    quality: np.ndarray
    weak: str
    strong: str
    name: str = "table"
    ids: Tuple[str, ...] = ()
    groups: Tuple[str, ...] = ()
    scale: Tuple[float, float] = (0.0, 1.0)  # the quality range, for plots
    signals: Mapping[str, np.ndarray] = field(default_factory=dict)
    meta: Mapping[str, object] = field(default_factory=dict)

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
        sig = {}
        for k, v in dict(self.signals).items():
            a = np.array(v, dtype=np.float64)
            if a.shape != (n,):
                raise ValueError(f"{self.name}: signal {k!r} has shape {a.shape}, expected "
                                 f"({n},)")
            a.setflags(write=False)
            sig[str(k)] = a
        object.__setattr__(self, "signals", sig)
        object.__setattr__(self, "meta", dict(self.meta))
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

    def signal(self, name: str) -> np.ndarray:
        if name not in self.signals:
            have = ", ".join(sorted(self.signals)) or "none"
            raise ValueError(f"{self.name}: no signal {name!r}; the table has: {have}")
        return self.signals[name]

    def signal_higher(self, name: str) -> str:
        """'cloud' if a higher value of the signal means less confident, else 'edge'."""
        return str(dict(self.meta.get("signal_higher") or {}).get(name, "cloud"))

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
        return dataclasses.replace(self, weak=weak, strong=strong)

    def subset(self, rows) -> "OutcomeTable":
        """The rows given by a boolean mask or index array, in that order."""
        idx = np.arange(len(self))[np.asarray(rows)]
        return dataclasses.replace(
            self,
            prompts=[self.prompts[i] for i in idx],
            quality=self.quality[idx],
            ids=[self.ids[i] for i in idx],
            groups=[self.groups[i] for i in idx],
            signals={k: v[idx] for k, v in self.signals.items()},
        )

    def save(self, path) -> None:
        """Writes the plain user format (prompt, id, group, one column per model, one
        ``signal:<name>`` column per signal, empty/null where undefined) as CSV or JSONL by
        extension, and ``<path>.meta.json`` (which models made it, which is weak and strong,
        the settings); :func:`confroute.eval.data.load_table` reads both back."""
        path = os.fspath(path)
        rows = []
        for i, p in enumerate(self.prompts):
            row = {"prompt": p, "id": self.ids[i], "group": self.groups[i]}
            row.update({m: float(self.quality[i, j]) for j, m in enumerate(self.models)})
            for k, v in self.signals.items():
                x = float(v[i])
                row[SIGNAL_PREFIX + k] = x if math.isfinite(x) else None
            rows.append(row)
        tmp = path + ".tmp"
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            if path.endswith(".jsonl"):
                for row in rows:
                    f.write(json.dumps(row, ensure_ascii=False) + "\n")
            else:
                w = csv.DictWriter(f, fieldnames=list(rows[0]))
                w.writeheader()
                w.writerows([{k: ("" if v is None else v) for k, v in r.items()} for r in rows])
        meta = dict(self.meta, weak=self.weak, strong=self.strong, name=self.name)
        with open(path + ".meta.json.tmp", "w", encoding="utf-8") as f:
            json.dump(meta, f, indent=1, allow_nan=False, default=str)
        os.replace(path + ".meta.json.tmp", path + META_SUFFIX)
        os.replace(tmp, path)  # never leave a half-written table behind


SIGNAL_PREFIX = "signal:"
META_SUFFIX = ".meta.json"
