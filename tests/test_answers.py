"""The one answer extractor (confidence.answers), shared by exact-answer clustering and grading.
Every case is a reply as a model writes it and the answer a reader takes from it."""
import pytest

from confroute.confidence import answers, meaning, scorer
from confroute.confidence.answers import extract_letter, extract_number, format_number, parse_number
from confroute.eval import grading

NUMBERS = [
    # GSM8K's own marker, and the last marked answer winning over earlier guesses
    ("3 + 4 = 7 apples.\n#### 7", 7.0),
    ("so 3 + 4 = 7.\n#### 1,234", 1234.0),
    ("#### 100\nFirst, 60 x 3 = 180 ...\nThus:\n\\[ \\boxed{540} \\]", 540.0),
    ("The answer is 5. Checking again: #### 6", 6.0),
    ("#### 6\nThe answer is 5", 5.0),
    ("\\[ \\boxed{18} \\]", 18.0),
    ("The final answer is $\\boxed{42}$.", 42.0),
    # 'answer' markers with colons, markdown and currency
    ("The answer is $1,200.", 1200.0),
    ("The answer is 42.0 apples, not 7", 42.0),
    ("The answer is: 12", 12.0),
    ("**Answer:** 15", 15.0),
    ("Answer: **16** dollars", 16.0),
    ("The answer is **-4**", -4.0),
    ("#### -3", -3.0),
    ("answer = 9, which checks out: 3 * 3 = 9 and 10 - 1 = 9", 9.0),
    # no marker: the last number
    ("x = 5, so y = 10", 10.0),
    ("it costs $5 or $6.50", 6.5),
    ("It drops to -3.5 degrees", -3.5),
    ("the change is = -5", -5.0),
    ("a loss (-8) overall", -8.0),
    ("She ends with 4.", 4.0),
    # a '-' between two numbers is a subtraction, not a sign
    ("profit = 20 - 5", 5.0),
    ("profit = 20-5", 5.0),
    ("(3 + 2) - 1", 1.0),
    ("COVID-19", 19.0),
    # commas group thousands only by three
    ("3,4", 4.0),
    ("1,000,000 people", 1_000_000.0),
    ("1,2345", 2345.0),
    ("the numbers 7, 8, 9", 9.0),
    ("the sum of 1,234 and 5", 5.0),
    # no number at all
    ("I cannot tell.", None),
    ("no digits here", None),
    ("", None),
    ("H2O and x2", None),
]


@pytest.mark.parametrize("text, expected", NUMBERS)
def test_extract_number(text, expected):
    assert extract_number(text) == expected


LETTERS = [
    # marked answers, in every markdown form small models write
    ("The answer is (C).", "C"),
    ("The answer is D.", "D"),
    ("Answer: A", "A"),
    ("The answer is: B", "B"),
    ("**Answer:** C", "C"),
    ("Answer: **B**", "B"),
    ("The answer is **B**", "B"),
    ("The correct answer is option B because Mars is red.", "B"),
    ("I think option C is right", "C"),
    ("Option A is wrong; option D is correct.", "D"),
    ("The answer would be (A)", "A"),
    # a reply that starts with the letter
    ("B", "B"),
    ("B) Mars, because it is red", "B"),
    ("(C) because", "C"),
    ("A. paralysis of the facial muscles.", "A"),
    ("C\nbecause", "C"),
    ("**D**", "D"),
    # a reply that ends with the letter
    ("I think it is D", "D"),
    ("A lot of people would say B", "B"),
    ("so it must be (A).", "A"),
    # no letter named: words that start with a capital A-D, lower case, prose
    ("The answer is a bit unclear", None),
    ("The answer is: I am not sure.", None),
    ("Apples are red", None),
    ("To find the degree", None),
    ("Because Dogs bark", None),
    ("nothing", None),
    ("", None),
    ("A lot of options here.", None),
]


@pytest.mark.parametrize("text, expected", LETTERS)
def test_extract_letter(text, expected):
    assert extract_letter(text) == expected


def test_other_option_letters():
    assert extract_letter("The answer is E", "ABCDE") == "E"
    assert extract_letter("The answer is E") is None  # not an option of ABCD
    with pytest.raises(ValueError, match="upper-case option letters"):
        extract_letter("B", "abcd")


@pytest.mark.parametrize("text, value", [("1,000", 1000.0), ("$5", 5.0), ("-3.5", -3.5),
                                         ("6.", 6.0), ("\u22122", -2.0), ("three", None)])
def test_parse_number(text, value):
    assert parse_number(text) == value


def test_format_number_is_one_key_per_value():
    assert format_number(1234.0) == "1234" and format_number(6.5) == "6.5"
    assert format_number(-3.0) == "-3" and format_number(0.1) == "0.1"


def test_clustering_and_grading_read_the_same_answers():
    # One module: the scorer and the grader hold no extractor of their own.
    assert grading.extract_number is answers.extract_number
    assert grading.extract_letter is answers.extract_letter
    for mod in (scorer, meaning):
        assert not hasattr(mod, "extract_option") and not hasattr(mod, "_NUM")
    for text, expected in NUMBERS:
        key = meaning.exact_answer(text, "number", "ABCD")
        assert key == (None if expected is None else format_number(expected))
    for text, expected in LETTERS:
        assert meaning.exact_answer(text, "option", "ABCD") == expected
