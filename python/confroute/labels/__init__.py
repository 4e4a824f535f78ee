"""Preference labels for training routers, in the Chatbot-Arena / RouteLLM pair schema.

One row per prompt: ``prompt``, ``model_a``, ``model_b``, ``response_a``, ``response_b`` and
exactly one of ``winner_model_a`` / ``winner_model_b`` / ``winner_tie`` set to 1. Our own rows
always put the weak (edge) model in ``a`` and the strong (cloud) model in ``b``, and add
``label_source`` ("se" or "accuracy") and, for SE labels, ``se_weak``, ``se_strong``, ``delta``.

SE labels (the paper's Eq. 3-4): delta(x) = |(SE_strong - SE_weak) / SE_strong|; when
delta > tau the model with the lower SE wins, otherwise it is a tie. SE_strong = 0 is defined
as the limit: if SE_weak = 0 as well, delta = 0 (a tie: both are certain); otherwise
delta = inf and the strong model wins (it is certain, the weak one is not).

Accuracy (outcome) labels: the model with the higher quality wins, equal quality is a tie; for
0/1 correctness the strong model wins exactly where only it is correct.

The labelling job (sampling both models, resumable) is :mod:`confroute.eval.label_job`.
"""
from __future__ import annotations

import csv
import os
import re
from typing import Iterable, List, Optional, Sequence, Tuple

import numpy as np

from confroute.runtime.checkpoint import read_jsonl

WINNER_KEYS = ("winner_model_a", "winner_model_b", "winner_tie")
REQUIRED_KEYS = ("prompt", "model_a", "model_b") + WINNER_KEYS


def _finite_nonneg(x, name: str) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64)
    if not np.isfinite(a).all():
        raise ValueError(f"{name} must be finite, got {a[~np.isfinite(a)][:3].tolist()}")
    if (a < 0).any():
        raise ValueError(f"{name} must be >= 0 (an entropy), got {a[a < 0][:3].tolist()}")
    return a


def se_delta(se_strong, se_weak) -> np.ndarray:
    """Eq. 3: |(SE_strong - SE_weak) / SE_strong|, elementwise; see the module doc for 0/0."""
    s = _finite_nonneg(se_strong, "se_strong")
    w = _finite_nonneg(se_weak, "se_weak")
    s, w = np.broadcast_arrays(s, w)
    with np.errstate(divide="ignore", invalid="ignore"):
        d = np.abs((s - w) / s)
    d = np.where(s > 0, d, np.where(w > 0, np.inf, 0.0))
    return d


def se_winner(se_strong, se_weak, tau: float = 0.1) -> np.ndarray:
    """Eq. 4: 'strong' / 'weak' (lower SE wins where delta > tau) or 'tie', elementwise."""
    if not (np.isfinite(tau) and tau >= 0):
        raise ValueError(f"tau must be a finite number >= 0, got {tau!r}")
    s = _finite_nonneg(se_strong, "se_strong")
    w = _finite_nonneg(se_weak, "se_weak")
    d = se_delta(s, w)
    out = np.where(s < w, "strong", "weak").astype(object)
    out[~(d > tau)] = "tie"
    return out


def make_row(prompt: str, weak: str, strong: str, winner: str, response_weak: str = "",
             response_strong: str = "", **extra) -> dict:
    """One row of the pair schema (a = weak, b = strong); ``winner`` is 'weak'/'strong'/'tie'."""
    if winner not in ("weak", "strong", "tie"):
        raise ValueError(f"winner must be 'weak', 'strong' or 'tie', got {winner!r}")
    if weak == strong:
        raise ValueError(f"the weak and the strong model have the same name {weak!r}")
    row = {
        "prompt": prompt,
        "model_a": weak,
        "model_b": strong,
        "response_a": response_weak,
        "response_b": response_strong,
        "winner_model_a": int(winner == "weak"),
        "winner_model_b": int(winner == "strong"),
        "winner_tie": int(winner == "tie"),
    }
    row.update(extra)
    return row


def se_row(prompt, weak, strong, se_weak, se_strong, tau=0.1, response_weak="",
           response_strong="", kind="kuhn", **extra) -> dict:
    """An SE-labelled row: winner by Eq. 3-4, both SE values and delta kept."""
    winner = str(se_winner(se_strong, se_weak, tau))
    delta = float(se_delta(se_strong, se_weak))
    return make_row(prompt, weak, strong, winner, response_weak, response_strong,
                    label_source="se", se_kind=kind, tau=float(tau), se_weak=float(se_weak),
                    se_strong=float(se_strong),
                    delta=delta if np.isfinite(delta) else "inf", **extra)


def outcome_rows(prompts: Sequence[str], quality_weak, quality_strong, weak: str,
                 strong: str) -> List[dict]:
    """Accuracy labels from an outcome table: per prompt, the model with the higher quality
    (0/1 correctness or a judge score) wins; equal quality is a tie."""
    qw = np.asarray(quality_weak, dtype=np.float64)
    qs = np.asarray(quality_strong, dtype=np.float64)
    if not (len(prompts) == qw.shape[0] == qs.shape[0]) or qw.ndim != 1 or qs.ndim != 1:
        raise ValueError(f"need one quality per prompt: {len(prompts)} prompts, "
                         f"{qw.shape} weak and {qs.shape} strong qualities")
    if not (np.isfinite(qw).all() and np.isfinite(qs).all()):
        raise ValueError("qualities must be finite numbers (a missing outcome is not a 0)")
    win = np.where(qs > qw, "strong", np.where(qw > qs, "weak", "tie"))
    return [make_row(p, weak, strong, w, label_source="accuracy", quality_weak=float(a),
                     quality_strong=float(b)) for p, w, a, b in zip(prompts, win, qw, qs)]


def check_row(row: dict, where: str) -> None:
    """ValueError naming ``where`` (file:line) unless ``row`` is a valid pair-schema row."""
    if not isinstance(row, dict):
        raise ValueError(f"{where}: a label row must be a JSON object")
    missing = [k for k in REQUIRED_KEYS if k not in row]
    if missing:
        raise ValueError(f"{where}: label row lacks {', '.join(missing)}")
    if not isinstance(row["prompt"], str) or not row["prompt"]:
        raise ValueError(f"{where}: 'prompt' must be a non-empty string")
    flags = []
    for k in WINNER_KEYS:
        v = row[k]
        if isinstance(v, bool) or v not in (0, 1):
            raise ValueError(f"{where}: {k} must be 0 or 1, got {v!r}")
        flags.append(int(v))
    if sum(flags) != 1:
        set_ = [k for k, f in zip(WINNER_KEYS, flags) if f]
        raise ValueError(f"{where}: exactly one of {', '.join(WINNER_KEYS)} must be 1, "
                         f"got {set_ or 'none'}")
    if row["model_a"] == row["model_b"]:
        raise ValueError(f"{where}: model_a and model_b are both {row['model_a']!r}")


def read_labels(path) -> List[dict]:
    """All rows of a JSONL label file, each checked; ValueError naming file and line."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise ValueError(f"no label file at {path}")
    rows = []
    for i, row in read_jsonl(path):
        check_row(row, f"{path}: line {i}")
        rows.append(row)
    if not rows:
        raise ValueError(f"{path} holds no label rows")
    return rows


def pair_targets(rows: Iterable[dict], strong: Optional[str] = None,
                 weak: Optional[str] = None) -> Tuple[List[str], np.ndarray, str, str]:
    """(prompts, y, strong, weak): y = P(strong wins) per row, 1 / 0 / 0.5 for a tie.

    Without names, the first row's model_b is the strong model and model_a the weak one (our
    rows' convention) and every row must compare those two. With names, rows of other pairs
    are dropped; ValueError if none is left."""
    rows = list(rows)
    if not rows:
        raise ValueError("no label rows")
    if (strong is None) != (weak is None):
        raise ValueError("give both the strong and the weak model's name, or neither")
    if strong is None:
        weak, strong = rows[0]["model_a"], rows[0]["model_b"]
        others = {(r["model_a"], r["model_b"]) for r in rows} - {(weak, strong), (strong, weak)}
        if others:
            raise ValueError(f"labels compare more than one pair of models ({weak!r} vs "
                             f"{strong!r} and e.g. {sorted(others)[0]}): name the strong and "
                             f"the weak model")
    prompts, y = [], []
    for r in rows:
        pair = (r["model_a"], r["model_b"])
        if pair not in ((weak, strong), (strong, weak)):
            continue
        if r["winner_tie"]:
            y.append(0.5)
        else:
            a_won = bool(r["winner_model_a"])
            y.append(1.0 if (r["model_a"] == strong) == a_won else 0.0)
        prompts.append(r["prompt"])
    if not prompts:
        raise ValueError(f"no label row compares {strong!r} with {weak!r}")
    return prompts, np.asarray(y, dtype=np.float64), strong, weak


def label_counts(rows: Iterable[dict]) -> dict:
    """Wins and ties over rows (of one pair): {'strong': n, 'weak': n, 'tie': n}."""
    _, y, _, _ = pair_targets(rows)
    return {"strong": int((y == 1).sum()), "weak": int((y == 0).sum()),
            "tie": int((y == 0.5).sum())}


def read_prompts(path, field: Optional[str] = None) -> List[str]:
    """Prompts from .jsonl (``field``, else 'prompt', 'question' or the first of 'turns'),
    .csv (``field``, else 'prompt') or any other file (one prompt per non-empty line)."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise ValueError(f"no prompt file at {path}")
    out: List[str] = []
    if path.endswith(".jsonl"):
        for i, obj in read_jsonl(path):
            out.append(_prompt_of(obj, field, f"{path}: line {i}"))
    elif path.endswith(".csv"):
        with open(path, newline="", encoding="utf-8") as f:
            for i, obj in enumerate(csv.DictReader(f), 2):
                out.append(_prompt_of(obj, field or "prompt", f"{path}:{i}"))
    else:
        with open(path, encoding="utf-8") as f:
            out = [line.rstrip("\n") for line in f if line.strip()]
    if not out:
        raise ValueError(f"{path} holds no prompts")
    return out


def _prompt_of(obj, field, where) -> str:
    keys = [field] if field else ["prompt", "question", "turns"]
    for k in keys:
        if isinstance(obj, dict) and k in obj:
            v = obj[k]
            if k == "turns" and isinstance(v, list) and v:
                v = v[0]
            if isinstance(v, str) and v.strip():
                return v
            raise ValueError(f"{where}: field {k!r} is not a non-empty string")
    raise ValueError(f"{where}: no {' / '.join(repr(k) for k in keys)} field")


def accuracy_rows_from(rows: Iterable[dict]) -> List[dict]:
    """Accuracy labels for the prompts of graded SE label rows (``quality_weak`` and
    ``quality_strong`` present): same prompts, same responses, the other kind of label."""
    rows = list(rows)
    graded = [r for r in rows if "quality_weak" in r and "quality_strong" in r]
    if not graded:
        raise ValueError("no label row carries quality_weak/quality_strong (label the prompts "
                         "from a file with gold answers)")
    out = outcome_rows([r["prompt"] for r in graded], [r["quality_weak"] for r in graded],
                       [r["quality_strong"] for r in graded], graded[0]["model_a"],
                       graded[0]["model_b"])
    for o, r in zip(out, graded):
        o["response_a"], o["response_b"] = r.get("response_a", ""), r.get("response_b", "")
        if "id" in r:
            o["id"] = r["id"]
    return out


_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = re.compile(r"[^\w\s]")


def _norm(text: str) -> str:
    return " ".join(_ARTICLES.sub(" ", _PUNCT.sub(" ", text.lower())).split())


def grade_short_answer(response: str, gold) -> float:
    """NQ-open's usual match: 1.0 if a normalized gold answer (lower case, no punctuation or
    articles) occurs in the normalized response, else 0.0."""
    golds = [gold] if isinstance(gold, str) else list(gold)
    r = f" {_norm(response)} "
    return float(any(g and f" {g} " in r for g in map(_norm, golds)))
