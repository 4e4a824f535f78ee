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
- ``router-<stage>+<stage>...`` (:class:`Staged`): policies asked in turn, each stage settling
  what it is sure about (``answer_logprob-0.2:0.9+disagreement-0.4``: the confidence ladder;
  ``sw-0.7+disagreement-0.4``: cascade routing).

Meaning (same answer or not) is the scorer's per-prompt choice: behaviour on the prompt's
example calls for code, the final answer for math, embedding similarity otherwise
(:class:`confroute.confidence.scorer.ConfidenceScorer`, ``meaning=``). Every policy here also
asks for the answer: it is what the edge serves when it keeps the query, drawn in the same
batch as the samples.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import numpy as np

from confroute.confidence.stopping import RULES, AdaptiveResult, schedule, verdict
from confroute.decision.path import Decision, Evidence, Need, Policy, Sampling, _need_of

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

    what = "semantic entropy"

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
        return Decision.compare(se, self.threshold, self.what, semantic_entropy=se,
                                meaning=evidence.confidence.method)


class AnswerLogprob(Policy):
    """Escalate when the edge's answer is unlikely under the edge itself: the score is minus
    its mean token log-probability (the stop token included when it stopped on its own), in
    nats. No samples: one generation, which is also the answer served. An answer without
    logprobs (or without tokens) escalates."""

    needs_logprobs = True
    what = "answer -mean logprob"

    def __init__(self, threshold: float):
        self.threshold = _threshold(threshold)

    def __repr__(self):
        return f"AnswerLogprob(threshold={self.threshold})"

    def need(self, evidence: Evidence, sampling: Sampling) -> Need:
        return Need(answer=True)

    def decide(self, prompt: str, evidence: Evidence) -> Decision:
        if evidence is None or evidence.answer is None:
            raise ValueError("AnswerLogprob needs the edge model's answer")
        return Decision.compare(answer_score(evidence.answer), self.threshold, self.what)


def answer_score(answer) -> float:
    """Minus the mean token logprob of a one-answer Samples; NaN without logprobs."""
    lps = answer.token_logprobs
    if lps is None or not len(lps) or not len(lps[0]):
        return float("nan")
    return float(-np.mean(np.asarray(lps[0], np.float64)))


class Disagreement(Policy):
    """Escalate when the edge would not say the same again: the score is the share of the
    request's ``n`` samples whose meaning differs from the answer's (``threshold`` in [0, 1])."""

    what = "disagreement"

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
        return Decision.compare(conf.disagreement, self.threshold, self.what,
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
    what = "discrete semantic entropy"

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


class Stage:
    """One stage of a :class:`Staged` policy: ``policy`` gives the score (higher = less sure;
    its own threshold is not used here), the cloud where score > ``hi`` (an undefined score
    too), the edge where ``lo`` is set and score <= ``lo``, else the next stage."""

    def __init__(self, policy, hi: float, lo: Optional[float] = None, name: str = ""):
        self.policy, self.hi, self.lo = policy, float(hi), None if lo is None else float(lo)
        self.name = name or type(policy).__name__
        if self.lo is not None and not 0 <= self.lo <= self.hi:
            raise ValueError(f"the band {lo:g}:{hi:g} needs 0 <= LO <= HI ("
                             + ("LO is above HI)" if self.lo > self.hi else "LO below 0)"))

    def text(self) -> str:
        return (f"{self.name}-{self.hi:g}" if self.lo is None
                else f"{self.name}-{self.lo:g}:{self.hi:g}")

    def verdict(self, score: float) -> Optional[str]:
        """'cloud', 'edge', or None: the next stage decides."""
        if not score <= self.hi:
            return "cloud"
        if self.lo is not None and score <= self.lo:
            return "edge"
        return None


class Staged(Policy):
    """Policies asked in turn, each only when the ones before could not settle the route: a
    stage sends the query to the cloud where its score > high, keeps it on the edge where a
    band is given and score <= low, and otherwise hands it on; the last policy decides the
    rest at its own threshold. The router string joins the stages with ``+``
    (``router-answer_logprob-0.2:0.9+disagreement-0.4``: :mod:`confroute.decision.names`).

    Each stage's need is asked only once the stages before it have passed the query on, so
    the ladder draws samples only for the answers whose log-prob is unsure, and a query
    router in front (``router-sw-0.7+disagreement-0.4``) sends queries up before the edge
    answers. The samples of a later round draw with seed + 1 + (samples drawn before) like
    any round, so those of the ladder's second stage are the draw a table records for that
    policy alone. The decision reports the deciding stage's score and threshold."""

    adaptive = True   # its need grows with what the first stages saw

    def __init__(self, stages: Sequence[Stage]):
        stages = list(stages)
        if len(stages) < 2:
            raise ValueError("a staged policy needs at least two stages")
        if stages[-1].lo is not None:
            raise ValueError(f"the last stage ({stages[-1].text()}) decides the rest: it "
                             f"takes one threshold, not a band")
        for st in stages[:-1]:
            if getattr(st.policy, "adaptive", False):
                raise ValueError(f"stage {st.name} draws in rounds until its own route is "
                                 "settled: it can only be the last stage")
        self.stages = stages
        self.threshold = stages[-1].hi

    @property
    def needs_logprobs(self) -> bool:
        return any(getattr(st.policy, "needs_logprobs", False) for st in self.stages)

    @property
    def needs_hidden(self) -> bool:
        return any(getattr(st.policy, "needs_hidden", False) for st in self.stages)

    def __repr__(self):
        return f"Staged({'+'.join(st.text() for st in self.stages)})"

    def need(self, evidence: Evidence, sampling: Sampling) -> Need:
        total = Need()
        for i, st in enumerate(self.stages):
            total = total | _need_of(st.policy, evidence, sampling)
            if i == len(self.stages) - 1 or not evidence.covers(total):
                return total
            if st.verdict(st.policy.decide(evidence.prompt, evidence).score) is not None:
                return total    # settled here: nothing more is drawn
        return total

    def decide(self, prompt: str, evidence: Evidence) -> Decision:
        passed = []
        n = len(self.stages)
        for i, st in enumerate(self.stages, 1):
            d = st.policy.decide(prompt, evidence)
            where = f"stage {i} of {n}" + "".join(f"; {p}" for p in passed)
            if i == n:
                return Decision(d.route, d.score, d.threshold, d.semantic_entropy,
                                f"{d.reason} ({where})", meaning=d.meaning)
            route, what = st.verdict(d.score), getattr(st.policy, "what", "score")
            if route is not None:
                t = st.hi if route == "cloud" else st.lo
                op = ">" if route == "cloud" else "<="
                return Decision(route, d.score, t, d.semantic_entropy,
                                f"{what} {d.score:.3f} {op} {t:g} ({where})", meaning=d.meaning)
            band = f"in ({st.lo:g}, {st.hi:g}]" if st.lo is not None else f"<= {st.hi:g}"
            passed.append(f"stage {i}: {what} {d.score:.3f} {band}")
        raise AssertionError("unreachable: the last stage decides")
