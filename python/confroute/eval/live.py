"""One prompt on one live model: the answer and, for the edge, every served policy's score.

:func:`answer_item` is the per-prompt work of ``confroute eval build``. It is a function of
(benchmark, model, item, settings) only, so it can run in any order, in any worker (Ray
actors), and a resumed run redraws exactly what a killed one lost.

An in-process edge answers through the decision path the server runs
(:func:`confroute.decision.path.decide_all` with an
:class:`~confroute.decision.edge.EdgeSupplier`): the benchmark's prompt becomes a query (its cue an assistant message the edge continues), with the
one sampling configuration (:class:`confroute.decision.path.Sampling`) and the request seed
``item_seed(run seed, item id)``; one evidence (the answer, the samples, the hidden state:
what the policies need) is drawn once, and

- the graded answer is the edge's answer in that evidence: what ``/v1/chat/completions``
  serves when the edge keeps the query (the cue, plus the served continuation);
- each policy's score is a ``signal:<name>`` column, ``<name>`` its router string without
  the threshold (``disagreement`` -> ``router-disagreement-<t>``): what ``POST /v1/route``
  returns as ``score`` for the same router string and seed.

A request to the server with ``"seed": S`` and the row's messages reproduces a row whose
``extra.seed`` is S (docs: the seed mapping).

An edge served over HTTP (:class:`~confroute.models.http_edge.HttpEdge`) answers through the
same path, as ``confroute serve`` with ``edge.base_url`` does, with two differences that come
from the OpenAI API: the request is the benchmark's messages without the cue (an HTTP edge
cannot continue an assistant message, so the server would send such a request to the cloud),
and the graded answer is its whole reply, graded as a chat model's (the grader extracts the
answer). Policies it cannot serve (token logprobs it does not return, hidden states) are
refused before any draw (:func:`check_policies`).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Dict, Optional, Tuple

from confroute.decision.path import DEFAULT_SAMPLING, Sampling
from confroute.eval.benchmarks import Benchmark, item_seed

# The served policies a table measures by default: all from one evidence (the answer and n
# samples), so together they cost what the most demanding of them costs.
DEFAULT_POLICIES = ("answer_logprob", "disagreement", "se", "se_discrete", "se_weighted")


@dataclass(frozen=True)
class LiveSettings:
    """How a live model answers: ``max_tokens`` None means the benchmark's length (the answer
    and the samples alike); the rest are :class:`~confroute.decision.path.Sampling`'s, with its
    defaults (``temperature`` is the answer's, ``sample_temperature`` the samples'). ``seed``
    is the run seed: each item's request seed is ``item_seed(seed, item.id)``. ``meaning``
    and ``similarity`` (the cosine that joins two meanings) configure the scorer;
    ``policies`` are the router strings (or names) whose scores become the edge's signal
    columns."""

    max_tokens: Optional[int] = None
    temperature: float = DEFAULT_SAMPLING.answer_temperature
    samples: int = DEFAULT_SAMPLING.n
    sample_temperature: float = DEFAULT_SAMPLING.temperature
    seed: int = 0
    similarity: float = 0.8
    meaning: str = "auto"
    policies: Tuple[str, ...] = DEFAULT_POLICIES

    def __post_init__(self):
        if self.samples < 0:
            raise ValueError(f"samples must be >= 0, got {self.samples}")
        if self.max_tokens is not None and self.max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1, got {self.max_tokens}")
        if self.temperature < 0 or self.sample_temperature < 0:
            raise ValueError("temperatures must be >= 0")
        object.__setattr__(self, "policies", tuple(self.policies))

    def answer_tokens(self, bench: Benchmark) -> int:
        return int(self.max_tokens or bench.max_tokens)

    def sampling(self, bench: Benchmark, item) -> Sampling:
        """The request's sampling for one item (what a server request with this seed gets)."""
        return Sampling(n=max(1, self.samples), max_tokens=self.answer_tokens(bench),
                        temperature=self.sample_temperature, seed=item_seed(self.seed, item.id),
                        answer_temperature=self.temperature)

    def header(self, bench: Benchmark) -> dict:
        return {"max_tokens": self.answer_tokens(bench), "temperature": float(self.temperature),
                "samples": int(self.samples),
                "sample_temperature": float(self.sample_temperature), "seed": int(self.seed),
                "similarity": float(self.similarity), "meaning": self.meaning,
                "policies": list(self.policies)}


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


def http_edge(model) -> bool:
    """Whether ``model`` is an edge served over HTTP (an
    :class:`~confroute.models.http_edge.HttpEdge`): it answers through the decision path, but
    without the benchmark's cue."""
    from confroute.models.http_edge import HttpEdge

    return isinstance(model, HttpEdge)


def split_policies(model, settings: LiveSettings) -> Tuple[Tuple[str, ...], Dict[str, str]]:
    """(the router strings of ``settings.policies`` that ``model`` can serve, {router string:
    why not} for the others): an edge says what it cannot serve with ``check_policy``
    (:meth:`confroute.models.http_edge.HttpEdge.check_policy`: no token logprobs, no hidden
    states); an in-process edge serves them all."""
    from confroute.decision.edge import EdgeSupplier

    if getattr(model, "check_policy", None) is None:
        return tuple(settings.policies), {}
    supplier = EdgeSupplier(model, None)
    kept, refused = [], {}
    for spec, (_, policy) in zip(settings.policies, policies_of(settings)):
        try:
            supplier.check_policy(policy)
        except ValueError as e:
            refused[spec] = str(e)
        else:
            kept.append(spec)
    return tuple(kept), refused


def check_policies(model, settings: LiveSettings) -> None:
    """ValueError, before any draw, naming the policies of ``settings`` that ``model`` cannot
    serve and those it can (see :func:`split_policies`)."""
    kept, refused = split_policies(model, settings)
    if refused:
        why = next(iter(refused.values()))
        raise ValueError(
            f"{getattr(model, 'name', model)!r} cannot serve the signal column(s) "
            f"{', '.join(policy_name(p) for p in refused)} ({why}); of those asked it can "
            f"serve: {', '.join(policy_name(p) for p in kept) or 'none'}")


def policy_name(spec: str) -> str:
    """A signal column's name: the router string without ``router-`` and the threshold; a
    staged router's keeps its thresholds (they decide which stage's score it records)."""
    from confroute.decision.names import ONLINE, PREFIX, STAGES, parse_router_string

    if not spec.startswith(PREFIX):
        spec = PREFIX + spec
    body = spec[len(PREFIX):]
    if STAGES in body:
        return body
    for name in ONLINE:
        if body == name or body.startswith(name + "-"):
            return name
    return parse_router_string(spec)[0]


def needs_hidden(settings: LiveSettings) -> bool:
    """Whether a policy may read the edge's hidden state (a trained router such as ``sep``):
    the edge model must then be made with ``hidden_states=True``."""
    from confroute.decision.names import ONLINE, STAGES, parse_stages

    names = [n for s in settings.policies for n in (
        [st[0] for st in parse_stages(policy_name(s))] if STAGES in s else [policy_name(s)])]
    return any(n not in ONLINE for n in names)


def policies_of(settings: LiveSettings):
    """(column name, policy) for the settings' router strings. A threshold does not change a
    score (0 where the string has none), except adaptive SE's: its rounds stop by it, so its
    string must carry one."""
    from confroute.decision.names import (ADAPTIVE, PREFIX, STAGES, make_policy,
                                          policy_from_string)

    out = []
    for spec in settings.policies:
        name = policy_name(spec)
        full = spec if spec.startswith(PREFIX) else PREFIX + spec
        if full != PREFIX + name or STAGES in name:   # as the server reads the string
            out.append((name, policy_from_string(full)))
        elif name == ADAPTIVE:
            raise ValueError(f"{spec!r}: adaptive SE draws until its threshold settles, so its "
                             "column needs one (e.g. router-se_adaptive-1.0)")
        else:
            out.append((name, make_policy(name, 0.0, samples=max(2, settings.samples))))
    names = [n for n, _ in out]
    if len(set(names)) != len(names):
        raise ValueError(f"policies name a column twice: {names}")
    return out


def answer_item(bench: Benchmark, model, item, settings: LiveSettings,
                signals: bool = False, scorer=None) -> Answer:
    """The model's answer to ``item`` (greedy by default) and, with ``signals``, the scores
    of ``settings.policies`` on it, through the decision path. ``scorer``: the scorer the
    path judges meaning with (default: the package's, with ``settings.meaning`` and
    ``settings.similarity``)."""
    t0 = time.perf_counter()
    p = bench.prompt(item)
    turns = tuple(getattr(item, "turns", ()) or ())
    path = in_process(model) or http_edge(model)
    if len(turns) > 1 or not path:
        # a chat-only backend (a cloud API) answers in text: no cue (APIs do not reliably
        # continue an assistant prefix); the grader extracts the answer. A multi-turn item's
        # signals are the first turn's.
        answer, usage = _chat_answer(model, p, turns, settings.answer_tokens(bench),
                                     settings.temperature)
        sig, extra = {}, {}
        if signals and path:
            sig, extra, _, _ = _served(bench, model, item, settings, scorer)
        return Answer(answer, usage, sig, extra, time.perf_counter() - t0)
    sig, extra, ev, prefix = _served(bench, model, item, settings, scorer,
                                     signals=signals)
    a = ev.answer
    usage = {"prompt_tokens": a.prompt_tokens, "completion_tokens": a.completion_tokens}
    if ev.samples is not None:
        usage["sample_tokens"] = ev.samples.completion_tokens
    extra["finish"] = a.finish_reasons[0]
    return Answer(prefix + a.texts[0], usage, sig, extra, time.perf_counter() - t0)


def query_of(bench: Benchmark, item, settings: LiveSettings, cue: bool = True):
    """The request an item is: the benchmark's messages, its cue (unless ``cue`` is False: an
    edge over HTTP) as an assistant message the edge continues, and the item's sampling."""
    from confroute.decision.path import make_query

    p = bench.prompt(item)
    messages = [dict(m) for m in p.messages]
    if p.cue and cue:
        messages.append({"role": "assistant", "content": p.cue})
    return make_query(messages, settings.sampling(bench, item))


def _served(bench, model, item, settings, scorer, signals: bool = True):
    """(signals, extra, evidence, prefix): the path's answer and evidence for one item, and
    the policies' scores when ``signals``."""
    from confroute.decision import path as routing
    from confroute.decision.edge import EdgeSupplier

    local = in_process(model)
    q = query_of(bench, item, settings, cue=local)
    supplier = EdgeSupplier(model, scorer or _default_scorer(settings.similarity,
                                                             settings.meaning), batch=local)
    named = policies_of(settings) if signals and settings.samples else []
    if named:
        decisions, ev = routing.decide_all([p for _, p in named], q, supplier)
    else:
        ev = supplier.supply([(q, routing.Need(answer=True), routing.Evidence())])[0]
        decisions = []
    if ev.refused or ev.answer is None:
        raise ValueError(f"{item.id}: the edge cannot answer: {ev.refused}")
    sig = {name: d.score for (name, _), d in zip(named, decisions)}
    extra: Dict[str, object] = {"seed": q.sampling.seed}
    conf = ev.confidence
    if conf is not None:
        s = conf.samples
        # per sample, in draw order, so a window of the samples (SE at a smaller n, adaptive
        # stopping) can be replayed from the table: see confroute.eval.prefix
        extra.update(meaning=conf.method, sample_clusters=[int(i) for i in conf.cluster_ids],
                     samples=list(s.texts), sample_finish=list(s.finish_reasons),
                     sample_mean_logprob=[float(v) for v in conf.seq_logprob_mean])
    return sig, extra, ev, q.prefix


def _chat_answer(model, p, turns, max_tokens, temperature):
    messages = [dict(m) for m in p.messages]
    if len(turns) <= 1:
        return ask(model, messages, max_tokens, temperature)
    answers, usage = [], {}
    for i, turn in enumerate(turns):
        if i:
            messages.append({"role": "user", "content": turn})
        text, u = ask(model, messages, max_tokens, temperature)
        messages.append({"role": "assistant", "content": text})
        answers.append(text)
        for k, v in u.items():
            usage[k] = usage.get(k, 0) + v
    return answers, usage


_SCORERS: Dict[Tuple[float, str], object] = {}


def ask(model, messages, max_tokens: int, temperature: float):
    """Any backend with ``chat(messages, n, max_tokens, temperature)`` (EdgeModel, CloudModel)
    or ``generate(messages, max_tokens, temperature)``; returns (text, usage)."""
    if hasattr(model, "chat"):
        r = model.chat(messages, n=1, max_tokens=max_tokens, temperature=temperature)
    elif hasattr(model, "generate"):
        r = model.generate(messages, max_tokens=max_tokens, temperature=temperature)
    elif callable(model):
        r = model(messages)
    else:
        raise ValueError(f"{model!r} has neither chat() nor generate()")
    if isinstance(r, str):
        return r, {}
    return r.text, dict(getattr(r, "usage", None) or {})


def _default_scorer(similarity: float, meaning: str = "auto"):
    if (similarity, meaning) not in _SCORERS:
        import os

        from confroute.models import default_embedder
        from confroute.confidence.scorer import ConfidenceScorer

        threads = int(os.environ.get("CONFROUTE_N_THREADS") or 0) or None
        _SCORERS[similarity, meaning] = ConfidenceScorer(
            embedder=default_embedder(n_threads=threads), similarity=similarity, meaning=meaning)
    return _SCORERS[similarity, meaning]
