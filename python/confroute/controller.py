"""The online cascade in Python: decide through the one decision path
(:mod:`confroute.decision.path`), then answer on the edge or escalate.

The policy is a :class:`confroute.decision.path.Policy` (e.g. :class:`SECascade`, or a trained
router's :class:`~confroute.decision.names.RouterPolicy`) or a router string. When the edge
keeps a query, the answer is the edge's answer the policy judged (greedy by default, the one
``eval build`` grades): no second generation. When the cloud fails or times out, the edge
answer comes back marked ``degraded`` with the error, instead of an exception.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Dict, Optional, Tuple

from confroute.confidence.scorer import Confidence, ConfidenceScorer
from confroute.decision import path as routing
from confroute.decision.answer import cloud_messages, edge_answer, edge_usage
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

    def _query(self, messages: Messages, gen_options: Dict[str, Any],
               cloud_only: Optional[str] = None) -> routing.Query:
        unknown = set(gen_options) - set(_SAMPLING)
        if unknown:
            raise ValueError(f"unknown option(s) {sorted(unknown)}; the edge takes "
                             f"{', '.join(_SAMPLING)} (and chat() also cloud_options)")
        import dataclasses

        return routing.make_query(messages, dataclasses.replace(self.sampling, **gen_options),
                                  cloud_only)

    def decide(self, messages: Messages, **gen_options
               ) -> Tuple[Decision, Optional[Confidence]]:
        """Only the routing step (the same path as the server's ``POST /v1/route``): the
        policy's decision and the edge confidence (None when the policy drew no samples)."""
        decision, evidence = routing.decide(self.policy, self._query(messages, gen_options),
                                            self._supplier)
        return decision, evidence.confidence

    def chat(self, messages: Messages, **gen_options) -> RoutedAnswer:
        """Routes one conversation. ``gen_options`` (n, max_tokens, temperature, seed,
        answer_temperature) override ``sampling``; ``cloud_options`` (a dict) goes to
        ``cloud.chat``. Tools in ``cloud_options`` send the request to the cloud: only it can
        call them. When the edge keeps the query, the answer is the edge's answer that the
        policy judged (drawn after the decision only if the policy needed none)."""
        t0 = time.perf_counter()
        cloud_options = dict(gen_options.pop("cloud_options", None) or {})
        tools = cloud_options.get("tools") and cloud_options.get("tool_choice") != "none"
        q = self._query(messages, gen_options, "tools: only the cloud model can call them"
                        if tools else None)
        decision, evidence = routing.decide(self.policy, q, self._supplier)
        confidence = evidence.confidence
        usage: Dict[str, Dict[str, int]] = {}
        if edge_usage(evidence):
            usage["edge"] = edge_usage(evidence)
        common = dict(score=decision.score, threshold=decision.threshold,
                      n_samples=decision.n_samples, decision=decision, confidence=confidence)
        error = None
        if decision.route == "cloud":
            cloud_options.setdefault("max_tokens", self.cloud_max_tokens)
            try:
                r = self.cloud.chat(cloud_messages(q, self.cloud), **cloud_options)
            except ValueError:
                raise  # bad options are the caller's error, not an outage
            except Exception as e:  # outage, timeout, refusal: fall back to the edge answer
                error = f"{type(e).__name__}: {e}"
            else:
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


def _name(model) -> str:
    return getattr(model, "name", None) or type(model).__name__
