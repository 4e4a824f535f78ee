"""Code benchmarks: HumanEval and sanitized MBPP problems, the chat prompt for each, and the
recorded HumanEval cloud outcomes.

Files (``<data>/code/``): ``humaneval_<split>.jsonl`` (task_id, prompt, entry_point, test),
``humaneval_recorded_<split>.csv`` (task_id, prompt, one success-rate column per model),
``mbpp_<split>.jsonl`` (task_id, prompt text, test_imports, test_list) with split ``test_dev``
or ``train``. Nothing here runs code; grading is :mod:`confroute.eval.code_grading`.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import List, Tuple

from confroute.confidence.code import (assert_call, docstring_calls, signature_calls,
                                      variant_calls)
from confroute.eval.data import parse_quality, read_csv
from confroute.eval.table import OutcomeTable
from confroute.runtime.checkpoint import read_jsonl

HUMANEVAL_INSTRUCTION = ("Complete the following Python function. Reply with the complete "
                         "function, its signature included, in one ```python code block.\n\n")
FENCE = "```python\n"
MBPP_INSTRUCTION = ("Write a Python function for the task below. Reply with the code in one "
                    "```python code block.\n\n")


@dataclass(frozen=True)
class CodeTask:
    """One problem. ``prompt`` is what the user asks (the chat message's text); ``preamble``
    is code placed before the model's code (HumanEval: the given signature, imports and
    helpers); ``tests`` the dataset's own test code, run after it; ``examples`` the calls the
    request itself shows (HumanEval docstring examples, the MBPP example assert's call): the
    inputs for execution clustering, never the hidden tests."""

    id: str
    kind: str                    # "humaneval" | "mbpp"
    prompt: str
    entry_point: str
    preamble: str
    tests: str
    examples: Tuple[str, ...] = ()
    group: str = ""
    cue: str = ""  # the start of the assistant's answer, which the model continues

    def messages(self) -> List[dict]:
        return [{"role": "user", "content": self.prompt}]


def _code_dir(data_dir) -> str:
    d = os.path.join(os.fspath(data_dir), "code")
    if not os.path.isdir(d):
        raise ValueError(f"{d}: no such folder (is --data a folder laid out like shared/data?)")
    return d


def humaneval_tasks(data_dir, split: str = "dev") -> List[CodeTask]:
    path = os.path.join(_code_dir(data_dir), f"humaneval_{split}.jsonl")
    out = []
    for lineno, o in read_jsonl(path):
        for k in ("task_id", "prompt", "entry_point", "test"):
            if not isinstance(o.get(k), str) or not o[k]:
                raise ValueError(f"{path}: line {lineno}: missing or empty {k!r}")
        ep = o["entry_point"]
        tests = o["test"] + f"\n\ncheck({ep})\n"
        # The answer opens with the given code, so the model writes the body (HumanEval's
        # completion format) instead of repeating a long docstring.
        out.append(CodeTask(o["task_id"], "humaneval",
                            HUMANEVAL_INSTRUCTION + "```python\n" + o["prompt"] + "```\n",
                            ep, o["prompt"], tests,
                            docstring_calls(o["prompt"], ep)
                            or signature_calls(o["prompt"], ep),
                            cue=FENCE + o["prompt"]))
    if not out:
        raise ValueError(f"{path}: no rows")
    return out


def mbpp_tasks(data_dir, split: str = "test_dev") -> List[CodeTask]:
    """The prompt states the task and shows the first assert (as the MBPP paper's prompts
    do), which names the function; grading runs all asserts. Clustering may use the shown
    assert's call, not its expected value, and none of the other asserts."""
    path = os.path.join(_code_dir(data_dir), f"mbpp_{split}.jsonl")
    out = []
    for lineno, o in read_jsonl(path):
        where = f"{path}: line {lineno}"
        tests = o.get("test_list")
        if not isinstance(o.get("prompt"), str) or not isinstance(tests, list) or not tests:
            raise ValueError(f"{where}: expected 'prompt' text and a non-empty 'test_list'")
        name, call = assert_call(tests[0], where)
        prompt = (MBPP_INSTRUCTION + o["prompt"].strip() + "\nYour code should pass this "
                  "test:\n" + tests[0].strip() + "\n")
        imports = "\n".join(o.get("test_imports") or [])
        out.append(CodeTask(str(o["task_id"]), "mbpp", prompt, name, imports,
                            imports + "\n" + "\n".join(tests) + "\n", variant_calls(call),
                            cue=FENCE))
    if not out:
        raise ValueError(f"{path}: no rows")
    return out


def load_humaneval_recorded(data_dir, split: str = "dev", weak=None, strong=None
                            ) -> OutcomeTable:
    """The recorded per-task success rates (over 10 runs) of the cloud models, one column per
    model; ids are the task ids and prompts the HumanEval prompts."""
    path = os.path.join(_code_dir(data_dir), f"humaneval_recorded_{split}.csv")
    header, rows = read_csv(path)
    models = [h for h in header if h not in ("task_id", "prompt")]
    if "task_id" not in header or "prompt" not in header or not models:
        raise ValueError(f"{path}: expected task_id, prompt and model columns")
    prompts, ids, q = [], [], []
    for where, row in rows:
        prompts.append(row["prompt"])
        ids.append(row["task_id"])
        q.append([parse_quality(row[m], f"{path}: {where}", m) for m in models])
    if not ids:
        raise ValueError(f"{path}: no rows")
    import numpy as np

    from confroute.eval.data import pick_pair

    qa = np.array(q, np.float64)
    means = {m: float(qa[:, j].mean()) for j, m in enumerate(models)}
    if weak is None and strong is None:
        weak, strong = min(means, key=means.get), max(means, key=means.get)
    w, s = pick_pair(path, models, means, weak, strong)
    return OutcomeTable(prompts, models, qa, w, s, name="humaneval", ids=ids)


def recorded_by_id(data_dir, split: str = "dev") -> dict:
    """task id -> {model: recorded success rate}."""
    t = load_humaneval_recorded(data_dir, split)
    return {i: {m: float(t.column(m)[k]) for m in t.models} for k, i in enumerate(t.ids)}
