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
