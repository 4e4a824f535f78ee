"""Outcome tables: prompt x model -> quality, and the weak/strong pair that routing chooses from.

A table comes from recorded outcomes (:mod:`confroute.eval.data`) or is built live by running
models over a benchmark (:func:`build_outcomes`, checkpointed after every answer).
"""
from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass, field
from typing import Dict, Optional, Tuple

import numpy as np


@dataclass(frozen=True)
class OutcomeTable:
    """``quality[i, j]`` is model ``models[j]``'s quality on ``prompts[i]`` (0/1 correctness or a
    judge score). ``weak`` and ``strong`` name the pair routing picks from (edge, cloud).
    ``ids`` identify rows (question ids, file:row); ``groups`` hold a subject or category."""

    prompts: Tuple[str, ...]
    models: Tuple[str, ...]
    quality: np.ndarray
    weak: str
    strong: str
    name: str = "table"
    ids: Tuple[str, ...] = ()
    groups: Tuple[str, ...] = ()
    scale: Tuple[float, float] = (0.0, 1.0)  # the quality range, for plots

    def __post_init__(self):
        q = np.array(self.quality, dtype=np.float64)  # own copy, then read-only
        object.__setattr__(self, "prompts", tuple(self.prompts))
        object.__setattr__(self, "models", tuple(self.models))
        n, m = len(self.prompts), len(self.models)
        if n == 0:
            raise ValueError(f"{self.name}: the outcome table has no prompts")
        if q.shape != (n, m):
            raise ValueError(f"{self.name}: quality has shape {q.shape}, expected ({n}, {m})")
        if not np.all(np.isfinite(q)):
            raise ValueError(f"{self.name}: quality holds NaN or infinite values")
        if len(set(self.models)) != m:
            raise ValueError(f"{self.name}: model names repeat: {self.models}")
        for role, model in (("weak", self.weak), ("strong", self.strong)):
            if model not in self.models:
                raise ValueError(f"{self.name}: unknown {role} model {model!r}; "
                                 f"the table has {', '.join(self.models)}")
        if self.weak == self.strong:
            raise ValueError(f"{self.name}: weak and strong are the same model {self.weak!r}")
        ids = tuple(self.ids) if self.ids else tuple(str(i) for i in range(n))
        groups = tuple(self.groups) if self.groups else ("",) * n
        if len(ids) != n or len(groups) != n:
            raise ValueError(f"{self.name}: ids/groups must have one entry per prompt")
        object.__setattr__(self, "ids", ids)
        object.__setattr__(self, "groups", groups)
        q.setflags(write=False)
        object.__setattr__(self, "quality", q)

    def __len__(self) -> int:
        return len(self.prompts)

    def column(self, model: str) -> np.ndarray:
        if model not in self.models:
            raise ValueError(f"{self.name}: unknown model {model!r}; the table has "
                             f"{', '.join(self.models)}")
        return self.quality[:, self.models.index(model)]

    @property
    def q_weak(self) -> np.ndarray:
        return self.column(self.weak)

    @property
    def q_strong(self) -> np.ndarray:
        return self.column(self.strong)

    @property
    def is_binary(self) -> bool:
        q = self.quality[:, [self.models.index(self.weak), self.models.index(self.strong)]]
        return bool(np.all((q == 0) | (q == 1)))

    def with_pair(self, weak: str, strong: str) -> "OutcomeTable":
        return _replace(self, weak=weak, strong=strong)

    def subset(self, rows) -> "OutcomeTable":
        """The rows given by a boolean mask or index array, in that order."""
        idx = np.arange(len(self))[np.asarray(rows)]
        return _replace(
            self,
            prompts=[self.prompts[i] for i in idx],
            quality=self.quality[idx],
            ids=[self.ids[i] for i in idx],
            groups=[self.groups[i] for i in idx],
        )

    def save(self, path) -> None:
        """Writes the plain user format (prompt, id, group, one column per model) as CSV or
        JSONL by extension; :func:`confroute.eval.data.load_table` reads it back."""
        path = os.fspath(path)
        rows = []
        for i, p in enumerate(self.prompts):
            row = {"prompt": p, "id": self.ids[i], "group": self.groups[i]}
            row.update({m: float(self.quality[i, j]) for j, m in enumerate(self.models)})
            rows.append(row)
        tmp = path + ".tmp"
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            if path.endswith(".jsonl"):
                for row in rows:
                    f.write(json.dumps(row, ensure_ascii=False) + "\n")
            else:
                w = csv.DictWriter(f, fieldnames=list(rows[0]))
                w.writeheader()
                w.writerows(rows)
        os.replace(tmp, path)  # never leave a half-written table behind


def _replace(t: OutcomeTable, **kw) -> OutcomeTable:
    base = dict(prompts=t.prompts, models=t.models, quality=t.quality, weak=t.weak,
                strong=t.strong, name=t.name, ids=t.ids, groups=t.groups, scale=t.scale)
    base.update(kw)
    return OutcomeTable(**base)


# ------------------------------------------------------------------------------- live builder
#
# The checkpoint is a JSONL file: a header line (what is being built, so a resumed run cannot
# silently mix settings) and then one line per (question, model) answer, flushed and fsynced
# before the next answer starts. A killed run loses at most the answer in flight; a torn last
# line (killed mid-write) is cut off on resume and that answer is redone.

_HEADER_KIND = "confroute-outcomes-v1"


@dataclass(frozen=True)
class LiveRecord:
    """One graded answer. ``answer`` is a list for a multi-turn item; ``quality`` is None when
    the grade could not be had (a judge output without a rating)."""

    id: str
    model: str
    answer: object
    extracted: Optional[str]
    quality: Optional[float]
    usage: Dict[str, int] = field(default_factory=dict)


def _ask(model, messages, max_tokens: int, temperature: float):
    """Any backend with ``chat(messages, n, max_tokens, temperature)`` (EdgeModel, CloudModel)
    or ``generate(messages, max_tokens, temperature)``; returns (text, usage)."""
    if hasattr(model, "chat"):
        r = model.chat(messages, n=1, max_tokens=max_tokens, temperature=temperature)
    elif hasattr(model, "generate"):
        r = model.generate(messages, max_tokens=max_tokens, temperature=temperature)
    elif callable(model):
        r = model(messages)
    else:
        raise ValueError(f"{model!r} has neither chat() nor generate()")
    if isinstance(r, str):
        return r, {}
    return r.text, dict(getattr(r, "usage", None) or {})


def _read_checkpoint(path: str, header: dict) -> Dict[Tuple[str, str], LiveRecord]:
    done: Dict[Tuple[str, str], LiveRecord] = {}
    if not os.path.exists(path) or os.path.getsize(path) == 0:
        return done
    with open(path, "rb") as f:
        data = f.read()
    good_end = data.rfind(b"\n") + 1  # everything after the last newline is a torn write
    if good_end < len(data):
        with open(path, "r+b") as f:
            f.truncate(good_end)
    lines = data[:good_end].decode("utf-8").splitlines()
    if not lines:
        return done
    try:
        first = json.loads(lines[0])
    except json.JSONDecodeError:
        raise ValueError(f"{path}: line 1: not a confroute outcome checkpoint") from None
    if first.get("kind") != _HEADER_KIND:
        raise ValueError(f"{path}: line 1: not a confroute outcome checkpoint")
    diff = {k: (first.get(k), v) for k, v in header.items() if first.get(k) != v}
    if diff:
        what = "; ".join(f"{k}: checkpoint {a!r}, now {b!r}" for k, (a, b) in diff.items())
        raise ValueError(f"{path}: the checkpoint was made with other settings ({what}); "
                         f"use another checkpoint file or the same settings")
    for lineno, line in enumerate(lines[1:], 2):
        try:
            o = json.loads(line)
            q = o["quality"]
            rec = LiveRecord(str(o["id"]), str(o["model"]), o["answer"], o.get("extracted"),
                             None if q is None else float(q), dict(o.get("usage") or {}))
        except (json.JSONDecodeError, KeyError, TypeError, ValueError):
            raise ValueError(f"{path}: line {lineno}: not a valid outcome record") from None
        done[(rec.id, rec.model)] = rec
    return done


def build_outcomes(items, models, grade, checkpoint, *, weak: str, strong: str,
                   name: str = "live", prompt_prefix: str = "", max_tokens: int = 256,
                   temperature: float = 0.0, grader: str = "", regrade: bool = False,
                   progress: bool = True, runner=None) -> OutcomeTable:
    """Runs every model over every item and grades the answers, resuming from ``checkpoint``.

    ``items``: objects with ``id``, ``prompt``, ``reference``, ``group`` and optionally
    ``turns`` (see :class:`confroute.eval.data.Item`); ``models``: name -> backend (see
    :func:`_ask`); ``grade(answer, reference) -> (quality or None, extracted or None)``, where
    ``answer`` is a string, or the tuple of answers for a multi-turn item (each turn is asked
    with the model's own earlier answers in the conversation). Items whose grade is None for
    any model (e.g. the judge gave no rating) are left out of the table with a warning; their
    records stay in the checkpoint. Greedy decoding (temperature 0) by default, so a resumed
    run gives the same table as an uninterrupted one. ``grader`` names the grading (e.g. the
    judge model) in the checkpoint header, so a resumed run cannot switch judges midway.
    ``regrade=True`` grades the stored answers again (after a grader fix: no model is asked)
    and rewrites the checkpoint in one atomic step. ``runner(todo)``, given the (item, model
    name) pairs not yet in the checkpoint, returns their records in that order, computed
    elsewhere (``confroute eval build --ray``); by default they are computed here with
    :func:`live_record`.
    """
    items = list(items)
    if not items:
        raise ValueError("no items to run")
    ids = [it.id for it in items]
    if len(set(ids)) != len(ids):
        raise ValueError("item ids repeat")
    names = list(models)
    for role, m in (("weak", weak), ("strong", strong)):
        if m not in names:
            raise ValueError(f"unknown {role} model {m!r}; models: {', '.join(names)}")
    checkpoint = os.fspath(checkpoint)
    header = {"kind": _HEADER_KIND, "benchmark": name, "models": names,
              "prompt_prefix": prompt_prefix, "max_tokens": int(max_tokens),
              "temperature": float(temperature), "grader": grader}
    done = _read_checkpoint(checkpoint, header)
    if regrade and done:
        refs = {it.id: it.reference for it in items}
        for key, rec in list(done.items()):
            if rec.id in refs:
                answer = rec.answer if isinstance(rec.answer, str) else tuple(rec.answer)
                q, extracted = grade(answer, refs[rec.id])
                done[key] = LiveRecord(rec.id, rec.model, rec.answer, extracted,
                                       None if q is None else float(q), rec.usage)
        tmp = checkpoint + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            _append(f, header)
            for rec in done.values():
                _append(f, rec.__dict__)
        os.replace(tmp, checkpoint)
    todo = [(it, m) for it in items for m in names if (it.id, m) not in done]
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(items) * len(names), initial=len(items) * len(names) - len(todo),
                   desc=f"{name} outcomes", unit="answer")
    new_file = not os.path.exists(checkpoint) or os.path.getsize(checkpoint) == 0
    try:
        with open(checkpoint, "a", encoding="utf-8") as f:
            if new_file:
                _append(f, header)
            records = runner(todo) if runner is not None else (
                live_record(it, m, models[m], grade, prompt_prefix, max_tokens, temperature)
                for it, m in todo)
            for rec in records:
                _append(f, rec.__dict__)
                done[(rec.id, rec.model)] = rec
                if bar is not None:
                    bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    keep = [it for it in items if all(done[(it.id, m)].quality is not None for m in names)]
    if len(keep) < len(items):
        import warnings

        kept = {it.id for it in keep}
        lost = [it.id for it in items if it.id not in kept]
        warnings.warn(f"{name}: {len(lost)} item(s) without a grade for every model are left "
                      f"out of the table: {', '.join(lost[:10])}")
    if not keep:
        raise ValueError(f"{name}: no item was graded for every model (see {checkpoint})")
    q = np.array([[done[(it.id, m)].quality for m in names] for it in keep])
    return OutcomeTable([it.prompt for it in keep], names, q, weak, strong, name=name,
                        ids=[it.id for it in keep],
                        groups=[getattr(it, "group", "") for it in keep])


def live_record(item, name: str, model, grade, prompt_prefix: str, max_tokens: int,
                temperature: float) -> LiveRecord:
    """Model ``name``'s graded answer to one item: the unit of work of the builder, here and
    in each replica of ``confroute eval build --ray``."""
    turns = tuple(getattr(item, "turns", ()) or ()) or (item.prompt,)
    messages, answers, usage = [], [], {}
    for i, turn in enumerate(turns):
        messages.append({"role": "user", "content": (prompt_prefix if i == 0 else "") + turn})
        text, u = _ask(model, messages, max_tokens, temperature)
        messages.append({"role": "assistant", "content": text})
        answers.append(text)
        for k, v in u.items():
            usage[k] = usage.get(k, 0) + v
    answer = answers[0] if len(turns) == 1 else tuple(answers)
    quality, extracted = grade(answer, item.reference)
    return LiveRecord(item.id, name, answer if len(turns) == 1 else list(answers), extracted,
                      None if quality is None else float(quality), usage)


def _append(f, obj: dict) -> None:
    f.write(json.dumps(obj, ensure_ascii=False) + "\n")
    f.flush()
    os.fsync(f.fileno())
