"""One prompt on one live model: the answer and, for the edge, every confidence signal.

:func:`answer_item` is the per-prompt work of ``confroute eval build``. It is a function of
(benchmark, model, item, settings) only — the sampling seed comes from the run seed and the
item id (:func:`confroute.eval.benchmarks.item_seed`) — so it can run in any order, in any
worker (Ray actors), and a resumed run redraws exactly what a killed one lost.

Signals of an in-process edge (``EdgeModel``), each becoming a ``signal:<name>`` column:

- ``se_discrete`` / ``se_weighted`` / ``se_kuhn`` / ``n_clusters``: semantic entropy of the
  ``samples`` answers clustered by embedding similarity (the package's scorer);
- ``exact_se_*`` / ``exact_n_clusters``: the same samples clustered by the benchmark's
  canonical answer (final number, option letter; self-consistency);
- ``mean_token_logprob``, ``max_sequence_prob``, ``perplexity``: likelihood baselines of the
  samples;
- for option benchmarks: ``option_entropy`` (entropy of the renormalized letter distribution
  after the cue), ``letter_mass`` (next-token probability on the letters) and
  ``top_letter_prob``;
- for generated answers: ``answer_mean_logprob`` (the graded greedy answer's mean token
  log-prob: a signal that costs no samples) and, where the benchmark has canonical answers,
  ``greedy_disagreement`` (the share of samples whose answer differs from the greedy one's);
- whatever ``benchmark.extra_signals`` adds (it sees the greedy answer too).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Dict, List, Optional

import numpy as np

from confroute.eval.benchmarks import Benchmark, item_seed


@dataclass(frozen=True)
class LiveSettings:
    """``max_tokens``/``sample_tokens`` None: the benchmark's. ``samples`` answers at
    ``sample_temperature`` feed the sampled signals (0 = none)."""

    max_tokens: Optional[int] = None
    temperature: float = 0.0
    samples: int = 5
    sample_temperature: float = 0.7
    sample_tokens: Optional[int] = None
    seed: int = 0
    threshold: float = 0.8  # cosine similarity for the embedding clusters

    def __post_init__(self):
        if self.samples < 0:
            raise ValueError(f"samples must be >= 0, got {self.samples}")
        for k in ("max_tokens", "sample_tokens"):
            v = getattr(self, k)
            if v is not None and v < 1:
                raise ValueError(f"{k} must be >= 1, got {v}")
        if self.temperature < 0 or self.sample_temperature < 0:
            raise ValueError("temperatures must be >= 0")

    def answer_tokens(self, bench: Benchmark) -> int:
        return int(self.max_tokens or bench.max_tokens)

    def sampled_tokens(self, bench: Benchmark) -> int:
        return int(self.sample_tokens or bench.sample_tokens or self.answer_tokens(bench))

    def header(self, bench: Benchmark) -> dict:
        return {"max_tokens": self.answer_tokens(bench), "temperature": float(self.temperature),
                "samples": int(self.samples),
                "sample_temperature": float(self.sample_temperature),
                "sample_tokens": self.sampled_tokens(bench), "seed": int(self.seed),
                "threshold": float(self.threshold)}


@dataclass(frozen=True)
class Answer:
    answer: object                      # text, or a list of texts for a multi-turn item
    usage: Dict[str, int]
    signals: Dict[str, float]
    extra: Dict[str, object]
    seconds: float


def in_process(model) -> bool:
    """Whether ``model`` runs here (a GGUF model): token ids, batched samples and their
    logprobs, which a chat API does not give."""
    return hasattr(model, "sample_many") and hasattr(model, "prompt_tokens")


def answer_item(bench: Benchmark, model, item, settings: LiveSettings,
                signals: bool = False, scorer=None) -> Answer:
    """The model's answer to ``item`` (greedy by default) and, with ``signals``, the edge's
    confidence signals. ``scorer``: a ConfidenceScorer for the embedding clusters (default:
    the package's, with ``settings.threshold``)."""
    t0 = time.perf_counter()
    p = bench.prompt(item)
    turns = tuple(getattr(item, "turns", ()) or ())
    local = in_process(model)
    if len(turns) > 1 or not local:
        # a chat-only backend (a cloud API) answers in text: no letter distribution, no cue
        # (APIs do not reliably continue an assistant prefix); the grader extracts the answer
        answer, usage = _chat_answer(model, p, turns, settings.answer_tokens(bench),
                                     settings.temperature)
        sig, extra = {}, {}
        if signals and settings.samples and local:
            ids = _prompt_ids(model, p)
            s = model.sample_many([_sample_request(bench, ids, item, settings)])[0]
            sig, extra = _sampled_signals(bench, item, s, settings, scorer)
        return Answer(answer, usage, sig, extra, time.perf_counter() - t0)

    from confroute.models.types import SampleRequest

    ids = _prompt_ids(model, p)
    sig: Dict[str, float] = {}
    extra: Dict[str, object] = {}
    requests = []
    one_pass = bool(bench.options) and settings.sampled_tokens(bench) == 1
    if bench.options:
        answer, osig, extra, row = _option_answer(bench, model, ids, full_row=one_pass)
        if signals:
            sig.update(osig)
    else:
        requests.append(SampleRequest(ids, 1, settings.answer_tokens(bench),
                                      settings.temperature, item_seed(settings.seed, item.id)))
    if signals and settings.samples and not one_pass:
        requests.append(_sample_request(bench, ids, item, settings))
    out = model.sample_many(requests) if requests else []
    if signals and settings.samples and one_pass:
        out.append(_samples_from_row(model, row, item, settings))
    usage = {"prompt_tokens": len(ids), "completion_tokens": 0}
    if not bench.options:
        answer = p.cue + out[0].texts[0] if p.cue else out[0].texts[0]
        usage["completion_tokens"] += out[0].completion_tokens
        extra["finish"] = out[0].finish_reasons[0]
    if signals and not bench.options:
        lp = out[0].token_logprobs[0]
        sig["answer_mean_logprob"] = float(np.mean(lp)) if len(lp) else 0.0
    if signals and settings.samples:
        s = out[-1]
        usage["sample_tokens"] = s.completion_tokens
        ssig, sextra = _sampled_signals(bench, item, s, settings, scorer,
                                        None if bench.options else answer)
        sig.update(ssig)
        extra.update(sextra)
    return Answer(answer, usage, sig, extra, time.perf_counter() - t0)


def _prompt_ids(model, p) -> List[int]:
    ids = list(model.prompt_tokens(list(p.messages)))
    return ids + (list(model.tokenize(p.cue)) if p.cue else [])


def _sample_request(bench, ids, item, settings):
    from confroute.models.types import SampleRequest

    # seed + 1: the samples are not the greedy answer's seed (that one is unused at T=0)
    return SampleRequest(ids, settings.samples, settings.sampled_tokens(bench),
                         settings.sample_temperature, item_seed(settings.seed + 1, item.id))


def _chat_answer(model, p, turns, max_tokens, temperature):
    from confroute.eval.outcomes import _ask

    messages = [dict(m) for m in p.messages]
    if len(turns) <= 1:
        return _ask(model, messages, max_tokens, temperature)
    answers, usage = [], {}
    for i, turn in enumerate(turns):
        if i:
            messages.append({"role": "user", "content": turn})
        text, u = _ask(model, messages, max_tokens, temperature)
        messages.append({"role": "assistant", "content": text})
        answers.append(text)
        for k, v in u.items():
            usage[k] = usage.get(k, 0) + v
    return answers, usage


def _samples_from_row(model, row, item, settings):
    """One-token answers drawn from the next-token distribution that the option pass already
    computed: what ``sample(max_tokens=1)`` draws, without a second pass over the prompt.
    Logprobs are under the model (temperature 1), as in ``EdgeModel.sample``."""
    from confroute.models.types import Samples

    t = settings.sample_temperature
    rng = np.random.default_rng(item_seed(settings.seed + 1, item.id))
    if t == 0:
        toks = np.full(settings.samples, int(np.argmax(row)))
    else:
        z = row / t
        p = np.exp(z - np.logaddexp.reduce(z))
        toks = rng.choice(row.size, size=settings.samples, p=p / p.sum())
    texts = tuple(model.detokenize([int(k)]) for k in toks)
    return Samples(texts=texts, token_logprobs=tuple(np.array([row[k]]) for k in toks),
                   token_ids=tuple(np.array([k], np.int32) for k in toks),
                   finish_reasons=("length",) * len(toks), model=model.name,
                   prompt_tokens=0, completion_tokens=len(toks), temperature=float(t),
                   seconds=0.0)


def _option_answer(bench, model, ids, full_row: bool = False):
    """The most likely option letter right after the prompt + cue (each letter with and
    without a leading space, which tokenize differently): (letter, signals, extra, the full
    next-token logprob row or None)."""
    letters = list(bench.options)
    tok, owner = [], []
    for c, letter in enumerate(letters):
        for v in {tuple(model.tokenize(x)) for x in (letter, " " + letter)}:
            if len(v) == 1:
                tok.append(v[0])
                owner.append(c)
        if c not in owner:
            raise ValueError(f"option {letter!r} is not a single token for {model.name}")
    row = None
    if full_row:
        row = np.asarray(model.next_token_logprobs(ids, np.arange(model.n_vocab)), np.float64)
        lp = row[tok]
    else:
        lp = np.asarray(model.next_token_logprobs(ids, tok), np.float64)
    owner = np.asarray(owner)
    per = np.array([np.logaddexp.reduce(lp[owner == c]) for c in range(len(letters))])
    total = float(np.logaddexp.reduce(per))
    probs = np.exp(per - total)
    best = int(np.argmax(probs))
    ent = float(-(probs * np.log(np.maximum(probs, 1e-300))).sum())
    sig = {"option_entropy": ent, "letter_mass": float(np.exp(total)),
           "top_letter_prob": float(probs[best])}
    extra = {"letter_probs": {L: float(q) for L, q in zip(letters, probs)},
             "letter_mass": float(np.exp(total))}
    return letters[best], sig, extra, row


def _sampled_signals(bench, item, samples, settings, scorer, answer=None):
    from confroute import confidence_batch
    from confroute.scorer import _one_hot

    if scorer is None:
        scorer = _default_scorer(settings.threshold)
    # The embedder gets a visible stand-in for an empty answer (an immediate end of text).
    texts = tuple(t if t.strip() else "(no answer)" for t in samples.texts)
    from dataclasses import replace

    conf = scorer.score_samples([replace(samples, texts=texts)])[0]
    sig = {"se_discrete": conf.se_discrete, "se_weighted": conf.se_weighted,
           "se_kuhn": conf.se_kuhn, "n_clusters": float(conf.n_clusters),
           "mean_token_logprob": conf.mean_token_logprob,
           "max_sequence_prob": conf.max_sequence_prob, "perplexity": conf.mean_perplexity}
    # per sample, in draw order, so a prefix of the samples (SE at a smaller n, adaptive
    # stopping) can be replayed from the table: see confroute.eval.prefix
    extra: Dict[str, object] = {"sample_finish": list(samples.finish_reasons),
                                "sample_mean_logprob": [
                                    float(np.mean(x)) if len(x) else 0.0
                                    for x in samples.token_logprobs]}
    if bench.has_answer_key():
        keys = [bench.answer_key(t, item) for t in samples.texts]
        lps = [np.asarray(x, np.float64) for x in samples.token_logprobs]
        tok_off = np.concatenate([[0], np.cumsum([len(x) for x in lps])]).astype(np.int64)
        r = confidence_batch(np.concatenate(lps) if lps else np.zeros(0), tok_off,
                             _one_hot(keys), np.array([0, len(keys)], np.int64), 0.5,
                             likelihood=scorer.likelihood)
        sig.update(exact_se_discrete=float(r.se_discrete[0]),
                   exact_se_weighted=float(r.se_weighted[0]),
                   exact_se_kuhn=float(r.se_kuhn[0]), exact_n_clusters=float(r.n_clusters[0]))
        extra["sample_answers"] = keys
        if answer is not None:
            # the graded answer against the samples: "would I say the same again?"
            mine = bench.answer_key(answer, item)
            sig["greedy_disagreement"] = float(np.mean([k is None or k != mine for k in keys]))
    for k, v in bench.extra_signals(item, samples, answer=answer).items():
        if isinstance(v, (list, tuple)):
            extra[k] = list(v)   # per-sample values (e.g. execution cluster ids)
        else:
            sig[k] = float(v)
    return sig, extra


_SCORERS: Dict[float, object] = {}


def _default_scorer(threshold: float):
    if threshold not in _SCORERS:
        import os

        from confroute.models import default_embedder
        from confroute.scorer import ConfidenceScorer

        threads = int(os.environ.get("CONFROUTE_N_THREADS") or 0) or None
        _SCORERS[threshold] = ConfidenceScorer(embedder=default_embedder(n_threads=threads),
                                               threshold=threshold)
    return _SCORERS[threshold]
