"""A chain of tiers replayed over recorded outcomes (:mod:`confroute.decision.chain`), and its
thresholds calibrated for one target.

**The chain table** is an :class:`OutcomeTable` with one quality column per tier's model and
a signal column for each tier but the last (higher = less sure = climb; NaN climbs, as
served). :func:`join_tables` builds one from outcome tables that share prompt ids (e.g.
SmolLM2 vs recorded gpt-4 with SmolLM2's signals, and Qwen-0.5B vs Qwen-1.5B with Qwen-0.5B's
signals): each table's signals are renamed ``NAME@MODEL`` after the model that drew them
(its meta's ``signals_from``). A tier ``MODEL:NAME`` reads ``signal:NAME@MODEL``, or a
plain ``signal:NAME`` of a table whose signals are that model's.

**Routing on the table**: tier i keeps a prompt that reaches it where its score <= t_i,
else the prompt climbs; the last tier keeps the rest. A prompt pays for every tier it
reaches (``cost``: one price per attempt of each tier, default 1: attempts per query).

**The grid** is one *pass share* per climbing tier: the share of the prompts reaching the
tier that climb from it (its threshold is that quantile of the scores of the prompts that
reach it; ties move together). Every combination of ``step``-spaced pass shares is one
operating point; all-kept-at-tier-1 and all-climb-to-the-top are among them.

**Allocation rule** (calibration, and quality at a cloud share): for a target share S of
prompts answered by the last tier, the grid point with the highest quality among those
whose last-tier share is <= S (ties: the lower cost, then the lower pass shares).

**APGR-style summary**: the upper frontier of quality against cost over the grid (linear
between its points), on cost normalized from all-at-tier-1 (0) to every tier paid (1),
and quality as the share of the gap from tier 1's quality to the last tier's.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from confroute.eval import metrics as M
from confroute.eval.ladder import _short
from confroute.eval.table import OutcomeTable

SEP = "@"   # a joined table's signal NAME of model MODEL is NAME@MODEL


def join_tables(tables: Sequence[OutcomeTable], name: Optional[str] = None) -> OutcomeTable:
    """One chain table from several: the rows whose id every table has (in the first's
    order), every model column (a model in two tables must agree row by row), each table's
    signals renamed ``NAME@MODEL`` after the model that drew them. ValueError when no id is
    shared or a shared model disagrees."""
    if not tables:
        raise ValueError("join_tables needs at least one table")
    common = set(tables[0].ids).intersection(*(t.ids for t in tables[1:]))
    ids = [i for i in tables[0].ids if i in common]
    if not ids:
        raise ValueError("the tables share no prompt id: " + ", ".join(t.name for t in tables))
    models: Dict[str, np.ndarray] = {}
    signals: Dict[str, np.ndarray] = {}
    higher: Dict[str, str] = {}
    for t in tables:
        rows = [t.ids.index(i) for i in ids]
        for m in t.models:
            q = t.column(m)[rows]
            if m in models and not np.array_equal(models[m], q):
                raise ValueError(f"model {m!r} is in two tables with different quality")
            models[m] = q
        drew = str(t.meta.get("signals_from") or t.weak)
        for k, v in t.signals.items():
            key = k if SEP in k else f"{k}{SEP}{drew}"
            if key in signals and not np.array_equal(signals[key], v[rows], equal_nan=True):
                raise ValueError(f"signal {key!r} is in two tables with different values")
            signals[key] = v[rows]
            higher[key] = t.signal_higher(k)
    first = tables[0]
    rows = [first.ids.index(i) for i in ids]
    names = list(models)
    return OutcomeTable(
        prompts=[first.prompts[r] for r in rows], models=names,
        quality=np.stack([models[m] for m in names], axis=1), weak=names[0],
        strong=next(m for m in names[::-1] if m != names[0]),
        name=name or "+".join(t.name for t in tables), ids=ids,
        groups=[first.groups[r] for r in rows], signals=signals,
        meta={"joined": [t.name for t in tables], "signal_higher": higher,
              "mean_tokens": {k: v for t in tables for k, v in
                              dict(t.meta.get("mean_tokens") or {}).items()},
              "seconds_per_prompt": {k: v for t in tables for k, v in
                                     dict(t.meta.get("seconds_per_prompt") or {}).items()}})


def tier_signal(table: OutcomeTable, model: str, name: str) -> np.ndarray:
    """Model ``model``'s signal ``name`` (a router string's policy name, or a column name):
    ``NAME@MODEL``, or ``NAME`` where the table's signals are that model's. Higher must
    mean climb."""
    drew = str(table.meta.get("signals_from") or table.weak)
    for key in (f"{name}{SEP}{model}", name if drew == model else None):
        if key is not None and key in table.signals:
            if table.signal_higher(key) != "cloud":
                raise ValueError(f"signal {key!r}: a higher value means the model is surer; "
                                 "a tier climbs on higher = less sure")
            return table.signal(key)
    have = ", ".join(sorted(table.signals)) or "none"
    raise ValueError(f"{table.name}: no signal {name!r} of model {model!r} (a column "
                     f"signal:{name}{SEP}{model}, or signal:{name} of a table whose signals "
                     f"are {model}'s); the table has: {have}")


@dataclass(frozen=True)
class ChainScores:
    """A chain on a table: ``quality[:, i]`` tier i's model's quality, ``scores[:, i]`` climbing
    tier i's signal (higher = climb), ``cost[i]`` the price of one attempt at tier i."""

    models: Tuple[str, ...]
    signals: Tuple[str, ...]
    quality: np.ndarray = field(repr=False)
    scores: np.ndarray = field(repr=False)
    cost: np.ndarray

    def __post_init__(self):
        k, n = len(self.models), self.quality.shape[0]
        if k < 2 or self.quality.shape != (n, k) or self.scores.shape != (n, k - 1) \
                or len(self.signals) != k - 1 or np.shape(self.cost) != (k,):
            raise ValueError(f"a chain of {k} tiers needs {k} quality columns, {k - 1} score "
                             f"columns and {k} attempt prices")
        if n == 0:
            raise ValueError("the chain table has no prompts")
        if not np.all(np.isfinite(self.cost)) or np.any(np.asarray(self.cost) < 0):
            raise ValueError(f"attempt prices must be finite and >= 0, got {self.cost}")

    def __len__(self) -> int:
        return self.quality.shape[0]

    def __getitem__(self, idx) -> "ChainScores":
        return dataclasses.replace(self, quality=self.quality[idx], scores=self.scores[idx])


def chain_scores(table: OutcomeTable, tiers: Sequence[Tuple[str, Optional[str]]],
                 cost: Optional[Sequence[float]] = None) -> ChainScores:
    """``tiers``: (model column, signal name) per tier, the last with None."""
    if len(tiers) < 2 or tiers[-1][1] is not None or any(s is None for _, s in tiers[:-1]):
        raise ValueError("a chain is two or more tiers, MODEL:SIGNAL for each but the last, "
                         "which is MODEL alone")
    from confroute.eval.live import policy_name

    tiers = [(m, policy_name(s) if s and s.startswith("router-") else s) for m, s in tiers]
    q = np.stack([table.column(m) for m, _ in tiers], axis=1)
    s = np.stack([tier_signal(table, m, sig) for m, sig in tiers[:-1]], axis=1)
    c = np.ones(len(tiers)) if cost is None else np.asarray(cost, np.float64)
    return ChainScores(tuple(m for m, _ in tiers), tuple(str(x) for _, x in tiers[:-1]), q, s,
                       c)


@dataclass(frozen=True)
class ChainPoint:
    """One operating point: the pass share and threshold of each climbing tier, the quality,
    the share of prompts each tier answers and attempts, the cost per query."""

    pass_shares: Tuple[float, ...]
    thresholds: Tuple[float, ...]
    quality: float
    answered: Tuple[float, ...]
    reached: Tuple[float, ...]
    cost: float

    def as_dict(self) -> Dict[str, object]:
        return {"pass_shares": list(self.pass_shares),
                "thresholds": [x if math.isfinite(x) else None for x in self.thresholds],
                "quality": self.quality, "answered": list(self.answered),
                "reached": list(self.reached), "cost": self.cost}


def pass_threshold(scores: np.ndarray, share: float) -> float:
    """The threshold under which ``share`` of ``scores`` climb (score > t; NaN climbs; tied
    scores move together, so fewer may climb): -inf climbs all, the top score none."""
    key = np.sort(np.where(np.isnan(scores), np.inf, scores))[::-1]
    m = key.size
    finite = key[np.isfinite(key)]
    k = int(round(share * m))
    if m == 0 or k < m and not np.isfinite(key[k]):
        return float(finite.max()) if finite.size else 0.0
    return -math.inf if k >= m else float(key[k])


def grid_points(cs: ChainScores, step: float = 0.05) -> List[ChainPoint]:
    """Every combination of ``step``-spaced pass shares (module doc), each routed on the
    table."""
    if not 0 < step <= 1:
        raise ValueError(f"the grid step must lie in (0, 1], got {step}")
    shares = np.round(np.linspace(0, 1, int(round(1 / step)) + 1), 10)
    n, k = cs.quality.shape
    out: List[ChainPoint] = []

    def walk(i, reach, passes, ts, answered, reached):
        reached = reached + [reach]
        if i == k - 1:
            kept = answered + [reach]
            q = sum(float(cs.quality[m, j].sum()) for j, m in enumerate(kept)) / n
            r = tuple(float(x.mean()) for x in reached)
            out.append(ChainPoint(tuple(passes), tuple(ts), q,
                                  tuple(float(x.mean()) for x in kept), r,
                                  float(np.dot(r, cs.cost))))
            return
        col = cs.scores[:, i]
        for p in shares:
            t = pass_threshold(col[reach], float(p))
            stay = reach & (col <= t)
            walk(i + 1, reach & ~stay, passes + [float(p)], ts + [t], answered + [stay], reached)

    walk(0, np.ones(n, bool), [], [], [], [])
    return out


def best_at_share(points: Sequence[ChainPoint], share: float) -> ChainPoint:
    """The allocation rule: the best quality among points whose last tier answers at most
    ``share`` of the prompts (ties: lower cost, then lower pass shares)."""
    ok = [p for p in points if p.answered[-1] <= share + 1e-12]
    if not ok:
        raise ValueError(f"no grid point sends at most {share:g} to the last tier")
    return min(ok, key=lambda p: (-p.quality, p.cost, p.pass_shares))


def frontier(points: Sequence[ChainPoint], cs: ChainScores) -> Tuple[np.ndarray, np.ndarray]:
    """(normalized cost, quality) of the upper frontier: cost 0 = every prompt answered at
    tier 1, 1 = every tier paid; a point is kept where no cheaper one is as good."""
    lo, hi = float(cs.cost[0]), float(cs.cost.sum())
    span = hi - lo if hi > lo else 1.0
    pts = sorted(((p.cost - lo) / span, p.quality) for p in points)
    xs, qs, best = [], [], -math.inf
    for x, q in pts:
        if q > best + 1e-12:
            if xs and abs(x - xs[-1]) < 1e-12:
                xs.pop(), qs.pop()
            xs.append(min(max(x, 0.0), 1.0)), qs.append(q)
            best = q
    if xs[-1] < 1.0:   # the best quality holds at any higher cost
        xs.append(1.0), qs.append(qs[-1])
    return np.array(xs), np.array(qs)


def chain_metrics(cs: ChainScores, shares: Sequence[float], step: float = 0.05
                  ) -> Tuple[Dict[str, object], List[ChainPoint]]:
    """(metrics, grid points): APGR of the cost frontier, and at each cloud (last-tier)
    share the point the allocation rule picks."""
    pts = grid_points(cs, step)
    x, q = frontier(pts, cs)
    q_first, q_last = float(cs.quality[:, 0].mean()), float(cs.quality[:, -1].mean())
    at = {f"{s:g}": best_at_share(pts, float(s)).as_dict() for s in shares}
    return {"apgr": M.apgr(x, q, q_first, q_last),
            "quality_at_cost": {f"{s:g}": float(v) for s, v in
                                zip(shares, M.quality_at(x, q, shares))},
            "at_cloud_share": at,
            "frontier": {"cost": [float(v) for v in x], "quality": [float(v) for v in q]}}, pts


def chain_intervals(cs: ChainScores, shares: Sequence[float], step: float = 0.05,
                    n_boot: int = 1000, seed: int = 0, level: float = 0.95
                    ) -> Dict[str, object]:
    """Percentile bootstrap over prompts, the grid recalibrated on every resample: APGR,
    and the quality and cost at each cloud share and quality at each normalized cost."""
    from confroute.eval.intervals import percentile_bounds

    lo_q, hi_q = percentile_bounds(n_boot, level)
    rng = np.random.default_rng(seed)
    rows: Dict[str, List[float]] = {}
    for _ in range(n_boot):
        m, _ = chain_metrics(cs[rng.integers(0, len(cs), len(cs))], shares, step)
        vals = {"apgr": m["apgr"], **{f"q@cost{s}": v for s, v in
                                      m["quality_at_cost"].items()}}
        for s, p in m["at_cloud_share"].items():
            vals[f"q@{s}"], vals[f"cost@{s}"] = p["quality"], p["cost"]
        for key, v in vals.items():
            rows.setdefault(key, []).append(v)
    out: Dict[str, object] = {"n_boot": n_boot, "seed": seed, "level": level}
    for key, v in rows.items():
        a = np.asarray(v, np.float64)
        a = a[np.isfinite(a)]
        out[key] = ([float(x) for x in np.percentile(a, [lo_q, hi_q])]
                    if a.size >= 0.5 * n_boot else [None, None])
    return out


def served_thresholds(cs: ChainScores, point: ChainPoint) -> List[float]:
    """A point's thresholds as short decimals that route the table the same (climb-all
    becomes a value below every score of the tier)."""
    out = []
    for i, t in enumerate(point.thresholds):
        col = cs.scores[:, i]
        finite = col[np.isfinite(col)]
        if not math.isfinite(t):
            out.append(float(math.floor(finite.min()) - 1) if finite.size else -1.0)
        else:
            out.append(_short(t, finite))
    return out


def tier_spec(spec: str, models: Sequence[str]) -> Tuple[str, Optional[str]]:
    """``MODEL:SIGNAL`` (a climbing tier) or ``MODEL`` (a column of the table: the last
    tier) -> (model, signal or None)."""
    if spec in models:
        return spec, None
    model, colon, signal = spec.rpartition(":")
    if not colon or not model or not signal:
        raise ValueError(f"tier {spec!r}: a tier is MODEL:SIGNAL (e.g. smollm2-135m-instruct:"
                         f"answer_logprob), the last one a model column ({', '.join(models)})")
    return model, signal


def grid_rows(points: Sequence[ChainPoint], models: Sequence[str]):
    """The grid as CSV rows (header first): pass shares, thresholds, quality, cost, and the
    share each tier answers and attempts."""
    k = len(models)
    head = ([f"pass{i}" for i in range(1, k)] + [f"threshold{i}" for i in range(1, k)]
            + ["quality", "cost"] + [f"answered:{m}" for m in models]
            + [f"reached:{m}" for m in models])
    yield head
    for p in points:
        yield ([f"{x:g}" for x in p.pass_shares] + [f"{x:.9g}" for x in p.thresholds]
               + [f"{p.quality:.6f}", f"{p.cost:.6f}"] + [f"{x:.6f}" for x in p.answered]
               + [f"{x:.6f}" for x in p.reached])
