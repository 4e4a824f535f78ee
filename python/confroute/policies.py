"""The built-in online policies: what each needs from the edge, and how it decides. Each has
a router string (:mod:`confroute.routers.policy`), the same for ``Controller``, ``confroute
serve``, ``POST /v1/route``, ``confroute calibrate`` and ``eval replay``:

- ``router-answer_logprob-<t>`` (:class:`AnswerLogprob`): the edge's answer alone, no sample;
  the score is its mean token log-probability, negated (nats; higher = less sure).
- ``router-disagreement-<t>`` (:class:`Disagreement`): the answer and ``n`` samples; the score
  is the share of samples whose meaning differs from the answer's, in [0, 1].
- ``router-se-<t>`` (:class:`SECascade`, Kuhn's SE), ``router-se_discrete-<t>``,
  ``router-se_weighted-<t>``: semantic entropy of the ``n`` samples (nats).

Meaning (same answer or not) is the scorer's per-prompt choice: behaviour on the prompt's
example calls for code, the final answer for math, embedding similarity otherwise
(:class:`confroute.scorer.ConfidenceScorer`, ``meaning=``). Every policy here also asks for
the answer: it is what the edge serves when it keeps the query, drawn in the same batch as
the samples.
"""
from __future__ import annotations

import math

import numpy as np

from confroute.routing import Decision, Evidence, Need, Policy, Sampling

KINDS = ("discrete", "weighted", "kuhn")


def _threshold(t, lo: float = 0.0, hi: float = math.inf, unit: str = "nats") -> float:
    if isinstance(t, bool) or not isinstance(t, (int, float)) or t != t or not lo <= t <= hi:
        span = f">= {lo:g}" if hi == math.inf else f"in [{lo:g}, {hi:g}]"
        raise ValueError(f"threshold must be a number {span} ({unit}), got {t!r}")
    return float(t)


class SECascade(Policy):
    """Escalate to the cloud when the edge model's SE of ``kind`` over the request's ``n``
    samples is above ``threshold`` (nats). An undefined SE (NaN: no logprobs for the
    weighted/Kuhn forms) escalates."""

    def __init__(self, threshold: float, kind: str = "kuhn"):
        if kind not in KINDS:
            raise ValueError(f"unknown SE kind {kind!r}; use one of {KINDS}")
        self.threshold, self.kind = _threshold(threshold), kind

    def __repr__(self):
        return f"SECascade(threshold={self.threshold}, kind={self.kind!r})"

    @property
    def needs_logprobs(self) -> bool:
        """The weighted and Kuhn forms weigh meanings by the samples' likelihood."""
        return self.kind != "discrete"

    def need(self, evidence: Evidence, sampling: Sampling) -> Need:
        return Need(samples=sampling.n, answer=True)

    def decide(self, prompt: str, evidence: Evidence) -> Decision:
        if evidence is None or evidence.confidence is None:
            raise ValueError("SECascade needs the edge model's samples")
        se = evidence.confidence.se(self.kind)
        return Decision.compare(se, self.threshold, "semantic entropy", semantic_entropy=se,
                                meaning=evidence.confidence.method)


class AnswerLogprob(Policy):
    """Escalate when the edge's answer is unlikely under the edge itself: the score is minus
    its mean token log-probability (the stop token included when it stopped on its own), in
    nats. No samples: one generation, which is also the answer served. An answer without
    logprobs (or without tokens) escalates."""

    needs_logprobs = True

    def __init__(self, threshold: float):
        self.threshold = _threshold(threshold)

    def __repr__(self):
        return f"AnswerLogprob(threshold={self.threshold})"

    def need(self, evidence: Evidence, sampling: Sampling) -> Need:
        return Need(answer=True)

    def decide(self, prompt: str, evidence: Evidence) -> Decision:
        if evidence is None or evidence.answer is None:
            raise ValueError("AnswerLogprob needs the edge model's answer")
        return Decision.compare(answer_score(evidence.answer), self.threshold,
                                "answer -mean logprob")


def answer_score(answer) -> float:
    """Minus the mean token logprob of a one-answer Samples; NaN without logprobs."""
    lps = answer.token_logprobs
    if lps is None or not len(lps) or not len(lps[0]):
        return float("nan")
    return float(-np.mean(np.asarray(lps[0], np.float64)))


class Disagreement(Policy):
    """Escalate when the edge would not say the same again: the score is the share of the
    request's ``n`` samples whose meaning differs from the answer's (``threshold`` in [0, 1])."""

    def __init__(self, threshold: float):
        self.threshold = _threshold(threshold, 0.0, 1.0, "share of samples")

    def __repr__(self):
        return f"Disagreement(threshold={self.threshold})"

    def need(self, evidence: Evidence, sampling: Sampling) -> Need:
        return Need(samples=sampling.n, answer=True)

    def decide(self, prompt: str, evidence: Evidence) -> Decision:
        conf = None if evidence is None else evidence.confidence
        if conf is None or evidence.answer is None:
            raise ValueError("Disagreement needs the edge model's answer and samples")
        return Decision.compare(conf.disagreement, self.threshold, "disagreement",
                                meaning=conf.method)
