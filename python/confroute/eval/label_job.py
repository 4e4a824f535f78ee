"""The SE labelling job: for each prompt, both models' semantic entropy -> one label row.

Resumable: rows are appended to a JSONL file one item at a time (flushed and fsynced), each
with its prompt's position ``id``; a rerun with the same options skips the ids already there,
drops a half-written last line left by a kill, and draws item i with seed ``seed + i``, so a
killed-then-resumed job writes the same rows as an uninterrupted one. The options are kept
beside the file (``<out>.meta.json``); resuming with other options is refused, not mixed in.

The job is written against one callable, ``se_fn(role, prompt, seed) -> (se, response)`` with
role 'weak' or 'strong', so it runs with any backend; :func:`scorer_se_fn` builds it from the
package's models and confidence scorer, :func:`benchmark_fns` from a benchmark's prompts, grader
and SE signal (`confroute label --benchmark`).
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass
from typing import Callable, List, Optional, Sequence, Tuple

from confroute.labels import check_row, se_row
from confroute.decision.path import DEFAULT_SAMPLING
from confroute.runtime import checkpoint as ckpt
from confroute.runtime.checkpoint import read_jsonl

SEFn = Callable[[str, str, int], Tuple[float, str]]


@dataclass(frozen=True)
class JobConfig:
    weak: str
    strong: str
    n: int = DEFAULT_SAMPLING.n
    max_tokens: int = DEFAULT_SAMPLING.max_tokens
    temperature: float = DEFAULT_SAMPLING.temperature
    tau: float = 0.1
    kind: str = "kuhn"
    seed: int = 0
    similarity: float = 0.8  # cosine above which two answers share a meaning (clustering)

    def __post_init__(self):
        if self.n < 2:
            raise ValueError(f"n must be >= 2 samples (SE of one sample is always 0), got {self.n}")
        if self.max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1, got {self.max_tokens}")
        if not self.tau >= 0:
            raise ValueError(f"tau must be >= 0, got {self.tau}")
        if self.kind not in ("discrete", "weighted", "kuhn"):
            raise ValueError(f"unknown SE kind {self.kind!r}: use discrete, weighted or kuhn")


@dataclass(frozen=True)
class JobResult:
    path: str
    total: int  # prompts in the job
    done_before: int  # rows found on disk at start
    written: int  # rows this run added
    seconds: float  # wall time of this run


def _meta_path(out: str) -> str:
    return out + ".meta.json"


def _existing(out: str, prompts: Sequence[str]) -> set:
    """Ids already on disk; truncates a half-written last line (left by a kill)."""
    if not os.path.exists(out):
        return set()
    ckpt.repair(out)
    done = set()
    for i, row in read_jsonl(out):
        where = f"{out}: line {i}"
        check_row(row, where)
        j = row.get("id")
        if not isinstance(j, int) or not 0 <= j < len(prompts) or prompts[j] != row["prompt"]:
            raise ValueError(f"{where}: row id {j!r} does not match this prompt list "
                             f"(another job's file? use a new --out)")
        if j in done:
            raise ValueError(f"{where}: id {j} appears twice")
        done.add(j)
    return done


def open_job(out: str, prompts: Sequence[str], config: JobConfig, graded: bool,
             source: Optional[dict] = None) -> set:
    """Checks or writes ``out``'s options file; returns the ids already labelled in ``out``.
    ``source``: where the prompts and their SE come from beyond ``config`` (a benchmark, its
    split, prompt settings and SE signal)."""
    if not prompts:
        raise ValueError("no prompts to label")
    # the prompt count is not part of it: a job may be extended with more prompts later
    meta = {"config": asdict(config), "graded": graded}
    if source:
        meta["source"] = source
    if os.path.exists(_meta_path(out)):
        with open(_meta_path(out)) as f:
            old = json.load(f)
        if old != meta:
            raise ValueError(f"{out} was started with other options ({old}); rerun with the "
                             f"same options to resume, or choose a new --out")
    elif os.path.exists(out) and os.path.getsize(out):
        raise ValueError(f"{out} exists but has no {_meta_path(out)}: not a label job's file")
    else:
        os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
        with open(_meta_path(out), "w") as f:
            json.dump(meta, f)
    return _existing(out, prompts)


def run_label_job(prompts: Sequence[str], out, config: JobConfig, se_fn: SEFn,
                  progress: bool = True,
                  grade_fn: Optional[Callable[[int, str], float]] = None,
                  source: Optional[dict] = None) -> JobResult:
    """Labels every prompt not yet in ``out``; returns what was done. ``grade_fn(i,
    response)``, where the prompts have known answers, adds each response's quality
    (``quality_weak``/``quality_strong``): accuracy labels for the same prompts and samples.
    ``source``: see :func:`open_job`."""
    out = os.fspath(out)
    prompts = list(prompts)
    done = open_job(out, prompts, config, graded=grade_fn is not None, source=source)
    todo = [i for i in range(len(prompts)) if i not in done]
    t0 = time.perf_counter()
    bar = None
    if progress:
        from tqdm import tqdm  # rate and ETA per item

        bar = tqdm(total=len(prompts), initial=len(done), unit="prompt", desc="labelling")
    with ckpt.open_append(out) as f:
        for i in todo:
            row = label_item(i, prompts[i], config, se_fn, grade_fn)
            ckpt.append(f, row, ensure_ascii=True)  # a kill loses at most this row
            if bar is not None:
                bar.update(1)
    if bar is not None:
        bar.close()
    return JobResult(out, len(prompts), len(done), len(todo), time.perf_counter() - t0)


def label_item(i: int, prompt: str, config: JobConfig, se_fn: SEFn,
               grade_fn: Optional[Callable[[int, str], float]] = None) -> dict:
    """The label row of prompt ``i`` (sampled with seed ``config.seed + i``): the one unit of
    work, run by this job and by each replica of the distributed one."""
    t = time.perf_counter()
    se_w, resp_w = se_fn("weak", prompt, config.seed + i)
    se_s, resp_s = se_fn("strong", prompt, config.seed + i)
    extra = {}
    if grade_fn is not None:
        extra = {"quality_weak": float(grade_fn(i, resp_w)),
                 "quality_strong": float(grade_fn(i, resp_s))}
    return se_row(prompt, config.weak, config.strong, se_w, se_s, config.tau, resp_w, resp_s,
                  kind=config.kind, id=i, seconds=round(time.perf_counter() - t, 3), **extra)


def scorer_se_fn(weak_model, strong_model, scorer, config: JobConfig) -> SEFn:
    """``se_fn`` from two models with ``.sample`` and a confidence scorer (``ConfidenceScorer``):
    n samples at the job's temperature and max_tokens, SE of the job's kind, and the most
    likely sample as the model's response. The 'weighted' and 'kuhn' kinds weight meanings by
    their likelihood: a model whose server gives no logprobs (``gives_logprobs()`` False) is
    refused here, before any sampling, with a ValueError that names ``--kind discrete``."""
    models = {"weak": weak_model, "strong": strong_model}
    if config.kind != "discrete":
        for role, model in models.items():
            gives = getattr(model, "gives_logprobs", None)  # in-process models always do
            if gives is not None and not gives():
                raise ValueError(
                    f"the {role} model {getattr(model, 'name', model)!r} returns no token "
                    f"logprobs, and SE kind {config.kind!r} weights meanings by them: use "
                    "--kind discrete (cluster frequencies only), or a server that returns "
                    "logprobs")

    def se_fn(role: str, prompt: str, seed: int):
        messages = [{"role": "user", "content": prompt}]
        conf = scorer.score(messages, models[role], n=config.n, max_tokens=config.max_tokens,
                            temperature=config.temperature, seed=seed)
        return float(_se_of(conf, config.kind)), _response_of(conf)

    return se_fn


def benchmark_fns(bench, items, models, config: JobConfig, signal: str
                  ) -> Tuple[SEFn, Callable[[int, str], float]]:
    """``se_fn`` and ``grade_fn`` for a benchmark's items (``confroute label --benchmark``).
    Each model (``models``: role -> in-process model) answers as in ``confroute eval build``:
    the benchmark's prompt and cue, the greedy answer as the response, graded by the
    benchmark's own grader (HumanEval/MBPP: their tests in the sandbox), and ``config.n``
    samples at ``config.temperature`` whose ``signal`` (e.g. ``exec_se_kuhn``: SE over
    behaviour on the prompt's example calls) is the model's SE. Samples are seeded by the
    run seed and the item id, as the builder seeds them, not by the item's position."""
    from confroute.eval.live import LiveSettings, answer_item, in_process

    by_prompt = {}
    for it in items:
        if it.prompt in by_prompt:
            raise ValueError(f"{bench.name}: items {by_prompt[it.prompt].id} and {it.id} have "
                             f"the same prompt text; a label row is keyed by its prompt")
        by_prompt[it.prompt] = it
    for role, m in models.items():
        if not in_process(m):
            raise ValueError(f"the {role} model {getattr(m, 'name', m)!r} is not in process: "
                             f"--benchmark labels need both models' samples and token "
                             f"logprobs (GGUF models)")
    settings = LiveSettings(samples=config.n, sample_temperature=config.temperature,
                            max_tokens=config.max_tokens, seed=config.seed,
                            similarity=config.similarity,
                            policies=(signal,))

    def se_fn(role: str, prompt: str, seed: int):
        a = answer_item(bench, models[role], by_prompt[prompt], settings, signals=True)
        se = a.signals.get(signal)
        if se is None:
            raise ValueError(f"{bench.name} gives no signal {signal!r}; it gives: "
                             f"{', '.join(sorted(a.signals))}")
        return float(se), a.answer

    def grade_fn(i: int, response: str) -> float:
        quality, _ = bench.grade(response, items[i])
        if quality is None:
            raise ValueError(f"{bench.name}: item {items[i].id} could not be graded")
        return float(quality)

    return se_fn, grade_fn


def _se_of(conf, kind: str) -> float:
    if hasattr(conf, "se") and callable(conf.se):
        return conf.se(kind)
    return getattr(conf, "se_" + kind)


def _response_of(conf) -> str:
    for attr in ("answer", "response"):
        v = getattr(conf, attr, None)
        if isinstance(v, str):
            return v
    samples = getattr(conf, "samples", None)
    texts: Optional[List[str]] = getattr(samples, "texts", None)
    return texts[0] if texts else ""
