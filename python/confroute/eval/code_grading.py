"""Code answers: the code in a chat answer, the program that tests it, and its grade. The
program runs only in :mod:`confroute.runtime.sandbox`."""
from __future__ import annotations

from typing import List, Sequence, Tuple

from confroute.confidence.code import extract_code
from confroute.eval.code_tasks import CodeTask
from confroute.runtime.sandbox import Limits, RunResult, run_many

GRADE_LIMITS = Limits(timeout_s=10.0, cpu_s=10)


def candidate_program(task: CodeTask, code: str) -> str:
    """The task's preamble (signature, imports, helpers) and then the model's code; a body
    without its ``def`` line (an indented continuation) is appended to the signature."""
    if code[:1] in (" ", "\t") and task.kind == "humaneval":
        return task.preamble + code + "\n"
    return task.preamble + "\n\n" + code + "\n"


def graded_program(task: CodeTask, code: str) -> str:
    return candidate_program(task, code) + "\n\n" + task.tests


def grade_many(tasks: Sequence[CodeTask], answers: Sequence[str],
               limits: Limits = GRADE_LIMITS, max_parallel: int = 2
               ) -> List[Tuple[float, str, RunResult]]:
    """(1.0 if the dataset's tests ran to the end, else 0.0, the run's status, the run) per
    answer. A program that leaves early (``sys.exit(0)`` before the tests) fails."""
    if len(tasks) != len(answers):
        raise ValueError(f"{len(tasks)} tasks but {len(answers)} answers")
    progs = [graded_program(t, extract_code(a, t.entry_point)) for t, a in zip(tasks, answers)]
    runs = run_many(progs, limits, max_parallel=max_parallel)
    return [(float(r.completed), r.status, r) for r in runs]


def grade(task: CodeTask, answer: str, limits: Limits = GRADE_LIMITS) -> Tuple[float, str]:
    """(quality, status) of one answer: the ``(quality, extracted)`` shape of the graders."""
    q, status, _ = grade_many([task], [answer], limits, 1)[0]
    return q, status
