"""A tiny benchmark data set that the tests write themselves, in the shared/data layout
(docs/evaluation.md), so that the end-to-end tests run in a checkout without the shared files.

Every question, answer, program and recorded figure here is invented for the tests (simple
arithmetic, a few general-knowledge facts, tiny functions with their tests); nothing is copied
from the benchmarks. Only the layout, the field names and the model names of the recorded
columns follow the real files, since the loaders read those.

``write_tiny_data(root)`` writes it and returns ``root``. What it holds (rows):

- ``gsm8k/test_dev.jsonl`` (25) and ``routellm_responses_dev.csv`` (the same 25 prompts; one
  on ``routellm_contaminated_prompts.jsonl``), ``gsm8k/train.jsonl`` (8);
- ``mmlu/routellm_responses_dev/mmlu_<subject>.csv`` (3 subjects, 4 questions each; one on
  the contamination list) and ``mmlu/answer_key_dev.jsonl`` (12);
- ``mt_bench/question_dev.jsonl`` (6, one contaminated), ``routellm_judgements_dev.jsonl``
  (24), ``routellm_gpt-4_single_dev.jsonl`` (24, one failed judgement),
  ``reference_answer_gpt-4.jsonl`` (3);
- ``code/humaneval_dev.jsonl`` and ``humaneval_recorded_dev.csv`` (4), ``code/mbpp_test_dev.jsonl``
  (4) and ``code/mbpp_train.jsonl`` (4);
- ``nq_open/dev.jsonl`` (320 short factual questions: a router's training and calibration
  prompts need a few hundred).

FastChat's judge prompts (``mt_bench/judge_prompts.jsonl``) are not invented here: the test of
that file is a check of the shared file itself.
"""
from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Iterable

W, S = "mistralai/Mixtral-8x7B-Instruct-v0.1", "gpt-4-1106-preview"
CODE_MODELS = ("codellama/CodeLlama-34b-Instruct-hf", "gpt-3.5-turbo", "gpt-4")

# the files write_tiny_data writes (relative to its root): the layout the tests read
TINY_FILES = (
    "gsm8k/test_dev.jsonl", "gsm8k/routellm_responses_dev.csv",
    "gsm8k/routellm_contaminated_prompts.jsonl", "gsm8k/train.jsonl",
    "mmlu/answer_key_dev.jsonl", "mmlu/routellm_contaminated_prompts.jsonl",
    "mt_bench/question_dev.jsonl", "mt_bench/routellm_judgements_dev.jsonl",
    "mt_bench/routellm_gpt-4_single_dev.jsonl", "mt_bench/reference_answer_gpt-4.jsonl",
    "mt_bench/routellm_contaminated_prompts.jsonl",
    "code/humaneval_dev.jsonl", "code/humaneval_recorded_dev.csv",
    "code/mbpp_test_dev.jsonl", "code/mbpp_train.jsonl",
    "nq_open/dev.jsonl",
)


def _jsonl(path: Path, rows: Iterable[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")


def _csv(path: Path, header, rows) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)


# ------------------------------------------------------------------------------- GSM8K

_NAMES = ("Mia", "Tom", "Lena", "Omar", "Sara", "Ivo", "Nina")
# (question, worked answer); {n} a name, {a} {b} numbers, {r} the result
_GSM8K_TEMPLATES = (
    ("{n} has {a} boxes with {b} pencils in each box. How many pencils does {n} have?",
     "{n} has {a} * {b} = <<{a}*{b}={r}>>{r} pencils.", lambda a, b: a * b),
    ("A shelf holds {a} books. {n} puts {b} more books on it. How many books are on the shelf "
     "now?", "There are {a} + {b} = <<{a}+{b}={r}>>{r} books.", lambda a, b: a + b),
    ("{n} bakes {a} cookies and gives {b} of them to friends. How many cookies are left?",
     "{a} - {b} = <<{a}-{b}={r}>>{r} cookies are left.", lambda a, b: a - b),
    ("{n} reads {b} pages every day for {a} days. How many pages does {n} read in total?",
     "{n} reads {b} * {a} = <<{b}*{a}={r}>>{r} pages.", lambda a, b: a * b),
    ("A farm has {a} hens and {b} ducks. How many birds live on the farm?",
     "There are {a} + {b} = <<{a}+{b}={r}>>{r} birds.", lambda a, b: a + b),
)


def _gsm8k_rows(count: int, offset: int):
    rows = []
    for i in range(offset, offset + count):
        q, work, f = _GSM8K_TEMPLATES[i % len(_GSM8K_TEMPLATES)]
        b = 2 + (5 * i) % 7
        a = b + 3 + (7 * i) % 11  # a > b: the subtraction stays positive
        r = f(a, b)
        v = dict(n=_NAMES[i % len(_NAMES)], a=a, b=b, r=r)
        rows.append((q.format(**v), work.format(**v) + f"\n#### {r}", r))
    return rows


def _write_gsm8k(root: Path) -> None:
    d = root / "gsm8k"
    test = _gsm8k_rows(25, 0)
    _jsonl(d / "test_dev.jsonl", ({"question": q, "answer": a} for q, a, _ in test))
    _jsonl(d / "train.jsonl", ({"question": q, "answer": a} for q, a, _ in _gsm8k_rows(8, 40)))
    rec = []
    for i, (q, _, r) in enumerate(test):
        weak, strong = i % 2 == 0, i % 5 != 3  # rows 8 and 18: the weak model alone is right
        rec.append([q, weak, strong, f"The answer is {r if weak else r + 1}.\n#### "
                    f"{r if weak else r + 1}", f"So the total is {r if strong else r - 1}.\n"
                    f"#### {r if strong else r - 1}"])
    _csv(d / "routellm_responses_dev.csv", ["prompt", W, S, f"{W}_response", f"{S}_response"],
         rec)
    _jsonl(d / "routellm_contaminated_prompts.jsonl",
           [{"train_prompt": test[24][0].replace("?", " in all?"), "eval_prompt": test[24][0]}])


# ------------------------------------------------------------------------------- MMLU

_MMLU = {
    "elementary_mathematics": [
        ("What is 7 + 5?", ("10", "11", "12", "13"), "C"),
        ("Which of these numbers is even?", ("3", "8", "11", "15"), "B"),
        ("How many sides does a hexagon have?", ("5", "6", "7", "8"), "B"),
        ("What is half of 30?", ("15", "10", "20", "60"), "A"),
    ],
    "astronomy": [
        ("Which planet is closest to the Sun?", ("Venus", "Earth", "Mercury", "Mars"), "C"),
        ("What does the Moon orbit?", ("The Sun", "Mars", "Jupiter", "The Earth"), "D"),
        ("Which of these is a star?", ("The Sun", "The Moon", "Venus", "Pluto"), "A"),
        ("About how long does the Earth take to go once around the Sun?",
         ("One day", "One month", "One year", "Ten years"), "C"),
    ],
    "high_school_geography": [
        ("Which is the largest ocean?", ("Atlantic", "Indian", "Arctic", "Pacific"), "D"),
        ("On which continent is Egypt?", ("Africa", "Asia", "Europe", "South America"), "A"),
        ("What is the capital of Japan?", ("Seoul", "Tokyo", "Beijing", "Osaka"), "B"),
        ("Which river flows through Paris?", ("Thames", "Danube", "Seine", "Rhine"), "C"),
    ],
}


def _mmlu_prompt(question, options) -> str:
    return question + "".join(f"\n{l}. {o}" for l, o in zip("ABCD", options)) + "\nAnswer:"


def _write_mmlu(root: Path) -> None:
    d = root / "mmlu"
    key, k = [], 0
    for subject, questions in _MMLU.items():
        rows = []
        for q, opts, ans in questions:
            p = _mmlu_prompt(q, opts)
            key.append({"subject": subject, "prompt": p, "answer": ans})
            rows.append([p, k % 3 != 1, k % 4 != 2])  # prompt 6: the weak model alone is right
            k += 1
        _csv(d / "routellm_responses_dev" / f"mmlu_{subject}.csv", ["prompt", W, S], rows)
    _jsonl(d / "answer_key_dev.jsonl", key)
    _jsonl(d / "routellm_contaminated_prompts.jsonl",
           [{"train_prompt": "Which river runs through Paris?", "eval_prompt": key[-1]["prompt"]}])


# ------------------------------------------------------------------------------- MT-Bench

_MT_QUESTIONS = [
    (1, "writing", ["Write a short note inviting a neighbour to a garden party.",
                    "Rewrite the note as a four-line poem."]),
    (2, "roleplay", ["Pretend you are the cook on a ship. Describe today's lunch.",
                     "Now describe tomorrow's lunch in one sentence."]),
    (3, "math", ["What is 12 times 12?", "What is that number divided by 3?"]),
    (4, "reasoning", ["Ann is taller than Ben, and Ben is taller than Cal. Who is the shortest?",
                      "Is Ann taller than Cal?"]),
    (5, "coding", ["Write a Python function that returns the largest number of a list.",
                   "Change it so that it returns None for an empty list."]),
    (6, "extraction", ["List the colours named in this sentence: the red car passed a blue van.",
                       "Now list them in alphabetical order."]),
]
_MT_REFERENCES = {
    3: ["12 times 12 is 144.", "144 divided by 3 is 48."],
    4: ["Cal is the shortest.", "Yes: Ann is taller than Ben, who is taller than Cal."],
    5: ["def largest(xs):\n    return max(xs)",
        "def largest(xs):\n    return max(xs) if xs else None"],
}
# question id -> (weak turn 1, weak turn 2, strong turn 1, strong turn 2); on questions 2 and
# 4 the weak model is judged better, by enough that the oracle's curve rises above the strong
# model's quality, as on the shared data
_MT_SCORES = {1: (3, 2, 9, 10), 2: (9, 9, 5, 5), 3: (2, 2, 10, 10), 4: (9, 8, 5, 4),
              5: (5, 6, 9, 8), 6: (7, 7, 8, 9)}


def _judgement(qid, model, turn, score, judge, text=None) -> dict:
    return {"question_id": qid, "model": model, "judge": ["gpt-4", judge],
            "user_prompt": f"[Question]\n{dict((q, t) for q, _, t in _MT_QUESTIONS)[qid][0]}",
            "judgment": text if text is not None else
            f"The answer is {'clear and correct' if score >= 7 else 'partly wrong'}. "
            f"Rating: [[{score}]]",
            "score": score, "turn": turn, "tstamp": 1700000000.0 + qid}


def _write_mt_bench(root: Path) -> None:
    d = root / "mt_bench"
    _jsonl(d / "question_dev.jsonl", ({"question_id": q, "category": c, "turns": t}
                                      for q, c, t in _MT_QUESTIONS))
    _jsonl(d / "reference_answer_gpt-4.jsonl",
           ({"question_id": q, "answer_id": f"tiny-{q}", "model_id": "gpt-4",
             "choices": [{"index": 0, "turns": t}], "tstamp": 1700000000.0}
            for q, t in _MT_REFERENCES.items()))
    rows = []
    for q, (w1, w2, s1, s2) in _MT_SCORES.items():
        for model, scores in ((W, (w1, w2)), (S, (s1, s2))):
            for turn, score in enumerate(scores, 1):
                rows.append(_judgement(q, model, turn, score, "single-v1"))
    _jsonl(d / "routellm_judgements_dev.jsonl", rows)
    others = []
    for q, (w1, w2, s1, s2) in _MT_SCORES.items():
        for model, scores in (("martian", (s1, w2)), ("unify", (w1, s2))):
            for turn, score in enumerate(scores, 1):
                if (q, model, turn) == (2, "unify", 2):  # a judgement with no rating in it
                    others.append(_judgement(q, model, turn, -1, "single-v1-multi-turn",
                                             "The reply is empty, so there is nothing to "
                                             "judge."))
                else:
                    others.append(_judgement(q, model, turn, score, "single-v1-multi-turn"))
    _jsonl(d / "routellm_gpt-4_single_dev.jsonl", others)
    _jsonl(d / "routellm_contaminated_prompts.jsonl",
           [{"train_prompt": "Name the colours in: a red car and a blue van.",
             "eval_prompt": _MT_QUESTIONS[5][2][0]}])


# ------------------------------------------------------------------------------- code

_HUMANEVAL = [
    ("count_vowels",
     'def count_vowels(s: str) -> int:\n    """Count the vowels (a, e, i, o, u) of the text, '
     "in either case.\n    >>> count_vowels('Hello')\n    2\n    >>> count_vowels('xyz')\n"
     '    0\n    """\n',
     "    return sum(c in 'aeiouAEIOU' for c in s)\n",
     "def check(candidate):\n    assert candidate('Hello') == 2\n"
     "    assert candidate('AEIOU') == 5\n    assert candidate('') == 0\n"
     "    assert candidate('rhythm') == 0\n"),
    ("second_largest",
     'def second_largest(xs: list) -> int:\n    """Return the second largest distinct number '
     'of the list.\n    >>> second_largest([3, 1, 4, 1, 5])\n    4\n    """\n',
     "    return sorted(set(xs))[-2]\n",
     "def check(candidate):\n    assert candidate([3, 1, 4, 1, 5]) == 4\n"
     "    assert candidate([2, 2, 1]) == 1\n    assert candidate([10, 20]) == 10\n"),
    ("is_palindrome",
     'def is_palindrome(s: str) -> bool:\n    """Whether the text reads the same backwards, '
     "ignoring case.\n    >>> is_palindrome('Level')\n    True\n    >>> is_palindrome('boat')\n"
     '    False\n    """\n',
     "    t = s.lower()\n    return t == t[::-1]\n",
     "def check(candidate):\n    assert candidate('Level') is True\n"
     "    assert candidate('boat') is False\n    assert candidate('') is True\n"),
    ("running_sum",
     'from typing import List\n\n\ndef running_sum(xs: List[int]) -> List[int]:\n'
     '    """The running totals of the list.\n    >>> running_sum([1, 2, 3])\n    [1, 3, 6]\n'
     '    """\n',
     "    out, total = [], 0\n    for x in xs:\n        total += x\n        out.append(total)\n"
     "    return out\n",
     "def check(candidate):\n    assert candidate([1, 2, 3]) == [1, 3, 6]\n"
     "    assert candidate([]) == []\n    assert candidate([5, -5]) == [5, 0]\n"),
]
# recorded success rates (over 10 runs) per task, in CODE_MODELS order
_HUMANEVAL_RATES = [(0.5, 0.8, 1.0), (0.2, 0.6, 0.9), (0.9, 1.0, 1.0), (0.1, 0.5, 0.7)]

# (task id, text, reference code, imports, asserts: the first one names the function)
_MBPP_TEST = [
    (1001, "Write a function to return the product of all numbers in a list.",
     "def list_product(nums):\n    result = 1\n    for n in nums:\n        result *= n\n"
     "    return result\n", [],
     ["assert list_product([2, 3, 4]) == 24", "assert list_product([5]) == 5",
      "assert list_product([]) == 1"]),
    (1002, "Write a function to count the words of a sentence.",
     "def count_words(text):\n    return len(text.split())\n", [],
     ["assert count_words('the cat sat') == 3", "assert count_words('') == 0",
      "assert count_words('  two   words ') == 2"]),
    (1003, "Write a function to find the area of a circle of the given radius.",
     "import math\n\n\ndef circle_area(r):\n    return math.pi * r * r\n", ["import math"],
     ["assert math.isclose(circle_area(1), math.pi)",
      "assert math.isclose(circle_area(2), 4 * math.pi)", "assert circle_area(0) == 0"]),
    (1004, "Write a function to reverse the order of the words in a string.",
     "def reverse_words(s):\n    return ' '.join(reversed(s.split()))\n", [],
     ["assert reverse_words('one two three') == 'three two one'",
      "assert reverse_words('hi') == 'hi'"]),
]
_MBPP_TRAIN = [
    (2001, "Write a function to return the smallest number of a list.",
     "def smallest(nums):\n    return min(nums)\n", [],
     ["assert smallest([4, 2, 8]) == 2", "assert smallest([7]) == 7",
      "assert smallest([-1, 3]) == -1"]),
    (2002, "Write a function to check whether a number is even.",
     "def is_even(n):\n    return n % 2 == 0\n", [],
     ["assert is_even(4) == True", "assert is_even(7) == False", "assert is_even(0) == True"]),
    (2003, "Write a function to repeat a string n times with a dash between the copies.",
     "def repeat_dash(s, n):\n    return '-'.join([s] * n)\n", [],
     ["assert repeat_dash('ab', 3) == 'ab-ab-ab'", "assert repeat_dash('x', 1) == 'x'"]),
    (2004, "Write a function to count how often a letter occurs in a string.",
     "def count_letter(s, c):\n    return s.count(c)\n", [],
     ["assert count_letter('banana', 'a') == 3", "assert count_letter('kiwi', 'z') == 0"]),
]


def _mbpp(rows):
    return ({"source_file": "tiny", "task_id": t, "prompt": p, "code": c, "test_imports": imp,
             "test_list": tests} for t, p, c, imp, tests in rows)


def _write_code(root: Path) -> None:
    d = root / "code"
    tasks = [{"task_id": f"Tiny/{i}", "prompt": p, "entry_point": ep, "canonical_solution": sol,
              "test": test} for i, (ep, p, sol, test) in enumerate(_HUMANEVAL)]
    _jsonl(d / "humaneval_dev.jsonl", tasks)
    _csv(d / "humaneval_recorded_dev.csv", ["task_id", "prompt", *CODE_MODELS],
         [[t["task_id"], t["prompt"], *rates] for t, rates in zip(tasks, _HUMANEVAL_RATES)])
    _jsonl(d / "mbpp_test_dev.jsonl", _mbpp(_MBPP_TEST))
    _jsonl(d / "mbpp_train.jsonl", _mbpp(_MBPP_TRAIN))


# ------------------------------------------------------------------------------- NQ-open

_FACTS = [
    ("how many legs does a spider have", ["8", "eight"]),
    ("what colour do you get by mixing blue and yellow", ["green"]),
    ("how many days are there in a leap year", ["366"]),
    ("at how many degrees celsius does water freeze", ["0", "zero"]),
    ("which planet is called the red planet", ["Mars"]),
    ("how many continents are there", ["7", "seven"]),
    ("which gas do plants take in from the air", ["carbon dioxide", "CO2"]),
    ("who wrote the play romeo and juliet", ["William Shakespeare", "Shakespeare"]),
    ("what is the largest planet of the solar system", ["Jupiter"]),
    ("how many minutes are there in an hour", ["60", "sixty"]),
    ("what is the capital city of italy", ["Rome"]),
    ("which language is spoken in brazil", ["Portuguese"]),
    ("how many strings does a violin have", ["4", "four"]),
    ("what is the chemical symbol for gold", ["Au"]),
    ("what is the tallest mountain on earth", ["Mount Everest", "Everest"]),
    ("which animal is the largest mammal", ["blue whale"]),
    ("how many sides does a triangle have", ["3", "three"]),
    ("what is the capital city of canada", ["Ottawa"]),
    ("how many hours are there in a day", ["24", "twenty-four"]),
    ("which metal is liquid at room temperature", ["mercury"]),
]


def _nq_rows(count: int):
    rows = [{"question": q, "answer": a} for q, a in _FACTS]
    i = 0
    while len(rows) < count:  # then sums and products of small numbers
        a, b = 2 + i % 17, 3 + (i * 7) % 19
        rows.append({"question": f"what is {a} plus {b}", "answer": [str(a + b)]} if i % 2 else
                    {"question": f"what is {a} times {b}", "answer": [str(a * b)]})
        i += 1
    return rows[:count]


# ------------------------------------------------------------------------------- all


def write_tiny_data(root) -> Path:
    """Writes the tiny invented data set under ``root`` (created) and returns ``root``."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    _write_gsm8k(root)
    _write_mmlu(root)
    _write_mt_bench(root)
    _write_code(root)
    _jsonl(root / "nq_open" / "dev.jsonl", _nq_rows(320))
    (root / "README.md").write_text(
        "A tiny data set the tests wrote (tests/helpers/tiny_data.py), in the shared/data "
        "layout; every row is invented.\n", encoding="utf-8")
    missing = [f for f in TINY_FILES if not (root / f).is_file()]
    assert not missing, missing
    return root
