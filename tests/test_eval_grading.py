"""Answer extraction for live GSM8K and MMLU runs, on answers like the local models write."""
import pytest

from confroute.eval.grading import extract_letter, extract_number, grade_gsm8k, grade_mmlu


@pytest.mark.parametrize("text, expected", [
    ("3 + 4 = 7 apples.\n#### 7", 7.0),
    ("The answer is $1,200.", 1200.0),
    ("x = 5, so y = 10", 10.0),
    ("\\[ \\boxed{18} \\]", 18.0),
    ("It drops to -3.5 degrees", -3.5),
    # Qwen wrote a guess first and then worked out the result: the last marked answer wins.
    ("#### 100\nFirst, 60 x 3 = 180 ...\nThus:\n\\[ \\boxed{540} \\]", 540.0),
    ("The answer is 5. Checking again: #### 6", 6.0),
    ("I cannot tell.", None),
])
def test_extract_number(text, expected):
    assert extract_number(text) == expected


def test_grade_gsm8k():
    assert grade_gsm8k("so #### 1,000", "1000") == (1.0, "1000")
    assert grade_gsm8k("#### 3.0", "3") == (1.0, "3")
    assert grade_gsm8k("no number", "3") == (0.0, None)
    with pytest.raises(ValueError, match="not a number"):
        grade_gsm8k("#### 3", "three")


@pytest.mark.parametrize("text, expected", [
    ("B", "B"), ("(C) because", "C"), ("The answer is D.", "D"), ("Answer: A", "A"),
    ("I think option C is right", "C"), ("A. paralysis of the facial muscles.", "A"),
    ("C\nbecause", "C"), ("A lot of people would say B", None), ("Apples are red", None),
])
def test_extract_letter(text, expected):
    assert extract_letter(text) == expected


def test_grade_mmlu():
    assert grade_mmlu("B", "B") == (1.0, "B")
    assert grade_mmlu("A. 4", "B") == (0.0, "A")
    assert grade_mmlu("To find the degree", "B") == (0.0, None)
