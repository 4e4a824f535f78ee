"""The one decision path: which model serves a request, and why. ``Controller.chat`` /
``Controller.decide``, the server's chat endpoint and its route-only endpoint all decide through
:func:`decide_many` (:func:`decide` for one request).

1. The messages are normalized once into a :class:`Query`: the text the edge reads, the last
   user message a router judges, the sampling settings, and why only the cloud can serve the
   request (tools, images), if so.
2. The policy says what it needs from the edge to decide, in total (:meth:`Policy.need` ->
   :class:`Need`: so many samples, the prompt's hidden state, or nothing). An edge supplier
   (:class:`confroute.supply.EdgeSupplier`) fetches what is missing into the query's
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

from confroute.models.types import (Messages, Samples, check_generation, last_user_text,
                                    normalize_messages)

NAN = float("nan")
MAX_ROUNDS = 16   # a policy that keeps asking for more is a bug, not a reason to hang


@dataclass(frozen=True)
class Decision:
    """Where a request goes and why. ``score`` is the number the policy compared (higher =
    needs the cloud more; NaN when the policy was not asked); ``semantic_entropy`` is the SE
    (nats) the decision used, None when it used none; ``n_samples`` the edge samples drawn."""

    route: str        # "edge" | "cloud"
    score: float
    threshold: float
    semantic_entropy: Optional[float] = None
    reason: str = ""
    n_samples: int = 0

    def __post_init__(self):
        if self.route not in ("edge", "cloud"):
            raise ValueError(f"route must be 'edge' or 'cloud', got {self.route!r}")

    @classmethod
    def compare(cls, score: float, threshold: float, what: str = "score",
                semantic_entropy: Optional[float] = None) -> "Decision":
        """The rule every built-in policy uses: the cloud where score > threshold; an
        undefined score (NaN) escalates."""
        route = "edge" if score <= threshold else "cloud"
        return cls(route, float(score), float(threshold), semantic_entropy,
                   f"{what} {score:.3f} {'<=' if route == 'edge' else '>'} "
                   f"threshold {threshold:g}")

    def as_dict(self) -> Dict[str, Any]:
        """JSON-able: non-finite numbers become None."""
        return {"route": self.route, "score": _finite(self.score),
                "threshold": self.threshold, "semantic_entropy": _finite(self.semantic_entropy),
                "reason": self.reason, "n_samples": self.n_samples}


def _finite(x: Optional[float]) -> Optional[float]:
    return x if x is not None and math.isfinite(x) else None


@dataclass(frozen=True)
class Need:
    """What a policy needs from the edge before it can decide, in total: ``samples`` edge
    samples (those drawn in earlier rounds count), ``hidden`` the prompt's hidden state from
    one prefill."""

    samples: int = 0
    hidden: bool = False

    def __post_init__(self):
        if isinstance(self.samples, bool) or not isinstance(self.samples, int) \
                or self.samples < 0:
            raise ValueError(f"Need.samples must be an integer >= 0, got {self.samples!r}")


@dataclass(frozen=True)
class Sampling:
    """How the edge samples for one request: ``n`` is the caller's sample count (what a fixed
    SE policy draws), the rest go to every draw."""

    n: int = 5
    max_tokens: int = 64
    temperature: float = 1.0
    seed: Optional[int] = None

    def __post_init__(self):
        check_generation(self.n, self.max_tokens, self.temperature)


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


def make_query(messages: Messages, sampling: Sampling = Sampling(),
               cloud_only: Optional[str] = None, edge_messages=None) -> Query:
    """A checked :class:`Query` (ValueError saying what is wrong). A caller that has already
    checked the messages and turned them into text (the server, whose messages may hold parts
    only the cloud can read) passes ``edge_messages``; ``messages`` are then kept as sent."""
    if edge_messages is None:
        messages = normalize_messages(messages, flatten=False)
        edge_messages = normalize_messages(messages)
    return Query(list(messages), list(edge_messages), last_user_text(edge_messages), sampling,
                 cloud_only)


@dataclass(frozen=True)
class Evidence:
    """What the edge has supplied for one query so far: ``confidence`` over every sample drawn
    (None before any), ``hidden`` the prompt's hidden state, ``refused`` why the edge cannot
    serve the query (the cloud then gets it)."""

    confidence: Any = None          # confroute.scorer.Confidence
    hidden: Any = None              # numpy array, as the edge model gives it
    refused: Optional[str] = None

    @property
    def n_samples(self) -> int:
        return self.confidence.n_samples if self.confidence is not None else 0

    @property
    def samples(self) -> Optional[Samples]:
        return self.confidence.samples if self.confidence is not None else None

    def covers(self, need: Need) -> bool:
        return self.n_samples >= need.samples and (not need.hidden or self.hidden is not None)


class Policy:
    """The interface (duck typing is enough): ``need(evidence, sampling) -> Need`` and
    ``decide(prompt, evidence) -> Decision``, and a ``threshold``. The base class needs the
    constant ``needs`` (nothing: a trained router that judges the prompt alone)."""

    needs: Need = Need()
    threshold: float = NAN

    def need(self, evidence: Evidence, sampling: Sampling) -> Need:
        return self.needs

    def decide(self, prompt: str, evidence: Evidence) -> Decision:
        raise NotImplementedError


class SECascade(Policy):
    """Escalate to the cloud when the edge model's SE of ``kind`` over the request's ``n``
    samples is above ``threshold`` (nats). An undefined SE (NaN: no logprobs for the
    weighted/Kuhn forms) escalates."""

    def __init__(self, threshold: float, kind: str = "kuhn"):
        from confroute.scorer import KINDS

        if kind not in KINDS:
            raise ValueError(f"unknown SE kind {kind!r}; use one of {KINDS}")
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) \
                or threshold != threshold or threshold < 0:
            raise ValueError(f"threshold must be a number >= 0 (nats), got {threshold!r}")
        self.threshold, self.kind = float(threshold), kind

    def __repr__(self):
        return f"SECascade(threshold={self.threshold}, kind={self.kind!r})"

    def need(self, evidence: Evidence, sampling: Sampling) -> Need:
        return Need(samples=sampling.n)

    def decide(self, prompt: str, evidence: Evidence) -> Decision:
        if evidence is None or evidence.confidence is None:
            raise ValueError("SECascade needs the edge model's samples")
        se = evidence.confidence.se(self.kind)
        return Decision.compare(se, self.threshold, "semantic entropy", semantic_entropy=se)


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
    need = policy.need(evidence or Evidence(), query.sampling)
    if not isinstance(need, Need):
        raise ValueError(f"{policy!r}.need() must return a Need, got {type(need).__name__}")
    return need


def decide(policy, query: Query, edge) -> Tuple[Decision, Evidence]:
    """One request through the path: (decision, the evidence it was made on)."""
    return decide_many([(policy, query)], edge)[0]


def decide_many(items: Sequence[Tuple[Any, Query]], edge) -> List[Tuple[Decision, Evidence]]:
    """Several (policy, query) pairs through the path together. ``edge`` is an edge supplier
    (:class:`confroute.supply.EdgeSupplier`: ``refusal(query)`` and ``supply(asks)``); in
    each round every request that still needs something from the edge is supplied in one
    ``edge.supply`` call (the server's batch of waiting requests shares llama.cpp batches that
    way, round by round)."""
    evidence = [Evidence() for _ in items]
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


def _decided(policy, query: Query, ev: Evidence) -> Decision:
    d = policy.decide(query.prompt, ev)
    if not isinstance(d, Decision):
        raise ValueError(f"{policy!r}.decide() must return a Decision, got {type(d).__name__}")
    return dataclasses.replace(d, n_samples=ev.n_samples)
