"""Where the benchmark data the tests read is.

- ``DATA_ROOT``: ``$CONFROUTE_DATA``, else ``../shared/data`` next to the checkout (whether or
  not it exists); ``DATA``: that folder when it holds the shared data (its README), else None.
- The ``data_dir`` fixture (tests/conftest.py, :func:`data_dir_or_tiny`): the shared data when
  it holds every file of the layout the tests read, else the tiny invented set of
  :mod:`helpers.tiny_data`, written once per session. Tests that run on either carry the
  ``data`` marker and never skip for want of data.
- ``needs_data``: for the few checks of the shared files themselves (their row counts, facts of
  the recorded numbers, FastChat's judge prompts); they skip without them.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable, Optional

import pytest

from helpers.tiny_data import TINY_FILES, write_tiny_data

# the folder, whether or not it exists
DATA_ROOT = Path(os.environ.get("CONFROUTE_DATA")
                 or Path(__file__).resolve().parents[2] / ".." / "shared" / "data")
# shared/data with its README (the recorded outcomes, benchmarks, judge prompts), else None
DATA = DATA_ROOT if (DATA_ROOT / "README.md").exists() else None

SHARED_ONLY = ("a check of the shared data files themselves: shared/data not found (set "
               "CONFROUTE_DATA); the other data tests run on the tiny set")
needs_data = pytest.mark.skipif(DATA is None, reason=SHARED_ONLY)


def shared_layout() -> Optional[Path]:
    """The shared data when it holds every file the tests read, else None."""
    if DATA is not None and all((DATA / f).is_file() for f in TINY_FILES):
        return DATA
    return None


def data_dir_or_tiny(make_dir: Callable[[], Path]) -> Path:
    """The shared data (real dev halves, real numbers) when it is complete, else the tiny
    invented set written into ``make_dir()``."""
    return shared_layout() or write_tiny_data(make_dir())


def file_rows(path) -> int:
    """Non-empty lines of a JSONL file, or data rows of a CSV file (quoted newlines counted
    as one row): what a loader that keeps every row must return."""
    import csv

    path = Path(path)
    if path.suffix == ".csv":
        csv.field_size_limit(1 << 30)
        with open(path, newline="", encoding="utf-8") as f:
            return sum(1 for _ in csv.DictReader(f))
    with open(path, encoding="utf-8") as f:
        return sum(1 for line in f if line.strip())


W, S = "mistralai/Mixtral-8x7B-Instruct-v0.1", "gpt-4-1106-preview"


def make_layout(root: Path) -> Path:
    """A tiny folder laid out like shared/data, with made-up rows."""
    (root / "gsm8k").mkdir(parents=True)
    (root / "gsm8k" / "routellm_responses_dev.csv").write_text(
        f'prompt,{W},{S},{W}_response\n'
        '"What is 1+1?",True,True,"2"\n"What is 2*3?",False,True,"5"\n'
        '"Tricky, multi\nline?",False,False,"x"\n"Contaminated one",True,False,"y"\n')
    (root / "gsm8k" / "routellm_contaminated_prompts.jsonl").write_text(
        json.dumps({"eval_prompt": "Contaminated one"}) + "\n")
    (root / "gsm8k" / "test_dev.jsonl").write_text(
        json.dumps({"question": "What is 1+1?", "answer": "1+1=2\n#### 2"}) + "\n"
        + json.dumps({"question": "What is 2*3?", "answer": "#### 6"}) + "\n")
    m = root / "mmlu" / "routellm_responses_dev"
    m.mkdir(parents=True)
    (m / "mmlu_a.csv").write_text(f"prompt,{W},{S}\nQ1,True,True\nQ2,False,True\n")
    (m / "mmlu_b.csv").write_text(f"prompt,{W},{S}\nQ3,False,False\n")
    (root / "mmlu" / "answer_key_dev.jsonl").write_text(
        json.dumps({"subject": "a", "prompt": "Q1", "answer": "B"}) + "\n")
    mt = root / "mt_bench"
    mt.mkdir()
    qs = [{"question_id": 1, "category": "writing", "turns": ["Write.", "Again."]},
          {"question_id": 2, "category": "math", "turns": ["2+2?", "3+3?"]}]
    (mt / "question_dev.jsonl").write_text("".join(json.dumps(q) + "\n" for q in qs))
    js = [{"question_id": q, "model": m, "turn": t, "score": s}
          for q, m, t, s in [(1, W, 1, 6), (1, W, 2, 8), (1, S, 1, 9), (1, S, 2, 10),
                             (2, W, 1, 2), (2, W, 2, 3), (2, S, 1, 9.5), (2, S, 2, 10)]]
    (mt / "routellm_judgements_dev.jsonl").write_text("".join(json.dumps(j) + "\n" for j in js))
    return root


def expected_rows(bench: str, root: Path) -> int:
    """Rows a benchmark should load, counted straight from the files (not our loader): all
    rows minus those whose prompt is on the contamination list."""
    import csv

    csv.field_size_limit(1 << 30)
    sub = {"gsm8k": "gsm8k", "mmlu": "mmlu", "mt-bench": "mt_bench"}[bench]
    bad = {json.loads(l)["eval_prompt"] for l in
           open(root / sub / "routellm_contaminated_prompts.jsonl", encoding="utf-8") if l.strip()}
    if bench == "mt-bench":
        qs = [json.loads(l) for l in open(root / sub / "question_dev.jsonl") if l.strip()]
        return sum(not any(t in bad for t in q["turns"]) for q in qs)
    files = ([root / "gsm8k" / "routellm_responses_dev.csv"] if bench == "gsm8k" else
             sorted((root / "mmlu" / "routellm_responses_dev").glob("*.csv")))
    return sum(r["prompt"] not in bad for f in files
               for r in csv.DictReader(open(f, newline="", encoding="utf-8")))
