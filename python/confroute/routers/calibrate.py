"""Calibration: the threshold that sends a target share of queries to the cloud.

A router sends a prompt to the strong model where score > threshold, so the threshold is a
quantile of the router's scores on calibration prompts. The threshold is always one of those
scores: a router's scores lie in [0, 1], and so then does the threshold, which RouterPolicy
requires (a value below every score was negative when the lowest score was 0). Hence the
prompts with the lowest score always stay on the edge, and a share above the fraction scoring
more than the lowest is out of reach. Scores that repeat (kNN with k = 1 scores only 0, 1/2
or 1) can make the exact share unreachable: the threshold is then the one whose share on the
calibration set is closest to the target (the lower share on a tie, the cheaper side). The
share on held-out prompts is what a user will see; report it.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Optional, Sequence

import numpy as np


@dataclass(frozen=True)
class Calibration:
    threshold: float
    target_share: float
    calibration_share: float  # share of calibration prompts with score > threshold
    n_calibration: int
    heldout_share: Optional[float] = None
    n_heldout: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


def threshold_for_share(scores, share: float, unit_interval: bool = True) -> float:
    """The score t minimizing |mean(scores > t) - share| (lower share on a tie). A trained
    router's scores lie in [0, 1] (``unit_interval``); an online policy's may be nats."""
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 1 or s.size == 0:
        raise ValueError("calibration needs a non-empty 1-D array of scores")
    if not np.isfinite(s).all():
        raise ValueError("calibration scores must be finite")
    if unit_interval and (s.min() < 0.0 or s.max() > 1.0):
        raise ValueError(f"router scores must lie in [0, 1], got {s.min():g} .. {s.max():g}")
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"cloud share must lie in [0, 1], got {share}")
    values = np.unique(s)  # ascending; threshold = a value sends exactly those above it
    shares = (s.size - np.searchsorted(np.sort(s), values, side="right")) / s.size
    # shares fall as values rise; on equal distance, prefer the lower share (later one)
    gap = np.abs(shares - share)
    best = len(gap) - 1 - int(np.argmin(gap[::-1]))
    return float(values[best])


def calibrate(router, prompts: Sequence[str], share: float,
              heldout: Optional[Sequence[str]] = None) -> Calibration:
    """Sets ``router.threshold`` for ``share`` of cloud calls on ``prompts``; measures the share
    reached on ``heldout`` prompts when given."""
    scores = router.score(list(prompts))
    t = threshold_for_share(scores, share)
    router.threshold = t
    cal = Calibration(t, float(share), float(np.mean(scores > t)), int(len(scores)))
    if heldout is not None and len(heldout):
        h = router.score(list(heldout))
        cal = Calibration(t, float(share), cal.calibration_share, cal.n_calibration,
                          float(np.mean(h > t)), int(len(h)))
    info = getattr(router, "info", None)
    if isinstance(info, dict):
        info["calibration"] = cal.to_dict()
    return cal


def split_prompts(prompts: Sequence[str], heldout_fraction: float, seed: int = 0):
    """(calibration, held-out) halves of a prompt list, shuffled with ``seed``."""
    if not 0.0 <= heldout_fraction < 1.0:
        raise ValueError(f"held-out fraction must lie in [0, 1), got {heldout_fraction}")
    order = np.random.default_rng(seed).permutation(len(prompts))
    n_held = int(round(heldout_fraction * len(prompts)))
    held = [prompts[i] for i in order[:n_held]]
    cal = [prompts[i] for i in order[n_held:]]
    if not cal:
        raise ValueError("no prompts left for calibration")
    return cal, held


# --------------------------------------------------------------------------------------------
# Calibration with a guarantee: the quality drop against all-cloud, bounded with high
# probability (Learn then Test, Angelopoulos et al. 2021, with fixed-sequence testing).

BOUNDS = ("hb", "hoeffding")
LOSSES = ("both", "signed", "positive")


def default_grid(unit_interval: bool = True) -> np.ndarray:
    """The candidate thresholds, fixed before any calibration data is seen (Learn then Test
    needs a family of hypotheses chosen in advance; fixed-sequence testing makes a fine grid
    free). A router's [0, 1] score: the 1001 values 0, 0.001, ..., 1. A raw policy score
    (nats, a share of samples, any real): 1999 values evenly spaced in logistic space,
    t = log(u / (1 - u)) for u = 0.0005, 0.001, ..., 0.9995, i.e. -7.6 .. 7.6, densest near 0,
    rounded to 4 significant digits (so a router string's ``%g`` writes them exactly).
    Ascending: the first keeps the fewest prompts on the edge."""
    if unit_interval:
        return np.round(np.linspace(0.0, 1.0, 1001), 3)
    u = np.linspace(0.0, 1.0, 2001)[1:-1]
    return np.unique([float(f"{x:.4g}") for x in np.log(u / (1.0 - u))])


def quality_drop_p_values(mean_loss, n: int, eps: float, loss_range=(-1.0, 1.0),
                          bound: str = "hb") -> np.ndarray:
    """p-values of H0: E[loss] > ``eps``, from the mean of ``n`` i.i.d. losses that lie in
    ``loss_range`` = [l, u] (or drawn without replacement from a finite population, for
    which Hoeffding's bounds hold as well).

    The losses are rescaled to Z = (loss - l) / (u - l) in [0, 1]; H0 becomes E[Z] > a with
    a = (eps - l) / (u - l), and Z-bar is the rescaled mean loss.

    * ``hoeffding``: exp(-2 n (a - Z-bar)+^2), i.e. exp(-2 n (eps - mean loss)+^2 / (u - l)^2).
    * ``hb`` (Hoeffding-Bentkus, as in Bates et al. 2021 and Learn then Test): the smaller of
      Hoeffding's relative-entropy bound exp(-n KL(min(Z-bar, a) || a)) and Bentkus's
      e * P(Binomial(n, a) <= ceil(n Z-bar)). Never above the plain Hoeffding value.
    """
    from scipy.special import xlogy
    from scipy.stats import binom

    if bound not in BOUNDS:
        raise ValueError(f"bound must be one of {', '.join(BOUNDS)}; got {bound!r}")
    lo, hi = (float(x) for x in loss_range)
    z = (np.asarray(mean_loss, dtype=np.float64) - lo) / (hi - lo)
    a = (float(eps) - lo) / (hi - lo)
    if not 0.0 < a < 1.0:
        raise ValueError(f"eps = {eps} must lie inside the loss range ({lo:g}, {hi:g})")
    if bound == "hoeffding":
        return np.minimum(1.0, np.exp(-2.0 * n * np.maximum(a - z, 0.0) ** 2))
    zc = np.clip(np.minimum(z, a), 0.0, 1.0)
    kl = xlogy(zc, zc / a) + xlogy(1.0 - zc, (1.0 - zc) / (1.0 - a))
    hoeff = np.exp(-n * np.maximum(kl, 0.0))
    # n * Z-bar is a sum of rescaled losses; 1e-9 keeps float noise from rounding it up
    bentkus = np.e * binom.cdf(np.ceil(n * z - 1e-9), n, a)
    return np.minimum(1.0, np.minimum(hoeff, bentkus))


def threshold_for_quality_drop(scores, q_weak, q_strong, eps: float, delta: float = 0.05, *,
                               quality_range=(0.0, 1.0), grid=None, unit_interval: bool = True,
                               bound: str = "hb", loss: str = "both"):
    """The threshold that keeps the quality drop against all-cloud at most ``eps`` with
    probability at least 1 - ``delta`` over the draw of the calibration prompts.

    Prompt i stays on the edge where ``scores[i] <= t`` (a NaN score is undefined and goes to
    the cloud, as served) and the routed quality is then ``q_weak[i]``, else ``q_strong[i]``.
    The loss of prompt i is q_strong[i] - routed[i] = (q_strong[i] - q_weak[i]) * [kept on
    the edge], and the risk R(t), the quality drop, is its mean over the population.

    **Guarantee.** If the calibration prompts are i.i.d. draws from the population the router
    will serve (or a uniformly random subset of a finite one) and both qualities lie in
    ``quality_range`` = [lo, hi], then P(R(t) <= eps) >= 1 - delta for the threshold
    returned, the probability taken over the calibration draw. It is a finite-sample bound,
    not a point estimate; it holds for any score, however badly calibrated, and assumes
    nothing about how R(t) varies with t (it need not be monotone: a prompt the edge gets
    right and the cloud wrong has a negative loss).

    **Method** (Learn then Test, Angelopoulos et al. 2021, with fixed-sequence testing).
    Candidate thresholds ``grid`` are fixed in advance (:func:`default_grid`, so the family
    of hypotheses does not depend on the data) and tested in ascending order, from the most
    conservative (the most prompts sent to the cloud) to the least. For each, H0: R(t) > eps
    gets a valid p-value from the mean calibration loss (:func:`quality_drop_p_values`,
    ``bound`` ``hb`` or ``hoeffding``). Thresholds are accepted while p <= delta and the
    last one accepted (the lowest cloud share) is returned. Fixed-sequence testing controls
    the family-wise error at delta with no multiplicity correction, so every accepted
    threshold, the returned one included, has R(t) <= eps with probability >= 1 - delta.

    **The loss bounded** (``loss``): ``signed``, ``positive`` or ``both`` (the default), as
    :func:`loss_p_values` describes.

    When no candidate passes (too few calibration prompts for ``eps``), ValueError says so.

    Returns (threshold, cloud share on the calibration prompts, details): the p-value and
    the calibration drop at the threshold, the first candidate rejected, and the settings.
    """
    s, qw, qs, g, lo, hi = _checked(scores, q_weak, q_strong, eps, delta, quality_range, grid,
                                     unit_interval, loss)
    n, b = s.size, hi - lo
    kept, drop, positive = _calibration_drops(s, qw, qs, g)
    p = loss_p_values(drop, positive, n, eps, b, bound, loss)
    fail = np.nonzero(p > delta)[0]
    m = int(fail[0]) if fail.size else g.size    # candidates accepted, in order
    if m == 0:
        raise _nothing_certified(eps, delta, loss, n, b, g, kept, drop, p)
    details = {"eps": float(eps), "delta": float(delta), "bound": bound, "loss": loss,
               "n": int(n), "quality_range": [lo, hi], "loss_range": [-b, b],
               "n_candidates": int(g.size), "n_accepted": m,
               "n_undefined_scores": int(np.isnan(s).sum())}
    chosen = _candidate(m - 1, n, g, kept, drop, p)
    details.update(chosen)
    if m < g.size:
        details["first_rejected"] = _candidate(m, n, g, kept, drop, p)
    return chosen["threshold"], chosen["cloud_share"], details


def _candidate(i: int, n: int, g, kept, drop, p) -> dict:
    """Candidate ``i``: its threshold, cloud share, calibration drop and p-value."""
    return {"threshold": float(g[i]), "cloud_share": float(1.0 - kept[i] / n),
            "calibration_drop": float(drop[i]), "p_value": float(p[i])}


def _checked(scores, q_weak, q_strong, eps, delta, quality_range, grid, unit_interval, loss):
    """The inputs of :func:`threshold_for_quality_drop` as float arrays, checked: (scores,
    q_weak, q_strong, the candidate grid, quality low, quality high)."""
    s = np.asarray(scores, dtype=np.float64)
    qw = np.asarray(q_weak, dtype=np.float64)
    qs = np.asarray(q_strong, dtype=np.float64)
    if s.ndim != 1 or s.size == 0 or qw.shape != s.shape or qs.shape != s.shape:
        raise ValueError("calibration needs scores and both quality vectors, 1-D, of the same "
                         "non-zero length")
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {', '.join(LOSSES)}; got {loss!r}")
    lo, hi = (float(x) for x in quality_range)
    if not hi > lo:
        raise ValueError(f"quality range must be lo < hi, got {quality_range}")
    if not (np.isfinite(qw).all() and np.isfinite(qs).all()):
        raise ValueError("qualities must be finite")
    tol = 1e-9 * (hi - lo)
    if min(qw.min(), qs.min()) < lo - tol or max(qw.max(), qs.max()) > hi + tol:
        raise ValueError(f"qualities must lie in the quality range [{lo:g}, {hi:g}] that "
                         f"bounds the loss; got {min(qw.min(), qs.min()):g} .. "
                         f"{max(qw.max(), qs.max()):g}")
    b = hi - lo
    if not 0.0 < eps < b:
        raise ValueError(f"the quality drop eps must lie in (0, {b:g}), got {eps}")
    if not 0.0 < delta < 1.0:
        raise ValueError(f"delta must lie in (0, 1), got {delta}")
    finite = s[~np.isnan(s)]
    if unit_interval and finite.size and (finite.min() < 0.0 or finite.max() > 1.0):
        raise ValueError(f"router scores must lie in [0, 1], got {finite.min():g} .. "
                         f"{finite.max():g}")
    g = default_grid(unit_interval) if grid is None else np.asarray(grid, dtype=np.float64)
    if g.ndim != 1 or g.size == 0 or not np.isfinite(g).all() or np.any(np.diff(g) <= 0):
        raise ValueError("the threshold grid must be finite and strictly increasing")
    return s, qw, qs, g, lo, hi


def _calibration_drops(s, qw, qs, g):
    """Per candidate threshold in ``g``: the prompts kept on the edge (score <= t; a NaN
    score goes to the cloud), the mean loss and the mean of its positive part."""
    n = s.size
    key = np.where(np.isnan(s), np.inf, s)      # undefined: above every threshold (cloud)
    order = np.argsort(key, kind="stable")
    kept = np.searchsorted(key[order], g, side="right")  # prompts with score <= t
    gain = (qs - qw)[order]
    cum = np.concatenate([[0.0], np.cumsum(gain)])
    drop = cum[kept] / n                                  # the calibration quality drop
    positive = np.concatenate([[0.0], np.cumsum(np.maximum(gain, 0.0))])[kept] / n
    return kept, drop, positive


def loss_p_values(drop, positive, n: int, eps: float, span: float, bound: str = "hb",
                  loss: str = "both") -> np.ndarray:
    """p-values of H0: quality drop > ``eps`` per candidate, from the mean calibration loss
    (``drop``) and the mean of its positive part (``positive``) over ``n`` prompts whose
    qualities span ``span`` = hi - lo.

    **The loss bounded** (``loss``):

    * ``signed``: the loss itself, in [-(hi - lo), hi - lo] ([-1, 1] for 0/1 correctness),
      rescaled to [0, 1] for the bound. Prompts where the edge beats the cloud count in the
      edge's favour, but the range is wide: from n prompts it certifies no drop below about
      (hi - lo) * sqrt(2 ln(1/delta) / n), even where the calibration drop is 0 (0.14 for 300
      prompts at delta = 0.05), so a drop smaller than that is refused.
    * ``positive``: its positive part max(loss, 0), in [0, hi - lo]: only the prompts where
      the cloud is better count, and the edge's wins are given up. Since E[max(L, 0)] >= E[L],
      H0 for the positive part contains H0 for the drop, so its p-value is valid too (more
      conservative in the mean, but the bound is much tighter on a loss that is mostly 0:
      for 0/1 quality the positive part is a Bernoulli count, and a small drop can be
      certified from a few hundred prompts).
    * ``both`` (the default): twice the smaller of the two p-values (capped at 1), valid by a
      union bound (under H0 both p-values are valid, so P(2 min <= delta) <= delta/2 +
      delta/2): whichever bound is tighter on the data carries the threshold, for the price
      of testing each at delta / 2.
    """
    b = span
    if loss == "signed":
        return quality_drop_p_values(drop, n, eps, (-b, b), bound)
    if loss == "positive":
        return quality_drop_p_values(positive, n, eps, (0.0, b), bound)
    return np.minimum(1.0, 2.0 * np.minimum(quality_drop_p_values(drop, n, eps, (-b, b), bound),
                                            quality_drop_p_values(positive, n, eps, (0.0, b),
                                                                  bound)))


def _nothing_certified(eps, delta, loss, n, b, g, kept, drop, p) -> ValueError:
    """The error when even the most conservative candidate is rejected."""
    hint = (f"; with losses in [{-b:g}, {b:g}] Hoeffding certifies no drop below about "
            f"{b * np.sqrt(2 * np.log(1 / delta) / n):.3f} from {n} prompts (loss "
            f"'positive' or 'both' is tighter on small drops)" if loss == "signed" else "")
    return ValueError(
        f"no threshold keeps the quality drop <= {eps:g} with probability >= "
        f"{1 - delta:g} on {n} calibration prompts: the most conservative candidate "
        f"(t = {g[0]:g}, cloud share {1 - kept[0] / n:.3f}, calibration drop "
        f"{drop[0]:+.4f}) has p = {p[0]:.3g} > delta {delta:g}{hint}. Give more "
        f"calibration prompts or allow a larger drop")


def quality_drop(scores, q_weak, q_strong, threshold: float) -> float:
    """The mean quality drop against all-cloud when prompts with score <= ``threshold`` stay
    on the edge (a NaN score goes to the cloud)."""
    s = np.asarray(scores, dtype=np.float64)
    kept = s <= threshold
    return float(np.mean((np.asarray(q_strong, np.float64) - np.asarray(q_weak, np.float64))
                         * kept))
