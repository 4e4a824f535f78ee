"""Code benchmarks: loading, code extraction, grading by the datasets' own tests in the sandbox,
and execution-based clusters. Programs run only in the sandbox."""
import math

import numpy as np
import pytest

from confroute.confidence.code import (assert_call, docstring_calls, extract_code,
                                      signature_calls, variant_calls)
from confroute.confidence.execution import behaviours, cluster_ids, execution_clusters
from confroute.eval.code_grading import candidate_program, grade, grade_many, graded_program
from confroute.eval.code_tasks import (CodeTask, humaneval_tasks, load_humaneval_recorded,
                                       mbpp_tasks)
from helpers.data import file_rows


PROMPT = '''from typing import List


def add(xs: List[int], k: int) -> List[int]:
    """ Add k to every element.
    >>> add([1, 2], 3)
    [4, 5]
    For example: add([], 1) == []
    """
'''
TASK = CodeTask("t/0", "humaneval", "Complete:\n" + PROMPT, "add", PROMPT,
                "def check(candidate):\n    assert candidate([0], 1) == [1]\n"
                "    assert candidate([5, 6], -5) == [0, 1]\n\ncheck(add)\n",
                docstring_calls(PROMPT, "add"))
GOOD = "def add(xs, k):\n    return [x + k for x in xs]\n"


def test_docstring_calls_are_the_examples_without_results():
    assert TASK.examples == ("add([1, 2], 3)", "add([], 1)")
    p = 'def f(lst):\n    """For lst = [1, 2] the output should be 3\n    g([4]) ==> 4"""\n'
    assert docstring_calls(p, "f") == ("f([4])", "f(lst=[1, 2])")
    assert signature_calls('def h(s: str, n):\n    """x"""\n', "h") == \
        ("h('abc', 0)", "h('Hello world', 1)", "h('', 12)")


def test_assert_call_and_variants():
    assert assert_call("assert set(sim((3, 4), (4, 5))) == set((4,))") == \
        ("sim", "sim((3, 4), (4, 5))")
    assert assert_call("assert sum(10, 15) == 6")[0] == "sum"  # a task that redefines sum
    with pytest.raises(ValueError, match="not an assert"):
        assert_call("print(1)")
    assert variant_calls("f('ab', 4, [1, 2])") == \
        ("f('ab', 4, [1, 2])", "f('ba', 5, [2, 1])", "f('a', 2, [1])")


def test_extract_code():
    ans = "Here:\n```python\ndef add(xs, k):\n    return xs\n```\nand\n```\nprint(1)\n```"
    assert extract_code(ans, "add") == "def add(xs, k):\n    return xs\n"
    assert extract_code("def add(a, b): return 1", "add") == "def add(a, b): return 1"
    assert extract_code("```python\ndef add(x, k):\n    return 1\n", "add").startswith("def add")
    # a body without its def line continues the given signature
    assert candidate_program(TASK, "    return [x + k for x in xs]").startswith(PROMPT)


def test_grading_passes_a_correct_and_fails_wrong_answers():
    answers = ["```python\n" + GOOD + "```",
               "```python\ndef add(xs, k):\n    return xs\n```",
               "```python\nimport sys\nsys.exit(0)\n" + GOOD + "```",
               "```python\ndef add(xs, k)\n    return xs\n```",
               "I cannot help with that."]
    graded = grade_many([TASK] * len(answers), answers)
    assert [q for q, _, _ in graded] == [1.0, 0.0, 0.0, 0.0, 0.0]
    assert graded[2][1] == "exited early"
    assert grade(TASK, answers[0]) == (1.0, "ok")


def test_execution_clusters_group_equal_behaviour():
    progs = [candidate_program(TASK, c) for c in (
        GOOD,
        "def add(xs, k):\n    out = []\n    for x in xs:\n        out.append(k + x)\n    return out\n",
        "def add(xs, k):\n    return [x - k for x in xs]\n",
        "def add(xs, k):\n    raise ValueError('no')\n",
        "def add(xs, k):\n    while True:\n        pass\n",
        "def add(xs, k)\n",
    )]
    b = behaviours(progs, TASK.examples)
    assert b[0] == b[1] == ("=list[4,5]", "=list[]")
    assert b[2] == ("=list[-2,-1]", "=list[]")
    assert b[3] == ("!ValueError", "!ValueError")
    assert b[4] == ("!timeout", "!timeout")
    assert b[5] == ("!load:SyntaxError", "!load:SyntaxError")
    assert cluster_ids(b).tolist() == [0, 0, 1, 2, 3, 4]
    c = execution_clusters(progs[:4], TASK.examples, seq_logprobs=[-0.1, -0.2, -0.3, -0.4])
    assert c.n_clusters == 3 and c.cluster_ids.tolist() == [0, 0, 1, 2]
    p = np.array([2, 1, 1]) / 4
    assert math.isclose(c.se_discrete, float(-(p * np.log(p)).sum()), rel_tol=1e-9)
    one = execution_clusters(progs[:2], TASK.examples)
    assert one.n_clusters == 1 and one.se_discrete == 0.0
    with pytest.raises(ValueError, match="no example calls"):
        behaviours(progs[:1], [])


@pytest.mark.data
def test_humaneval_loads_and_canonical_solutions_pass(data_dir):
    import json

    tasks = humaneval_tasks(data_dir)
    path = data_dir / "code" / "humaneval_dev.jsonl"
    assert len(tasks) == file_rows(path) and all(t.examples for t in tasks)
    rows = {o["task_id"]: o for o in map(json.loads, open(path))}
    # answers as the model gives them: the cue (a fence and the given code), then the body
    assert all(t.cue == "```python\n" + rows[t.id]["prompt"] for t in tasks)
    ans = [t.cue + rows[t.id]["canonical_solution"] + "```\nThis works." for t in tasks]
    graded = grade_many(tasks, ans, max_parallel=2)
    failed = [t.id for t, (q, _, _) in zip(tasks, graded) if q != 1.0]
    assert failed == []
    # and an answer that returns None fails every problem's tests
    none = grade_many(tasks[:10], [f"def {t.entry_point}(*a, **k):\n    return None\n"
                                   for t in tasks[:10]])
    assert [q for q, _, _ in none] == [0.0] * len(tasks[:10])


@pytest.mark.data
def test_mbpp_loads_and_reference_code_passes(data_dir):
    import json

    tasks = mbpp_tasks(data_dir, "test_dev")
    path = data_dir / "code" / "mbpp_test_dev.jsonl"
    assert len(tasks) == file_rows(path)
    assert len(mbpp_tasks(data_dir, "train")) == file_rows(data_dir / "code" / "mbpp_train.jsonl")
    rows = {str(o["task_id"]): o for o in map(json.loads, open(path))}
    for t in tasks:
        assert t.entry_point in t.examples[0] and t.examples[0].startswith(t.entry_point)
        assert "pass this test:\n" + rows[t.id]["test_list"][0] in t.prompt
        assert rows[t.id]["test_list"][1] not in t.prompt  # the other asserts stay hidden
    graded = grade_many(tasks, [rows[t.id]["code"] for t in tasks], max_parallel=2)
    assert [t.id for t, (q, _, _) in zip(tasks, graded) if q != 1.0] == []


@pytest.mark.data
def test_recorded_humaneval_table(data_dir):
    import json

    t = load_humaneval_recorded(data_dir)
    path = data_dir / "code" / "humaneval_recorded_dev.csv"
    assert len(t) == file_rows(path) and t.strong == "gpt-4" and t.weak.startswith("codellama")
    assert set(t.models) == {"gpt-4", "gpt-3.5-turbo", "codellama/CodeLlama-34b-Instruct-hf"}
    q = t.column("gpt-4")
    assert q.min() >= 0 and q.max() <= 1 and 0.5 < q.mean() < 1
    # in the order of the file, whose tasks are the HumanEval file's
    first = json.loads(open(data_dir / "code" / "humaneval_dev.jsonl").readline())["task_id"]
    assert t.ids[0] == first


def test_graded_program_runs_the_tests_after_the_code():
    assert graded_program(TASK, GOOD).endswith(TASK.tests)
