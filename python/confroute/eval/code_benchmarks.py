"""HumanEval and MBPP for ``confroute eval build``: graded by the dataset's own tests in the
sandbox; the served policies judge their samples by execution (the scorer's ``auto``
meaning), as the server does.

HumanEval items carry the recorded cloud outcomes (``--cloud recorded:gpt-4``). Registered on
import by :mod:`confroute.eval.benchmarks`.
"""
from __future__ import annotations

import hashlib
from typing import Dict, List, Optional, Tuple

from confroute.eval.benchmarks import Benchmark, Prompt, register_benchmark
from confroute.eval.code_tasks import (FENCE, HUMANEVAL_INSTRUCTION, MBPP_INSTRUCTION,
                                       CodeTask, humaneval_tasks, mbpp_tasks, recorded_by_id)
from confroute.eval.items import Item


class _Code(Benchmark):
    max_tokens = 384
    instruction = ""

    def __init__(self, max_tokens: Optional[int] = None, cue: str = "code"):
        """``cue``: how the answer opens. ``code``: a fence and HumanEval's given code, so
        the model writes the body (Qwen then answers in ~1/5 of the tokens); ``fence``: only
        the fence (SmolLM2 closes the fence at once after the given code)."""
        if max_tokens is not None:
            self.max_tokens = int(max_tokens)
        if cue not in ("code", "fence"):
            raise ValueError(f"cue must be 'code' or 'fence', got {cue!r}")
        self.cue = cue

    def tasks(self, data_dir, split) -> List[CodeTask]:
        raise NotImplementedError

    def items(self, data_dir, split="dev", include_contaminated=False):
        return [Item(t.id, t.prompt, t, t.group, recorded=self._recorded(data_dir, split)
                     .get(t.id, ())) for t in self.tasks(data_dir, split)]

    def _recorded(self, data_dir, split) -> Dict[str, Tuple[Tuple[str, float], ...]]:
        return {}

    def prompt(self, item):
        cue = item.reference.cue if self.cue == "code" else FENCE
        return Prompt(({"role": "user", "content": item.prompt},), cue)

    def grade(self, answer, item):
        from confroute.eval.code_grading import grade

        return grade(item.reference, answer)

    def settings(self):
        return {"max_tokens": self.max_tokens, "cue": self.cue,
                "instruction": hashlib.sha256(self.instruction.encode()).hexdigest()[:12]}

    def grader(self):
        return "sandbox-tests-v1"


class HumanEval(_Code):
    """OpenAI HumanEval: complete the function; ``check(candidate)`` grades it."""

    name = "humaneval"
    instruction = HUMANEVAL_INSTRUCTION

    def tasks(self, data_dir, split):
        return humaneval_tasks(data_dir, split)

    def _recorded(self, data_dir, split):
        try:
            rec = recorded_by_id(data_dir, split)
        except ValueError:  # no recorded file for this split
            return {}
        return {i: tuple(sorted(r.items())) for i, r in rec.items()}


class MBPP(_Code):
    """Sanitized MBPP: the task text and its first assert; all asserts grade it. Splits:
    ``test_dev`` (evaluation), ``train`` (router-training prompts); ``dev`` means
    ``test_dev``."""

    name = "mbpp"
    instruction = MBPP_INSTRUCTION

    def tasks(self, data_dir, split):
        return mbpp_tasks(data_dir, "test_dev" if split == "dev" else split)


register_benchmark("humaneval", HumanEval)
register_benchmark("mbpp", MBPP)
