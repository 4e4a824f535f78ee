"""Loaders: benchmark files laid out like ``shared/data`` and plain user tables -> OutcomeTable.

Layout read by :func:`load_benchmark` (``split`` defaults to ``dev``)::

    <dir>/gsm8k/routellm_responses_<split>.csv        prompt, one True/False column per model
    <dir>/gsm8k/routellm_contaminated_prompts.jsonl   {"eval_prompt": ...} rows to exclude
    <dir>/mmlu/routellm_responses_<split>/*.csv       as GSM8K, one file per subject
    <dir>/mt_bench/question_<split>.jsonl             question_id, category, turns
    <dir>/mt_bench/routellm_judgements_<split>.jsonl  question_id, model, turn, score (1-10)

Nothing is downloaded. Bad input raises ValueError naming the file and row.
"""
from __future__ import annotations

import csv
import glob
import json
import math
import os
from dataclasses import dataclass
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from confroute.eval.table import META_SUFFIX, SIGNAL_PREFIX, OutcomeTable
from confroute.runtime.checkpoint import read_jsonl

# RouteLLM's recorded pair: the strong and the weak model of its outcome files.
ROUTELLM_STRONG = "gpt-4-1106-preview"
ROUTELLM_WEAK = "mistralai/Mixtral-8x7B-Instruct-v0.1"
BENCHMARKS = ("gsm8k", "mmlu", "mt-bench")
_NOT_MODELS = {"prompt", "id", "group", "question_id", "subject", "category"}


# ------------------------------------------------------------------------------- file reading


def read_csv(path) -> Tuple[List[str], Iterator[Tuple[str, dict]]]:
    """The header and an iterator of (row label, row dict) for a CSV file."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise ValueError(f"{path}: no such file")
    csv.field_size_limit(1 << 30)  # recorded responses can be long
    f = open(path, newline="", encoding="utf-8")
    reader = csv.DictReader(f)
    header = list(reader.fieldnames or [])
    if not header:
        f.close()
        raise ValueError(f"{path}: the file is empty (no header row)")

    def rows():
        with f:
            for i, row in enumerate(reader, 1):
                if None in row:
                    raise ValueError(f"{path}: row {i} (line {reader.line_num}): more fields "
                                     f"than the header has")
                yield f"row {i} (line {reader.line_num})", row

    return header, rows()


def parse_quality(value, where: str, column: str) -> float:
    """A quality cell: a number, or True/False (1/0). Anything else is an error naming it."""
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)):
        v = float(value)
    else:
        s = "" if value is None else str(value).strip()
        if s.lower() in ("true", "false"):
            return float(s.lower() == "true")
        try:
            v = float(s)
        except ValueError:
            raise ValueError(f"{where}: column {column!r}: quality {s!r} is not a number "
                             f"or True/False") from None
    if not math.isfinite(v):
        raise ValueError(f"{where}: column {column!r}: quality {value!r} is not finite")
    return v


def load_contaminated(path) -> set:
    """The ``eval_prompt`` strings of a RouteLLM contamination list (empty if no file)."""
    if not os.path.exists(path):
        return set()
    out = set()
    for lineno, obj in read_jsonl(path):
        if "eval_prompt" not in obj:
            raise ValueError(f"{path}: line {lineno}: no 'eval_prompt' field")
        out.add(obj["eval_prompt"])
    return out


# ------------------------------------------------------------------------------- user tables


def pick_pair(name, models, means, weak, strong) -> Tuple[str, str]:
    for role, m in (("weak", weak), ("strong", strong)):
        if m is not None and m not in models:
            raise ValueError(f"{name}: unknown {role} model {m!r}; the file has "
                             f"{', '.join(models)}")
    if weak is not None and strong is not None:
        return weak, strong
    if ROUTELLM_WEAK in models and ROUTELLM_STRONG in models and weak is None and strong is None:
        return ROUTELLM_WEAK, ROUTELLM_STRONG
    if len(models) == 2:
        a, b = models
        if weak is not None or strong is not None:
            given = weak if weak is not None else strong
            other = b if given == a else a
            return (given, other) if weak is not None else (other, given)
        if means[a] == means[b]:
            raise ValueError(f"{name}: both models have mean quality {means[a]:g}; name the "
                             f"weak and the strong one")
        return (a, b) if means[a] < means[b] else (b, a)
    raise ValueError(f"{name}: {len(models)} model columns ({', '.join(models)}); name the "
                     f"weak and the strong one")


def load_table(path, models: Optional[Sequence[str]] = None, weak: Optional[str] = None,
               strong: Optional[str] = None, prompt_column: str = "prompt",
               exclude_prompts=()) -> OutcomeTable:
    """A user table (CSV or JSONL): a prompt column and one quality column per model
    (numbers or True/False). ``models`` picks the columns (default: every column except
    prompt/id/group and ``*_response`` text); ``weak``/``strong`` pick the routed pair
    (default: the pair named in ``<path>.meta.json`` when a live build wrote one, else
    RouteLLM's pair if present, else the lower-scoring of two models is weak).
    ``signal:<name>`` columns become the table's signals (an empty cell or null = NaN)."""
    path = os.fspath(path)
    meta = _read_meta(path)
    if weak is None and strong is None and meta.get("weak") and meta.get("strong"):
        weak, strong = str(meta["weak"]), str(meta["strong"])
    if path.endswith(".jsonl") or path.endswith(".json"):
        header, rows = None, ((f"line {n}", o) for n, o in read_jsonl(path))
    else:
        header, rows = read_csv(path)
    prompts, quality, ids, groups, cols, sig_cols, sig = [], [], [], [], None, [], []
    for n, (where, row) in enumerate(rows, 1):
        where = f"{path}: {where}"
        if cols is None:
            keys = header or list(row)
            if prompt_column not in keys:
                raise ValueError(f"{where}: no {prompt_column!r} column (columns: "
                                 f"{', '.join(keys)})")
            sig_cols = [k for k in keys if k.startswith(SIGNAL_PREFIX)]
            cols = list(models) if models else [
                k for k in keys if k not in _NOT_MODELS and k != prompt_column
                and not k.endswith("_response") and not k.startswith(SIGNAL_PREFIX)]
            if not cols:
                raise ValueError(f"{where}: no model quality columns")
        for c in [prompt_column] + cols:
            if c not in row:
                raise ValueError(f"{where}: missing column {c!r}")
        p = row[prompt_column]
        if not isinstance(p, str) or not p.strip():
            raise ValueError(f"{where}: empty or non-text prompt")
        if p in exclude_prompts:
            continue
        prompts.append(p)
        quality.append([parse_quality(row[c], where, c) for c in cols])
        sig.append([_parse_signal(row.get(c), where, c) for c in sig_cols])
        rid, group = row.get("id"), row.get("group")
        ids.append(f"{os.path.basename(path)}:{n}" if rid in (None, "") else str(rid))
        groups.append("" if group is None else str(group))
    if not prompts:
        raise ValueError(f"{path}: no rows")
    q = np.array(quality, dtype=np.float64)
    means = {c: float(q[:, j].mean()) for j, c in enumerate(cols)}
    w, s = pick_pair(path, cols, means, weak, strong)
    sv = np.array(sig, dtype=np.float64).reshape(len(prompts), len(sig_cols))
    signals = {c[len(SIGNAL_PREFIX):]: sv[:, j] for j, c in enumerate(sig_cols)}
    return OutcomeTable(prompts, cols, q, w, s, name=str(meta.get("name") or
                                                          os.path.basename(path)),
                        ids=ids, groups=groups, scale=_scale(q), signals=signals, meta=meta)


def _read_meta(path: str) -> dict:
    mp = path + META_SUFFIX
    if not os.path.exists(mp):
        return {}
    try:
        with open(mp, encoding="utf-8") as f:
            meta = json.load(f)
    except json.JSONDecodeError as e:
        raise ValueError(f"{mp}: not valid JSON ({e.msg})") from None
    if not isinstance(meta, dict):
        raise ValueError(f"{mp}: expected a JSON object")
    return meta


def _parse_signal(value, where: str, column: str) -> float:
    """A signal cell: a number; empty or null means the prompt has none (NaN)."""
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "nan")):
        return float("nan")
    if isinstance(value, bool):
        raise ValueError(f"{where}: column {column!r}: {value!r} is not a number")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: column {column!r}: {value!r} is not a number") from None


def _scale(q: np.ndarray) -> Tuple[float, float]:
    return (float(min(q.min(), 0.0)), float(max(q.max(), 1.0)))


# ------------------------------------------------------------------------------- benchmarks


def require_path(path: str) -> str:
    """``path``, which must exist (else a ValueError naming it)."""
    if not os.path.exists(path):
        raise ValueError(f"{path}: no such file or folder (is --data a folder laid out like "
                         f"shared/data?)")
    return path


def load_gsm8k(data_dir, split: str = "dev", weak=None, strong=None,
               include_contaminated: bool = False) -> OutcomeTable:
    """RouteLLM's recorded GSM8K outcomes, contaminated prompts removed."""
    d = os.path.join(os.fspath(data_dir), "gsm8k")
    path = require_path(os.path.join(d, f"routellm_responses_{split}.csv"))
    bad = set() if include_contaminated else load_contaminated(
        os.path.join(d, "routellm_contaminated_prompts.jsonl"))
    t = load_table(path, weak=weak, strong=strong, exclude_prompts=bad)
    return _rename(t, "gsm8k")


def load_mmlu(data_dir, split: str = "dev", weak=None, strong=None,
              include_contaminated: bool = False) -> OutcomeTable:
    """RouteLLM's recorded MMLU outcomes, all subject files, contaminated prompts removed.
    ``groups`` holds the subject."""
    d = os.path.join(os.fspath(data_dir), "mmlu")
    folder = require_path(os.path.join(d, f"routellm_responses_{split}"))
    files = sorted(glob.glob(os.path.join(folder, "*.csv")))
    if not files:
        raise ValueError(f"{folder}: no CSV files")
    bad = set() if include_contaminated else load_contaminated(
        os.path.join(d, "routellm_contaminated_prompts.jsonl"))
    parts = []
    for f in files:
        try:
            parts.append(load_table(f, weak=weak, strong=strong, exclude_prompts=bad))
        except ValueError as e:
            if str(e) == f"{f}: no rows":  # a subject whose rows were all excluded
                continue
            raise
    models = parts[0].models
    for f, t in zip(files, parts):
        if set(t.models) != set(models):
            raise ValueError(f"{f}: model columns {t.models} differ from {models}")
    subjects = []
    for f, t in zip(files, parts):
        s = os.path.basename(f)[:-4]
        subjects += [s[5:] if s.startswith("mmlu_") else s] * len(t)
    q = np.concatenate([np.stack([t.column(m) for m in models], 1) for t in parts])
    prompts = [p for t in parts for p in t.prompts]
    ids = [i for t in parts for i in t.ids]
    means = {m: float(q[:, j].mean()) for j, m in enumerate(models)}
    w, s = pick_pair(folder, list(models), means, weak, strong)
    return OutcomeTable(prompts, models, q, w, s, name="mmlu", ids=ids, groups=subjects)


@dataclass(frozen=True)
class MTBenchQuestion:
    question_id: int
    category: str
    turns: Tuple[str, ...]
    references: Tuple[str, ...] = ()  # reference answers per turn (math/reasoning/coding)


def load_mt_bench_questions(data_dir, split: str = "dev") -> List[MTBenchQuestion]:
    d = os.path.join(os.fspath(data_dir), "mt_bench")
    path = require_path(os.path.join(d, f"question_{split}.jsonl"))
    refs = {}
    ref_path = os.path.join(d, "reference_answer_gpt-4.jsonl")
    if os.path.exists(ref_path):
        for lineno, o in read_jsonl(ref_path):
            try:
                refs[int(o["question_id"])] = tuple(o["choices"][0]["turns"])
            except (KeyError, IndexError, TypeError, ValueError):
                raise ValueError(f"{ref_path}: line {lineno}: expected question_id and "
                                 f"choices[0].turns") from None
    out = []
    for lineno, o in read_jsonl(path):
        try:
            qid, turns = int(o["question_id"]), tuple(o["turns"])
        except (KeyError, TypeError, ValueError):
            raise ValueError(f"{path}: line {lineno}: expected question_id and turns") from None
        if not turns or not all(isinstance(t, str) for t in turns):
            raise ValueError(f"{path}: line {lineno}: turns must be a list of strings")
        out.append(MTBenchQuestion(qid, str(o.get("category", "")), turns, refs.get(qid, ())))
    if not out:
        raise ValueError(f"{path}: no rows")
    return out


def load_mt_bench(data_dir, split: str = "dev", weak=None, strong=None,
                  include_contaminated: bool = False,
                  judgements: Optional[str] = None) -> OutcomeTable:
    """MT-Bench replay as RouteLLM does it: the router sees the first turn; a model's quality
    on a question is the mean of its judge scores (1-10) over the turns judged."""
    d = os.path.join(os.fspath(data_dir), "mt_bench")
    questions = load_mt_bench_questions(data_dir, split)
    jpath = require_path(judgements or os.path.join(d, f"routellm_judgements_{split}.jsonl"))
    scores: Dict[Tuple[int, str], List[float]] = {}
    for lineno, o in read_jsonl(jpath):
        where = f"{jpath}: line {lineno}"
        for k in ("question_id", "model", "score"):
            if k not in o:
                raise ValueError(f"{where}: missing field {k!r}")
        s = parse_quality(o["score"], where, "score")
        if not 1 <= s <= 10:  # FastChat writes -1 for a judgement it could not parse
            raise ValueError(f"{where}: score {o['score']!r} is outside 1-10 (a failed "
                             f"judgement?)")
        scores.setdefault((int(o["question_id"]), str(o["model"])), []).append(s)
    if not scores:
        raise ValueError(f"{jpath}: no rows")
    models = sorted({m for _, m in scores})
    bad = set() if include_contaminated else load_contaminated(
        os.path.join(d, "routellm_contaminated_prompts.jsonl"))
    keep = [q for q in questions if not any(t in bad for t in q.turns)]
    q = np.empty((len(keep), len(models)))
    for i, qu in enumerate(keep):
        for j, m in enumerate(models):
            if (qu.question_id, m) not in scores:
                raise ValueError(f"{jpath}: no judgement of model {m!r} on question "
                                 f"{qu.question_id}")
            q[i, j] = np.mean(scores[(qu.question_id, m)])
    means = {m: float(q[:, j].mean()) for j, m in enumerate(models)}
    w, s = pick_pair(jpath, models, means, weak, strong)
    return OutcomeTable([qu.turns[0] for qu in keep], models, q, w, s, name="mt-bench",
                        ids=[str(qu.question_id) for qu in keep],
                        groups=[qu.category for qu in keep], scale=(1.0, 10.0))


def load_benchmark(name: str, data_dir, **kw) -> OutcomeTable:
    """``gsm8k``, ``mmlu`` or ``mt-bench`` from a folder laid out like ``shared/data``."""
    key = name.lower().replace("_", "-")
    loaders = {"gsm8k": load_gsm8k, "mmlu": load_mmlu, "mt-bench": load_mt_bench}
    if key not in loaders:
        raise ValueError(f"unknown benchmark {name!r}; known: {', '.join(BENCHMARKS)}")
    if not os.path.isdir(os.fspath(data_dir)):
        raise ValueError(f"{data_dir}: not a folder")
    return loaders[key](data_dir, **kw)


def _rename(t: OutcomeTable, name: str) -> OutcomeTable:
    return OutcomeTable(t.prompts, t.models, t.quality, t.weak, t.strong, name=name, ids=t.ids,
                        groups=t.groups, scale=t.scale)
