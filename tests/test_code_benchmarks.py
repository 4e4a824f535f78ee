"""HumanEval and MBPP as plug-ins of `confroute eval build` (the eval branch's benchmark
interface): items with recorded outcomes, cues and grading (the signals are the served
policies', tested in test_exec_scorer and test_parity). Programs run only in the sandbox."""
import json

import numpy as np
import pytest

pytest.importorskip("confroute.eval.benchmarks", reason="the eval builder's plug-in interface "
                    "is not merged into this checkout yet")

from confroute.eval.benchmarks import get_benchmark  # noqa: E402
from confroute.models.types import Samples  # noqa: E402

from helpers.data import file_rows  # noqa: E402

pytestmark = pytest.mark.data


def _samples(texts):
    lps = tuple(np.full(4, -0.5 - i) for i in range(len(texts)))
    return Samples(tuple(texts), lps, None, ("stop",) * len(texts), "test", 10, 20, 0.7, 0.0)


def test_humaneval_plugin(data_dir):
    b = get_benchmark("humaneval")
    items = b.items(data_dir, "dev")
    path = data_dir / "code" / "humaneval_dev.jsonl"
    assert len(items) == file_rows(path)
    rec = dict(items[0].recorded)
    assert set(rec) == {"gpt-4", "gpt-3.5-turbo", "codellama/CodeLlama-34b-Instruct-hf"}
    assert items[0].recorded_quality("gpt-4") == rec["gpt-4"]
    rows = {o["task_id"]: o for o in map(json.loads, open(path))}
    it = items[0]
    p = b.prompt(it)
    assert p.cue.endswith(rows[it.id]["prompt"]) and p.messages[0]["content"] == it.prompt
    good = p.cue + rows[it.id]["canonical_solution"] + "```"
    assert b.grade(good, it) == (1.0, "ok")
    assert b.grade(p.cue + "    return None\n```", it)[0] == 0.0
    fence = get_benchmark("humaneval", cue="fence")
    assert fence.prompt(it).cue == "```python\n" and fence.settings() != b.settings()


def test_mbpp_plugin(data_dir):
    b = get_benchmark("mbpp")
    items = b.items(data_dir, "dev")
    path = data_dir / "code" / "mbpp_test_dev.jsonl"
    assert len(items) == file_rows(path) and all(not it.recorded for it in items)
    assert len(b.items(data_dir, "train")) == file_rows(data_dir / "code" / "mbpp_train.jsonl")
    rows = {str(o["task_id"]): o for o in map(json.loads, open(path))}
    it = items[0]
    assert b.grade("```python\n" + rows[it.id]["code"] + "\n```", it) == (1.0, "ok")
