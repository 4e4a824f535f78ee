"""The online cascade in Python: decide through the one decision path
(:mod:`confroute.decision.path`), then answer on the edge or escalate.

The policy is a :class:`confroute.decision.path.Policy` (e.g. :class:`SECascade`, or a trained
router's :class:`~confroute.decision.names.RouterPolicy`) or a router string. When the edge
keeps a query, the answer is the edge's answer the policy judged (greedy by default, the one
``eval build`` grades): no second generation. When the cloud fails or times out, the edge
answer comes back marked ``degraded`` with the error, instead of an exception.
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Any, Dict, Optional, Tuple

from confroute.confidence.result import Confidence
from confroute.confidence.scorer import ConfidenceScorer
from confroute.decision import path as routing
from confroute.decision.answer import cloud_messages, edge_answer, edge_usage
from confroute.decision.chain import Chain, ChainDecision, decide_chain
from confroute.decision.edge import EdgeSupplier
from confroute.decision.path import Decision, Policy, Sampling
from confroute.decision.policies import (  # noqa: F401 - public
    AnswerLogprob, Disagreement, SECascade)
from confroute.models.types import Messages


@dataclass(frozen=True)
class RoutedAnswer:
    """What ``Controller.chat`` returns. ``usage`` maps 'edge'/'cloud' to prompt/completion
    token counts (the edge's counts include all n samples); ``degraded`` is true when the cloud
    was chosen but failed, and ``error`` then says why."""

    answer: str
    routed_to: str
    model: str
    degraded: bool
    score: float
    threshold: float
    n_samples: int
    usage: Dict[str, Dict[str, int]]
    latency_s: float
    decision: Decision
    confidence: Optional[Confidence] = field(default=None, repr=False)
    error: Optional[str] = None

    @property
    def semantic_entropy(self) -> float:
        """The SE the policy used (NaN if it used none)."""
        se = self.decision.semantic_entropy
        return float("nan") if se is None else se

    @property
    def reason(self) -> str:
        return self.decision.reason

    def as_dict(self) -> Dict[str, Any]:
        return {"answer": self.answer, "routed_to": self.routed_to, "model": self.model,
                "degraded": self.degraded, "score": self.score,
                "semantic_entropy": self.semantic_entropy, "threshold": self.threshold,
                "reason": self.reason, "n_samples": self.n_samples, "usage": self.usage,
                "latency_s": self.latency_s, "error": self.error,
                "confidence": self.confidence.as_dict() if self.confidence else None}


class Controller:
    """``Controller(edge, cloud, policy)``: ``edge`` needs ``sample`` (an EdgeModel);
    ``cloud`` needs ``chat`` (a CloudModel, or an in-process model); ``policy`` is a policy
    object or a router string (``confroute.decision.names.policy_from_string``).
    ``scorer`` judges meaning (default: a :class:`ConfidenceScorer` on the MiniLM embedder,
    ``meaning='auto'``); ``sampling`` (:class:`confroute.decision.path.Sampling`) is how the edge
    answers and samples, the same defaults as the server and ``eval build``."""

    def __init__(self, edge, cloud, policy, scorer: Optional[ConfidenceScorer] = None,
                 cloud_max_tokens: int = 512, sampling: Optional[Sampling] = None):
        if isinstance(policy, str):
            from confroute.decision.names import policy_from_string

            policy = policy_from_string(policy)
        if not hasattr(policy, "decide") or not hasattr(policy, "need"):
            raise ValueError("policy needs a 'need' and a 'decide' method "
                             "(see confroute.decision.path.Policy)")
        self.edge, self.cloud, self.policy = edge, cloud, policy
        self.scorer = scorer or ConfidenceScorer()
        self.sampling = sampling or Sampling()
        self.cloud_max_tokens = cloud_max_tokens
        self._supplier = EdgeSupplier(edge, self.scorer)

    def decide(self, messages: Messages, **gen_options
               ) -> Tuple[Decision, Optional[Confidence]]:
        """Only the routing step (the same path as the server's ``POST /v1/route``): the
        policy's decision and the edge confidence (None when the policy drew no samples)."""
        decision, evidence = routing.decide(self.policy, _make_query(self.sampling, messages,
                                                                gen_options), self._supplier)
        return decision, evidence.confidence

    def chat(self, messages: Messages, **gen_options) -> RoutedAnswer:
        """Routes one conversation. ``gen_options`` (n, max_tokens, temperature, seed,
        answer_temperature) override ``sampling``; ``cloud_options`` (a dict) goes to
        ``cloud.chat``. Tools in ``cloud_options`` send the request to the cloud: only it can
        call them. When the edge keeps the query, the answer is the edge's answer that the
        policy judged (drawn after the decision only if the policy needed none)."""
        t0 = time.perf_counter()
        q, cloud_options = _chat_query(self.sampling, messages, gen_options)
        decision, evidence = routing.decide(self.policy, q, self._supplier)
        confidence = evidence.confidence
        usage: Dict[str, Dict[str, int]] = {}
        if edge_usage(evidence):
            usage["edge"] = edge_usage(evidence)
        common = dict(score=decision.score, threshold=decision.threshold,
                      n_samples=decision.n_samples, decision=decision, confidence=confidence)
        error = None
        if decision.route == "cloud":
            r, error = _ask_cloud(self.cloud, q, cloud_options, self.cloud_max_tokens)
            if r is not None:
                usage["cloud"] = dict(r.usage)
                return RoutedAnswer(answer=r.text, routed_to="cloud",
                                    model=r.model or _name(self.cloud), degraded=False,
                                    usage=usage, latency_s=time.perf_counter() - t0, **common)
        evidence = edge_answer(self._supplier, q, evidence)
        usage["edge"] = edge_usage(evidence)
        answer = evidence.answer
        return RoutedAnswer(answer=answer.texts[0], routed_to="edge", model=answer.model,
                            degraded=error is not None, usage=usage,
                            latency_s=time.perf_counter() - t0, error=error, **common)


_SAMPLING = ("n", "max_tokens", "temperature", "seed", "answer_temperature")


def _make_query(sampling: Sampling, messages: Messages, gen_options: Dict[str, Any],
                cloud_only: Optional[str] = None) -> routing.Query:
    unknown = set(gen_options) - set(_SAMPLING)
    if unknown:
        raise ValueError(f"unknown option(s) {sorted(unknown)}; the edge takes "
                         f"{', '.join(_SAMPLING)} (and chat() also cloud_options)")
    return routing.make_query(messages, dataclasses.replace(sampling, **gen_options),
                              cloud_only)


@dataclass(frozen=True)
class ChainAnswer:
    """What ``ChainController.chat`` returns: the answer, the tier that gave it (1-based; the
    last tier is the cloud), the chain's decision with each attempt's cost, ``usage`` per
    tier (``tier1``, ``tier2``, ..., ``cloud``), and ``degraded``/``error`` when the cloud
    was chosen but failed (the last edge tier asked then answers)."""

    answer: str
    tier: int
    model: str
    degraded: bool
    decision: ChainDecision
    usage: Dict[str, Dict[str, Any]]
    latency_s: float
    error: Optional[str] = None

    @property
    def routed_to(self) -> str:
        return "cloud" if self.tier == len(self.decision.chain.tiers) else "edge"

    @property
    def reason(self) -> str:
        return self.decision.reason


class ChainController:
    """``ChainController(edges, cloud, chain)``: a chain of tiers (:class:`confroute.decision.
    chain.Chain`) answered in Python. ``edges``: one in-process (or HTTP) edge model per
    climbing tier, in the chain's order; ``cloud`` answers what climbs past them all. Each
    tier decides through the one decision path with its own supplier and policy (its router
    string); ``scorer`` and ``sampling`` as :class:`Controller`'s, shared by the tiers."""

    def __init__(self, edges, cloud, chain: Chain, scorer: Optional[ConfidenceScorer] = None,
                 cloud_max_tokens: int = 512, sampling: Optional[Sampling] = None):
        if not isinstance(chain, Chain):
            raise ValueError(f"chain must be a confroute.decision.chain.Chain, got "
                             f"{type(chain).__name__}")
        if len(edges) != len(chain.climbing):
            raise ValueError(f"chain {chain.name!r} has {len(chain.climbing)} edge tiers, "
                             f"and {len(edges)} edge models were given")
        self.chain, self.cloud = chain, cloud
        self.policies = chain.policies()
        self.scorer = scorer or ConfidenceScorer()
        self.sampling = sampling or Sampling()
        self.cloud_max_tokens = cloud_max_tokens
        self._suppliers = [EdgeSupplier(e, self.scorer) for e in edges]
        for i, (s, p) in enumerate(zip(self._suppliers, self.policies), 1):
            try:
                s.check_policy(p)
            except ValueError as e:
                raise ValueError(f"chain {chain.name!r}: tier {i}: {e}") from None

    def decide(self, messages: Messages, **gen_options) -> ChainDecision:
        """Only the routing: which tier would answer, and each attempt's decision and cost."""
        q = _make_query(self.sampling, messages, gen_options)
        return decide_chain(self.chain, self.policies, q, self._suppliers)

    def chat(self, messages: Messages, **gen_options) -> ChainAnswer:
        """Routes one conversation up the chain (options as :meth:`Controller.chat`)."""
        t0 = time.perf_counter()
        q, cloud_options = _chat_query(self.sampling, messages, gen_options)
        cd = decide_chain(self.chain, self.policies, q, self._suppliers)
        usage = {f"tier{i}": u for i, ev in enumerate(cd.evidence, 1)
                 if (u := edge_usage(ev))}
        error = None
        if cd.route == "cloud":
            # on an outage the last edge tier asked answers, degraded
            r, error = _ask_cloud(self.cloud, q, cloud_options, self.cloud_max_tokens)
            if r is not None:
                usage["cloud"] = dict(r.usage)
                return ChainAnswer(r.text, cd.tier, r.model or _name(self.cloud), False, cd,
                                   usage, time.perf_counter() - t0)
        tier = cd.tier if error is None else len(cd.attempts)
        ev = edge_answer(self._suppliers[tier - 1], q, cd.evidence[tier - 1])
        usage[f"tier{tier}"] = edge_usage(ev)
        return ChainAnswer(ev.answer.texts[0], tier, ev.answer.model, error is not None, cd,
                           usage, time.perf_counter() - t0, error)


def _chat_query(sampling: Sampling, messages: Messages, gen_options: Dict[str, Any]):
    """(query, cloud options) for ``chat``: tools in ``cloud_options`` make the query the
    cloud's, since only it can call them."""
    cloud_options = dict(gen_options.pop("cloud_options", None) or {})
    tools = cloud_options.get("tools") and cloud_options.get("tool_choice") != "none"
    return _make_query(sampling, messages, gen_options, "tools: only the cloud model can "
                       "call them" if tools else None), cloud_options


def _ask_cloud(cloud, q: routing.Query, options: Dict[str, Any], max_tokens: int):
    """(the cloud's ChatResult, None), or (None, the error) on an outage, a timeout or a
    refusal: the caller falls back to an edge answer. Bad options (ValueError) are the
    caller's error, not an outage."""
    options = {"max_tokens": max_tokens, **options}
    try:
        return cloud.chat(cloud_messages(q, cloud), **options), None
    except ValueError:
        raise
    except Exception as e:
        return None, f"{type(e).__name__}: {e}"


def _name(model) -> str:
    return getattr(model, "name", None) or type(model).__name__
