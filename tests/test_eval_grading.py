"""Grading live GSM8K and MMLU answers (the extraction itself: tests/test_answers.py)."""
import pytest

from confroute.eval.grading import grade_gsm8k, grade_mmlu


def test_grade_gsm8k():
    assert grade_gsm8k("so #### 1,000", "1000") == (1.0, "1000")
    assert grade_gsm8k("#### 3.0", "3") == (1.0, "3")
    assert grade_gsm8k("no number", "3") == (0.0, None)
    assert grade_gsm8k("profit = 20 - 5", "15") == (0.0, "5")
    assert grade_gsm8k("#### 1,234,567", "1234567") == (1.0, "1234567")
    with pytest.raises(ValueError, match="not a number"):
        grade_gsm8k("#### 3", "three")


def test_grade_mmlu():
    assert grade_mmlu("B", "B") == (1.0, "B")
    assert grade_mmlu("A. 4", "B") == (0.0, "A")
    assert grade_mmlu("To find the degree", "B") == (0.0, None)
    assert grade_mmlu("**Answer:** C", "C") == (1.0, "C")
    assert grade_mmlu("The answer is a bit unclear", "A") == (0.0, None)
