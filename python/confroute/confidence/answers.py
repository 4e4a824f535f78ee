"""The final answer of a free-text reply: a number (GSM8K) or an option letter (MMLU).

One extractor for everything that compares answers: exact-answer clustering in the scorer and
benchmark grading both call these functions, so that what the router's confidence measures and
what the grade counts are the same thing.

Numbers. The *last marked* answer wins ('#### N', '\\boxed{N}', 'the answer is N', 'Answer: N',
with any markdown or '$' in between); without a marker, the last number in the text. The last
marker wins because small models write a guess such as '#### 100' first, then work out and
state another result. A '-' is a sign only where it cannot be a subtraction ('20 - 5' is 5, '=
-5' is -5); commas group thousands only in groups of three ('1,234' is 1234, '3,4' is 3 and 4).

Letters. The last marked letter ('the answer is (B)', 'Answer: **C**', 'option D'), else a reply
that starts with the letter ('B', '(C) because', 'A. text'), else a reply that ends with one ('I
think it is D'). Letters are upper case only: 'The answer is a bit unclear' names none. None
when the reply names no letter in one of these ways: a reply that does not answer does not
score, and never joins another reply's cluster.
"""
from __future__ import annotations

import re
from typing import Optional

# A number: no digit, letter or '.' right before it; thousands grouped by three, or plain
# digits; an optional decimal part. The sign is decided separately (see _signed).
_NUMBER = r"(?<![\w.])(\$?\s?)((?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:\.\d+)?)"
_MINUS = "-\u2212"  # ASCII hyphen-minus and the Unicode minus sign
# Between a marker and its value: spaces, markdown emphasis, colons, '=', '$', '(' and '['.
_FILL = r"[\s:*_=$(\[]*"
_NUMBER_MARKERS = (r"####", r"\\boxed\{", r"(?i:\banswer\b(?:\s+is)?)")
_MARKED_NUMBER = re.compile(r"(?:" + "|".join(_NUMBER_MARKERS) + r")" + _FILL
                            + r"([" + _MINUS + r"]?)" + _NUMBER)
_ANY_NUMBER = re.compile(_NUMBER)


def parse_number(s: str) -> Optional[float]:
    """A number written as text ('1,000', '$5', '-3.5', '6.'), or None."""
    t = s.strip().replace("$", "").replace(",", "").replace(" ", "").rstrip(".")
    t = t.replace("\u2212", "-")
    try:
        return float(t)
    except ValueError:
        return None


def format_number(x: float) -> str:
    """The canonical text of a number, equal for equal values: 1234.0 -> '1234', 6.5 -> '6.5'."""
    return str(int(x)) if float(x).is_integer() else repr(float(x))


def _signed(text: str, m: re.Match) -> float:
    """The value of an unmarked number match, negative when a '-' right before it is a sign:
    not after a digit, a closing bracket or a word ('20 - 5', 'x-5', 'COVID-19' subtract or
    join; '= -5', 'to -3.5', '(-5)' are negative)."""
    value = parse_number(m.group(2))
    i = m.start() - 1
    if i < 0 or text[i] not in _MINUS:
        return value
    if i > 0 and (text[i - 1].isalnum() or text[i - 1] in ")]}"):
        return value
    before = text[:i].rstrip()
    if before and (before[-1].isdigit() or before[-1] in ")]}%"):
        return value
    return -value


def extract_number(text: str) -> Optional[float]:
    """The final numeric answer of a reply (module doc), or None when it holds no number."""
    marked = list(_MARKED_NUMBER.finditer(text))
    if marked:
        m = marked[-1]
        v = parse_number(m.group(3))
        return -v if m.group(1) else v
    hits = list(_ANY_NUMBER.finditer(text))
    return _signed(text, hits[-1]) if hits else None


def has_marked_number(text: str) -> bool:
    """Whether the reply states its final number with a marker ('####', '\\boxed{', 'the
    answer is'): a reply that commits to an answer, as math replies do."""
    return _MARKED_NUMBER.search(text) is not None


def _letter_patterns(letters: str):
    L = "[" + re.escape(letters) + "]"
    end = r"(?![A-Za-z0-9'])"  # 'B' as a word, not the start of 'Because' or "A's"
    marker = (r"(?i:\b(?:answer|option|choice)\b(?:\s+(?:is|would\s+be|will\s+be))?)"
              r"(?:\s*(?i:option|choice))?")
    return (
        re.compile(marker + _FILL + r"(" + L + r")" + end),                    # marked
        re.compile(r"^[\s*_]*\(?(" + L + r")(?:[).:,*_]|\s*$|\s*\n)"),         # leading
        re.compile(r"(?<![A-Za-z0-9])\(?(" + L + r")\)?[\s.!*_]*$"),           # trailing
    )


def extract_letter(text: str, letters: str = "ABCD") -> Optional[str]:
    """The chosen option letter of a reply (module doc), or None when it names none clearly."""
    if not letters or not re.fullmatch(r"[A-Z]+", letters):
        raise ValueError(f"letters must be upper-case option letters such as 'ABCD', "
                         f"got {letters!r}")
    marked, leading, trailing = _letter_patterns(letters)
    hits = marked.findall(text)
    if hits:
        return hits[-1]
    for pattern in (leading, trailing):
        m = pattern.search(text)
        if m:
            return m.group(1)
    return None
