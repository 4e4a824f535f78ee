"""Routing metrics on a quality-vs-cloud-share curve, uncertainty metrics for a score, and
what practitioners ask of a router (risk-coverage and AURC, the deferral curve's normalized
area, calls saved at iso-quality, a calibrated P(edge correct) with ECE and Brier; at the end).

A *curve* is two arrays of equal length: ``share`` (fraction of queries sent to the strong /
cloud model, in [0, 1], non-decreasing) and ``quality`` (mean quality of the routed answers at
that share). It runs from share 0 (everything on the weak / edge model) to share 1.
Between sweep points the curve is taken as linear: that is exactly the expected quality when
the router's tied or in-between decisions are made at random, so interpolation is not a guess.

Definitions (RouteLLM, Ong et al. 2024), with ``q_w``/``q_s`` the all-weak / all-strong quality:

* PGR(c) = (q(c) - q_w) / (q_s - q_w): the share of the weak->strong gap recovered at share c.
* APGR   = the area under PGR over the call share in [0, 1] (trapezoid rule). Random: 0.5.
* CPT(x) = the smallest call share at which PGR reaches x. A curve need not rise
  monotonically (a router may call the strong model on prompts the weak model gets right), so
  we take the *first crossing*: walk the curve from share 0 and return the interpolated share
  where it first reaches the target. Later dips do not matter: a user who wants x% of the gap
  can stop at that first share. A curve that never reaches the target gives NaN.
* AUC    = the area under the raw quality curve over the call share (trapezoid).

When q_s <= q_w there is no gap to recover: PGR, APGR and CPT are NaN (reported, not hidden).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def _check_curve(share, quality):
    share = np.asarray(share, dtype=np.float64)
    quality = np.asarray(quality, dtype=np.float64)
    if share.ndim != 1 or share.shape != quality.shape or share.size < 2:
        raise ValueError("a curve needs two 1-D arrays of the same length >= 2")
    if not (np.all(np.isfinite(share)) and np.all(np.isfinite(quality))):
        raise ValueError("the curve holds NaN or infinite values")
    if np.any(np.diff(share) < 0) or share[0] < 0 or share[-1] > 1:
        raise ValueError("call shares must be non-decreasing and within [0, 1]")
    return share, quality


def pgr(quality, q_weak: float, q_strong: float) -> np.ndarray:
    """Performance gap recovered for each quality value; NaN when there is no positive gap."""
    quality = np.asarray(quality, dtype=np.float64)
    gap = q_strong - q_weak
    if not gap > 0:
        return np.full(quality.shape, np.nan)
    return (quality - q_weak) / gap


def auc(share, quality) -> float:
    """Area under quality over the call share (trapezoid)."""
    share, quality = _check_curve(share, quality)
    return float(np.sum(np.diff(share) * (quality[1:] + quality[:-1]) / 2))


def apgr(share, quality, q_weak: float, q_strong: float) -> float:
    """Average performance gap recovered: the area under PGR over the call share."""
    share, quality = _check_curve(share, quality)
    p = pgr(quality, q_weak, q_strong)
    if np.isnan(p).any():
        return float("nan")
    return float(np.sum(np.diff(share) * (p[1:] + p[:-1]) / 2))


def cpt(share, quality, q_weak: float, q_strong: float, target: float) -> float:
    """Call-performance threshold: the first (smallest) interpolated call share where PGR
    reaches ``target`` (e.g. 0.5). NaN when there is no gap or the curve never gets there."""
    share, quality = _check_curve(share, quality)
    if not 0 <= target <= 1:
        raise ValueError(f"CPT target must be in [0, 1], got {target}")
    p = pgr(quality, q_weak, q_strong)
    if np.isnan(p).any():
        return float("nan")
    return share_at_quality(share, p, target)   # the same crossing, on the PGR curve


def quality_at(share, quality, at) -> np.ndarray:
    """Quality at the given call shares (linear interpolation along the curve)."""
    share, quality = _check_curve(share, quality)
    at = np.asarray(at, dtype=np.float64)
    if np.any((at < 0) | (at > 1)):
        raise ValueError("call shares must be within [0, 1]")
    # np.interp wants strictly increasing x; vertical steps (equal shares) keep the last value.
    keep = np.append(np.diff(share) > 0, True)
    return np.interp(at, share[keep], quality[keep])


# --------------------------------------------------------------------------------------------
# Cost


@dataclass(frozen=True)
class Prices:
    """What one model charges: per call, per prompt token and per generated token."""

    per_call: float = 0.0
    per_input_token: float = 0.0
    per_output_token: float = 0.0

    def __post_init__(self):
        for k in ("per_call", "per_input_token", "per_output_token"):
            v = getattr(self, k)
            if not (np.isfinite(v) and v >= 0):
                raise ValueError(f"price {k} must be a finite number >= 0, got {v!r}")

    def query(self, input_tokens: float, output_tokens: float, n_samples: int = 1) -> float:
        # n samples share one prompt (llama.cpp copies the prompt's KV cache; OpenAI-style
        # APIs bill the prompt once for n choices), so only the outputs multiply.
        return (self.per_call + input_tokens * self.per_input_token
                + n_samples * output_tokens * self.per_output_token)


def cost_at_share(
    share,
    edge: Prices,
    cloud: Prices,
    input_tokens: float = 0.0,
    edge_output_tokens: float = 0.0,
    cloud_output_tokens: float = 0.0,
    edge_samples: int = 1,
    edge_always: bool = True,
) -> np.ndarray:
    """Expected cost per query when a fraction ``share`` of queries goes to the cloud.

    ``edge_always=True`` is the semantic-entropy router: the edge model draws ``edge_samples``
    answers for *every* query (that is how the uncertainty is measured) and one of them is
    kept when the query stays on the edge. ``edge_always=False`` is a prompt-only router: the
    edge model runs (once) only on the queries it keeps."""
    share = np.asarray(share, dtype=np.float64)
    if np.any((share < 0) | (share > 1)):
        raise ValueError("call shares must be within [0, 1]")
    if int(edge_samples) < 1:
        raise ValueError(f"edge_samples must be >= 1, got {edge_samples}")
    cloud_cost = cloud.query(input_tokens, cloud_output_tokens)
    if edge_always:
        edge_cost = edge.query(input_tokens, edge_output_tokens, int(edge_samples))
        return edge_cost + share * cloud_cost
    return (1 - share) * edge.query(input_tokens, edge_output_tokens) + share * cloud_cost


# --------------------------------------------------------------------------------------------
# Uncertainty metrics: a score (higher = less certain) against the quality of the answer.


def _check_scored(uncertainty, quality, binary: bool):
    u = np.asarray(uncertainty, dtype=np.float64)
    q = np.asarray(quality, dtype=np.float64)
    if u.ndim != 1 or u.shape != q.shape or u.size == 0:
        raise ValueError("uncertainty and quality must be 1-D arrays of the same non-zero length")
    if not (np.all(np.isfinite(u)) and np.all(np.isfinite(q))):
        raise ValueError("uncertainty or quality holds NaN or infinite values")
    if binary and not np.all((q == 0) | (q == 1)):
        raise ValueError("this metric needs 0/1 correctness; got other quality values")
    return u, q


def _tie_mean(u_sorted: np.ndarray, q_sorted: np.ndarray) -> np.ndarray:
    """Replace each quality by the mean over its run of tied scores: the expected value when
    ties are broken at random, so results do not depend on input order."""
    starts = np.r_[0, np.nonzero(np.diff(u_sorted))[0] + 1]
    sums = np.add.reduceat(q_sorted, starts)
    counts = np.diff(np.r_[starts, q_sorted.size])
    return np.repeat(sums / counts, counts)


def average_ranks(u: np.ndarray) -> np.ndarray:
    """1-based ranks, tied values sharing their mean rank (the Mann-Whitney convention)."""
    order = np.argsort(u, kind="stable")
    ranks = _tie_mean(u[order], np.arange(1, u.size + 1, dtype=np.float64))
    out = np.empty_like(ranks)
    out[order] = ranks
    return out


def auroc(uncertainty, correct) -> float:
    """P(an incorrect answer has higher uncertainty than a correct one), ties counting 1/2.
    0.5 = no signal, 1 = perfect. NaN when all answers are right or all wrong."""
    u, c = _check_scored(uncertainty, correct, binary=True)
    wrong = c == 0
    n_pos, n_neg = int(wrong.sum()), int((~wrong).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    r = average_ranks(u)
    return float((r[wrong].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def rejection_curve(uncertainty, quality) -> np.ndarray:
    """Mean quality of the k most certain answers, k = 1..n (ties averaged)."""
    u, q = _check_scored(uncertainty, quality, binary=False)
    order = np.argsort(u, kind="stable")
    qs = _tie_mean(u[order], q[order])
    return np.cumsum(qs) / np.arange(1, qs.size + 1)


def aurac(uncertainty, quality) -> float:
    """Area under the rejection-accuracy curve (Farquhar et al. 2024): the mean quality of the
    retained answers, averaged over every retention level 1/n .. n/n."""
    return float(rejection_curve(uncertainty, quality).mean())


def prr(uncertainty, quality) -> float:
    """Prediction-rejection ratio: (AR_score - AR_random) / (AR_oracle - AR_random), with AR the
    area under the rejection curve (as :func:`aurac`) and the oracle rejecting the worst answers
    first. Random = 0, oracle = 1, below 0 = worse than random. NaN when all qualities are
    equal (nothing to reject)."""
    u, q = _check_scored(uncertainty, quality, binary=False)
    ar = aurac(u, q)
    ar_random = float(q.mean())
    ar_oracle = aurac(-q, q)
    if ar_oracle - ar_random <= 1e-15:
        return float("nan")
    return float((ar - ar_random) / (ar_oracle - ar_random))


# --------------------------------------------------------------------------------------------
# What practitioners ask: selective risk on the edge, the deferral curve's area, a calibrated
# P(edge correct) and the cloud calls saved at (nearly) all-cloud quality.


def risk_coverage(uncertainty, loss) -> tuple:
    """The risk-coverage curve: keeping the k most certain prompts on the edge (k = 1..n,
    ties averaged as in :func:`rejection_curve`), coverage = k / n (the share kept on the edge)
    and risk = the mean loss of the kept prompts (loss = 1 - q_weak for 0/1 quality).
    Returns (coverage, risk); coverage 0 has no risk and is left out."""
    u, l = _check_scored(uncertainty, loss, binary=False)
    order = np.argsort(u, kind="stable")
    ls = _tie_mean(u[order], l[order])
    k = np.arange(1, ls.size + 1)
    return k / ls.size, np.cumsum(ls) / k


def aurc(uncertainty, loss) -> float:
    """Area under the risk-coverage curve (Geifman et al. 2019): the selective risk averaged
    over every coverage 1/n .. n/n. Lower is better; with loss = 1 - quality it is
    1 - :func:`aurac`."""
    return float(risk_coverage(uncertainty, loss)[1].mean())


def eaurc(uncertainty, loss) -> float:
    """Excess AURC: :func:`aurc` minus that of the oracle order (the lowest losses kept
    first), so 0 is the best any score can do on these losses."""
    _, l = _check_scored(uncertainty, loss, binary=False)
    return aurc(uncertainty, l) - aurc(l, l)


def deferral_curve(scores, q_weak, q_strong) -> tuple:
    """The exact deferral curve: the k highest-scored prompts go to the cloud (k = 0..n, tied
    scores averaged, i.e. broken at random in expectation). Returns (share k / n, quality)."""
    s, qw = _check_scored(scores, q_weak, binary=False)
    _, qs = _check_scored(scores, q_strong, binary=False)
    order = np.argsort(-s, kind="stable")
    gain = _tie_mean(-s[order], (qs - qw)[order])
    n = s.size
    return (np.arange(n + 1) / n,
            (qw.sum() + np.concatenate([[0.0], np.cumsum(gain)])) / n)


def audc(scores, q_weak, q_strong) -> float:
    """Area under the deferral curve (quality over the cloud share in [0, 1], trapezoid on
    every prompt, not a sweep's quantiles): the mean quality over all cloud shares. APGR is
    this area affinely rescaled: APGR = (AUDC - q_weak) / (q_strong - q_weak)."""
    share, quality = deferral_curve(scores, q_weak, q_strong)
    return auc(share, quality)


def deferral_areas(scores, q_weak, q_strong) -> tuple:
    """(AUDC of the score, AUDC of the oracle order, AUDC of the worst order) on the same
    prompts: the oracle sends the largest gains q_strong - q_weak to the cloud first, the
    worst order the smallest first. One sort each."""
    s, qw = _check_scored(scores, q_weak, binary=False)
    _, qs = _check_scored(scores, q_strong, binary=False)
    n = s.size
    share = np.arange(n + 1) / n

    def area(gains):  # gains in the order they go to the cloud
        return auc(share, (qw.sum() + np.concatenate([[0.0], np.cumsum(gains)])) / n)

    order = np.argsort(-s, kind="stable")
    g = np.sort(qs - qw)
    return area(_tie_mean(-s[order], (qs - qw)[order])), area(g[::-1]), area(g)


def naudc(scores, q_weak, q_strong) -> float:
    """Normalized AUDC: (AUDC - AUDC_worst) / (AUDC_oracle - AUDC_worst), with the oracle
    sending the largest gains q_strong - q_weak to the cloud first and the worst order the
    smallest first, on the same prompts (:func:`deferral_areas`). Every score's curve lies
    between those two, so it lies in [0, 1]: 1 = oracle, 0.5 = random (the two bounds are
    symmetric about the random diagonal: AUDC_worst = q_weak + q_strong - AUDC_oracle),
    0 = the worst order. Unlike APGR it stays defined when the cloud is not better on
    average; NaN only when every prompt has the same gain."""
    a, best, worst = deferral_areas(scores, q_weak, q_strong)
    if best - worst <= 1e-15:
        return float("nan")
    return float((a - worst) / (best - worst))


def share_at_quality(share, quality, target: float) -> float:
    """The first (smallest) interpolated cloud share at which the curve's quality reaches
    ``target``, walking from share 0 (as :func:`cpt`); NaN when it never does."""
    share, quality = _check_curve(share, quality)
    hit = np.nonzero(quality >= target - 1e-12)[0]
    if hit.size == 0:
        return float("nan")
    i = int(hit[0])
    if i == 0:
        return float(share[0])
    # quality[i-1] < target <= quality[i]: linear interpolation inside that segment
    t = (target - quality[i - 1]) / (quality[i] - quality[i - 1])
    return float(share[i - 1] + t * (share[i] - share[i - 1]))


def calls_saved(share, quality, q_strong: float, level: float = 0.95,
                floor: float = 0.0) -> float:
    """Cloud calls saved at iso-quality: 1 - the smallest cloud share whose quality reaches
    ``level`` of the all-cloud quality, measured from the quality scale's ``floor`` (target =
    floor + level * (q_strong - floor); floor 0 for correctness or pass@1). NaN when the
    curve never reaches it."""
    if not 0 <= level <= 1:
        raise ValueError(f"level must be in [0, 1], got {level}")
    return 1.0 - share_at_quality(share, quality, floor + level * (q_strong - floor))


def _check_prob(prob, outcome):
    p = np.asarray(prob, dtype=np.float64)
    y = np.asarray(outcome, dtype=np.float64)
    if p.ndim != 1 or p.shape != y.shape or p.size == 0:
        raise ValueError("probabilities and outcomes must be 1-D arrays of the same non-zero "
                         "length")
    if not (np.isfinite(p).all() and np.isfinite(y).all()):
        raise ValueError("probabilities or outcomes hold NaN or infinite values")
    if p.min() < 0 or p.max() > 1 or y.min() < 0 or y.max() > 1:
        raise ValueError("probabilities and outcomes must lie in [0, 1]")
    return p, y


def brier(prob, outcome) -> float:
    """Brier score: the mean squared difference between the predicted probability and the
    outcome (0/1, or a quality in [0, 1]). Lower is better."""
    p, y = _check_prob(prob, outcome)
    return float(np.mean((p - y) ** 2))


def ece(prob, outcome, bins: int = 10) -> float:
    """Expected calibration error with equal-mass bins: the prompts sorted by predicted
    probability (stable, so ties keep their input order) are cut into ``bins`` groups of
    equal size (sizes differ by at most one; fewer bins when there are fewer prompts), and
    ECE = sum over bins of (bin size / n) * |mean outcome - mean probability|."""
    p, y = _check_prob(prob, outcome)
    if int(bins) < 1:
        raise ValueError(f"bins must be >= 1, got {bins}")
    order = np.argsort(p, kind="stable")
    parts = np.array_split(order, min(int(bins), p.size))
    return float(sum(len(b) * abs(y[b].mean() - p[b].mean()) for b in parts) / p.size)


def isotonic_crossfit(scores, outcome, folds: int = 5, seed: int = 0) -> np.ndarray:
    """P(outcome | score) by isotonic regression, non-increasing in the score (a higher
    router score means the edge is less likely right), cross-fitted: the prompts are split
    into ``folds`` seeded random folds and each fold is predicted by a fit on the others
    only, so no prompt is scored by a fit that saw it. Scores outside a fit's range take its
    end values. ``outcome``: 0/1 (edge correct) or a quality in [0, 1]."""
    from sklearn.isotonic import IsotonicRegression

    s, y = _check_scored(scores, outcome, binary=False)
    if y.min() < 0 or y.max() > 1:
        raise ValueError("outcomes must lie in [0, 1]")
    k = min(int(folds), s.size)
    if k < 2:
        raise ValueError(f"cross-fitting needs >= 2 folds and prompts, got {folds} folds "
                         f"for {s.size} prompts")
    out = np.empty_like(y)
    perm = np.random.default_rng(seed).permutation(s.size)
    for test in np.array_split(perm, k):
        train = np.ones(s.size, bool)
        train[test] = False
        iso = IsotonicRegression(increasing=False, y_min=0.0, y_max=1.0,
                                 out_of_bounds="clip").fit(s[train], y[train])
        out[test] = iso.predict(s[test])
    return np.clip(out, 0.0, 1.0)
