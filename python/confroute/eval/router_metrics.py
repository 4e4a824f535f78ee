"""The metrics of one router's scores over recorded outcomes: its replay curve and the routing
metrics read off it (APGR, AUC, CPT, quality at shares), the score as the weak model's
uncertainty (AUROC, PRR, AURAC), the edge's risk (AURC, nAUDC, calls saved at iso-quality),
a calibrated P(edge correct) and the risk-coverage curve; and the same for a two-stage
policy, which has a curve but no single score.

For a threshold t the prompts with score > t go to the strong / cloud model and the rest
stay on the weak one; the quality of each prompt is the recorded outcome of the model it
went to. Thresholds are quantiles of the router's own scores (plus one below all of them, so
the curve runs from 0% to 100% cloud calls); tied scores always move together, and the
curve is linear between the points it reaches (see :mod:`confroute.eval.metrics`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Sequence, Tuple

import numpy as np

from confroute.eval import metrics as M
from confroute.eval.ladder import StagedScores
from confroute.eval.table import OutcomeTable


CPT_TARGETS = (0.2, 0.5, 0.8)
DEFAULT_SHARES = (0.1, 0.2, 0.3, 0.5, 0.8)
ISO_LEVEL = 0.95      # calls saved where quality reaches 95% of the all-cloud quality
ECE_BINS = 10         # equal-mass bins of the calibrated P(edge correct)
CALIBRATION_FOLDS = 5  # isotonic regression cross-fitted over this many folds
RC_POINTS = 100       # risk-coverage curve in metrics.json: coverage 0.01, 0.02, .., 1


@dataclass(frozen=True)
class Curve:
    """Quality against the share of strong calls; ``thresholds[i]`` gave point i."""

    share: np.ndarray
    quality: np.ndarray
    thresholds: np.ndarray


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


def quality_scale(table: OutcomeTable) -> Tuple[float, float]:
    """The quality range the risk metrics scale the edge's loss by: the table's ``scale``,
    widened to every quality it holds (a table made in code may keep the default (0, 1)
    for 1-10 judge scores)."""
    q = table.quality
    return (min(float(table.scale[0]), float(q.min())), max(float(table.scale[1]),
                                                            float(q.max())))


def edge_loss(q_weak, scale=(0.0, 1.0)) -> np.ndarray:
    """The edge's loss per prompt in [0, 1]: (hi - q_weak) / (hi - lo) on the quality scale
    [lo, hi] (1 - q_weak for 0/1 correctness)."""
    lo, hi = (float(x) for x in scale)
    return (hi - np.asarray(q_weak, np.float64)) / (hi - lo)


def risk_metrics(scores, qw, qs, curve: Curve, scale=(0.0, 1.0),
                 full: bool = True) -> Dict[str, object]:
    """The cheap risk metrics of one score vector: AURC (and, ``full``, eAURC) of the edge's
    loss, nAUDC (and, ``full``, AUDC) of the deferral curve, and the cloud calls saved at
    ``ISO_LEVEL`` of the all-cloud quality (on ``curve``, as CPT). The bootstrap asks for the
    three it gives intervals to (``full=False``)."""
    qw, qs = np.asarray(qw, np.float64), np.asarray(qs, np.float64)
    loss = edge_loss(qw, scale)
    lo = float(scale[0])
    q_strong = float(qs.mean())
    target = lo + ISO_LEVEL * (q_strong - lo)
    share = M.share_at_quality(curve.share, curve.quality, target)
    a, best, worst = M.deferral_areas(scores, qw, qs)
    out: Dict[str, object] = {
        "aurc": M.aurc(scores, loss),
        "naudc": float((a - worst) / (best - worst)) if best - worst > 1e-15 else float("nan"),
        "iso_quality": {"level": ISO_LEVEL, "target": target, "cloud_share": share,
                        "calls_saved": 1.0 - share}}
    if full:
        out.update(eaurc=out["aurc"] - M.aurc(loss, loss), audc=a)
    return out


def calibration_metrics(scores, qw, scale=(0.0, 1.0), seed: int = 0) -> Dict[str, object]:
    """A calibrated P(edge correct) from the score: isotonic regression cross-fitted over
    ``CALIBRATION_FOLDS`` seeded folds (see :func:`confroute.eval.metrics.isotonic_crossfit`),
    with its ECE (``ECE_BINS`` equal-mass bins) and Brier score, and the Brier score of the
    constant mean for reference. For graded quality the target is the edge's quality scaled
    to [0, 1]. Too few prompts to cross-fit: NaN."""
    y = 1.0 - edge_loss(qw, scale)
    out: Dict[str, object] = {
        "method": f"isotonic regression, non-increasing in the score, cross-fitted over "
                  f"{CALIBRATION_FOLDS} folds (seed {seed})",
        "target": "edge correct" if np.all((y == 0) | (y == 1)) else
                  "edge quality scaled to [0, 1]",
        "ece_bins": ECE_BINS, "ece_binning": "equal mass",
        "brier_base": float(np.mean((y - y.mean()) ** 2))}
    if y.size < 2 * CALIBRATION_FOLDS:
        return {**out, "ece": float("nan"), "brier": float("nan")}
    p = M.isotonic_crossfit(scores, y, CALIBRATION_FOLDS, seed)
    return {**out, "ece": M.ece(p, y, ECE_BINS), "brier": M.brier(p, y)}


def risk_coverage_points(scores, qw, scale=(0.0, 1.0), points: int = RC_POINTS
                         ) -> Dict[str, List[float]]:
    """The risk-coverage curve at coverages 1/points .. 1 (the risk of the ceil(c * n) most
    certain prompts, ties averaged), for metrics.json."""
    cov, risk = M.risk_coverage(scores, edge_loss(qw, scale))
    n = cov.size
    c = np.arange(1, points + 1) / points
    k = np.maximum(1, np.ceil(c * n - 1e-9).astype(int))
    return {"coverage": [float(x) for x in c], "risk": [float(x) for x in risk[k - 1]]}


def score_metrics(scores, qw, qs, n_points, shares, seed: int = 0, scale=(0.0, 1.0)):
    """(metrics, curve) of one score vector: the curve's metrics, the score as the weak
    model's uncertainty, and under ``risk`` the risk metrics, the calibrated P(edge correct)
    (``seed``: its folds) and the risk-coverage curve."""
    curve = sweep(scores, qw, qs, n_points)
    m = curve_metrics(curve, float(qw.mean()), float(qs.mean()), shares)
    m["uncertainty"] = uncertainty_metrics(scores, qw)
    m["risk"] = risk_metrics(scores, qw, qs, curve, scale)
    m["risk"]["p_edge_correct"] = calibration_metrics(scores, qw, scale, seed)
    m["risk"]["risk_coverage"] = risk_coverage_points(scores, qw, scale)
    return m, curve


def staged_metrics(staged, qw, qs, n_points, shares, scale=(0.0, 1.0)):
    """(metrics, curve) of a two-stage policy (:class:`confroute.eval.ladder.StagedScores`):
    its curve recalibrates at ``n_points`` shares in [0, 1]. It has no single score, so the
    score-based metrics (AUROC, PRR, AURAC, AURC, nAUDC) are NaN; the calls saved at
    iso-quality read its curve. ``staged``: the share of prompts sampled, on average over
    the grid and at the nearest grid point to each of ``shares``."""
    qw, qs = np.asarray(qw, np.float64), np.asarray(qs, np.float64)
    grid = np.linspace(0.0, 1.0, n_points)
    share, quality, target, sampled = staged.curve(qw, qs, grid)
    curve = Curve(share, quality, target)   # a point's "threshold": its target share
    m = curve_metrics(curve, float(qw.mean()), float(qs.mean()), shares)
    nan = float("nan")
    m["uncertainty"] = {"auroc": nan, "prr": nan, "aurac": nan}
    target = float(scale[0]) + ISO_LEVEL * (float(qs.mean()) - float(scale[0]))
    share = M.share_at_quality(curve.share, curve.quality, target)
    m["risk"] = {"aurc": nan, "naudc": nan,
                 "iso_quality": {"level": ISO_LEVEL, "target": target, "cloud_share": share,
                                 "calls_saved": 1.0 - share}}
    near = [int(np.argmin(np.abs(grid - x))) for x in shares]
    m["staged"] = {**staged.info, "grid_points": int(n_points),
                   "sampled_share": float(sampled.mean()),
                   "sampled_at": {f"{x:g}": float(sampled[i]) for x, i in zip(shares, near)}}
    if "samples_per_prompt_sampled" in staged.info:
        m["staged"]["samples_per_query"] = (staged.info["samples_per_prompt_sampled"]
                                            * m["staged"]["sampled_share"])
    return m, curve


def point_metrics(scores, qw, qs, n_points, shares, scale=(0.0, 1.0)) -> Dict[str, object]:
    """The metrics a bootstrap resample needs: the curve's, the uncertainty ones and the
    cheap risk ones (of a two-stage policy: :func:`staged_metrics`)."""
    if isinstance(scores, StagedScores):
        return staged_metrics(scores, qw, qs, n_points, shares, scale)[0]
    curve = sweep(scores, qw, qs, n_points)
    m = curve_metrics(curve, float(qw.mean()), float(qs.mean()), shares)
    m["uncertainty"] = uncertainty_metrics(scores, qw)
    m["risk"] = risk_metrics(scores, qw, qs, curve, scale, full=False)
    return m


def flat_metrics(m: Dict[str, object]) -> Dict[str, float]:
    """The metrics that get intervals, as one flat dict of floats (``q@SHARE`` for the
    quality at each share)."""
    out = {k: float(m[k]) for k in ("apgr", "auc", "cpt20", "cpt50", "cpt80")}
    out["auroc"] = float(m["uncertainty"]["auroc"])
    for s, v in m["quality_at"].items():
        out["q@" + s] = float(v)
    r = m["risk"]
    out.update(aurc=float(r["aurc"]), naudc=float(r["naudc"]),
               calls_saved=float(r["iso_quality"]["calls_saved"]))
    return out
