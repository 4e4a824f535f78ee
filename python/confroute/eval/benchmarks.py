"""Benchmarks for live outcome tables: what to ask, how to grade, what was recorded.

A :class:`Benchmark` is the whole plug-in interface of ``confroute eval build`` (see
docs/evaluation.md, "Plug-ins"):

- ``items(data_dir, split, include_contaminated)`` -> list of :class:`~confroute.eval.items.Item`;
  an item's ``recorded`` maps model name -> recorded quality (``--cloud recorded:MODEL``).
- ``prompt(item)`` -> :class:`Prompt`: chat messages plus an optional ``cue`` that opens the
  assistant turn (the edge continues from it).
- ``grade(answer, item)`` -> ``(quality or None, extracted or None)``.
- ``answer_key(text, item)`` -> the canonical answer of one sample (exact-answer SE clusters
  samples by it; None = a cluster of its own). Default: none (no exact-answer SE).
- ``se_signal(kind)``: which signal column is the edge's semantic entropy (the SE that
  ``confroute label --benchmark`` labels by). The signal columns are the served policies'
  scores (:mod:`confroute.eval.live`), the same for every benchmark.
- ``options``: option letters (``"ABCD"``) when the edge answers by its next-token letter
  distribution after the cue instead of by a generated text.
- ``max_tokens`` / ``sample_tokens``: answer lengths; ``settings()``: what goes into the
  checkpoint header (a resumed run must use the same prompts).

Register a new one with :func:`register_benchmark`; ``get_benchmark(name)`` finds it.
"""
from __future__ import annotations

import os
import zlib
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from confroute.eval.items import Item

Message = Dict[str, str]


@dataclass(frozen=True)
class Prompt:
    messages: Tuple[Message, ...]
    cue: str = ""  # text the assistant turn starts with (the model continues it)


class Benchmark:
    name = "benchmark"
    options: str = ""
    max_tokens = 256
    sample_tokens: Optional[int] = None  # default: max_tokens

    def items(self, data_dir, split: str = "dev",
              include_contaminated: bool = False) -> List[Item]:
        raise NotImplementedError

    def prompt(self, item: Item) -> Prompt:
        return Prompt(({"role": "user", "content": item.prompt},))

    def grade(self, answer, item: Item) -> Tuple[Optional[float], Optional[str]]:
        raise NotImplementedError

    def answer_key(self, text: str, item: Item) -> Optional[str]:
        return None

    def has_answer_key(self) -> bool:
        return type(self).answer_key is not Benchmark.answer_key

    def se_signal(self, kind: str = "kuhn") -> str:
        """The signal that is the edge's semantic entropy of ``kind``: the served SE policy's
        column (meaning judged per prompt: execution for code, the final answer for math)."""
        from confroute.decision.policies import KINDS

        if kind not in KINDS:
            raise ValueError(f"unknown SE kind {kind!r}; use one of {KINDS}")
        return "se" if kind == "kuhn" else f"se_{kind}"

    def settings(self) -> dict:
        return {}

    def grader(self) -> str:
        """Names the grading in the checkpoint header (a judge model, an executor)."""
        return ""


_REGISTRY: Dict[str, Callable[..., Benchmark]] = {}


def register_benchmark(name: str, factory: Callable[..., Benchmark]) -> None:
    _REGISTRY[name] = factory


def benchmark_names() -> List[str]:
    _load_plugins()
    return sorted(_REGISTRY)


def get_benchmark(name: str, **options) -> Benchmark:
    """A benchmark by name; ``options`` go to its constructor (``shots=`` for MMLU, ...);
    options a benchmark does not take are dropped (one CLI serves them all)."""
    _load_plugins()
    if name not in _REGISTRY:
        raise ValueError(f"unknown benchmark {name!r}; known: {', '.join(sorted(_REGISTRY))}")
    import inspect

    factory = _REGISTRY[name]
    params = inspect.signature(factory).parameters
    return factory(**{k: v for k, v in options.items() if k in params and v is not None})


def _load_plugins() -> None:
    # Benchmarks in other modules register themselves on import; missing ones are skipped.
    import importlib

    for mod in ("confroute.eval.code_benchmarks",):
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as e:
            if e.name != mod:
                raise


def item_seed(seed: int, item_id: str) -> int:
    """The per-prompt seed: a function of (run seed, item id) only, so a prompt gets the same
    samples in any order, on any worker, after any resume."""
    return zlib.crc32(f"{int(seed)}/{item_id}".encode()) & 0x7FFFFFFF


def stratified_order(items: Sequence[Item], seed: int = 0) -> List[Item]:
    """All items in a seeded order whose every prefix is a sample stratified by
    ``item.group``: systematic sampling within each group (a random permutation of the
    group, member k at key (k + u_g) / size_g with one random offset u_g per group), the
    groups merged by key. The first n items hold within 2 (1 + groups * size_g / N) of
    n * size_g / N of each group."""
    rng = np.random.default_rng(seed)
    groups: Dict[str, List[int]] = {}
    for i, it in enumerate(items):
        groups.setdefault(it.group, []).append(i)
    keys = np.empty(len(items))
    for g, members in groups.items():
        perm = rng.permutation(len(members))
        u = rng.random()
        for k, j in enumerate(perm):
            keys[members[j]] = (k + u) / len(members)
    tie = rng.random(len(items))
    return [items[i] for i in np.lexsort((tie, keys))]


def stratified_sample(items: Sequence[Item], n: int, seed: int = 0) -> List[Item]:
    """``n`` items drawn without replacement, stratified by ``item.group``: the first n of
    :func:`stratified_order`. Samples of one seed are nested (the sample of 150 is the first
    half of the sample of 300), and they come in that order, so a run stopped early has
    answered a stratified sample too."""
    if n < 1:
        raise ValueError(f"the sample size must be >= 1, got {n}")
    return stratified_order(items, seed)[:n]


# ------------------------------------------------------------------------------- GSM8K

class GSM8K(Benchmark):
    """Grade-school math, answered in full (chain of thought, up to ``max_tokens``), graded
    by the final number; exact-answer SE clusters samples by their final number
    (self-consistency)."""

    name = "gsm8k"
    max_tokens = 512

    def __init__(self, max_tokens: Optional[int] = None):
        if max_tokens is not None:
            self.max_tokens = int(max_tokens)

    def items(self, data_dir, split="dev", include_contaminated=False):
        from confroute.eval.data import load_contaminated, load_gsm8k
        from confroute.eval.items import gsm8k_items

        items = gsm8k_items(data_dir, split)
        if split == "train":  # router-training questions: no recorded outcomes
            return items
        d = os.path.join(os.fspath(data_dir), "gsm8k")
        rec = _recorded_by_prompt(load_gsm8k(data_dir, split, include_contaminated=True))
        bad = set() if include_contaminated else load_contaminated(
            os.path.join(d, "routellm_contaminated_prompts.jsonl"))
        return [_with_recorded(it, rec.get(it.prompt, ())) for it in items
                if it.prompt not in bad]

    def prompt(self, item):
        from confroute.eval.grading import GSM8K_INSTRUCTION

        return Prompt(({"role": "user", "content": item.prompt + GSM8K_INSTRUCTION},))

    def grade(self, answer, item):
        # the package's one extractor: the last marked answer of the whole reply
        from confroute.eval.grading import grade_gsm8k

        return grade_gsm8k(answer, item.reference)

    def answer_key(self, text, item):
        from confroute.eval.grading import extract_number

        x = extract_number(text)
        return None if x is None else f"{x:g}"

    def settings(self):
        import hashlib

        from confroute.eval.grading import GSM8K_INSTRUCTION

        return {"max_tokens": self.max_tokens,
                "instruction": hashlib.sha256(GSM8K_INSTRUCTION.encode()).hexdigest()[:12]}


# ------------------------------------------------------------------------------- MMLU

MMLU_HEADER = "The following are multiple choice questions (with answers) about {}."


class MMLU(Benchmark):
    """Hendrycks et al.'s format in chat form: the subject header as the system message,
    ``shots`` solved examples (other questions of the same subject in the split, chosen per
    question by its seed) as user/assistant turns, then the question; the assistant turn opens
    with the cue ``Answer:`` and the edge's answer is its most likely next letter. The letter
    distribution, its entropy and its mass among all next tokens are signals."""

    name = "mmlu"
    options = "ABCD"
    max_tokens = 8
    sample_tokens = 1  # the answer after the cue is one letter: samples from the same pass
    CUE = "Answer:"

    def __init__(self, shots: int = 5, shot_chars: int = 3000, seed: int = 0):
        if shots < 0:
            raise ValueError(f"shots must be >= 0, got {shots}")
        self.shots, self.shot_chars, self.seed = int(shots), int(shot_chars), int(seed)
        self._pool: Dict[str, List[Item]] = {}

    def items(self, data_dir, split="dev", include_contaminated=False):
        from confroute.eval.data import load_contaminated, load_mmlu
        from confroute.eval.items import mmlu_items

        items = mmlu_items(data_dir, split)
        self._pool = {}
        for it in items:  # shots come from the whole split, contaminated or not
            self._pool.setdefault(it.group, []).append(it)
        rec = _recorded_by_prompt(load_mmlu(data_dir, split, include_contaminated=True),
                                  by_group=True)
        bad = set() if include_contaminated else load_contaminated(
            os.path.join(os.fspath(data_dir), "mmlu", "routellm_contaminated_prompts.jsonl"))
        return [_with_recorded(it, rec.get((it.group, it.prompt), ())) for it in items
                if it.prompt not in bad]

    def examples(self, item: Item) -> List[Item]:
        pool = [o for o in self._pool.get(item.group, ()) if o.prompt != item.prompt]
        if not pool or not self.shots:
            return []
        rng = np.random.default_rng(item_seed(self.seed, item.id))
        picked = [pool[i] for i in rng.permutation(len(pool))[: self.shots]]
        while len(picked) > 1 and sum(len(o.prompt) for o in picked) > self.shot_chars:
            picked.pop()  # long subjects (law): fewer shots rather than a 4k-token prompt
        return picked

    def prompt(self, item):
        subject = item.group.replace("_", " ")
        msgs = [{"role": "system", "content": MMLU_HEADER.format(subject)}]
        for ex in self.examples(item):
            msgs += [{"role": "user", "content": _question(ex.prompt)},
                     {"role": "assistant", "content": f"{self.CUE} {ex.reference}"}]
        msgs.append({"role": "user", "content": _question(item.prompt)})
        return Prompt(tuple(msgs), self.CUE)

    def grade(self, answer, item):
        from confroute.eval.grading import grade_mmlu

        return grade_mmlu(answer.strip(), item.reference)

    def answer_key(self, text, item):
        from confroute.eval.grading import extract_letter

        return extract_letter(text.strip())

    def settings(self):
        return {"shots": self.shots, "shot_chars": self.shot_chars, "shot_seed": self.seed}


def _question(prompt: str) -> str:
    """RouteLLM's prompt string ends with 'Answer:'; the cue says it in the assistant turn."""
    p = prompt.rstrip()
    return p[: -len("Answer:")].rstrip() if p.endswith("Answer:") else p


# ------------------------------------------------------------------------------- MT-Bench

class MTBench(Benchmark):
    """Two-turn questions graded by an LLM judge (1-10, the mean over turns)."""

    name = "mt-bench"

    def __init__(self, judge=None):
        self.judge = judge

    def items(self, data_dir, split="dev", include_contaminated=False):
        from confroute.eval.data import load_contaminated, load_mt_bench
        from confroute.eval.items import mt_bench_items

        items = mt_bench_items(data_dir, split)
        try:
            t = load_mt_bench(data_dir, split, include_contaminated=True)
            rec = {i: {m: float(t.column(m)[k]) for m in t.models}
                   for k, i in enumerate(t.ids)}
        except ValueError:
            rec = {}
        bad = set() if include_contaminated else load_contaminated(os.path.join(
            os.fspath(data_dir), "mt_bench", "routellm_contaminated_prompts.jsonl"))
        return [_with_recorded(it, tuple(rec.get(it.id, {}).items())) for it in items
                if not any(t in bad for t in it.turns)]

    def grade(self, answer, item):
        from confroute.eval.grading import mt_bench_grader

        if self.judge is None:
            raise ValueError("mt-bench needs a judge to grade live answers")
        return mt_bench_grader(self.judge)(answer, item.reference)

    def grader(self):
        return f"judge:{self.judge.model}" if self.judge is not None else ""


# ------------------------------------------------------------------------------- helpers

def _recorded_by_prompt(table, by_group: bool = False) -> dict:
    out = {}
    for i, p in enumerate(table.prompts):
        key = (table.groups[i], p) if by_group else p
        out[key] = tuple((m, float(table.quality[i, j])) for j, m in enumerate(table.models))
    return out


def _with_recorded(item: Item, recorded) -> Item:
    from dataclasses import replace

    return replace(item, recorded=tuple(recorded))


register_benchmark("gsm8k", GSM8K)
register_benchmark("mmlu", MMLU)
register_benchmark("mt-bench", MTBench)
