"""The built-in online policies: what each needs from the edge, and how it decides. Each has
a router string (:mod:`confroute.decision.names`), the same for ``Controller``, ``confroute
serve``, ``POST /v1/route``, ``confroute calibrate`` and ``eval replay``:

- ``router-answer_logprob-<t>`` (:class:`AnswerLogprob`): the edge's answer alone, no sample;
  the score is its mean token log-probability, negated (nats; higher = less sure).
- ``router-disagreement-<t>`` (:class:`Disagreement`): the answer and ``n`` samples; the score
  is the share of samples whose meaning differs from the answer's, in [0, 1].
- ``router-se-<t>`` (:class:`SECascade`, Kuhn's SE), ``router-se_discrete-<t>``,
  ``router-se_weighted-<t>``: semantic entropy of the ``n`` samples (nats).
- ``router-se_adaptive-<t>`` (:class:`AdaptiveSECascade`): discrete SE of up to ``n_max``
  samples drawn in rounds, stopping once the route is settled
  (:mod:`confroute.confidence.stopping`).

Meaning (same answer or not) is the scorer's per-prompt choice: behaviour on the prompt's
example calls for code, the final answer for math, embedding similarity otherwise
(:class:`confroute.confidence.scorer.ConfidenceScorer`, ``meaning=``). Every policy here also
asks for the answer: it is what the edge serves when it keeps the query, drawn in the same
batch as the samples.
"""
from __future__ import annotations

import math
from typing import Optional

import numpy as np

from confroute.confidence.stopping import RULES, AdaptiveResult, schedule, verdict
from confroute.decision.path import Decision, Evidence, Need, Policy, Sampling

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


class AdaptiveSECascade:
    """The online SE policy with adaptive sampling: escalate where the discrete SE of up to
    ``n_max`` samples exceeds ``threshold`` (nats), drawing them in rounds (``first``, then
    ``step`` at a time) and stopping once the decision is settled (``rule``, module doc).

    Two ways to drive it: the decision path asks ``need(evidence, sampling)`` for the samples
    it needs in total after each round and then ``decide(prompt, evidence)``; or ``measure``
    draws the rounds itself with a scorer (``ConfidenceScorer.score_adaptive``) and
    ``decide`` reads that result. Both draw the same samples (the path seeds a request's
    samples with its seed + 1, a round after k samples with seed + 1 + k; ``measure`` takes
    the samples' seed) and decide the same."""

    adaptive = True   # its need grows round by round (decide_all)

    needs_samples = True
    kind = "discrete"

    def __init__(self, threshold: float, n_max: int = 10, first: int = 3, step: int = 2,
                 rule: str = "exact", delta: float = 0.05, alpha: Optional[float] = None):
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) \
                or threshold != threshold or threshold < 0:
            raise ValueError(f"threshold must be a number >= 0 (nats), got {threshold!r}")
        if rule not in RULES:
            raise ValueError(f"rule must be one of {RULES}, got {rule!r}")
        if not 0 < delta < 0.5:
            raise ValueError(f"delta must lie in (0, 0.5), got {delta}")
        schedule(n_max, first, step)  # checks them
        self.threshold, self.n_max, self.first, self.step = float(threshold), n_max, first, step
        self.rule, self.delta, self.alpha = rule, delta, alpha

    def __repr__(self):
        return (f"AdaptiveSECascade(threshold={self.threshold}, n_max={self.n_max}, "
                f"rule={self.rule!r})")

    def _verdict(self, conf):
        return verdict(conf.cluster_ids, conf.se_discrete, self.n_max, self.threshold,
                       self.rule, self.delta, self.alpha)

    # -- the decision path (confroute.decision.path) -----------------------------------------------
    def need(self, evidence, sampling):
        conf = getattr(evidence, "confidence", None)
        # the answer (what is served if the edge keeps it) comes with the first round
        if conf is None:
            return Need(samples=self.first, answer=True)
        if self._verdict(conf)[0] is not None:
            return Need(samples=conf.n_samples, answer=True)   # settled: what is there will do
        return Need(samples=min(conf.n_samples + self.step, self.n_max), answer=True)

    # -- driving it with a scorer ---------------------------------------------------------------
    def measure(self, scorer, messages, edge, **opts) -> AdaptiveResult:
        opts.pop("n", None)  # n_max decides the count
        return scorer.score_adaptive(messages, edge, self.threshold, n_max=self.n_max,
                                     first=self.first, step=self.step, rule=self.rule,
                                     delta=self.delta, alpha=self.alpha, **opts)

    def decide(self, prompt, evidence):
        """From an AdaptiveResult (``measure``) or the path's evidence (``.confidence``)."""
        if isinstance(evidence, AdaptiveResult):
            decision, conf = evidence.decision, evidence.confidence
        else:
            conf = getattr(evidence, "confidence", None)
            if conf is None:
                raise ValueError("AdaptiveSECascade needs the edge model's samples")
            decision = self._verdict(conf)[0]
            if decision is None:
                raise ValueError(f"the decision is not settled after {conf.n_samples} of "
                                 f"{self.n_max} samples: ask need() for more")
        se = float(conf.se_discrete)
        return Decision(decision, se, self.threshold, semantic_entropy=se,
                        reason=f"discrete semantic entropy {se:.3f} of {conf.n_samples} "
                               f"samples: {decision} settled at threshold {self.threshold:g} "
                               f"(n_max {self.n_max}, rule {self.rule})",
                        n_samples=conf.n_samples)
