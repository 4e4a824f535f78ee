"""Two-stage policies on a recorded table (:class:`confroute.decision.policies.Staged`): their
thresholds for a target cloud share, by quantiles of the table's scores (no outcomes needed),
and their replay curve, recalibrated at every share of a grid.

- **The ladder** (``ladder_for_share``): a cheap first score (the answer's log-prob, or a
  query router) and a sampled one. For a target cloud share S and a sample budget B (the
  share of prompts sampled), the band is the B-wide window of the cheap score's ranking
  centred where share S falls (moved inside the ranking at the ends): above it the cloud,
  below it the edge, inside it the sampled score decides, at the threshold that brings the
  table's overall cloud share to S.
- **Cascade routing** (``cascade_for_share``): a query router sends its top min(SKIP, S)
  to the cloud before the edge answers; the sampled score decides every other prompt.

Thresholds follow the served rule (:class:`confroute.decision.policies.Stage`): the cloud
where a score > the threshold, an undefined (NaN) score escalates, tied scores move together
(so a window's edges move with its ties: ties at its top are sampled, ties at its bottom
stay on the edge). Each threshold is the shortest decimal between a score of the table and
the next one above it (the same routing on the table), so it is valid in each policy's unit
and prints as a short router string.

In ``eval replay`` a two-stage spec is ``ladder:FIRST,SECOND,BUDGET`` or
``cascade:FIRST,SECOND,SKIP`` (:func:`parse_spec`): FIRST a signal column of the table
or a router replay can score (a saved-router folder), SECOND a signal column. Its curve is
one point per share of the grid, each with its own recalibrated thresholds; the bootstrap
resamples prompts and recalibrates on each resample.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Dict, Optional, Sequence

import numpy as np

KINDS = ("ladder", "cascade")


@dataclass(frozen=True)
class StagedThresholds:
    """Two stages calibrated on a table: the first sends a prompt up where its score > ``hi``
    and keeps it where ``lo`` is set and score <= ``lo``; the second decides the rest at
    ``threshold``. ``cloud_share`` and ``sampled_share`` are what they give on the table
    (``cloud``, ``sampled``: per prompt)."""

    lo: Optional[float]
    hi: float
    threshold: float
    cloud_share: float
    sampled_share: float
    cloud: np.ndarray = field(repr=False)
    sampled: np.ndarray = field(repr=False)

    def router(self, first: str, second: str) -> str:
        """The router string that serves these thresholds (policy names as the grammar
        knows them: ``answer_logprob``, ``disagreement``, a saved-router folder)."""
        stage = f"{first}-{_g(self.hi)}" if self.lo is None else \
            f"{first}-{_g(self.lo)}:{_g(self.hi)}"
        return f"router-{stage}+{second}-{_g(self.threshold)}"


def _g(x: float) -> str:
    return repr(float(x))   # thresholds are short decimals already (_short): exact


def ladder_for_share(cheap, sampled, share: float, budget: float) -> StagedThresholds:
    """The ladder's band (lo, hi) on the cheap score and the sampled score's threshold for a
    target cloud ``share`` with ``budget`` (share of prompts sampled) on a table's scores
    (module doc). ValueError for shares or budgets outside [0, 1]."""
    first, second = _scores(cheap, sampled)
    n = first.size
    w = int(round(_unit(budget, "sample budget") * n))
    k = int(round(_unit(share, "cloud share") * n))
    a = min(max(k - w // 2, 0), n - w)
    return _calibrate(first, second, share, a, a + w)


def cascade_for_share(router_scores, sampled, share: float, skip: float) -> StagedThresholds:
    """Cascade routing for a target cloud ``share``: the query router's top min(``skip``,
    share) go to the cloud unsampled, the sampled score's threshold brings the rest to the
    share. ``lo`` is None: every prompt the router passes on is answered and sampled."""
    first, second = _scores(router_scores, sampled)
    n = first.size
    a = int(round(min(_unit(skip, "skip share"), _unit(share, "cloud share")) * n))
    return _calibrate(first, second, share, a, n)


def _unit(x: float, what: str) -> float:
    if isinstance(x, bool) or not isinstance(x, (int, float, np.floating)) \
            or not 0.0 <= x <= 1.0:
        raise ValueError(f"the {what} must lie in [0, 1], got {x!r}")
    return float(x)


def _scores(first, second):
    f, s = np.asarray(first, np.float64), np.asarray(second, np.float64)
    if f.ndim != 1 or f.shape != s.shape or f.size == 0:
        raise ValueError("both stages need one score per prompt (1-D, the same length)")
    return f, s


def _short(x: float, scores: np.ndarray) -> float:
    """The shortest decimal in [x, the next score above x): the same routing on the table
    as x itself, and a router string that reads well. Above the largest score, within a
    thousandth of x."""
    above = scores[scores > x]
    limit = float(above.min()) if above.size else x + max(abs(x) * 1e-3, 1e-9)
    for digits in range(0, 18):
        c = math.ceil(x * 10 ** digits) / 10 ** digits
        if x <= c < limit:
            return c
    return x


def _calibrate(first, second, share, a: int, end: int) -> StagedThresholds:
    """Positions [0, a) of the first score's descending ranking go to the cloud, [a, end)
    to the second stage, the rest stay; thresholds as the served rule reads them."""
    n = first.size
    key = np.where(np.isnan(first), np.inf, first)   # NaN escalates: ranked first
    desc = np.sort(key)[::-1]
    finite = key[np.isfinite(key)]
    top = float(finite.max()) if finite.size else 0.0
    hi = float(desc[a]) if a < n else top
    if not math.isfinite(hi):
        hi = top          # the window starts among the undefined scores: none sent up by value
    hi = _short(hi, finite)
    lo = _short(float(desc[end]), finite) if end < n else None
    up = ~(key <= hi)
    band = ~up if lo is None else ~up & (key > lo)
    # the second stage: the threshold whose overall share comes closest to the target
    # (the lower share on a tie, as threshold_for_share), among the band's own scores
    b = second[band]
    undefined = int(np.isnan(b).sum())
    vals = np.sort(b[np.isfinite(b)])
    fixed = int(up.sum()) + undefined
    if vals.size:
        cand = np.unique(vals)
        above = vals.size - np.searchsorted(vals, cand, side="right")
        gap = np.abs((fixed + above) / n - share)
        t = _short(float(cand[len(gap) - 1 - int(np.argmin(gap[::-1]))]), vals)
    else:
        s_fin = second[np.isfinite(second)]
        t = float(s_fin.max()) if s_fin.size else 0.0
    cloud = up | (band & ~(second <= t))
    return StagedThresholds(lo, hi, t, float(cloud.mean()), float(band.mean()), cloud, band)


# ------------------------------------------------------------------------------ replay


@dataclass(frozen=True)
class StagedScores:
    """A two-stage policy as ``eval replay`` sweeps it: the two score vectors of a table
    (higher = cloud; NaN escalates), recalibrated at every share of a grid. ``rows[idx]``
    (a bootstrap resample) is the same policy on those rows."""

    kind: str                 # "ladder" | "cascade"
    first: np.ndarray
    second: np.ndarray
    param: float              # the ladder's sample budget, the cascade's skip share
    label: str = ""
    info: Dict[str, object] = field(default_factory=dict)

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {self.kind!r}")
        _scores(self.first, self.second)
        _unit(self.param, "sample budget" if self.kind == "ladder" else "skip share")

    def __len__(self) -> int:
        return self.first.size

    def __getitem__(self, idx) -> "StagedScores":
        return StagedScores(self.kind, self.first[idx], self.second[idx], self.param,
                            self.label, self.info)

    def at(self, share: float) -> StagedThresholds:
        fn = ladder_for_share if self.kind == "ladder" else cascade_for_share
        return fn(self.first, self.second, share, self.param)

    def curve(self, q_weak, q_strong, grid: Sequence[float]):
        """(share, quality, target share, sampled share per grid point): quality against
        the cloud share each recalibration reaches, sorted by share, between all-edge (0)
        and all-cloud (1)."""
        qw, qs = np.asarray(q_weak, np.float64), np.asarray(q_strong, np.float64)
        if qw.shape != self.first.shape or qs.shape != self.first.shape:
            raise ValueError("both quality vectors need one value per prompt")
        pts = [(0.0, float(qw.mean()), 0.0), (1.0, float(qs.mean()), 1.0)]
        sampled = []
        for s in grid:
            c = self.at(float(s))
            pts.append((c.cloud_share, float(np.where(c.cloud, qs, qw).mean()), float(s)))
            sampled.append(c.sampled_share)
        pts.sort(key=lambda p: p[0])
        share, quality, target = (np.array(x) for x in zip(*pts))
        return share, quality, target, np.array(sampled)


def parse_spec(spec: str):
    """``ladder:FIRST,SECOND,BUDGET`` or ``cascade:FIRST,SECOND,SKIP`` -> (kind, first,
    second, the budget or skip share); ValueError showing the form."""
    kind, _, body = spec.partition(":")
    parts = [p.strip() for p in body.split(",")]
    if kind not in KINDS or len(parts) != 3 or not all(parts):
        raise ValueError(f"{spec!r}: a two-stage spec is ladder:FIRST,SECOND,BUDGET or "
                         "cascade:FIRST,SECOND,SKIP (e.g. ladder:answer_logprob,disagreement,"
                         "0.35; cascade:routers/sw,disagreement,0.2)")
    try:
        value = float(parts[2])
    except ValueError:
        raise ValueError(f"{spec!r}: {parts[2]!r} is not a number") from None
    _unit(value, "sample budget" if kind == "ladder" else "skip share")
    return kind, parts[0], parts[1], value
