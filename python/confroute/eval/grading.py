"""Turning a model's free-text answer into a benchmark outcome: GSM8K's final number, MMLU's
option letter, read by :mod:`confroute.confidence.answers` (the extractor exact-answer
clustering uses too). An answer with nothing to extract counts as wrong (``extracted`` is
None), the usual rule for accuracy benchmarks: a model that does not answer does not score."""
from __future__ import annotations

from typing import Optional, Tuple

from confroute.confidence.answers import extract_letter, extract_number, format_number, parse_number

# Qwen2.5's own chain-of-thought cue. The former "End with '#### <number>'" made Qwen open its
# reply with a guessed '#### 100' before working the problem out.
GSM8K_INSTRUCTION = "\nPlease reason step by step, and put your final answer within \\boxed{}."
MMLU_INSTRUCTION = ("Answer the multiple-choice question. Reply with only the letter of the "
                    "correct option (A, B, C or D), no explanation.\n\n")


def grade_gsm8k(answer: str, gold: str) -> Tuple[float, Optional[str]]:
    """(1.0 if the extracted number equals the gold number else 0.0, what was extracted)."""
    g = parse_number(gold)
    if g is None:
        raise ValueError(f"GSM8K gold answer {gold!r} is not a number")
    x = extract_number(answer)
    if x is None:
        return 0.0, None
    return float(abs(x - g) <= 1e-6 * max(1.0, abs(g))), format_number(x)


def grade_mmlu(answer: str, gold: str) -> Tuple[float, Optional[str]]:
    x = extract_letter(answer)
    return (float(x == gold), x) if x else (0.0, None)


def mt_bench_grader(judge):
    """A grade function for MT-Bench items: the judge rates each turn (1-10, with reference
    answers for math/reasoning/coding); the quality is the mean over the turns, or None when
    any rating is missing (a failed judgement is never replaced by a number)."""

    def grade(answers, question):
        answers = (answers,) if isinstance(answers, str) else tuple(answers)
        ratings = judge.grade_mt_bench(question, answers)
        scores = [r.score for r in ratings]
        shown = ",".join("fail" if s is None else f"{s:g}" for s in scores)
        if any(s is None for s in scores):
            return None, shown
        return sum(scores) / len(scores), shown

    return grade
