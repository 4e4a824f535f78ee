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
from typing import Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from confroute.eval import baselines  # noqa: F401  (registers oracle, scores and se)
from confroute.eval import metrics as M
from confroute.eval.ladder import StagedScores, parse_spec
from confroute.eval.table import OutcomeTable
from confroute.routers.base import Router, get_router

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

    base.load_builtin_routers()
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

# Random's interval: mean +- Z_RANDOM sd over seeds (its spread from routing alone).
Z_RANDOM = 1.96
CI_METRICS = ("apgr", "cpt20", "cpt50", "cpt80", "auroc")


def signal_scores(table: OutcomeTable, spec: str) -> List[Tuple[str, np.ndarray, dict]]:
    """``signal:NAME[,higher=edge|cloud]`` -> one (label, scores in [0, 1], info); ``signals``
    -> every signal of the table, each in the direction its meta records. Scores are the
    signal's mid-ranks over n (routing depends on the order only). A prompt without a value
    (NaN) is ranked as the least confident (sent to the cloud first); ``info`` counts them."""
    if spec == "signals":
        if not table.signals:
            raise ValueError(f"{table.name}: the table has no signal columns")
        specs = [(k, table.signal_higher(k)) for k in sorted(table.signals)]
    else:
        body = spec[len("signal:"):]
        name, _, opts = body.partition(",")
        kw = _parse_kwargs("signal", opts) if opts else {}
        unknown = set(kw) - {"higher"}
        if not name or unknown:
            raise ValueError(f"router {spec!r}: use signal:NAME[,higher=edge|cloud]")
        higher = str(kw.get("higher", "cloud"))
        if higher not in ("cloud", "edge"):
            raise ValueError(f"router {spec!r}: higher must be 'cloud' or 'edge'")
        table.signal(name)  # names the signals the table has
        specs = [(name, higher)]
    out = []
    for name, higher in specs:
        v = np.array(table.signal(name), dtype=np.float64)
        missing = ~np.isfinite(v)
        v = -v if higher == "edge" else v
        v[missing] = np.inf
        ranks = M.average_ranks(np.where(np.isinf(v), np.finfo(float).max, v))
        label = f"signal:{name}" + (",higher=edge" if higher == "edge" else "")
        out.append((label, (ranks - 1) / max(1, len(v) - 1),
                    {"signal": name, "higher": higher, "n_missing": int(missing.sum())}))
    return out


@dataclass(frozen=True)
class RowScores:
    """Scores computed elsewhere, one per table row in the table's order, each in [0, 1]
    (higher = cloud): a router spec for :func:`replay`. ``info`` goes into the metrics."""

    scores: np.ndarray
    info: Mapping[str, object]
    label: str = "scores"


def answer_length_scores(table: OutcomeTable, records) -> RowScores:
    """The length baseline: the edge's answer length in tokens (``completion_tokens`` of the
    graded answer each row's record of ``eval build`` keeps in ``usage``), longer = send to
    the cloud, as mid-ranks over n (as :func:`signal_scores`). It needs the edge's answer,
    so it routes after the edge has answered (as the answer-first policies do). ``records``:
    the edge's checkpoint records (:func:`confroute.eval.prefix.checkpoint_records`)."""
    by_id = {r.id: r for r in records}
    missing = [i for i in table.ids if i not in by_id]
    if missing:
        raise ValueError(f"length: no record of {len(missing)} of the table's rows (first: "
                         f"{missing[0]!r})")
    tokens = [by_id[i].usage.get("completion_tokens") for i in table.ids]
    if any(t is None for t in tokens):
        raise ValueError("length: the records carry no completion_tokens in their usage")
    v = np.asarray(tokens, np.float64)
    ranks = M.average_ranks(v)
    return RowScores((ranks - 1) / max(1, len(v) - 1),
                     {"baseline": "edge answer length (completion tokens)",
                      "mean_tokens": float(v.mean()), "distinct": int(np.unique(v).size)},
                     "length")


def _point_metrics(scores, qw, qs, n_points, shares, scale=(0.0, 1.0)) -> Dict[str, object]:
    if _staged(scores):
        return _staged_metrics(scores, qw, qs, n_points, shares, scale)[0]
    curve = sweep(scores, qw, qs, n_points)
    m = curve_metrics(curve, float(qw.mean()), float(qs.mean()), shares)
    m["uncertainty"] = uncertainty_metrics(scores, qw)
    m["risk"] = risk_metrics(scores, qw, qs, curve, scale, full=False)
    return m


def _staged(scores) -> bool:
    return isinstance(scores, StagedScores)


def staged_scores(table: OutcomeTable, spec: str) -> StagedScores:
    """``ladder:FIRST,SECOND,BUDGET`` or ``cascade:FIRST,SECOND,SKIP`` on ``table``
    (:mod:`confroute.eval.ladder`): FIRST a signal column or a router this module can
    score (a saved-router folder, a registered name), SECOND a signal column; signals in
    their recorded direction, which must be higher = cloud."""
    kind, first, second, value = parse_spec(spec)

    def signal(name):
        v = np.array(table.signal(name), np.float64)   # names the signals the table has
        if table.signal_higher(name) != "cloud":
            raise ValueError(f"signal {name!r}: a higher value means the edge is surer (the "
                             "table's meta says higher=edge); a stage needs higher = cloud")
        return v

    if first in table.signals:
        f, source = signal(first), "signal"
    else:
        label, router = resolve_router(first, table)
        f, source = _check_scores(label, router.score(list(table.prompts)), len(table)), \
            "router"
    info = {"kind": kind, "first": first, "first_from": source, "second": second,
            ("budget" if kind == "ladder" else "skip"): value}
    n = (table.meta.get("sampling") or {}).get("n")
    if isinstance(n, int):
        info["samples_per_prompt_sampled"] = n   # the table's draw, for samples per query
    return StagedScores(kind, f, signal(second), value, spec, info)


def _staged_metrics(staged, qw, qs, n_points, shares, scale=(0.0, 1.0)):
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


def _flat(m: Dict[str, object]) -> Dict[str, float]:
    out = {k: float(m[k]) for k in ("apgr", "auc", "cpt20", "cpt50", "cpt80")}
    out["auroc"] = float(m["uncertainty"]["auroc"])
    for s, v in m["quality_at"].items():
        out["q@" + s] = float(v)
    r = m["risk"]
    out.update(aurc=float(r["aurc"]), naudc=float(r["naudc"]),
               calls_saved=float(r["iso_quality"]["calls_saved"]))
    return out


def _resamples(score_sets, qw, qs, n_points, shares, n_boot, seed, scale=(0.0, 1.0)):
    """The flat metrics of each score vector on ``n_boot`` seeded resamples of the rows, the
    same rows for every vector (so differences are paired), and whether each resample has a
    gap (strong better than weak)."""
    qw, qs = np.asarray(qw, np.float64), np.asarray(qs, np.float64)
    sets = [s if _staged(s) else np.asarray(s, np.float64) for s in score_sets]
    n = qw.size
    rng = np.random.default_rng(seed)
    rows, gap = [[] for _ in sets], []
    for _ in range(n_boot):
        idx = rng.integers(0, n, n)
        for r, s in zip(rows, sets):
            r.append(_flat(_point_metrics(s[idx], qw[idx], qs[idx], n_points, shares, scale)))
        gap.append(qs[idx].mean() > qw[idx].mean())
    return ([{k: np.array([x[k] for x in r]) for k in r[0]} for r in rows], np.array(gap))


def _percentiles(n_boot: int, level: float) -> Tuple[float, float]:
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
    lo_q, hi_q = _percentiles(n_boot, level)
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
    lo_q, hi_q = _percentiles(n_boot, level)
    qw, qs = np.asarray(qw, np.float64), np.asarray(qs, np.float64)
    point = [_flat(_point_metrics(s if _staged(s) else np.asarray(s, np.float64), qw, qs,
                                  n_points, shares, scale)) for s in (scores_a, scores_b)]
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


def _random_over_seeds(table, n_points, shares, seeds: int) -> Dict[str, object]:
    qw, qs = table.q_weak, table.q_strong
    rows = []
    for seed in range(seeds):
        _, r = resolve_router(f"random:seed={seed}", table)
        sc = _check_scores("random", r.score(list(table.prompts)), len(table))
        rows.append(_flat(_point_metrics(sc, qw, qs, n_points, shares, quality_scale(table))))
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
    Every router also gets ``metrics["risk"]``: AURC, nAUDC, calls saved at iso-quality
    (see :func:`risk_metrics`), a calibrated P(edge correct) with ECE and Brier
    (:func:`calibration_metrics`) and the risk-coverage curve.
    ``n_boot`` > 0 adds bootstrap intervals (``metrics["ci"]``, seeded by ``seed``);
    ``random_seeds`` > 1 makes a plain ``random`` the mean over that many seeds, with its sd
    and band (mean +- 1.96 sd), and marks every other router whose interval meets that band
    (``metrics["overlaps_random"]``). ``compare``: pairs of result labels (a, b) whose paired
    differences a - b get bootstrap intervals (:func:`paired_intervals`, ``n_boot`` resamples,
    or 1000 when ``n_boot`` is 0)."""
    items = list(routers.items()) if isinstance(routers, Mapping) else [(None, r) for r in routers]
    if not items:
        raise ValueError("no routers to evaluate")
    qw, qs = table.q_weak, table.q_strong
    q_weak, q_strong = float(qw.mean()), float(qs.mean())
    scale = quality_scale(table)
    scored = []
    for label, spec in items:
        if isinstance(spec, str) and spec.startswith(("ladder:", "cascade:")):
            spec = staged_scores(table, spec)
        if _staged(spec):
            scored.append((label or spec.label, spec, {}))
            continue
        if isinstance(spec, str) and (spec == "signals" or spec.startswith("signal:")):
            for auto, sc, info in signal_scores(table, spec):
                scored.append((label if label and spec != "signals" else auto, sc, info))
            continue
        if isinstance(spec, RowScores):
            label = label or spec.label
            scored.append((label, _check_scores(label, spec.scores, len(table)),
                           dict(spec.info)))
            continue
        auto_label, router = resolve_router(spec, table)
        label = label or auto_label
        sc = _check_scores(label, router.score(list(table.prompts)), len(table))
        scored.append((label, sc, {"random": spec == "random" and random_seeds > 1}))
    results, seen, rand = [], set(), None
    for label, sc, info in scored:
        base_label, i = label, 2
        while label in seen:
            label, i = f"{base_label}#{i}", i + 1
        seen.add(label)
        if _staged(sc):
            m, curve = _staged_metrics(sc, qw, qs, n_points, shares, scale)
            if n_boot:
                m["ci"] = bootstrap_intervals(sc, qw, qs, n_points, shares, n_boot, seed,
                                              scale=scale)
                for k in ("auroc", "aurc", "naudc"):   # score-based: none without a score
                    m["ci"].pop(k, None)
            results.append(RouterResult(label, sc, curve, m))
            continue
        curve = sweep(sc, qw, qs, n_points)
        m = curve_metrics(curve, q_weak, q_strong, shares)
        m["uncertainty"] = uncertainty_metrics(sc, qw)
        m["risk"] = risk_metrics(sc, qw, qs, curve, scale)
        m["risk"]["p_edge_correct"] = calibration_metrics(sc, qw, scale, seed)
        m["risk"]["risk_coverage"] = risk_coverage_points(sc, qw, scale)
        if info.pop("random", False):
            rand = _random_over_seeds(table, n_points, shares, random_seeds)
            m["over_seeds"] = rand
            for k in ("apgr", "auc", "cpt20", "cpt50", "cpt80"):
                m[k] = rand[k]["mean"]
            m["risk"]["aurc"], m["risk"]["naudc"] = rand["aurc"]["mean"], rand["naudc"]["mean"]
            m["risk"]["iso_quality"]["calls_saved"] = rand["calls_saved"]["mean"]
        elif n_boot:
            m["ci"] = bootstrap_intervals(sc, qw, qs, n_points, shares, n_boot, seed,
                                          scale=scale)
        if info and "baseline" in info:
            m["baseline"] = info
        elif info:
            m["signal"] = info
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
    return Report(table, tuple(results), q_weak, q_strong, comparisons, quality_ci)


def mean_intervals(columns, n_boot: int = 1000, seed: int = 0, level: float = 0.95
                   ) -> List[List[float]]:
    """Percentile bootstrap interval of each column's mean (a model's accuracy or pass@1),
    the same row resamples for every column."""
    lo_q, hi_q = _percentiles(n_boot, level)
    cols = np.stack([np.asarray(c, np.float64) for c in columns])
    rng = np.random.default_rng(seed)
    means = np.stack([cols[:, rng.integers(0, cols.shape[1], cols.shape[1])].mean(1)
                      for _ in range(n_boot)])
    return [[float(x) for x in np.percentile(means[:, j], [lo_q, hi_q])]
            for j in range(len(cols))]


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
