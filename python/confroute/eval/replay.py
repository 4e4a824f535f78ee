"""Replay evaluation: sweep a router's threshold over recorded outcomes.

A router sees only the prompts and returns a score per prompt (higher = send to the strong /
cloud model). For a threshold t the prompts with score > t go to the strong model and the rest
stay on the weak one; the quality of each prompt is the recorded outcome of the model it went
to. Thresholds are quantiles of the router's own scores (plus one below all of them, so the
curve runs from 0% to 100% cloud calls); tied scores always move together, and the curve is
linear between the points it reaches (see :mod:`confroute.eval.metrics`).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Dict, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from confroute.eval import metrics as M
from confroute.eval.outcomes import OutcomeTable
from confroute.routers.base import Router, get_router

CPT_TARGETS = (0.2, 0.5, 0.8)
DEFAULT_SHARES = (0.1, 0.2, 0.3, 0.5, 0.8)


@dataclass(frozen=True)
class Curve:
    """Quality against the share of strong calls; ``thresholds[i]`` gave point i."""

    share: np.ndarray
    quality: np.ndarray
    thresholds: np.ndarray


@dataclass(frozen=True)
class RouterResult:
    label: str
    scores: np.ndarray
    curve: Curve
    metrics: Dict[str, object]


@dataclass(frozen=True)
class Report:
    table: OutcomeTable
    results: Tuple[RouterResult, ...]
    q_weak: float
    q_strong: float

    def to_json(self) -> dict:
        t = self.table
        return {
            "benchmark": t.name,
            "n_prompts": len(t),
            "weak": {"model": t.weak, "quality": self.q_weak},
            "strong": {"model": t.strong, "quality": self.q_strong},
            "quality_scale": list(t.scale),
            "binary_quality": t.is_binary,
            "routers": {r.label: r.metrics for r in self.results},
            "notes": _notes(self),
        }


def _notes(rep: Report):
    notes = [
        "CPT(x): first interpolated share of strong calls where PGR reaches x (NaN: never).",
        "APGR, AUC: trapezoid over the share of strong calls in [0, 1].",
        "uncertainty metrics treat the router score as the weak model's uncertainty.",
    ]
    if not rep.q_strong > rep.q_weak:
        notes.append("the strong model is not better than the weak one here: PGR, APGR and "
                     "CPT are undefined (NaN)")
    return notes


def sweep(scores, q_weak, q_strong, n_points: int = 201) -> Curve:
    """The replay curve of one score vector: ``n_points`` quantile thresholds of the scores
    (duplicates dropped) plus -inf, so the curve spans 0% to 100% strong calls."""
    s = np.asarray(scores, dtype=np.float64)
    qw = np.asarray(q_weak, dtype=np.float64)
    qs = np.asarray(q_strong, dtype=np.float64)
    if s.ndim != 1 or s.shape != qw.shape or s.shape != qs.shape or s.size == 0:
        raise ValueError("scores and both quality vectors must be 1-D of the same length")
    if not np.all(np.isfinite(s)):
        raise ValueError("router scores hold NaN or infinite values")
    if n_points < 2:
        raise ValueError("n_points must be >= 2")
    n = s.size
    thresholds = np.unique(np.quantile(s, np.linspace(0, 1, n_points)))[::-1]
    thresholds = np.append(thresholds, -np.inf)
    order = np.argsort(-s, kind="stable")
    gain = np.concatenate([[0.0], np.cumsum((qs - qw)[order])])
    # k prompts have score > t: the top k of the descending order (ties never split).
    k = n - np.searchsorted(np.sort(s), thresholds, side="right")
    return Curve(share=k / n, quality=(qw.sum() + gain[k]) / n, thresholds=thresholds)


def curve_metrics(curve: Curve, q_weak: float, q_strong: float,
                  shares: Sequence[float] = DEFAULT_SHARES) -> Dict[str, object]:
    out: Dict[str, object] = {
        "apgr": M.apgr(curve.share, curve.quality, q_weak, q_strong),
        "auc": M.auc(curve.share, curve.quality),
    }
    for x in CPT_TARGETS:
        out[f"cpt{round(x * 100)}"] = M.cpt(curve.share, curve.quality, q_weak, q_strong, x)
    qa = M.quality_at(curve.share, curve.quality, shares)
    out["quality_at"] = {f"{s:g}": float(v) for s, v in zip(shares, qa)}
    return out


def uncertainty_metrics(scores, quality) -> Dict[str, float]:
    """The score as the uncertainty of the given (weak model's) quality."""
    q = np.asarray(quality, dtype=np.float64)
    binary = bool(np.all((q == 0) | (q == 1)))
    return {
        "auroc": M.auroc(scores, q) if binary else float("nan"),
        "prr": M.prr(scores, q),
        "aurac": M.aurac(scores, q),
    }


# ------------------------------------------------------------------------------- routers


def resolve_router(spec, table: Optional[OutcomeTable] = None) -> Tuple[str, Router]:
    """A router object from a Router, a directory holding a saved router (``router.json``),
    or ``name[:key=value,...]`` of a registered one (``scores:FILE`` is short for
    ``scores:path=FILE``). Routers that declare ``needs_table`` (the oracle) get the table."""
    if isinstance(spec, Router):
        return spec.name, spec
    if not isinstance(spec, str) or not spec:
        raise ValueError(f"a router is a Router, a saved-router folder or a name; got {spec!r}")
    if os.path.isdir(spec):
        return os.path.basename(os.path.normpath(spec)), Router.load(spec)
    name, _, arg = spec.partition(":")
    kwargs = _parse_kwargs(name, arg)
    from confroute.routers import base

    base._load_builtin_routers()
    cls = base.REGISTRY.get(name)
    if cls is not None and getattr(cls, "needs_table", False):
        if table is None:
            raise ValueError(f"router {name!r} needs the outcome table")
        kwargs.setdefault("table", table)
    try:
        return spec, get_router(name, **kwargs)
    except TypeError as e:  # an option the router's constructor does not take
        raise ValueError(f"router {name!r} does not take the options {sorted(kwargs)}: {e}") \
            from None


def _parse_kwargs(name: str, arg: str) -> Dict[str, object]:
    if not arg:
        return {}
    if "=" not in arg:
        return {"path": arg}
    out: Dict[str, object] = {}
    for part in arg.split(","):
        k, eq, v = part.partition("=")
        if not eq or not k.strip():
            raise ValueError(f"router {name!r}: bad option {part!r}; use key=value")
        out[k.strip()] = _auto(v.strip())
    return out


def _auto(v: str):
    for conv in (int, float):
        try:
            return conv(v)
        except ValueError:
            pass
    return v


def _check_scores(label: str, scores, n: int) -> np.ndarray:
    s = np.asarray(scores, dtype=np.float64)
    if s.shape != (n,):
        raise ValueError(f"router {label!r} returned shape {s.shape} for {n} prompts")
    if not np.all(np.isfinite(s)):
        raise ValueError(f"router {label!r} returned NaN or infinite scores")
    if s.min() < -1e-9 or s.max() > 1 + 1e-9:
        raise ValueError(f"router {label!r} returned scores outside [0, 1] "
                         f"({s.min():g} .. {s.max():g})")
    return s


# ------------------------------------------------------------------------------- replay


RouterSpec = Union[str, Router]


def replay(table: OutcomeTable,
           routers: Union[Sequence[RouterSpec], Mapping[str, RouterSpec]],
           n_points: int = 201,
           shares: Sequence[float] = DEFAULT_SHARES) -> Report:
    """Sweeps every router over ``table`` and computes the routing and uncertainty metrics.
    ``routers``: specs or Router objects, or a mapping label -> spec/Router."""
    items = list(routers.items()) if isinstance(routers, Mapping) else [(None, r) for r in routers]
    if not items:
        raise ValueError("no routers to evaluate")
    qw, qs = table.q_weak, table.q_strong
    q_weak, q_strong = float(qw.mean()), float(qs.mean())
    results, seen = [], set()
    for label, spec in items:
        auto_label, router = resolve_router(spec, table)
        label = label or auto_label
        base_label, i = label, 2
        while label in seen:
            label, i = f"{base_label}#{i}", i + 1
        seen.add(label)
        scores = _check_scores(label, router.score(list(table.prompts)), len(table))
        curve = sweep(scores, qw, qs, n_points)
        m = curve_metrics(curve, q_weak, q_strong, shares)
        m["uncertainty"] = uncertainty_metrics(scores, qw)
        results.append(RouterResult(label, scores, curve, m))
    return Report(table, tuple(results), q_weak, q_strong)
