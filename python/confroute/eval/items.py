"""Benchmark questions for a live run (:func:`confroute.eval.build.build_outcomes`): each an
:class:`Item` with what its answer is graded against, read from a folder laid out like
``shared/data`` (see :mod:`confroute.eval.data`).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import List, Optional, Tuple

from confroute.eval.data import load_mt_bench_questions, require_path
from confroute.runtime.checkpoint import read_jsonl


@dataclass(frozen=True)
class Item:
    """One benchmark question for a live run. ``reference`` is what the answer is graded
    against (a gold number or letter; for MT-Bench the question itself, for the judge).
    ``turns``: the user turns of a multi-turn question (the first is ``prompt``)."""

    id: str
    prompt: str
    reference: object
    group: str = ""
    turns: Tuple[str, ...] = ()
    recorded: Tuple[Tuple[str, float], ...] = ()  # (model, recorded quality) pairs

    def recorded_quality(self, model: str) -> float:
        for m, q in self.recorded:
            if m == model:
                return q
        have = ", ".join(m for m, _ in self.recorded) or "none"
        raise ValueError(f"item {self.id}: no recorded outcome of {model!r} (recorded: {have})")


def gsm8k_items(data_dir, split: str = "dev", file: Optional[str] = None) -> List[Item]:
    """GSM8K questions with the gold number (after ``####``). Splits: ``train``
    (``train.jsonl``, ids ``gsm8k-train:N``) and halves of the test set (``test_<split>``)."""
    name = "train.jsonl" if split == "train" else f"test_{split}.jsonl"
    path = require_path(file or os.path.join(os.fspath(data_dir), "gsm8k", name))
    tag = "gsm8k-train" if split == "train" else "gsm8k"
    out = []
    for lineno, o in read_jsonl(path):
        if "question" not in o or "answer" not in o:
            raise ValueError(f"{path}: line {lineno}: expected 'question' and 'answer'")
        if "####" not in o["answer"]:
            raise ValueError(f"{path}: line {lineno}: the answer has no '#### N' final line")
        gold = o["answer"].rsplit("####", 1)[1].strip().replace(",", "")
        out.append(Item(f"{tag}:{lineno}", o["question"], gold))
    if not out:
        raise ValueError(f"{path}: no rows")
    return out


def mmlu_items(data_dir, split: str = "dev") -> List[Item]:
    """MMLU questions (RouteLLM's prompt strings) with the correct letter."""
    path = require_path(os.path.join(os.fspath(data_dir), "mmlu", f"answer_key_{split}.jsonl"))
    out = []
    for lineno, o in read_jsonl(path):
        if "prompt" not in o or o.get("answer") not in ("A", "B", "C", "D"):
            raise ValueError(f"{path}: line {lineno}: expected 'prompt' and an answer A-D")
        out.append(Item(f"mmlu:{lineno}", o["prompt"], o["answer"], o.get("subject", "")))
    if not out:
        raise ValueError(f"{path}: no rows")
    return out


def mt_bench_items(data_dir, split: str = "dev") -> List[Item]:
    """MT-Bench questions for a live run: both turns; graded by a judge."""
    return [Item(str(q.question_id), q.turns[0], q, q.category, q.turns)
            for q in load_mt_bench_questions(data_dir, split)]
