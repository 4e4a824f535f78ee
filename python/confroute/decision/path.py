"""The one decision path: which model serves a request, and why. ``Controller.chat`` /
``Controller.decide``, the server's chat endpoint and its route-only endpoint all decide through
:func:`decide_many` (:func:`decide` for one request).

1. The messages are normalized once into a :class:`Query`: the text the edge reads, the last
   user message a router judges, the sampling settings, and why only the cloud can serve the
   request (tools, images), if so.
2. The policy says what it needs from the edge to decide, in total (:meth:`Policy.need` ->
   :class:`Need`: so many samples, the prompt's hidden state, or nothing). An edge supplier
   (:class:`confroute.decision.edge.EdgeSupplier`) fetches what is missing into the query's
   :class:`Evidence`, and the
   policy is asked again, until the evidence covers what it needs: a fixed policy needs one
   round, an adaptive one may ask for more samples after seeing the first.
3. The policy decides: a :class:`Decision` (route, score, threshold, semantic entropy, reason,
   n_samples). Answering it (generation, cloud calls, degradation, HTTP) is the caller's.

A request only the cloud can serve, or one too long for the edge's context, goes to the cloud
with that reason; the policy is not asked.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

from confroute.models.types import (Messages, Samples, check_generation, edge_view,
                                    last_user_text)

NAN = float("nan")
MAX_ROUNDS = 16   # a policy that keeps asking for more is a bug, not a reason to hang


@dataclass(frozen=True)
class Decision:
    """Where a request goes and why. ``score`` is the number the policy compared (higher =
    needs the cloud more; NaN when the policy was not asked); ``semantic_entropy`` is the SE
    (nats) the decision used, None when it used none; ``n_samples`` the edge samples drawn;
    ``meaning`` how samples were judged alike ('execution', 'exact', 'embedding', or e.g.
    'embedding (no example calls)' where a code prompt fell back; empty when none were)."""

    route: str        # "edge" | "cloud"
    score: float
    threshold: float
    semantic_entropy: Optional[float] = None
    reason: str = ""
    n_samples: int = 0
    meaning: str = ""

    def __post_init__(self):
        if self.route not in ("edge", "cloud"):
            raise ValueError(f"route must be 'edge' or 'cloud', got {self.route!r}")

    @classmethod
    def compare(cls, score: float, threshold: float, what: str = "score",
                semantic_entropy: Optional[float] = None, meaning: str = "") -> "Decision":
        """The rule every built-in policy uses: the cloud where score > threshold; an
        undefined score (NaN) escalates."""
        route = "edge" if score <= threshold else "cloud"
        return cls(route, float(score), float(threshold), semantic_entropy,
                   f"{what} {score:.3f} {'<=' if route == 'edge' else '>'} "
                   f"threshold {threshold:g}" + (f" (meaning: {meaning})" if meaning else ""),
                   meaning=meaning)

    def as_dict(self) -> Dict[str, Any]:
        """JSON-able: non-finite numbers become None."""
        return {"route": self.route, "score": _finite(self.score),
                "threshold": self.threshold, "semantic_entropy": _finite(self.semantic_entropy),
                "reason": self.reason, "n_samples": self.n_samples, "meaning": self.meaning}


def _finite(x: Optional[float]) -> Optional[float]:
    return x if x is not None and math.isfinite(x) else None


@dataclass(frozen=True)
class Need:
    """What a policy needs from the edge before it can decide, in total: ``samples`` edge
    samples (those drawn in earlier rounds count), ``hidden`` the prompt's hidden state from
    one prefill, ``answer`` the edge's own answer (the one served if the edge keeps the
    query) with its token logprobs."""

    samples: int = 0
    hidden: bool = False
    answer: bool = False

    def __or__(self, other: "Need") -> "Need":
        """What covers both."""
        return Need(max(self.samples, other.samples), self.hidden or other.hidden,
                    self.answer or other.answer)

    def __post_init__(self):
        if isinstance(self.samples, bool) or not isinstance(self.samples, int) \
                or self.samples < 0:
            raise ValueError(f"Need.samples must be an integer >= 0, got {self.samples!r}")


@dataclass(frozen=True)
class Sampling:
    """How the edge answers and samples one request: the one sampling configuration of the
    server, ``Controller``, the label job and ``eval build`` (its defaults are the tables').

    ``n`` samples (what a fixed SE or disagreement policy draws) at ``temperature``; the
    answer (the reply served when the edge keeps the query, and the one a table grades) at
    ``answer_temperature`` (0: greedy); both up to ``max_tokens``. ``seed``: the answer draws
    with ``seed``, the samples with ``seed + 1`` (a later round, after k samples, with
    ``seed + 1 + k``); None draws fresh each time."""

    n: int = 5
    max_tokens: int = 256
    temperature: float = 0.7
    seed: Optional[int] = None
    answer_temperature: float = 0.0

    def __post_init__(self):
        check_generation(self.n, self.max_tokens, self.temperature)
        check_generation(1, self.max_tokens, self.answer_temperature)
        if self.seed is not None and (isinstance(self.seed, bool) or
                                      not isinstance(self.seed, int)):
            raise ValueError(f"seed must be an integer or None, got {self.seed!r}")

    def as_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Dict[str, Any], where: str = "sampling") -> "Sampling":
        if not isinstance(data, dict):
            raise ValueError(f"{where} must be an object with n, max_tokens, temperature, "
                             "seed, answer_temperature")
        unknown = set(data) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"{where}: unknown setting(s) {sorted(unknown)}")
        return cls(**data)


DEFAULT_SAMPLING = Sampling()


@dataclass(frozen=True)
class Query:
    """One request, normalized once. ``messages`` as given (what a remote cloud gets),
    ``edge_messages`` role + plain text (what a local model reads), ``prompt`` the last user
    message's text (what a router judges), ``cloud_only`` why only the cloud can serve it."""

    messages: List[Dict[str, Any]]
    edge_messages: List[Dict[str, Any]]
    prompt: str
    sampling: Sampling
    cloud_only: Optional[str] = None

    @property
    def prefix(self) -> str:
        """The start of the answer, when the conversation ends with an assistant message: the
        edge continues it, and the policies judge prefix + continuation."""
        last = self.edge_messages[-1] if len(self.edge_messages) > 1 else None
        return last["content"] if last is not None and last["role"] == "assistant" else ""


def make_query(messages: Messages, sampling: Sampling = Sampling(),
               cloud_only: Optional[str] = None, edge_messages=None) -> Query:
    """A checked :class:`Query` (ValueError saying what is wrong). Parts only the cloud can
    read (images, tool calls) make the query the cloud's, with that reason
    (:func:`confroute.models.types.edge_view`). A caller that has already checked the messages
    and turned them into text (the server, with its HTTP error codes) passes
    ``edge_messages``; ``messages`` are then kept as sent."""
    if edge_messages is None:
        messages, edge_messages, why = edge_view(messages)
        cloud_only = cloud_only or why
    return Query(list(messages), list(edge_messages), last_user_text(edge_messages), sampling,
                 cloud_only)


@dataclass(frozen=True)
class Evidence:
    """What the edge has supplied for one query so far: ``confidence`` over every sample drawn
    (None before any; with the answer, it says which samples mean what the answer means),
    ``hidden`` the prompt's hidden state, ``answer`` the edge's answer (a one-sample
    :class:`Samples` with its token logprobs; its text starts with the query's prefix),
    ``refused`` why the edge cannot serve the query (the cloud then gets it). ``prompt``: the
    query's prompt (what a router judges), set by the path, so that a staged policy can score
    a stage on the prompt while it works out what it needs next. ``seconds``: the edge's wall
    time on the draws this query took part in (a batch shared with other queries counts in
    full for each)."""

    confidence: Any = None          # confroute.confidence.result.Confidence
    hidden: Any = None              # numpy array, as the edge model gives it
    refused: Optional[str] = None
    answer: Optional[Samples] = None
    prompt: Optional[str] = dataclasses.field(default=None, compare=False)
    seconds: float = dataclasses.field(default=0.0, compare=False)

    @property
    def n_samples(self) -> int:
        return self.confidence.n_samples if self.confidence is not None else 0

    @property
    def samples(self) -> Optional[Samples]:
        return self.confidence.samples if self.confidence is not None else None

    @property
    def answer_text(self) -> Optional[str]:
        return self.answer.texts[0] if self.answer is not None else None

    def covers(self, need: Need) -> bool:
        return (self.n_samples >= need.samples and (not need.hidden or self.hidden is not None)
                and (not need.answer or self.answer is not None))


class Policy:
    """The interface (duck typing is enough): ``need(evidence, sampling) -> Need`` and
    ``decide(prompt, evidence) -> Decision``, and a ``threshold``. The base class needs the
    constant ``needs`` (nothing: a trained router that judges the prompt alone). ``adaptive``:
    its need grows with what it has seen (it draws in rounds); ``needs_logprobs``: it reads
    the edge's token logprobs (an edge that gives none refuses it); ``needs_hidden``: it may
    read the prompt's hidden state (an edge without one, over HTTP, refuses it)."""

    needs: Need = Need()
    threshold: float = NAN
    adaptive: bool = False
    needs_logprobs: bool = False

    @property
    def needs_hidden(self) -> bool:
        return self.needs.hidden

    def need(self, evidence: Evidence, sampling: Sampling) -> Need:
        return self.needs

    def decide(self, prompt: str, evidence: Evidence) -> Decision:
        raise NotImplementedError


# --- the path -----------------------------------------------------------------------------
def threshold_of(policy) -> float:
    return float(getattr(policy, "threshold", NAN))


def immediate(policy, query: Query) -> Optional[Decision]:
    """The decision when the edge has no say (a request only the cloud can serve), else None:
    callers that run edge work elsewhere (the server's edge queue) skip it for these."""
    if query.cloud_only:
        return Decision("cloud", NAN, threshold_of(policy), reason=query.cloud_only)
    return None


def needs_now(policy, query: Query, evidence: Optional[Evidence] = None) -> Need:
    """What the policy needs next (before any edge work: its first round)."""
    return _need_of(policy, evidence or Evidence(prompt=query.prompt), query.sampling)


def _need_of(policy, evidence: Evidence, sampling: Sampling) -> Need:
    need = policy.need(evidence, sampling)
    if not isinstance(need, Need):
        raise ValueError(f"{policy!r}.need() must return a Need, got {type(need).__name__}")
    return need


def decide(policy, query: Query, edge) -> Tuple[Decision, Evidence]:
    """One request through the path: (decision, the evidence it was made on)."""
    return decide_many([(policy, query)], edge)[0]


def decide_many(items: Sequence[Tuple[Any, Query]], edge) -> List[Tuple[Decision, Evidence]]:
    """Several (policy, query) pairs through the path together. ``edge`` is an edge supplier
    (:class:`confroute.decision.edge.EdgeSupplier`: ``refusal(query)`` and ``supply(asks)``); in
    each round every request that still needs something from the edge is supplied in one
    ``edge.supply`` call (the server's batch of waiting requests shares llama.cpp batches that
    way, round by round)."""
    check = getattr(edge, "check_policy", None)   # what the edge cannot serve: ValueError
    if check is not None:
        for policy, _ in items:
            check(policy)
    evidence = [Evidence(prompt=q.prompt) for _, q in items]
    done: List[Optional[Decision]] = [immediate(p, q) for p, q in items]
    for i, (policy, query) in enumerate(items):
        if done[i] is None:
            why = edge.refusal(query)
            if why:
                done[i] = Decision("cloud", NAN, threshold_of(policy), reason=why)
    for _ in range(MAX_ROUNDS + 1):
        asks = []
        for i, (policy, query) in enumerate(items):
            if done[i] is not None:
                continue
            ev = evidence[i]
            if ev.refused:
                done[i] = Decision("cloud", NAN, threshold_of(policy), reason=ev.refused,
                                   n_samples=ev.n_samples)
                continue
            need = needs_now(policy, query, ev)
            if ev.covers(need):
                done[i] = _decided(policy, query, ev)
            else:
                asks.append((i, need))
        if not asks:
            return list(zip(done, evidence))
        supplied = edge.supply([(items[i][1], need, evidence[i]) for i, need in asks])
        for (i, _), ev in zip(asks, supplied):
            evidence[i] = ev
    raise ValueError(f"the policy {items[asks[0][0]][0]!r} still asks the edge for more after "
                     f"{MAX_ROUNDS} rounds")


class _Union(Policy):
    """Several policies as one: it needs what covers all of theirs (so one evidence serves
    them all), and its decision is the first one's."""

    def __init__(self, policies):
        self.policies = list(policies)
        self.threshold = threshold_of(self.policies[0])

    def need(self, evidence, sampling):
        need = Need()
        for p in self.policies:
            need = need | _need_of(p, evidence, sampling)
        return need

    def decide(self, prompt, evidence):
        return self.policies[0].decide(prompt, evidence)

    @property
    def needs_logprobs(self) -> bool:
        return any(getattr(p, "needs_logprobs", False) for p in self.policies)

    @property
    def needs_hidden(self) -> bool:
        return any(getattr(p, "needs_hidden", False) for p in self.policies)


def decide_all(policies: Sequence[Any], query: Query, edge
               ) -> Tuple[List[Decision], Evidence]:
    """Every policy's decision on one query, each on the evidence it gets when it is served
    alone: what ``eval build`` runs, so each column is what the server decides. Policies that
    ask for the same number of samples share one draw (and those that need none but the
    answer ride along: the answer is the same seeded draw either way); a policy that asks for
    another number, or draws in rounds (``adaptive``), gets draws of its own, since the
    first k of n samples drawn together are not the k drawn alone. Returns the decisions and
    the evidence of the largest shared draw."""
    if not policies:
        raise ValueError("decide_all needs at least one policy")
    groups: Dict[Any, List[int]] = {}
    for i, p in enumerate(policies):
        k = needs_now(p, query).samples
        groups.setdefault(("own", i) if getattr(p, "adaptive", False) else k, []).append(i)
    fixed = sorted(k for k in groups if isinstance(k, int) and k > 0)
    if 0 in groups and fixed:        # answer-only policies join the largest shared draw
        groups[fixed[-1]] += groups.pop(0)
    out: List[Optional[Decision]] = [None] * len(policies)
    main_key, main = (fixed[-1] if fixed else next(iter(groups))), None
    for key, members in groups.items():
        union = _Union([policies[i] for i in members])
        first, evidence = decide(union, query, edge)
        if key == main_key:
            main = evidence
        if not evidence.covers(needs_now(union, query, evidence)):
            # the edge had no say (cloud-only, too long, refused): each sends it up
            for i in members:
                out[i] = dataclasses.replace(first, threshold=threshold_of(policies[i]))
            continue
        for i in members:
            out[i] = _decided(policies[i], query, evidence)
    return out, main


def _decided(policy, query: Query, ev: Evidence) -> Decision:
    d = policy.decide(query.prompt, ev)
    if not isinstance(d, Decision):
        raise ValueError(f"{policy!r}.decide() must return a Decision, got {type(d).__name__}")
    return dataclasses.replace(d, n_samples=ev.n_samples)
