"""LLM-as-a-judge through any chat client (``client.chat(messages, n, max_tokens,
temperature) -> .text``, e.g. ``confroute.models.CloudModel``).

* Single-answer grading on 1-10, MT-Bench style, with a reference answer where one is given
  (math, reasoning, coding) and a multi-turn variant that grades the second answer.
* A robust parser: the requested ``[[8]]`` form, else ``Rating: 8`` / ``8/10``; anything else
  (no rating, several different ones, out of range) is a *failure* (score None), never a guess.
* Pairwise comparison run in both orders to cancel position bias: a win counts only when both
  orders agree; disagreement is a tie.
* The paper's best-of-k judge: given the question, the ground truth and k answers, name the
  best ones; a system's score is the share of queries where its answer is named.
* Every judge call is cached on disk by (judge model, full prompt) — the prompt holds the
  question and the answers — so a rerun costs nothing. Raw outputs are cached and parsed on
  read, so a better parser applies to old outputs too.

Templates are our own; FastChat's ``judge_prompts.jsonl`` can be loaded instead
(:func:`load_fastchat_templates`). Both use FastChat's placeholder names.
"""
from __future__ import annotations

import hashlib
import json
import os
import random
import re
from dataclasses import dataclass
from typing import Dict, Mapping, Optional, Sequence, Tuple

from confroute.runtime import checkpoint as ckpt

# ------------------------------------------------------------------------------- templates


@dataclass(frozen=True)
class JudgeTemplate:
    name: str
    system_prompt: str
    prompt_template: str


# No numeric example in the format instruction: small judges copy the example as their rating.
_SYS_SINGLE = (
    "You are a careful, impartial judge of AI assistant answers. Judge helpfulness, relevance, "
    "accuracy, depth and level of detail. Explain your judgement briefly first. Then give a "
    "rating from 1 (useless or wrong) to 10 (excellent) in exactly this form: [[rating]], "
    "with your number in place of the word rating.")
_SYS_SINGLE_REF = (
    "You are a careful, impartial judge of AI assistant answers. Judge correctness first, "
    "then helpfulness. You are given a reference answer: compare the assistant's answer with "
    "it and point out any mistake. Explain briefly first. Then give a rating from 1 (wrong) to "
    "10 (fully correct and clear) in exactly this form: [[rating]], with your number in "
    "place of the word rating.")
_MULTI_NOTE = " Grade only the assistant's answer to the second user question."
_SYS_PAIR = (
    "You are a careful, impartial judge. Two AI assistants, A and B, answered the same user "
    "question. Decide which answer is better ({what}). The order in which the answers are "
    "shown, their length and the assistants' names must not influence you. Explain briefly "
    "first. Then give your verdict in exactly this form: [[A]] if A is better, [[B]] if B is "
    "better, [[C]] for a tie.")
_SYS_BEST = (
    "You are a careful, impartial judge. You are given a question, its ground-truth answer and "
    "{k} numbered candidate answers. Name the best candidate answers: every candidate that is "
    "correct according to the ground truth and as good as the best one. Explain briefly first. "
    "Then list the numbers of the best candidates in exactly this form: [[1, 3]]. If no "
    "candidate is correct, write [[0]].")

_Q = "[Question]\n{question}\n\n"
_REF = "[Reference answer]\n{ref_answer_1}\n[End of reference answer]\n\n"
_ANS = "[Assistant's answer]\n{answer}\n[End of assistant's answer]"
_CONV = ("[Conversation]\nUser: {question_1}\n\nAssistant: {answer_1}\n\nUser: {question_2}\n\n"
         "Assistant: {answer_2}\n[End of conversation]")
_REFS = ("[Reference answers]\nFirst question: {ref_answer_1}\n\nSecond question: "
         "{ref_answer_2}\n[End of reference answers]\n\n")
_PAIR = ("[Answer of assistant A]\n{answer_a}\n[End of answer A]\n\n"
         "[Answer of assistant B]\n{answer_b}\n[End of answer B]")
_PAIR_MULTI = ("[Conversation with assistant A]\nUser: {question_1}\n\nA: {answer_a_1}\n\n"
               "User: {question_2}\n\nA: {answer_a_2}\n[End of conversation A]\n\n"
               "[Conversation with assistant B]\nUser: {question_1}\n\nB: {answer_b_1}\n\n"
               "User: {question_2}\n\nB: {answer_b_2}\n[End of conversation B]")
_GEN, _REFW = "helpfulness, relevance, accuracy, depth, detail", "correctness, then helpfulness"

DEFAULT_TEMPLATES: Dict[str, JudgeTemplate] = {
    "single": JudgeTemplate("single", _SYS_SINGLE, _Q + _ANS),
    "single-ref": JudgeTemplate("single-ref", _SYS_SINGLE_REF, _Q + _REF + _ANS),
    "single-multi": JudgeTemplate("single-multi", _SYS_SINGLE + _MULTI_NOTE, _CONV),
    "single-ref-multi": JudgeTemplate("single-ref-multi", _SYS_SINGLE_REF + _MULTI_NOTE,
                                      _REFS + _CONV),
    "pair": JudgeTemplate("pair", _SYS_PAIR.format(what=_GEN), _Q + _PAIR),
    "pair-ref": JudgeTemplate("pair-ref", _SYS_PAIR.format(what=_REFW) + " A reference "
                              "answer is given.", _Q + _REF + _PAIR),
    "pair-multi": JudgeTemplate("pair-multi", _SYS_PAIR.format(what=_GEN) + " Judge the "
                                "answers to the second question.", _PAIR_MULTI),
    "pair-ref-multi": JudgeTemplate("pair-ref-multi", _SYS_PAIR.format(what=_REFW) + " Judge "
                                    "the answers to the second question; reference answers "
                                    "are given.", _REFS + _PAIR_MULTI),
    "best-of-k": JudgeTemplate("best-of-k", _SYS_BEST,
                               _Q + "[Ground truth]\n{ground_truth}\n[End of ground truth]\n\n"
                               "{candidates}"),
}

# FastChat's template names -> our slots.
FASTCHAT_SLOTS = {
    "single-v1": "single", "single-math-v1": "single-ref",
    "single-v1-multi-turn": "single-multi", "single-math-v1-multi-turn": "single-ref-multi",
    "pair-v2": "pair", "pair-math-v1": "pair-ref",
    "pair-v2-multi-turn": "pair-multi", "pair-math-v1-multi-turn": "pair-ref-multi",
}
REFERENCE_CATEGORIES = ("math", "reasoning", "coding")


def load_fastchat_templates(path) -> Dict[str, JudgeTemplate]:
    """FastChat's ``judge_prompts.jsonl`` as our template slots (the rest stay ours)."""
    out = dict(DEFAULT_TEMPLATES)
    found = 0
    for lineno, o in ckpt.read_jsonl(path):
        for k in ("name", "system_prompt", "prompt_template"):
            if not isinstance(o.get(k), str):
                raise ValueError(f"{path}: line {lineno}: missing text field {k!r}")
        slot = FASTCHAT_SLOTS.get(o["name"])
        if slot:
            out[slot] = JudgeTemplate(o["name"], o["system_prompt"], o["prompt_template"])
            found += 1
    if not found:
        raise ValueError(f"{path}: no FastChat judge templates ({', '.join(FASTCHAT_SLOTS)})")
    return out


def render(template: str, **values: str) -> str:
    """Fills ``{name}`` placeholders; braces in the values or elsewhere are left alone
    (str.format would choke on code answers full of braces)."""
    def sub(m):
        key = m.group(1)
        if key not in values:
            raise ValueError(f"judge template needs {{{key}}}, which was not given")
        return str(values[key])

    return re.sub(r"\{([a-z_0-9]+)\}", sub, template)


# ------------------------------------------------------------------------------- parsing

_NUM = r"(\d+(?:\.\d+)?)"


def parse_rating(text: str, lo: float = 1, hi: float = 10) -> Optional[float]:
    """The 1-10 rating in a judge's output, or None when there is no unambiguous one.

    The requested form ``[[x]]`` wins; the last one counts (judges often restate the format
    before answering). Without it, ``Rating: x``, ``Score: x`` or ``x/10`` are accepted only
    if all such mentions agree. A value outside [lo, hi] is a failure."""
    if not isinstance(text, str):
        return None
    hits = re.findall(r"\[\[\s*" + _NUM + r"\s*(?:/\s*10\s*)?\]\]", text)
    if hits:
        value = float(hits[-1])
    else:
        loose = re.findall(r"(?:rating|score)\s*(?:is|of|:|=)?\s*\[?\s*" + _NUM + r"\s*\]?"
                           r"(?:\s*(?:/|out of)\s*10)?", text, flags=re.IGNORECASE)
        loose += re.findall(r"(?<![\d.])" + _NUM + r"\s*(?:/|out of)\s*10(?![\d])", text,
                            flags=re.IGNORECASE)
        values = {float(v) for v in loose}
        if len(values) != 1:
            return None
        value = values.pop()
    return value if lo <= value <= hi else None


def parse_verdict(text: str) -> Optional[str]:
    """'A', 'B' or 'tie' from ``[[A]]``/``[[B]]``/``[[C]]`` (the last one counts), else None."""
    if not isinstance(text, str):
        return None
    hits = re.findall(r"\[\[\s*([ABC])\s*\]\]", text)
    if not hits:
        return None
    return {"A": "A", "B": "B", "C": "tie"}[hits[-1]]


def parse_best(text: str, k: int) -> Optional[frozenset]:
    """The candidate numbers (1..k) named in the last ``[[i, j, ...]]``; ``[[0]]`` or ``[[]]``
    means none. None (a failure) when absent or when a number is out of range."""
    if not isinstance(text, str):
        return None
    hits = re.findall(r"\[\[([^\[\]]*)\]\]", text)
    if not hits:
        return None
    body = hits[-1].strip()
    if body.lower() in ("", "0", "none"):
        return frozenset()
    parts = [p.strip() for p in re.split(r"[,\s]+", body) if p.strip()]
    if not all(p.isdigit() for p in parts):
        return None
    nums = {int(p) for p in parts}
    if not all(1 <= n <= k for n in nums):
        return None
    return frozenset(nums)


# ------------------------------------------------------------------------------- cache


class JudgeCache:
    """Judge outputs on disk: a checkpoint (:mod:`confroute.runtime.checkpoint`) of one JSON line per
    call, appended and fsynced at once. A torn last line (a run killed mid-write) is cut off
    the file on open, like the other checkpoints' torn lines, and that call is redone; any
    other line that is not a cache entry is skipped."""

    def __init__(self, path):
        self.path = os.fspath(path)
        self._data: Dict[str, str] = {}
        if os.path.exists(self.path):
            for _, line in ckpt.load(self.path):
                try:
                    o = json.loads(line)
                    self._data[o["key"]] = o["output"]
                except (json.JSONDecodeError, KeyError, TypeError):
                    continue
        elif os.path.dirname(self.path):
            os.makedirs(os.path.dirname(self.path), exist_ok=True)

    @staticmethod
    def key(model: str, messages, max_tokens: int, temperature: float) -> str:
        blob = json.dumps([model, messages, max_tokens, temperature], ensure_ascii=False,
                          sort_keys=True)
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()

    def get(self, key: str) -> Optional[str]:
        return self._data.get(key)

    def put(self, key: str, output: str) -> None:
        self._data[key] = output
        with ckpt.open_append(self.path) as f:
            ckpt.append(f, {"key": key, "output": output})

    def __len__(self) -> int:
        return len(self._data)


# ------------------------------------------------------------------------------- results


@dataclass(frozen=True)
class Rating:
    score: Optional[float]  # None: the judge's output held no unambiguous rating
    output: str
    template: str

    @property
    def ok(self) -> bool:
        return self.score is not None


@dataclass(frozen=True)
class PairResult:
    """``winner``: 'a', 'b', 'tie', or None when a verdict could not be parsed.
    ``verdicts``: each order's verdict in terms of a/b ('a', 'b', 'tie', None)."""

    winner: Optional[str]
    verdicts: Tuple[Optional[str], Optional[str]]
    outputs: Tuple[str, str]

    @property
    def consistent(self) -> bool:
        return self.verdicts[0] is not None and self.verdicts[0] == self.verdicts[1]


@dataclass(frozen=True)
class BestOfK:
    """``best``: the systems whose answer was named (None: unparsable output)."""

    best: Optional[frozenset]
    systems: Tuple[str, ...]
    output: str


def best_of_k_scores(results: Sequence[BestOfK]) -> Dict[str, object]:
    """Per system, the share of (parsed) queries where its answer was named best."""
    ok = [r for r in results if r.best is not None]
    systems = sorted({s for r in results for s in r.systems})
    scores = {s: (sum(s in r.best for r in ok if s in r.systems)
                  / max(1, sum(s in r.systems for r in ok))) for s in systems}
    return {"scores": scores, "n": len(results), "failed": len(results) - len(ok)}


# ------------------------------------------------------------------------------- the judge


class Judge:
    """``client``: anything with ``chat(messages, n, max_tokens, temperature)`` returning an
    object with ``.text``. ``model`` names the judge in the cache key (default: the client's
    ``model`` or ``name`` attribute). ``templates``: a dict of slots or a FastChat
    ``judge_prompts.jsonl`` path. ``cache``: a JSONL path, a JudgeCache, or None."""

    def __init__(self, client, model: Optional[str] = None, cache=None, templates=None,
                 max_tokens: int = 512, temperature: float = 0.0, seed: int = 0):
        self.client = client
        self.model = model or getattr(client, "model", None) or getattr(client, "name", None)
        if not self.model:
            raise ValueError("name the judge model (model=...): it is part of the cache key")
        if isinstance(templates, (str, os.PathLike)):
            templates = load_fastchat_templates(templates)
        self.templates = {**DEFAULT_TEMPLATES, **(templates or {})}  # missing slots: ours
        self.cache = JudgeCache(cache) if isinstance(cache, (str, os.PathLike)) else cache
        self.max_tokens, self.temperature, self.seed = max_tokens, temperature, seed
        self.calls = 0  # judge calls that were not answered from the cache

    def _ask(self, slot: str, **values) -> str:
        t = self.templates[slot]
        messages = [{"role": "system", "content": render(t.system_prompt, **values)},
                    {"role": "user", "content": render(t.prompt_template, **values)}]
        key = JudgeCache.key(self.model, messages, self.max_tokens, self.temperature)
        if self.cache is not None:
            hit = self.cache.get(key)
            if hit is not None:
                return hit
        r = self.client.chat(messages, n=1, max_tokens=self.max_tokens,
                             temperature=self.temperature)
        text = r if isinstance(r, str) else r.text
        self.calls += 1
        if self.cache is not None:
            self.cache.put(key, text)
        return text

    # -- single-answer grading

    def grade(self, question: str, answer: str, reference: Optional[str] = None) -> Rating:
        slot = "single-ref" if reference else "single"
        out = self._ask(slot, question=question, answer=answer, ref_answer_1=reference or "")
        return Rating(parse_rating(out), out, self.templates[slot].name)

    def grade_multi(self, questions: Sequence[str], answers: Sequence[str],
                    references: Optional[Sequence[str]] = None) -> Rating:
        """Grades the answer to the second turn, with the whole conversation shown."""
        if len(questions) != 2 or len(answers) != 2:
            raise ValueError("the multi-turn judge needs two questions and two answers")
        refs = list(references or [])
        slot = "single-ref-multi" if refs else "single-multi"
        if refs and len(refs) != 2:
            raise ValueError("give a reference answer for both turns, or none")
        out = self._ask(slot, question_1=questions[0], question_2=questions[1],
                        answer_1=answers[0], answer_2=answers[1],
                        ref_answer_1=refs[0] if refs else "", ref_answer_2=refs[1] if refs else "")
        return Rating(parse_rating(out), out, self.templates[slot].name)

    def grade_mt_bench(self, question, answers: Sequence[str]) -> Tuple[Rating, ...]:
        """One rating per turn of an MT-Bench question (``MTBenchQuestion``); references are
        used for the math, reasoning and coding categories, as in MT-Bench."""
        refs = question.references if question.category in REFERENCE_CATEGORIES else ()
        if len(answers) != len(question.turns):
            raise ValueError(f"question {question.question_id}: {len(question.turns)} turns "
                             f"but {len(answers)} answers")
        out = [self.grade(question.turns[0], answers[0], refs[0] if refs else None)]
        if len(answers) > 1:
            out.append(self.grade_multi(question.turns[:2], answers[:2],
                                        refs[:2] if len(refs) >= 2 else None))
        return tuple(out)

    # -- pairwise

    def pairwise(self, question: str, answer_a: str, answer_b: str,
                 reference: Optional[str] = None) -> PairResult:
        """Asks twice, (a, b) then (b, a); the winner needs both orders' agreement."""
        slot = "pair-ref" if reference else "pair"
        outs, verdicts = [], []
        for first, second, flip in ((answer_a, answer_b, False), (answer_b, answer_a, True)):
            out = self._ask(slot, question=question, answer_a=first, answer_b=second,
                            ref_answer_1=reference or "")
            v = parse_verdict(out)
            if v in ("A", "B"):
                v = {"A": "a", "B": "b"}[v] if not flip else {"A": "b", "B": "a"}[v]
            outs.append(out)
            verdicts.append(v)
        if None in verdicts:
            winner = None
        elif verdicts[0] == verdicts[1]:
            winner = verdicts[0]
        else:
            winner = "tie"  # the orders disagree: position bias, not a preference
        return PairResult(winner, tuple(verdicts), tuple(outs))

    # -- best of k

    def best_of_k(self, question: str, ground_truth: str, answers: Mapping[str, str]) -> BestOfK:
        """Shows the distinct answers in a seeded shuffled order (identical answers once,
        credited to every system that gave them) and asks for the best ones."""
        if not answers:
            raise ValueError("best_of_k needs at least one answer")
        texts = sorted(set(answers.values()))
        rng = random.Random(f"{self.seed}\0{question}")
        rng.shuffle(texts)
        cands = "\n\n".join(f"[Candidate {i}]\n{t}\n[End of candidate {i}]"
                            for i, t in enumerate(texts, 1))
        out = self._ask("best-of-k", question=question, ground_truth=ground_truth,
                        candidates=cands, k=str(len(texts)))
        nums = parse_best(out, len(texts))
        systems = tuple(answers)
        if nums is None:
            return BestOfK(None, systems, out)
        named = {texts[i - 1] for i in nums}
        return BestOfK(frozenset(s for s, a in answers.items() if a in named), systems, out)
