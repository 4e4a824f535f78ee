"""Staged policies (the confidence ladder, cascade routing): the router-string grammar, the
path's rounds with a stand-in edge (pure logic), and, marked ``models``, the served ladder on
SmolLM2 against the per-stage scores ``decide_all`` records for a table."""
from __future__ import annotations

import math

import numpy as np
import pytest

from confroute.decision import path as routing
from confroute.decision.edge import EdgeSupplier
from confroute.decision.names import parse_stages, policy_from_string, staged_policy
from confroute.decision.path import Sampling
from confroute.decision.policies import AnswerLogprob, Disagreement, Staged
from confroute.models.types import Samples
from confroute.routers.base import Router

LADDER = "router-answer_logprob-0.2:0.9+disagreement-0.4"


# --- the grammar ---------------------------------------------------------------------------
def test_good_strings_parse_into_stages():
    assert parse_stages("answer_logprob-0.2:0.9+disagreement-0.4") == [
        ("answer_logprob", 0.2, 0.9), ("disagreement", None, 0.4)]
    assert parse_stages("sw-0.7+disagreement-0.4+se-1.5") == [
        ("sw", None, 0.7), ("disagreement", None, 0.4), ("se", None, 1.5)]
    assert parse_stages("answer_logprob-1:2+sw") == [("answer_logprob", 1.0, 2.0),
                                                     ("sw", None, None)]
    p = policy_from_string(LADDER)
    assert isinstance(p, Staged) and p.adaptive and p.needs_logprobs
    assert p.threshold == 0.4 and repr(p) == "Staged(answer_logprob-0.2:0.9+disagreement-0.4)"
    first, last = p.stages
    assert isinstance(first.policy, AnswerLogprob) and (first.lo, first.hi) == (0.2, 0.9)
    assert isinstance(last.policy, Disagreement) and (last.lo, last.hi) == (None, 0.4)
    # a query router in front (cascade routing), a registered router by name
    c = policy_from_string("router-random-0.7+disagreement-0.4")
    assert c.stages[0].policy.router.name == "random" and c.stages[0].lo is None
    assert not c.needs_logprobs
    # the server's form: the stages, and the last threshold apart
    s = staged_policy("answer_logprob-0.2:0.9+disagreement", 0.4)
    assert repr(s) == repr(p)


@pytest.mark.parametrize("spec, match", [
    ("router-answer_logprob-0.9:0.2+disagreement-0.4", r"stage 1 .*LO is above HI"),
    ("router-answer_logprob-0.2:0.9+disagreement-0.2:0.4",
     r"stage 2 .*last stage .* not a band \(0.2:0.4\)"),
    ("router-answer_logprob-0.2:0.9+nosuch-0.4", r"stage 2 \(nosuch\): unknown router 'nosuch'"),
    ("router-answer_logprob-0.2:x+disagreement-0.4", r"stage 1 .*'x' is not a number"),
    ("router-answer_logprob-a:0.9+disagreement-0.4", r"stage 1 .*'a' is not a number"),
    ("router-disagreement-abc+se-1", r"stage 1 .*threshold 'abc' is not a number"),
    ("router-answer_logprob-0.2:0.9++disagreement-0.4", r"stage 2 is empty"),
    ("router-answer_logprob-0.2:0.9+", r"stage 2 is empty"),
    ("router-+disagreement-0.4", r"stage 1 is empty"),
    ("router-answer_logprob+disagreement-0.4", r"stage 1 .*needs a threshold .* or a band"),
    ("router-disagreement-0.2:1.5+se-1", r"stage 1 .*in \[0, 1\]"),
    ("router-answer_logprob--1:0.5+se-1", r"stage 1 .*LO below 0"),
    ("router-answer_logprob-0.2:0.9+disagreement", r"stage 2 .*needs a threshold"),
    ("router-se_adaptive-1+se-1", r"se_adaptive draws in rounds"),
])
def test_bad_strings_say_what_is_wrong(spec, match):
    with pytest.raises(ValueError, match=match):
        policy_from_string(spec)


def test_the_last_threshold_given_twice_must_agree():
    assert staged_policy("answer_logprob-0.2:0.9+disagreement-0.4", 0.4).threshold == 0.4
    with pytest.raises(ValueError, match="given twice"):
        staged_policy("answer_logprob-0.2:0.9+disagreement-0.4", 0.5)


# --- the path, with a stand-in edge ---------------------------------------------------------
class _Edge:
    """Answers with a fixed mean token logprob per prompt; sample i of a draw seeded s reads
    'a' when (s + i) is even, else 'b'. Records every draw (n, seed)."""

    name = "stand-in"

    def __init__(self, logprob):
        self.logprob, self.draws = logprob, []

    def sample(self, messages, n, max_tokens, temperature, seed):
        self.draws.append((n, seed))
        prompt = messages[-1]["content"]
        texts = tuple("a" if (seed + i) % 2 == 0 else "b" for i in range(n))
        lps = tuple(np.full(4, self.logprob[prompt]) for _ in range(n))
        return Samples(texts=texts, token_logprobs=lps, token_ids=None,
                       finish_reasons=("stop",) * n, model=self.name, prompt_tokens=10 * n,
                       completion_tokens=4 * n, temperature=temperature, seconds=0.5 * n)


class _Conf:
    def __init__(self, samples, answer):
        self.samples, self.n_samples = samples, samples.n
        self.disagreement = float(np.mean([t != answer for t in samples.texts]))
        self.method = "exact"


class _Scorer:
    def score_samples(self, samples, t_generate=0.0, prompts=None, answers=None,
                      prefixes=None):
        return [_Conf(s, a) for s, a in zip(samples, answers)]


def _decide(policy, prompt, edge, seed=4, n=5):
    q = routing.make_query(prompt, Sampling(n=n, seed=seed))
    return routing.decide(policy, q, EdgeSupplier(edge, _Scorer()))


def test_the_ladder_samples_only_inside_its_band():
    edge = _Edge({"sure": -0.1, "unsure": -2.0, "between": -0.5})
    p = policy_from_string(LADDER)
    d, ev = _decide(p, "sure", edge)      # score 0.1 <= 0.2: kept, no samples
    assert (d.route, d.score, d.threshold, d.n_samples) == ("edge", pytest.approx(0.1), 0.2, 0)
    assert d.reason == "answer -mean logprob 0.100 <= 0.2 (stage 1 of 2)"
    assert edge.draws == [(1, 4)] and ev.samples is None and ev.answer is not None
    edge.draws.clear()
    d, _ = _decide(p, "unsure", edge)     # 2.0 > 0.9: the cloud, no samples
    assert (d.route, d.score, d.threshold, d.n_samples) == ("cloud", 2.0, 0.9, 0)
    assert d.reason == "answer -mean logprob 2.000 > 0.9 (stage 1 of 2)"
    assert edge.draws == [(1, 4)]
    edge.draws.clear()
    d, ev = _decide(p, "between", edge)   # 0.5 in the band: 5 samples with seed + 1
    assert edge.draws == [(1, 4), (5, 5)] and d.n_samples == 5
    # samples b a b a b against the greedy answer 'a' (seed 4): 3 of 5 differ
    assert (d.route, d.score, d.threshold) == ("cloud", 0.6, 0.4)
    assert d.reason == ("disagreement 0.600 > threshold 0.4 (meaning: exact) (stage 2 of 2; "
                        "stage 1: answer -mean logprob 0.500 in (0.2, 0.9])")
    # the same draws as the disagreement policy alone (one round: answer and samples)
    edge2 = _Edge(edge.logprob)
    d2, ev2 = _decide(policy_from_string("router-disagreement-0.4"), "between", edge2)
    assert edge2.draws == edge.draws and ev2.samples.texts == ev.samples.texts
    assert (d2.route, d2.score) == (d.route, d.score)


def test_an_undefined_first_score_escalates_without_samples():
    edge = _Edge({"x": float("nan")})
    d, _ = _decide(policy_from_string(LADDER), "x", edge)
    assert d.route == "cloud" and math.isnan(d.score) and d.n_samples == 0
    assert edge.draws == [(1, 4)]


class _Fixed(Router):
    """A query router with a fixed score per prompt."""

    name = "fixed"

    def __init__(self, scores):
        self.scores, self.threshold, self.calls = scores, None, 0

    def score(self, prompts):
        self.calls += 1
        return np.array([self.scores[p] for p in prompts])


def test_cascade_routing_sends_up_before_the_edge_answers():
    router = _Fixed({"hard": 0.9, "easy": 0.1})
    p = staged_policy("fixed-0.7+disagreement-0.4", build=lambda name, t: (
        routing_policy(router, t) if name == "fixed" else policy_from_string(
            f"router-{name}-{t}")))
    edge = _Edge({"hard": -1.0, "easy": -1.0})
    d, ev = _decide(p, "hard", edge)
    assert (d.route, d.score, d.threshold, d.n_samples) == ("cloud", 0.9, 0.7, 0)
    assert d.reason == "router score 0.900 > 0.7 (stage 1 of 2)"
    assert edge.draws == [] and ev.answer is None    # the edge never ran
    d, ev = _decide(p, "easy", edge, seed=3)         # the edge answers and samples
    assert edge.draws == [(1, 3), (5, 4)] and d.n_samples == 5
    # samples a b a b a (seed 4) against the answer 'b' (seed 3)
    assert (d.score, d.route) == (0.6, "cloud") and "stage 2 of 2" in d.reason
    assert "stage 1: router score 0.100 <= 0.7" in d.reason


def routing_policy(router, t):
    from confroute.decision.names import make_policy

    return make_policy(router.name, t, router)


def test_decide_all_gives_the_staged_policy_its_own_rounds():
    # eval build's columns: the ladder next to its stages, each as served alone
    edge = _Edge({"between": -0.5})
    q = routing.make_query("between", Sampling(n=5, seed=8))
    policies = [policy_from_string(LADDER), policy_from_string("router-answer_logprob-0.9"),
                policy_from_string("router-disagreement-0.4")]
    decisions, ev = routing.decide_all(policies, q, EdgeSupplier(edge, _Scorer()))
    ladder, cheap, sampled = decisions
    assert ladder.score == sampled.score and ladder.route == sampled.route
    assert cheap.score == pytest.approx(0.5) and ladder.n_samples == sampled.n_samples == 5


# --- on the real edge: served ladder = the rule on the table's per-stage scores --------------
PROMPTS = ["What is 7 + 5? Answer with the number.",
           "What is 12 times 3? Give only the number.",
           "How many legs do 3 spiders have? Answer with a number.",
           "What is 100 minus 37? Reply with the number only.",
           "Name a number between 1 and 1000.",
           "What is 2 to the power of 10? Answer with the number.",
           "Pick a random year between 1900 and 2000. Only the year."]
SAMPLING = dict(n=5, max_tokens=20, temperature=1.0)


class _NoEmbedder:
    def embed(self, texts):
        raise AssertionError("this test judges meaning by the final number (meaning='exact')")


@pytest.mark.models
def test_the_served_ladder_is_the_rule_on_the_recorded_stage_scores():
    from confroute.confidence.scorer import ConfidenceScorer
    from confroute.controller import Controller
    from confroute.models import default_edge

    edge = default_edge(n_ctx=512, n_threads=1, n_seq_max=8)
    try:
        scorer = ConfidenceScorer(_NoEmbedder(), meaning="exact")
        queries = [routing.make_query([{"role": "user", "content": p}],
                                      Sampling(seed=11 + i, **SAMPLING))
                   for i, p in enumerate(PROMPTS)]
        # what eval build records (its supplier batches the answer with the samples): each
        # policy's score as served alone
        cheap, sampled = [], []
        for q in queries:
            (c, s), _ = routing.decide_all([policy_from_string("router-answer_logprob-1"),
                                            policy_from_string("router-disagreement-0.5")],
                                           q, EdgeSupplier(edge, scorer, batch=True))
            cheap.append(c.score)
            sampled.append(s.score)
        # a band that keeps some prompts, sends some up, and samples the rest
        order = np.sort(cheap)
        lo, hi = (order[1] + order[2]) / 2, (order[-2] + order[-1]) / 2
        t = 0.3
        spec = f"router-answer_logprob-{lo:.6f}:{hi:.6f}+disagreement-{t}"
        lo, hi = float(f"{lo:.6f}"), float(f"{hi:.6f}")
        stages_decided = {"edge": 0, "cloud": 0, "sampled": 0}
        served = Controller(edge, None, spec, scorer=scorer)   # the answer, then a round
        for q, c, s in zip(queries, cheap, sampled):
            d, conf = served.decide(q.messages, seed=q.sampling.seed, **SAMPLING)
            if c > hi or c <= lo:
                want = "cloud" if c > hi else "edge"
                stages_decided[want] += 1
                assert (d.route, d.n_samples, conf) == (want, 0, None), q.prompt
                assert d.score == c and "stage 1 of 2" in d.reason
            else:
                stages_decided["sampled"] += 1
                assert d.n_samples == SAMPLING["n"] and d.score == s, q.prompt
                assert d.route == ("cloud" if s > t else "edge") and "stage 2 of 2" in d.reason
        assert min(stages_decided.values()) >= 1, stages_decided
        assert len(set(sampled)) > 1, sampled    # the samples disagree somewhere
    finally:
        edge.close()


# --- served: the server's route endpoint, with the stand-in edge -----------------------------
def test_the_server_serves_a_staged_router_and_shows_what_it_drew():
    from starlette.testclient import TestClient

    from confroute.server import build
    from confroute.server.config import from_dict

    class Cloud:
        name = "cloud"

    cfg = from_dict({"routers": [
        {"name": "answer_logprob-0.2:0.9+disagreement", "thresholds": [0.4]},
        {"name": "disagreement", "thresholds": [0.4]}]})
    assert cfg.model_ids() == ["router-answer_logprob-0.2:0.9+disagreement-0.4",
                               "router-disagreement-0.4"]
    edge = _Edge({"sure": -0.1, "between": -0.5})
    app, _ = build(cfg, models=(edge, Cloud(), _Scorer(), {}))
    with TestClient(app) as client:
        def route(model, prompt, **kw):
            return client.post("/v1/route", json={"model": model, "seed": 4, "messages": [
                {"role": "user", "content": prompt}], **kw})

        r = route(LADDER, "sure").json()
        assert (r["route"], r["n_samples"], r["threshold"]) == ("edge", 0, 0.2)
        assert r["router"] == LADDER and "stage 1 of 2" in r["reason"]
        assert r["usage"]["edge"]["completion_tokens"] == 4 and "seconds" in r["usage"]["edge"]
        r = route(LADDER, "between").json()
        assert (r["route"], r["n_samples"], r["score"]) == ("cloud", 5, 0.6)
        assert r["usage"]["edge"]["completion_tokens"] == 4 + 5 * 4
        # the last threshold in the request's field, as for any router
        r = route("router-answer_logprob-0.2:0.9+disagreement", "between", threshold=0.8)
        assert (r.json()["route"], r.json()["threshold"]) == ("edge", 0.8)
        # another band is served only where every stage is a configured router
        r = route("router-answer_logprob-0.1:0.9+disagreement-0.4", "between")
        assert r.status_code == 404 and "['answer_logprob']" in r.json()["error"]["message"]
        r = route("router-answer_logprob-0.9:0.1+disagreement-0.4", "between")
        assert r.status_code in (400, 404)
    bad = {"routers": [{"name": "sw-0.7+disagreement", "thresholds": [0.4]}]}
    with pytest.raises(ValueError, match="stage 'sw' is a trained router"):
        from_dict(bad)


def test_eval_build_records_a_staged_policy_under_its_whole_string():
    from confroute.eval.live import LiveSettings, needs_hidden, policies_of, policy_name

    assert policy_name(LADDER) == "answer_logprob-0.2:0.9+disagreement-0.4"
    s = LiveSettings(policies=("answer_logprob", "disagreement", LADDER))
    named = dict(policies_of(s))
    assert isinstance(named["answer_logprob-0.2:0.9+disagreement-0.4"], Staged)
    assert not needs_hidden(s)     # online stages only: no hidden states
    assert needs_hidden(LiveSettings(policies=("router-sep-0.2:0.8+disagreement-0.4",)))
