"""The quality-drop guarantee, checked by resampling: ``confroute eval guarantee``.

A fixed score function's scores on a whole outcome table serve as the population. Each draw
takes ``n_cal`` prompts at random (without replacement) and calibrates a threshold on them
alone; the threshold is then measured on the rest of the table, which the calibration never
saw. Two calibrations run on the same draws:

* **guarantee**: :func:`~confroute.routers.calibrate.threshold_for_quality_drop` (Learn then
  Test), which promises P(drop <= eps) >= 1 - delta over the draw, or refuses;
* **share** (the point estimate, no guarantee): the share-based calibration
  (:func:`~confroute.routers.calibrate.threshold_for_share`) at the lowest cloud share whose
  drop on the calibration draw is still <= eps, found in the guarantee's order (from the
  most prompts sent to the cloud down, stopping at the first threshold over eps).

A draw *violates* when the drop on the held-out rest exceeds eps. A refusal deploys no
threshold (the caller keeps all-cloud, drop 0), so it is counted apart and never as a
violation; the guarantee bounds the violation share over all draws by delta. The cloud share
each method needs is reported beside the other's: the price of the guarantee.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Tuple

import numpy as np

from confroute.routers.calibrate import (BOUNDS, LOSSES, quality_drop,
                                         threshold_for_quality_drop, threshold_for_share)

METHODS = ("guarantee", "share")


def clopper_pearson(k: int, n: int, level: float = 0.95) -> Tuple[float, float]:
    """The exact (Clopper-Pearson) two-sided interval of a binomial share from ``k`` of ``n``."""
    from scipy.stats import beta

    if not (isinstance(n, (int, np.integer)) and n >= 1):
        raise ValueError(f"n must be an integer >= 1, got {n!r}")
    if not (isinstance(k, (int, np.integer)) and 0 <= k <= n):
        raise ValueError(f"k must be an integer in [0, n = {n}], got {k!r}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must lie in (0, 1), got {level}")
    a = (1.0 - level) / 2.0
    lo = 0.0 if k == 0 else float(beta.ppf(a, k, n - k + 1))
    hi = 1.0 if k == n else float(beta.ppf(1.0 - a, k + 1, n - k))
    return lo, hi


@dataclass(frozen=True)
class Spread:
    """Mean and 5/50/95% quantiles of a per-draw value over the draws that gave one (NaN when
    none did)."""

    mean: float
    p05: float
    p50: float
    p95: float

    @classmethod
    def of(cls, values) -> "Spread":
        v = np.asarray(values, np.float64)
        v = v[np.isfinite(v)]
        if v.size == 0:
            return cls(math.nan, math.nan, math.nan, math.nan)
        p05, p50, p95 = np.quantile(v, [0.05, 0.5, 0.95])
        return cls(float(v.mean()), float(p05), float(p50), float(p95))


@dataclass(frozen=True)
class Draw:
    """One calibration draw under one method. NaN where the method refused."""

    threshold: float
    calibration_share: float   # cloud share on the calibration prompts
    calibration_drop: float    # quality drop against all-cloud on them
    heldout_share: float       # cloud share on the rest of the table
    heldout_drop: float        # quality drop on the rest: what a user would lose
    refused: bool = False
    unreached: bool = False    # share: no reachable threshold had a calibration drop <= eps


@dataclass(frozen=True)
class MethodResult:
    """One calibration method over all draws."""

    method: str
    n_draws: int
    n_refused: int      # no threshold qualified (the guarantee only)
    n_unreached: int    # the calibration drop stayed above eps at every reachable share
    n_violations: int   # held-out drop > eps
    violation_share: float          # n_violations / n_draws (a refusal is no violation)
    violation_interval: Tuple[float, float]  # Clopper-Pearson, over the draws
    heldout_drop: Spread
    heldout_share: Spread           # the cloud share it needed on the held-out prompts
    calibration_share: Spread
    draws: Tuple[Draw, ...] = ()


@dataclass(frozen=True)
class GuaranteeCheck:
    eps: float
    delta: float
    n_population: int
    n_calibration: int
    n_draws: int
    seed: int
    bound: str
    loss: str
    level: float
    all_edge_drop: float      # the drop with every prompt on the edge (the whole table)
    # the point estimate's rule on the whole table: the cloud share a calibration that
    # knew every prompt would need
    population_share: float
    guarantee: MethodResult
    share: MethodResult

    def to_dict(self, draws: bool = False) -> dict:
        """A JSON-ready dict (JSON has no NaN: a refused draw's values are null); the
        per-draw records only with ``draws``."""
        out = asdict(self)
        if not draws:
            for m in METHODS:
                out[m].pop("draws")
        return _json_ready(out)


def _json_ready(x):
    if isinstance(x, dict):
        return {k: _json_ready(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_json_ready(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def _lowest_share_within(scores, q_weak, q_strong, eps: float) -> Tuple[float, bool]:
    """The point estimate's cloud share: thresholds at the prompts' own score values (those
    the share-based calibration can reach), tried from the lowest (most prompts to the
    cloud) up while the drop on these prompts stays <= eps, as fixed-sequence testing tries
    them; the share at the last one kept. (share, reached): when even the lowest threshold
    is over eps, its share, the highest reachable, and False."""
    values = np.unique(scores)
    last = None
    for t in values:
        if quality_drop(scores, q_weak, q_strong, t) > eps:
            break
        last = t
    reached = last is not None
    t = values[0] if last is None else last
    return float(np.mean(scores > t)), reached


def _summary(method: str, draws, eps: float, level: float) -> MethodResult:
    held = np.array([d.heldout_drop for d in draws])
    violations = int(np.sum(held > eps))  # NaN (refused) compares False
    n = len(draws)
    return MethodResult(
        method=method, n_draws=n, n_refused=sum(d.refused for d in draws),
        n_unreached=sum(d.unreached for d in draws), n_violations=violations,
        violation_share=violations / n, violation_interval=clopper_pearson(violations, n, level),
        heldout_drop=Spread.of(held),
        heldout_share=Spread.of([d.heldout_share for d in draws]),
        calibration_share=Spread.of([d.calibration_share for d in draws]),
        draws=tuple(draws))


def check_guarantee(scores, q_weak, q_strong, eps: float, delta: float = 0.05, *,
                    n_cal: int = 300, draws: int = 200, seed: int = 0,
                    quality_range=(0.0, 1.0), bound: str = "hb", loss: str = "both",
                    grid=None, unit_interval: bool = True,
                    level: float = 0.95) -> GuaranteeCheck:
    """Resamples the calibration of a fixed score: ``draws`` times, ``n_cal`` prompts drawn
    without replacement (seeded by ``seed``) calibrate each method, and the rest measure it
    (see the module doc). ``scores``: one finite score per prompt, higher = cloud (in [0, 1]
    for a router, ``unit_interval``); ``q_weak`` / ``q_strong``: each model's quality there,
    within ``quality_range``. ``bound``, ``loss`` and ``grid`` go to
    :func:`~confroute.routers.calibrate.threshold_for_quality_drop`; ``level`` is the
    confidence of the violation share's interval."""
    s, qw, qs, lo, hi = _checked(scores, q_weak, q_strong, eps, delta, n_cal, draws,
                                 quality_range, bound, loss, unit_interval, level)
    n = s.size
    rng = np.random.default_rng(seed)
    ltt, point = [], []
    for _ in range(draws):
        perm = rng.permutation(n)
        cal, rest = perm[:n_cal], perm[n_cal:]
        ltt.append(_guarantee_draw(s, qw, qs, cal, rest, eps, delta, (lo, hi), grid,
                                   unit_interval, bound, loss))
        point.append(_share_draw(s, qw, qs, cal, rest, eps, unit_interval))
    pop_share, _ = _lowest_share_within(s, qw, qs, eps)
    return GuaranteeCheck(
        eps=float(eps), delta=float(delta), n_population=int(n), n_calibration=int(n_cal),
        n_draws=int(draws), seed=int(seed), bound=bound, loss=loss, level=float(level),
        all_edge_drop=float(np.mean(qs - qw)), population_share=pop_share,
        guarantee=_summary("guarantee", ltt, eps, level),
        share=_summary("share", point, eps, level))


def _checked(scores, q_weak, q_strong, eps, delta, n_cal, draws, quality_range, bound, loss,
             unit_interval, level):
    """:func:`check_guarantee`'s inputs checked: (scores, q_weak, q_strong as float arrays,
    lo, hi of the quality range)."""
    s = np.asarray(scores, dtype=np.float64)
    qw = np.asarray(q_weak, dtype=np.float64)
    qs = np.asarray(q_strong, dtype=np.float64)
    if s.ndim != 1 or qw.shape != s.shape or qs.shape != s.shape:
        raise ValueError(f"scores, q_weak and q_strong must be 1-D of the same length; got "
                         f"shapes {s.shape}, {qw.shape}, {qs.shape}")
    if not np.isfinite(s).all():
        # the share-based calibration has no place for an undefined score
        raise ValueError(f"scores must be finite; {int((~np.isfinite(s)).sum())} are not")
    if unit_interval and s.size and (s.min() < 0.0 or s.max() > 1.0):
        raise ValueError(f"router scores must lie in [0, 1], got {s.min():g} .. {s.max():g}")
    n = s.size
    if not (isinstance(n_cal, (int, np.integer)) and 1 <= n_cal < n):
        raise ValueError(f"n_cal must be an integer in [1, {n - 1}] (the table has {n} "
                         f"prompts and some must be held out), got {n_cal!r}")
    if not (isinstance(draws, (int, np.integer)) and draws >= 1):
        raise ValueError(f"draws must be an integer >= 1, got {draws!r}")
    if bound not in BOUNDS:
        raise ValueError(f"bound must be one of {', '.join(BOUNDS)}; got {bound!r}")
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {', '.join(LOSSES)}; got {loss!r}")
    lo, hi = (float(x) for x in quality_range)
    if not hi > lo:
        raise ValueError(f"quality range must be lo < hi, got {quality_range}")
    if min(qw.min(), qs.min()) < lo or max(qw.max(), qs.max()) > hi:
        raise ValueError(f"qualities must lie in the quality range [{lo:g}, {hi:g}]")
    if not 0.0 < eps < hi - lo:
        raise ValueError(f"eps must lie in (0, {hi - lo:g}), got {eps}")
    if not 0.0 < delta < 1.0:
        raise ValueError(f"delta must lie in (0, 1), got {delta}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must lie in (0, 1), got {level}")
    return s, qw, qs, lo, hi


def _guarantee_draw(s, qw, qs, cal, rest, eps, delta, quality_range, grid, unit_interval,
                    bound, loss) -> Draw:
    """One draw of the guarantee: calibrated on ``cal``, measured on ``rest``; a refusal (too
    few prompts to certify any threshold) is a refused draw."""
    sc, sr = s[cal], s[rest]
    try:
        t, share, details = threshold_for_quality_drop(
            sc, qw[cal], qs[cal], eps, delta, quality_range=quality_range, grid=grid,
            unit_interval=unit_interval, bound=bound, loss=loss)
    except ValueError as e:
        # every input was checked (_checked), so this is the refusal: too few prompts
        if not str(e).startswith("no threshold"):
            raise
        return Draw(math.nan, math.nan, math.nan, math.nan, math.nan, refused=True)
    return Draw(t, share, details["calibration_drop"], float(np.mean(sr > t)),
                quality_drop(sr, qw[rest], qs[rest], t))


def _share_draw(s, qw, qs, cal, rest, eps, unit_interval) -> Draw:
    """One draw of the point estimate: the lowest cloud share whose drop on ``cal`` is within
    ``eps``, measured on ``rest``."""
    sc, sr = s[cal], s[rest]
    target, reached = _lowest_share_within(sc, qw[cal], qs[cal], eps)
    t = threshold_for_share(sc, target, unit_interval=unit_interval)
    return Draw(t, float(np.mean(sc > t)), quality_drop(sc, qw[cal], qs[cal], t),
                float(np.mean(sr > t)), quality_drop(sr, qw[rest], qs[rest], t),
                unreached=not reached)


def format_check(c: GuaranteeCheck) -> str:
    """The check as a small text table, one row per method."""
    pct = int(round(100 * c.level))
    head = (f"eps {c.eps:g}, delta {c.delta:g}: {c.n_draws} draws of {c.n_calibration} "
            f"calibration prompts from {c.n_population} (the rest measure); all-edge drop "
            f"{c.all_edge_drop:.4f}; the whole table needs cloud share {c.population_share:.3f}")
    rows = [f"{'method':<10} {'violations':>10} {'share [' + str(pct) + '% CI]':>22} "
            f"{'held-out drop mean (p95)':>25} {'cloud share mean [p05, p95]':>28} "
            f"{'refused':>8}"]
    for m in (c.guarantee, c.share):
        ci = f"{m.violation_share:.3f} [{m.violation_interval[0]:.3f}, " \
             f"{m.violation_interval[1]:.3f}]"
        drop = f"{m.heldout_drop.mean:+.4f} ({m.heldout_drop.p95:+.4f})"
        share = f"{m.heldout_share.mean:.3f} [{m.heldout_share.p05:.3f}, " \
                f"{m.heldout_share.p95:.3f}]"
        if m.n_refused == m.n_draws:  # nothing deployed, nothing measured
            drop = share = "-"
        rows.append(f"{m.method:<10} {m.n_violations:>10} {ci:>22} {drop:>25} {share:>28} "
                    f"{m.n_refused:>8}")
    return "\n".join([head] + rows)
