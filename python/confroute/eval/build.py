"""Outcome tables built live: models run over a benchmark's items through the decision path
(:mod:`confroute.eval.live`), each graded answer checkpointed before the next starts, so a
killed run resumes where it stopped. The table type is :mod:`confroute.eval.table`.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Dict, Optional, Tuple

import numpy as np

from confroute.eval.table import OutcomeTable
from confroute.runtime import checkpoint as ckpt


# ------------------------------------------------------------------------------- live builder
#
# The checkpoint (confroute.runtime.checkpoint) is a JSONL file: a header line (what is being built,
# so a resumed run cannot silently mix settings) and then one line per (question, model)
# answer, flushed and fsynced before the next answer starts. A killed run loses at most the
# answer in flight; a torn last line (killed mid-write) is cut off on resume and redone.

_HEADER_KIND = "confroute-outcomes-v1"


@dataclass(frozen=True)
class LiveRecord:
    """One graded answer. ``answer`` is a list for a multi-turn item; ``quality`` is None when
    the grade could not be had (a judge output without a rating). ``signals``: the model's
    confidence signals on the prompt (the edge's); ``extra``: what else was seen (the letter
    distribution, the sampled answers); ``seconds``: wall time of the prompt's work."""

    id: str
    model: str
    answer: object
    extracted: Optional[str]
    quality: Optional[float]
    usage: Dict[str, int] = field(default_factory=dict)
    signals: Dict[str, float] = field(default_factory=dict)
    extra: Dict[str, object] = field(default_factory=dict)
    seconds: float = 0.0


RECORDED = "recorded"  # a models[] value: the quality comes from the item's recorded outcomes


def read_checkpoint(path: str, header: dict) -> Dict[Tuple[str, str], LiveRecord]:
    """The records of an outcome checkpoint by (id, model); ``header``: the settings it must
    have been made with (none: any outcome checkpoint)."""
    done: Dict[Tuple[str, str], LiveRecord] = {}
    try:
        lines = ckpt.load(path, {"kind": _HEADER_KIND, **header},
                          what="confroute outcome checkpoint")
    except ValueError as e:
        old = _with_old_names(header)
        if old is None:
            raise
        try:  # a checkpoint written before the scorer's cosine was named `similarity`
            lines = ckpt.load(path, {"kind": _HEADER_KIND, **old},
                              what="confroute outcome checkpoint")
        except ValueError:
            raise e from None
    for lineno, line in lines:
        try:
            o = json.loads(line)
            q = o["quality"]
            rec = LiveRecord(str(o["id"]), str(o["model"]), o["answer"], o.get("extracted"),
                             None if q is None else float(q), dict(o.get("usage") or {}),
                             {k: (float("nan") if v is None else float(v))
                              for k, v in (o.get("signals") or {}).items()},
                             dict(o.get("extra") or {}), float(o.get("seconds") or 0.0))
        except (json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError):
            raise ValueError(f"{path}: line {lineno}: not a valid outcome record") from None
        done[(rec.id, rec.model)] = rec
    return done


def _with_old_names(header: dict) -> Optional[dict]:
    """``header`` as older checkpoints wrote it: the live settings' ``similarity`` (the cosine
    that joins meanings) was ``threshold``. None when the header has no such setting."""
    live = header.get("live")
    if not isinstance(live, dict) or "similarity" not in live:
        return None
    return {**header, "live": {("threshold" if k == "similarity" else k): v
                               for k, v in live.items()}}


class _FunctionBenchmark:
    """The older call shape: a ``grade(answer, reference)`` function and a prompt prefix."""

    options = ""
    sample_tokens = None

    def __init__(self, grade, prefix: str, max_tokens: int, name: str):
        self._grade, self.prefix, self.max_tokens, self.name = grade, prefix, max_tokens, name

    def prompt(self, item):
        from confroute.eval.benchmarks import Prompt

        return Prompt(({"role": "user", "content": self.prefix + item.prompt},))

    def grade(self, answer, item):
        return self._grade(answer, item.reference)

    def has_answer_key(self):
        return False

    def settings(self):
        return {}


def build_outcomes(items, models, grade=None, checkpoint=None, *, weak: str, strong: str,
                   name: str = "live", prompt_prefix: str = "", max_tokens: int = 256,
                   temperature: float = 0.0, grader: str = "", regrade: bool = False,
                   progress: bool = True, benchmark=None, settings=None,
                   signals_from: Optional[str] = None, runner=None) -> OutcomeTable:
    """Runs every live model over every item and grades the answers, resuming from
    ``checkpoint``.

    ``items``: objects with ``id``, ``prompt``, ``reference``, ``group`` and optionally
    ``turns`` and ``recorded`` (see :class:`confroute.eval.items.Item`); ``models``: name ->
    backend (see :func:`ask` and :func:`confroute.eval.live.answer_item`), or
    :data:`RECORDED` to take that model's quality from ``item.recorded`` (no model runs).
    ``benchmark`` (:class:`confroute.eval.benchmarks.Benchmark`) says how to prompt and grade;
    without one, ``grade(answer, reference) -> (quality or None, extracted or None)`` and
    ``prompt_prefix`` do. ``settings`` (:class:`confroute.eval.live.LiveSettings`): answer
    length, temperature, edge samples and seed (default: ``max_tokens``, ``temperature``, no
    samples). ``signals_from`` names the model whose confidence signals become the table's
    ``signal:<name>`` columns (the edge).

    A multi-turn item asks each turn with the model's own earlier answers in the
    conversation. Items whose grade is None for any model (e.g. the judge gave no rating) are
    left out of the table with a warning; their records stay in the checkpoint. Greedy
    answers (temperature 0) and per-item sample seeds make a resumed run give the same table
    as an uninterrupted one. ``grader`` names the grading (e.g. the judge model) in the
    checkpoint header, so a resumed run cannot switch judges midway. ``regrade=True`` grades
    the stored answers again (after a grader fix: no model is asked) and rewrites the
    checkpoint in one atomic step. ``runner(todo)``, given the (item, model name) pairs not
    yet in the checkpoint, returns their records in that order, computed elsewhere
    (``confroute eval build --ray``); by default they are computed here with
    :func:`live_record`.
    """
    from confroute.eval.live import LiveSettings, check_policies

    items = list(items)
    names, recorded, live = _check_inputs(items, checkpoint, models, weak, strong,
                                          signals_from)
    if benchmark is None:
        if grade is None:
            raise ValueError("give a benchmark or a grade function")
        benchmark = _FunctionBenchmark(grade, prompt_prefix, max_tokens, name)
    if settings is None:
        settings = LiveSettings(max_tokens=max_tokens, temperature=temperature, samples=0)
    if signals_from is not None and settings.samples and settings.policies:
        check_policies(models[signals_from], settings)   # what the edge cannot serve
    checkpoint = os.fspath(checkpoint)
    header = _checkpoint_header(name, models, names, recorded, live, prompt_prefix, grader,
                                benchmark, settings, signals_from)
    done = read_checkpoint(checkpoint, header)
    if regrade and done:
        _regrade(done, items, benchmark, checkpoint, header)
    todo = [(it, m) for it in items for m in live if (it.id, m) not in done]
    records = _records(todo, runner, benchmark, models, settings, signals_from)
    _append_records(records, done, checkpoint, header, f"{name} outcomes",
                    len(items) * len(live), len(todo), progress)
    return _table(items, names, recorded, done, weak, strong, name, benchmark, settings,
                  signals_from, checkpoint, header)


def _check_inputs(items, checkpoint, models, weak: str, strong: str,
                  signals_from: Optional[str]):
    """(every model name, the recorded ones, the live ones), after checking the items and
    their ids, the checkpoint, the weak/strong names, ``signals_from`` and that every item
    has each recorded model's outcome (before any work)."""
    if not items:
        raise ValueError("no items to run")
    if checkpoint is None:
        raise ValueError("a checkpoint file is needed")
    ids = [it.id for it in items]
    if len(set(ids)) != len(ids):
        raise ValueError("item ids repeat")
    names = list(models)
    for role, m in (("weak", weak), ("strong", strong)):
        if m not in names:
            raise ValueError(f"unknown {role} model {m!r}; models: {', '.join(names)}")
    recorded = [m for m in names if isinstance(models[m], str) and models[m] == RECORDED]
    live = [m for m in names if m not in recorded]
    if signals_from is not None and signals_from not in live:
        raise ValueError(f"signals_from={signals_from!r} is not a live model "
                         f"({', '.join(live) or 'none'})")
    for m in recorded:
        for it in items:
            it.recorded_quality(m)  # every item must have it: fail before any work
    return names, recorded, live


def _checkpoint_header(name, models, names, recorded, live, prompt_prefix, grader,
                       benchmark, settings, signals_from) -> dict:
    """What the checkpoint is a build of, so a resumed run cannot mix settings."""
    from confroute.eval.live import http_edge

    header = {"kind": _HEADER_KIND, "benchmark": name, "models": names,
              "prompt_prefix": prompt_prefix, "max_tokens": settings.answer_tokens(benchmark),
              "temperature": float(settings.temperature),
              "grader": grader or getattr(benchmark, "grader", lambda: "")(),
              # a model served over HTTP: its endpoint (None, as in the checkpoints written
              # before, when every live model runs here), so a resume cannot switch edges
              "http_models": {m: models[m].settings() for m in live
                              if http_edge(models[m])} or None}
    if recorded or signals_from or settings.samples or benchmark.settings():
        header.update(recorded=recorded, signals_from=signals_from,
                      live=settings.header(benchmark), prompting=benchmark.settings())
    return header


def _regrade(done, items, benchmark, checkpoint: str, header: dict) -> None:
    """Grades the stored answers of ``items`` again and rewrites the checkpoint at once."""
    by_id = {it.id: it for it in items}
    for key, rec in list(done.items()):
        if rec.id in by_id:
            answer = rec.answer if isinstance(rec.answer, str) else tuple(rec.answer)
            q, extracted = benchmark.grade(answer, by_id[rec.id])
            done[key] = LiveRecord(rec.id, rec.model, rec.answer, extracted,
                                   None if q is None else float(q), rec.usage,
                                   rec.signals, rec.extra, rec.seconds)
    ckpt.rewrite(checkpoint, [rec.__dict__ for rec in done.values()], header)


def _records(todo, runner, benchmark, models, settings, signals_from):
    """The records of the (item, model name) pairs ``todo``: ``runner``'s, or computed here
    one by one; nothing runs before the first is asked for."""
    if runner is not None:
        yield from runner(todo)
        return
    for it, m in todo:
        yield live_record(benchmark, it, m, models[m], settings, signals=m == signals_from)


def _append_records(records, done, checkpoint: str, header: dict, desc: str, total: int,
                    todo: int, progress: bool) -> None:
    """Appends each record to the checkpoint as it comes and to ``done``, with a progress
    bar over ``total`` answers of which ``todo`` are left."""
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=total, initial=total - todo, desc=desc, unit="answer")
    try:
        with ckpt.open_append(checkpoint, header) as f:
            for rec in records:
                ckpt.append(f, rec.__dict__)
                done[(rec.id, rec.model)] = rec
                if bar is not None:
                    bar.update(1)
    finally:
        if bar is not None:
            bar.close()


def live_record(benchmark, item, name: str, model, settings, signals: bool = False
                ) -> LiveRecord:
    """Model ``name``'s graded answer to one item: the unit of work of the builder, here and
    in each replica of ``confroute eval build --ray``."""
    from confroute.eval.live import answer_item

    try:
        a = answer_item(benchmark, model, item, settings, signals=signals)
        answer = a.answer if isinstance(a.answer, str) else tuple(a.answer)
        quality, extracted = benchmark.grade(answer, item)
    except Exception as e:  # noqa: BLE001 - one prompt that fails is recorded with its reason
        # (left out of the table, named in a warning) and the build goes on
        return LiveRecord(item.id, name, "", None, None, extra={
            "error": f"{type(e).__name__}: {e}"[:2000]})
    return LiveRecord(item.id, name, a.answer, extracted,
                      None if quality is None else float(quality), a.usage, a.signals,
                      a.extra, round(a.seconds, 4))


def _table(items, names, recorded, done, weak, strong, name, benchmark, settings,
           signals_from, checkpoint, header) -> OutcomeTable:
    def quality(it, m):
        return it.recorded_quality(m) if m in recorded else done[(it.id, m)].quality

    keep = [it for it in items if all(quality(it, m) is not None for m in names)]
    if len(keep) < len(items):
        import warnings

        kept = {it.id for it in keep}
        lost = [it.id for it in items if it.id not in kept]
        why = [f"{i} ({done[(i, m)].extra['error']})" for i in lost for m in names
               if (i, m) in done and done[(i, m)].extra.get("error")]
        warnings.warn(f"{name}: {len(lost)} item(s) without a grade for every model are left "
                      f"out of the table: {', '.join(lost[:10])}"
                      + (f"; failed: {'; '.join(why[:5])}" if why else ""))
    if not keep:
        raise ValueError(f"{name}: no item was graded for every model (see {checkpoint})")
    q = np.array([[quality(it, m) for m in names] for it in keep])
    signals = {}
    if signals_from is not None:
        recs = [done[(it.id, signals_from)] for it in keep]
        for k in sorted({k for r in recs for k in r.signals}):
            signals[k] = np.array([r.signals.get(k, float("nan")) for r in recs], np.float64)
    higher = {k: "cloud" for k in signals}   # every policy's score: higher = less sure
    secs = {m: float(np.mean([done[(it.id, m)].seconds for it in keep]))
            for m in names if m not in recorded}
    tokens = {m: {k: float(np.mean([done[(it.id, m)].usage.get(k, 0) for it in keep]))
                  for k in ("prompt_tokens", "completion_tokens", "sample_tokens")}
              for m in names if m not in recorded}
    meta = {"benchmark": name, "models": {m: ("recorded" if m in recorded else "live")
                                          for m in names},
            "edge": weak, "cloud": strong, "signals_from": signals_from,
            "signal_higher": higher, "seconds_per_prompt": secs, "mean_tokens": tokens,
            "n_items": len(items), "n_kept": len(keep), "checkpoint": checkpoint,
            "sampling": _sampling_meta(benchmark, settings),
            "settings": {k: v for k, v in header.items() if k != "kind"}}
    return OutcomeTable([it.prompt for it in keep], names, q, weak, strong, name=name,
                        ids=[it.id for it in keep],
                        groups=[getattr(it, "group", "") for it in keep], signals=signals,
                        meta=meta)


def _sampling_meta(benchmark, settings) -> dict:
    """The sampling every row was drawn with (a row's seed: its record's ``extra.seed``), and
    how meaning was judged: what a server must be configured with to serve the table's
    columns as measured."""
    s = {"n": int(settings.samples), "max_tokens": settings.answer_tokens(benchmark),
         "temperature": float(settings.sample_temperature),
         "answer_temperature": float(settings.temperature)}
    return {**s, "meaning": getattr(settings, "meaning", "auto"),
            "seed": f"item_seed({settings.seed}, item id)"}
