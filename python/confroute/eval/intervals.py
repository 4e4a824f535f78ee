"""Percentile bootstrap intervals over prompts: of a router's metrics
(:func:`bootstrap_intervals`), of the difference between two routers on the same resamples
(:func:`paired_intervals`) and of column means such as a model's accuracy
(:func:`mean_intervals`).
"""
from __future__ import annotations

from typing import Dict, List, Sequence, Tuple

import numpy as np

from confroute.eval.ladder import StagedScores
from confroute.eval.router_metrics import DEFAULT_SHARES, flat_metrics, point_metrics


def _resamples(score_sets, qw, qs, n_points, shares, n_boot, seed, scale=(0.0, 1.0)):
    """The flat metrics of each score vector on ``n_boot`` seeded resamples of the rows, the
    same rows for every vector (so differences are paired), and whether each resample has a
    gap (strong better than weak)."""
    qw, qs = np.asarray(qw, np.float64), np.asarray(qs, np.float64)
    sets = [_as_scores(s) for s in score_sets]
    n = qw.size
    rng = np.random.default_rng(seed)
    rows, gap = [[] for _ in sets], []
    for _ in range(n_boot):
        idx = rng.integers(0, n, n)
        for r, s in zip(rows, sets):
            r.append(flat_metrics(point_metrics(s[idx], qw[idx], qs[idx], n_points, shares,
                                                scale)))
        gap.append(qs[idx].mean() > qw[idx].mean())
    return ([{k: np.array([x[k] for x in r]) for k in r[0]} for r in rows], np.array(gap))


def _as_scores(s):
    """A two-stage policy as it is, any other score vector as float64."""
    return s if isinstance(s, StagedScores) else np.asarray(s, np.float64)


def percentile_bounds(n_boot: int, level: float) -> Tuple[float, float]:
    """The checked bootstrap settings: the lower and upper percentile of a ``level``
    interval."""
    if n_boot < 2:
        raise ValueError(f"n_boot must be >= 2, got {n_boot}")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    return 100 * (1 - level) / 2, 100 * (1 + level) / 2


def bootstrap_intervals(scores, qw, qs, n_points: int = 201,
                        shares: Sequence[float] = DEFAULT_SHARES, n_boot: int = 1000,
                        seed: int = 0, level: float = 0.95,
                        scale=(0.0, 1.0)) -> Dict[str, object]:
    """Percentile bootstrap intervals over prompts: ``n_boot`` resamples of the rows (with
    replacement, seeded), each replayed in full (its own all-weak/all-strong quality, its own
    thresholds). Resamples where the strong model is not better have no APGR/CPT and are
    skipped (``no_gap`` counts them), as are those without an AUROC (one class only); a CPT
    that a resample never reaches counts as above every share, so a bound beyond 100% is
    None ("not reached"). Fewer than half the resamples defined: [None, None]. The risk
    metrics AURC, nAUDC and calls saved (``scale``: the quality scale their loss uses) get
    intervals too; the calibrated P(edge correct) (ECE, Brier) does not: refitting the
    cross-fitted isotonic regression on every resample is not cheap."""
    lo_q, hi_q = percentile_bounds(n_boot, level)
    (rows,), gap = _resamples([scores], qw, qs, n_points, shares, n_boot, seed, scale)
    out: Dict[str, object] = {"n_boot": n_boot, "seed": seed, "level": level,
                              "no_gap": float(1 - gap.mean())}
    for k, v in rows.items():
        if k.startswith("cpt"):
            # resamples without a gap have no CPT; with one, "never reached" is above 100%
            v = v[gap]
            if v.size < 0.5 * n_boot:
                out[k], out[k + "_unreached"] = [None, None], None
                continue
            unreached = np.isnan(v)
            lo, hi = np.percentile(np.where(unreached, 2.0, v), [lo_q, hi_q])
            out[k] = [None if lo > 1 else float(lo), None if hi > 1 else float(hi)]
            out[k + "_unreached"] = float(unreached.mean())
        else:
            ok = v[np.isfinite(v)]
            out[k] = ([float(x) for x in np.percentile(ok, [lo_q, hi_q])]
                      if ok.size >= 0.5 * n_boot else [None, None])
    return out


def paired_intervals(scores_a, scores_b, qw, qs, n_points: int = 201,
                     shares: Sequence[float] = DEFAULT_SHARES, n_boot: int = 1000,
                     seed: int = 0, level: float = 0.95,
                     scale=(0.0, 1.0)) -> Dict[str, object]:
    """Router a minus router b on the same prompts: for each metric the point difference
    (``diff``), its paired percentile bootstrap interval (both routers replayed on the same
    resamples, so what the two share cancels out) and ``a_better``, the share of resamples
    where a's metric is the better one (higher APGR/AUC/AUROC/quality/nAUDC/calls saved,
    lower CPT and AURC). Resamples
    where either value is undefined (no gap, one class, a CPT never reached) are left out;
    ``n`` counts those used. Fewer than half defined: None."""
    lo_q, hi_q = percentile_bounds(n_boot, level)
    qw, qs = np.asarray(qw, np.float64), np.asarray(qs, np.float64)
    point = [flat_metrics(point_metrics(_as_scores(s), qw, qs, n_points, shares, scale))
             for s in (scores_a, scores_b)]
    (ra, rb), _ = _resamples([scores_a, scores_b], qw, qs, n_points, shares, n_boot, seed,
                             scale)
    out: Dict[str, object] = {"n_boot": n_boot, "seed": seed, "level": level}
    for k in ra:
        d = ra[k] - rb[k]
        d = d[np.isfinite(d)]
        pd = point[0][k] - point[1][k]
        if d.size < 0.5 * n_boot:
            out[k] = None
            continue
        sign = -1.0 if k.startswith("cpt") or k == "aurc" else 1.0  # lower is better
        out[k] = {"diff": float(pd) if np.isfinite(pd) else None,
                  "ci": [float(x) for x in np.percentile(d, [lo_q, hi_q])],
                  "a_better": float(np.mean(sign * d > 0)), "n": int(d.size)}
    return out


def mean_intervals(columns, n_boot: int = 1000, seed: int = 0, level: float = 0.95
                   ) -> List[List[float]]:
    """Percentile bootstrap interval of each column's mean (a model's accuracy or pass@1),
    the same row resamples for every column."""
    lo_q, hi_q = percentile_bounds(n_boot, level)
    cols = np.stack([np.asarray(c, np.float64) for c in columns])
    rng = np.random.default_rng(seed)
    means = np.stack([cols[:, rng.integers(0, cols.shape[1], cols.shape[1])].mean(1)
                      for _ in range(n_boot)])
    return [[float(x) for x in np.percentile(means[:, j], [lo_q, hi_q])]
            for j in range(len(cols))]
