"""Turning a model's free-text answer into a benchmark outcome: GSM8K's final number, MMLU's
option letter. An answer with nothing to extract counts as wrong (``extracted`` is None), the
usual rule for accuracy benchmarks: a model that does not answer does not score."""
from __future__ import annotations

import re
from typing import Optional, Tuple

GSM8K_INSTRUCTION = ("Solve the problem step by step. End with the final answer on its own "
                     "line, written as '#### <number>'.\n\n")
MMLU_INSTRUCTION = ("Answer the multiple-choice question. Reply with only the letter of the "
                    "correct option (A, B, C or D), no explanation.\n\n")

_NUM = r"-?\$?\s?\d[\d,]*(?:\.\d+)?"


def _to_number(s: str) -> Optional[float]:
    s = s.replace("$", "").replace(",", "").replace(" ", "").rstrip(".")
    try:
        return float(s)
    except ValueError:
        return None


_MARKERS = re.compile(r"(?:####|\\boxed\{|answer is[:\s]*)\s*(" + _NUM + ")", re.IGNORECASE)


def extract_number(text: str) -> Optional[float]:
    """The final number of a GSM8K-style answer: the *last* marked answer ('#### N',
    '\\boxed{N}', 'the answer is N'), else the last number in the text. The last marker wins
    because small models sometimes write a guess such as '#### 100' first and then work out
    and state another result."""
    hits = _MARKERS.findall(text)
    if hits:
        return _to_number(hits[-1])
    hits = re.findall(_NUM, text)
    return _to_number(hits[-1]) if hits else None


def grade_gsm8k(answer: str, gold: str) -> Tuple[float, Optional[str]]:
    """(1.0 if the extracted number equals the gold number else 0.0, what was extracted)."""
    g = _to_number(gold)
    if g is None:
        raise ValueError(f"GSM8K gold answer {gold!r} is not a number")
    x = extract_number(answer)
    if x is None:
        return 0.0, None
    return float(abs(x - g) <= 1e-6 * max(1.0, abs(g))), f"{x:g}"


_LETTER_PATTERNS = (
    r"^\s*\(?([ABCD])(?:\)|[.:,]|\s*$|\s*\n)",                 # "B", "(B)", "B. text"
    r"answer(?: is|:)?\s*(?:option\s*)?\(?([ABCD])\)?(?![A-Za-z])",  # "The answer is (C)"
    r"option\s*\(?([ABCD])\)?(?![A-Za-z])",                   # "Option D is correct"
)


def extract_letter(text: str) -> Optional[str]:
    """The chosen option letter A-D, or None when the answer names none clearly."""
    for i, pattern in enumerate(_LETTER_PATTERNS):
        flags = re.IGNORECASE if i else 0
        hits = re.findall(pattern, text, flags=flags)
        if hits:
            return hits[0 if i == 0 else -1].upper()
    return None


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
