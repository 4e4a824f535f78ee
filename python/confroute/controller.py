"""The online cascade: measure the edge model's confidence, then answer on the edge or escalate.

A policy is any object with ``needs_samples: bool`` and ``decide(prompt, confidence) ->
Decision``; ``confidence`` is a :class:`confroute.scorer.Confidence` when ``needs_samples`` is
true and None otherwise (a trained router that judges the prompt alone). :class:`SECascade`
escalates when the edge model's semantic entropy exceeds a threshold.

When the edge keeps a query, the answer is one of the samples already drawn (the most likely
member of the largest meaning cluster): no extra generation. When the cloud fails or times out,
the edge answer comes back marked ``degraded`` with the error, instead of an exception.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Dict, Optional, Tuple

from confroute.models.types import Messages, last_user_text, normalize_messages
from confroute.scorer import KINDS, Confidence, ConfidenceScorer


@dataclass(frozen=True)
class Decision:
    route: str        # "edge" | "cloud"
    score: float      # the number the policy compared (higher = needs the cloud more)
    threshold: float

    def __post_init__(self):
        if self.route not in ("edge", "cloud"):
            raise ValueError(f"route must be 'edge' or 'cloud', got {self.route!r}")


class Policy:
    """The interface (subclassing is optional: duck typing is enough)."""

    needs_samples: bool = True

    def decide(self, prompt: str, confidence: Optional[Confidence]) -> Decision:
        raise NotImplementedError


class SECascade(Policy):
    """Escalate to the cloud when the edge model's SE of ``kind`` is above ``threshold``
    (nats). An undefined SE (NaN: no logprobs for the weighted/Kuhn forms) escalates."""

    needs_samples = True

    def __init__(self, threshold: float, kind: str = "kuhn"):
        if kind not in KINDS:
            raise ValueError(f"unknown SE kind {kind!r}; use one of {KINDS}")
        if not isinstance(threshold, (int, float)) or threshold != threshold or threshold < 0:
            raise ValueError(f"threshold must be a number >= 0 (nats), got {threshold!r}")
        self.threshold, self.kind = float(threshold), kind

    def __repr__(self):
        return f"SECascade(threshold={self.threshold}, kind={self.kind!r})"

    def decide(self, prompt: str, confidence: Optional[Confidence]) -> Decision:
        if confidence is None:
            raise ValueError("SECascade needs the edge model's confidence")
        se = confidence.se(self.kind)
        route = "edge" if se <= self.threshold else "cloud"  # NaN compares False: cloud
        return Decision(route, se, self.threshold)


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
        """The SE the policy used (NaN if the policy did not sample)."""
        return self.score if self.confidence is not None else float("nan")

    def as_dict(self) -> Dict[str, Any]:
        return {"answer": self.answer, "routed_to": self.routed_to, "model": self.model,
                "degraded": self.degraded, "score": self.score,
                "semantic_entropy": self.semantic_entropy, "threshold": self.threshold,
                "n_samples": self.n_samples, "usage": self.usage,
                "latency_s": self.latency_s, "error": self.error,
                "confidence": self.confidence.as_dict() if self.confidence else None}


def policy_from_string(spec: str) -> Policy:
    """A router string as the server's model names: ``router-se-0.8`` is the online cascade
    with an SE threshold of 0.8 nats; anything else (``router-sw-0.35``, ``router-<folder>``)
    is a trained router with a threshold on its [0, 1] score (confroute.routers.policy)."""
    se_prefix = "router-se-"
    if spec.startswith(se_prefix):
        try:
            threshold = float(spec[len(se_prefix):])
        except ValueError:
            raise ValueError(f"{spec!r}: the SE threshold after 'router-se-' is not a number")
        return SECascade(threshold)
    from confroute.routers.policy import RouterPolicy

    return RouterPolicy.from_string(spec)


class Controller:
    """``Controller(edge, cloud, policy)``: ``edge`` needs ``sample`` and ``generate`` (an
    EdgeModel); ``cloud`` needs ``chat`` (a CloudModel, or an in-process model); ``policy`` is
    a policy object or a router string (:func:`policy_from_string`). ``scorer`` defaults to a
    :class:`ConfidenceScorer` on the MiniLM embedder."""

    def __init__(self, edge, cloud, policy, scorer: Optional[ConfidenceScorer] = None,
                 cloud_max_tokens: int = 512):
        if isinstance(policy, str):
            policy = policy_from_string(policy)
        if not hasattr(policy, "decide") or not hasattr(policy, "needs_samples"):
            raise ValueError("policy needs a 'needs_samples' attribute and a 'decide' method")
        self.edge, self.cloud, self.policy = edge, cloud, policy
        self.scorer = scorer or ConfidenceScorer()
        self.cloud_max_tokens = cloud_max_tokens

    def decide(self, messages: Messages, **gen_options
               ) -> Tuple[Decision, Optional[Confidence]]:
        """Only the routing step: the policy's decision and the edge confidence (None when the
        policy needs no samples). For callers that answer themselves, e.g. a server that
        streams the cloud answer with ``CloudModel.chat(stream=True)``; when the route is
        'edge', ``confidence.answer`` is the answer."""
        flat = normalize_messages(messages)
        confidence = None
        if self.policy.needs_samples:
            confidence = self.scorer.score(flat, self.edge, **gen_options)
        return self.policy.decide(last_user_text(flat), confidence), confidence

    def chat(self, messages: Messages, **gen_options) -> RoutedAnswer:
        """Routes one conversation. ``gen_options`` (n, max_tokens, temperature, seed) set the
        edge sampling; ``cloud_options`` (a dict) goes to ``cloud.chat``."""
        t0 = time.perf_counter()
        cloud_options = dict(gen_options.pop("cloud_options", None) or {})
        msgs = normalize_messages(messages, flatten=False)
        flat = normalize_messages(msgs)
        usage: Dict[str, Dict[str, int]] = {}
        decision, confidence = self.decide(flat, **gen_options)
        if confidence is not None:
            s = confidence.samples
            usage["edge"] = {"prompt_tokens": s.prompt_tokens,
                             "completion_tokens": s.completion_tokens}
        n = confidence.n_samples if confidence is not None else 0
        common = dict(score=decision.score, threshold=decision.threshold, n_samples=n,
                      decision=decision, confidence=confidence)
        error = None
        if decision.route == "cloud":
            cloud_options.setdefault("max_tokens", self.cloud_max_tokens)
            try:
                r = self.cloud.chat(msgs if _keeps_lists(self.cloud) else flat,
                                    **cloud_options)
            except ValueError:
                raise  # bad options are the caller's error, not an outage
            except Exception as e:  # outage, timeout, refusal: fall back to the edge answer
                error = f"{type(e).__name__}: {e}"
            else:
                usage["cloud"] = dict(r.usage)
                return RoutedAnswer(answer=r.text, routed_to="cloud",
                                    model=r.model or _name(self.cloud), degraded=False,
                                    usage=usage, latency_s=time.perf_counter() - t0, **common)
        if confidence is not None:
            answer, model = confidence.answer, confidence.samples.model
        else:
            r = self.edge.generate(flat, **_generate_options(gen_options))
            answer, model = r.text, r.model
            usage["edge"] = dict(r.usage)
        return RoutedAnswer(answer=answer, routed_to="edge", model=model,
                            degraded=error is not None, usage=usage,
                            latency_s=time.perf_counter() - t0, error=error, **common)


def _keeps_lists(model) -> bool:
    # A remote API takes list-form content as is (it may carry images); local models need text.
    from confroute.models.cloud import CloudModel

    return isinstance(model, CloudModel)


def _name(model) -> str:
    return getattr(model, "name", None) or type(model).__name__


def _generate_options(opts: Dict[str, Any]) -> Dict[str, Any]:
    return {k: v for k, v in opts.items() if k in ("max_tokens", "temperature", "seed")}
