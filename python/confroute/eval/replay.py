"""Replay evaluation: sweep routers' thresholds over recorded outcomes.

A router sees only the prompts and returns a score per prompt (higher = send to the strong /
cloud model); :mod:`confroute.eval.router_scores` turns router specs into those scores,
:mod:`confroute.eval.router_metrics` measures each one and :mod:`confroute.eval.intervals`
gives the bootstrap intervals. :func:`replay` runs them all on one table into a
:class:`Report`, with random's band over seeds and paired comparisons between routers.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from confroute.eval.intervals import bootstrap_intervals, mean_intervals, paired_intervals
from confroute.eval.ladder import StagedScores
from confroute.eval.router_metrics import (CALIBRATION_FOLDS, DEFAULT_SHARES, ECE_BINS,
                                           ISO_LEVEL, Curve, flat_metrics, point_metrics,
                                           quality_scale, score_metrics, staged_metrics)
from confroute.eval.router_scores import (RouterSpec, RowScores, check_scores,
                                          resolve_router, signal_scores, staged_scores)
from confroute.eval.table import OutcomeTable


# Random's interval: mean +- Z_RANDOM sd over seeds (its spread from routing alone).
Z_RANDOM = 1.96
CI_METRICS = ("apgr", "cpt20", "cpt50", "cpt80", "auroc")


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
    # paired differences a - b (replay's ``compare``): {"a", "b", metric: paired_intervals}
    comparisons: Tuple[dict, ...] = ()
    # bootstrap intervals of each model's mean quality (pass@1), when replay had n_boot
    quality_ci: Optional[Dict[str, List[float]]] = None

    def to_json(self) -> dict:
        t = self.table
        return {
            "benchmark": t.name,
            "n_prompts": len(t),
            "weak": {"model": t.weak, "quality": self.q_weak,
                     **({"ci": self.quality_ci["weak"]} if self.quality_ci else {})},
            "strong": {"model": t.strong, "quality": self.q_strong,
                       **({"ci": self.quality_ci["strong"]} if self.quality_ci else {})},
            "quality_scale": list(t.scale),
            "binary_quality": t.is_binary,
            "routers": {r.label: r.metrics for r in self.results},
            "notes": _notes(self),
            **({"comparisons": list(self.comparisons)} if self.comparisons else {}),
        }


def _notes(rep: Report):
    notes = [
        "CPT(x): first interpolated share of strong calls where PGR reaches x (NaN: never).",
        "APGR, AUC: trapezoid over the share of strong calls in [0, 1].",
        "uncertainty metrics treat the router score as the weak model's uncertainty.",
        "risk: coverage = share kept on the edge; risk = mean edge loss of the kept prompts "
        "(loss = (hi - q_weak) / (hi - lo) on the quality scale [lo, hi]: 1 - q_weak for 0/1); "
        "AURC = mean risk over coverages 1/n..1 (lower is better), eAURC = AURC - the oracle "
        "order's.",
        "risk: AUDC = area under quality vs cloud share on every prompt; nAUDC = (AUDC - "
        "worst) / (oracle - worst) in [0, 1], random 0.5; APGR = (AUDC - q_weak) / "
        "(q_strong - q_weak).",
        f"risk: calls_saved = 1 - the first share where quality reaches lo + {ISO_LEVEL:g} * "
        "(q_strong - lo) (95% of all-cloud on a 0-based scale).",
        f"risk: p_edge_correct = isotonic regression of the edge's (scaled) quality on the "
        f"score, non-increasing, cross-fitted over {CALIBRATION_FOLDS} seeded folds (no "
        f"prompt is predicted by a fit that saw it); ECE over {ECE_BINS} equal-mass bins; "
        f"Brier; brier_base = Brier of the constant mean (no score).",
    ]
    if not rep.q_strong > rep.q_weak:
        notes.append("the strong model is not better than the weak one here: PGR, APGR and "
                     "CPT are undefined (NaN)")
    return notes


def replay(table: OutcomeTable,
           routers: Union[Sequence[RouterSpec], Mapping[str, RouterSpec]],
           n_points: int = 201,
           shares: Sequence[float] = DEFAULT_SHARES, n_boot: int = 0, seed: int = 0,
           random_seeds: int = 0,
           compare: Sequence[Tuple[str, str]] = ()) -> Report:
    """Sweeps every router over ``table`` and computes the routing and uncertainty metrics.
    ``routers``: specs or Router objects, or a mapping label -> spec/Router; ``signal:NAME``
    and ``signals`` replay the table's own signal columns (see :func:`signal_scores`); a
    :class:`RowScores` gives the scores per row directly (e.g. :func:`answer_length_scores`);
    ``ladder:FIRST,SECOND,BUDGET`` and ``cascade:FIRST,SECOND,SKIP`` a two-stage policy
    recalibrated at each of ``n_points`` shares (:mod:`confroute.eval.ladder`; its bootstrap
    recalibrates on every resample).
    Every router also gets ``metrics["risk"]``: AURC, nAUDC, calls saved at iso-quality, a
    calibrated P(edge correct) with ECE and Brier and the risk-coverage curve (see
    :func:`~confroute.eval.router_metrics.score_metrics`).
    ``n_boot`` > 0 adds bootstrap intervals (``metrics["ci"]``, seeded by ``seed``);
    ``random_seeds`` > 1 makes a plain ``random`` the mean over that many seeds, with its sd
    and band (mean +- 1.96 sd), and marks every other router whose interval meets that band
    (``metrics["overlaps_random"]``). ``compare``: pairs of result labels (a, b) whose paired
    differences a - b get bootstrap intervals (:func:`paired_intervals`, ``n_boot`` resamples,
    or 1000 when ``n_boot`` is 0)."""
    scored = _scored(table, routers, random_seeds)
    qw, qs = table.q_weak, table.q_strong
    scale = quality_scale(table)
    results, rand = [], None
    for label, sc, info in _with_unique_labels(scored):
        staged = isinstance(sc, StagedScores)
        m, curve = (staged_metrics(sc, qw, qs, n_points, shares, scale) if staged else
                    score_metrics(sc, qw, qs, n_points, shares, seed, scale))
        if info.pop("random", False):
            rand = _random_over_seeds(table, n_points, shares, random_seeds)
            _use_random_means(m, rand)
        elif n_boot:
            m["ci"] = bootstrap_intervals(sc, qw, qs, n_points, shares, n_boot, seed,
                                          scale=scale)
            for k in ("auroc", "aurc", "naudc") if staged else ():  # none without a score
                m["ci"].pop(k, None)
        if info:
            m["baseline" if "baseline" in info else "signal"] = info
        results.append(RouterResult(label, sc, curve, m))
    if rand is not None:
        for r in results:
            if "ci" in r.metrics:
                r.metrics["overlaps_random"] = {
                    k: _overlaps(r.metrics["ci"].get(k), rand[k]["band"]) for k in CI_METRICS}
    comparisons = tuple(_compare(results, pair, qw, qs, n_points, shares,
                                 n_boot or 1000, seed, scale) for pair in compare)
    quality_ci = None
    if n_boot:
        quality_ci = dict(zip(("weak", "strong"), mean_intervals([qw, qs], n_boot, seed)))
    return Report(table, tuple(results), float(qw.mean()), float(qs.mean()), comparisons,
                  quality_ci)


def _scored(table: OutcomeTable, routers, random_seeds: int) -> List[Tuple[str, object, dict]]:
    """(label or None, scores or a two-stage policy, info) of every router spec, in order;
    ``signals`` gives one per signal column. A plain ``random`` replayed over seeds has
    ``info["random"]``."""
    items = list(routers.items()) if isinstance(routers, Mapping) else [(None, r) for r in routers]
    if not items:
        raise ValueError("no routers to evaluate")
    scored = []
    for label, spec in items:
        if isinstance(spec, str) and spec.startswith(("ladder:", "cascade:")):
            spec = staged_scores(table, spec)
        if isinstance(spec, StagedScores):
            scored.append((label or spec.label, spec, {}))
        elif isinstance(spec, str) and (spec == "signals" or spec.startswith("signal:")):
            for auto, sc, info in signal_scores(table, spec):
                scored.append((label if label and spec != "signals" else auto, sc, info))
        elif isinstance(spec, RowScores):
            label = label or spec.label
            scored.append((label, check_scores(label, spec.scores, len(table)),
                           dict(spec.info)))
        else:
            auto_label, router = resolve_router(spec, table)
            label = label or auto_label
            sc = check_scores(label, router.score(list(table.prompts)), len(table))
            scored.append((label, sc, {"random": spec == "random" and random_seeds > 1}))
    return scored


def _with_unique_labels(scored):
    """``scored`` with a repeated label numbered: ``label#2``, ``label#3``, ..."""
    seen = set()
    for label, sc, info in scored:
        base_label, i = label, 2
        while label in seen:
            label, i = f"{base_label}#{i}", i + 1
        seen.add(label)
        yield label, sc, info


def _use_random_means(m: Dict[str, object], rand: Dict[str, object]) -> None:
    """Random's metrics become their means over the seeds (``over_seeds`` keeps the rest)."""
    m["over_seeds"] = rand
    for k in ("apgr", "auc", "cpt20", "cpt50", "cpt80"):
        m[k] = rand[k]["mean"]
    m["risk"]["aurc"], m["risk"]["naudc"] = rand["aurc"]["mean"], rand["naudc"]["mean"]
    m["risk"]["iso_quality"]["calls_saved"] = rand["calls_saved"]["mean"]


def _random_over_seeds(table, n_points, shares, seeds: int) -> Dict[str, object]:
    qw, qs = table.q_weak, table.q_strong
    rows = []
    for seed in range(seeds):
        _, r = resolve_router(f"random:seed={seed}", table)
        sc = check_scores("random", r.score(list(table.prompts)), len(table))
        rows.append(flat_metrics(point_metrics(sc, qw, qs, n_points, shares,
                                               quality_scale(table))))
    out: Dict[str, object] = {"seeds": seeds, "z": Z_RANDOM}
    for k in rows[0]:
        v = np.array([r[k] for r in rows])
        v = v[np.isfinite(v)]
        if v.size < 2:
            out[k] = {"mean": None, "sd": None, "band": [None, None]}
            continue
        mu, sd = float(v.mean()), float(v.std(ddof=1))
        out[k] = {"mean": mu, "sd": sd, "band": [mu - Z_RANDOM * sd, mu + Z_RANDOM * sd]}
    return out


def _overlaps(ci, band) -> Optional[bool]:
    """Whether an interval meets random's band; None when either is unknown. An open
    (None) upper CPT bound means 'up to not reached', which meets any band above its low."""
    if ci is None or band is None or ci[0] is None or band[0] is None:
        return None
    hi = np.inf if ci[1] is None else ci[1]
    return bool(ci[0] <= band[1] and band[0] <= hi)


def _compare(results, pair, qw, qs, n_points, shares, n_boot, seed, scale=(0.0, 1.0)) -> dict:
    by = {r.label: r for r in results}
    if len(pair) != 2:
        raise ValueError(f"compare takes pairs of router labels, got {pair!r}")
    for label in pair:
        if label not in by:
            raise ValueError(f"compare: no router {label!r} in this replay; the routers are "
                             f"{sorted(by)}")
        if "over_seeds" in by[label].metrics:
            raise ValueError(f"compare: {label!r} is random over seeds, whose spread is "
                             "routing noise, not a resample of prompts; every router is "
                             "already marked against its band")
    a, b = pair
    if a == b:
        raise ValueError(f"compare: a router against itself ({a!r})")
    return {"a": a, "b": b, **paired_intervals(by[a].scores, by[b].scores, qw, qs, n_points,
                                               shares, n_boot, seed, scale=scale)}
