"""Router specs into scores: a Router, a saved-router folder or a registered name
(:func:`resolve_router`), the table's own signal columns (:func:`signal_scores`), scores
computed elsewhere (:class:`RowScores`, e.g. :func:`answer_length_scores`) and two-stage
policies (:func:`staged_scores`). Every score is one per table row, in [0, 1], higher =
send to the strong / cloud model.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Dict, List, Mapping, Optional, Tuple, Union

import numpy as np

from confroute.eval import baselines  # noqa: F401  (registers oracle, scores and se)
from confroute.eval import metrics as M
from confroute.eval.ladder import StagedScores, parse_spec
from confroute.eval.table import OutcomeTable
from confroute.routers.base import Router, get_router


RouterSpec = Union[str, Router]


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


def check_scores(label: str, scores, n: int) -> np.ndarray:
    s = np.asarray(scores, dtype=np.float64)
    if s.shape != (n,):
        raise ValueError(f"router {label!r} returned shape {s.shape} for {n} prompts")
    if not np.all(np.isfinite(s)):
        raise ValueError(f"router {label!r} returned NaN or infinite scores")
    if s.min() < -1e-9 or s.max() > 1 + 1e-9:
        raise ValueError(f"router {label!r} returned scores outside [0, 1] "
                         f"({s.min():g} .. {s.max():g})")
    return s


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
    (higher = cloud): a router spec for :func:`confroute.eval.replay.replay`. ``info`` goes
    into the metrics."""

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
        f, source = check_scores(label, router.score(list(table.prompts)), len(table)), \
            "router"
    info = {"kind": kind, "first": first, "first_from": source, "second": second,
            ("budget" if kind == "ladder" else "skip"): value}
    n = (table.meta.get("sampling") or {}).get("n")
    if isinstance(n, int):
        info["samples_per_prompt_sampled"] = n   # the table's draw, for samples per query
    return StagedScores(kind, f, signal(second), value, spec, info)
