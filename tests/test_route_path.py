"""The one decision path (confroute.decision.path) on the real models (SmolLM2 edge, MiniLM), and
its plumbing as pure logic: rounds of samples for an adaptive policy, hidden states, the one
meaning of `router-se-X` (nats) wherever a router string is read."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from confroute.decision import path as routing
from confroute.controller import Controller
from confroute.decision.names import RouterPolicy, make_policy, policy_from_string
from confroute.decision.path import Decision, Evidence, Need, Policy, Sampling
from confroute.decision.edge import EdgeSupplier
from confroute.confidence.scorer import ConfidenceScorer

DIVERSE = [{"role": "user", "content": "Name one random animal."}]
CAPITAL = [{"role": "user", "content": "What is the capital of France?"}]
OPTS = dict(n=4, max_tokens=12, temperature=1.0, seed=3)


@pytest.fixture(scope="module")
def edge():
    # As the server runs it (tests/test_route_endpoint.py): small context, room for batches.
    from confroute.models import default_edge

    m = default_edge(n_ctx=256, n_threads=1, n_seq_max=16)
    yield m
    m.close()


@pytest.fixture(scope="module")
def scorer(embedder):
    return ConfidenceScorer(embedder)


class _TwoRounds(Policy):
    """An adaptive policy in miniature: 2 samples, then 2 more, then decide on all 4."""

    threshold = 0.5

    def need(self, evidence, sampling):
        return Need(samples=2 if evidence.n_samples < 2 else 4)

    def decide(self, prompt, evidence):
        se = evidence.confidence.se("kuhn")
        return Decision.compare(se, self.threshold, "semantic entropy", se)


def test_router_se_x_is_nats_wherever_the_string_is_read(edge, scorer):
    # The SE of a real prompt, then a threshold t in [0, 1] between the two readings the
    # string once had: 1 - exp(-SE) < t < SE. In nats the request goes to the cloud; read as a
    # threshold on 1 - exp(-SE) (the old RouterPolicy.from_string) it stayed on the edge.
    d0, conf = Controller(edge, None, "router-se-0", scorer=scorer).decide(DIVERSE, **OPTS)
    se = conf.se("kuhn")
    assert se > 0, "4 samples of a random animal at T=1 should disagree (pick another seed)"
    assert d0.semantic_entropy == se and d0.route == "cloud"
    t = round((min(se, 1.0) + (1 - math.exp(-se))) / 2, 6)
    assert 1 - math.exp(-se) < t < se
    spec = f"router-se-{t}"
    ev = Evidence(confidence=conf)
    for policy in (policy_from_string(spec), make_policy("se", t),   # the server's builder
                   Controller(edge, None, spec, scorer=scorer).policy):
        assert policy.threshold == t
        d = policy.decide(DIVERSE[0]["content"], ev)
        assert (d.route, d.semantic_entropy) == ("cloud", se), policy
    d, _ = Controller(edge, None, spec, scorer=scorer).decide(DIVERSE, **OPTS)
    assert d.route == "cloud" and d.reason == (f"semantic entropy {se:.3f} > threshold {t:g} "
                                               "(meaning: embedding)")
    # The trained-router reader does not give the string a second meaning.
    with pytest.raises(ValueError, match="online policy 'se'.*policy_from_string"):
        RouterPolicy.from_string(spec)


def test_an_adaptive_policy_draws_in_rounds_through_the_path(edge, scorer):
    d, conf = Controller(edge, None, _TwoRounds(), scorer=scorer).decide(DIVERSE, **OPTS)
    assert d.n_samples == 4 and conf.n_samples == 4 and len(conf.cluster_ids) == 4
    # Round 1 is what 2 samples with the request's seed + 1 draw (the answer has the seed);
    # round 2 continues with a new seed, not a repeat of round 1.
    first = edge.sample(DIVERSE, n=2, max_tokens=12, temperature=1.0, seed=4)
    second = edge.sample(DIVERSE, n=2, max_tokens=12, temperature=1.0, seed=6)
    assert conf.samples.texts == first.texts + second.texts
    assert conf.samples.completion_tokens == first.completion_tokens + second.completion_tokens
    np.testing.assert_array_equal(conf.samples.token_logprobs[3], second.token_logprobs[1])
    # The decision is the one the SE of all four samples gives.
    assert d.semantic_entropy == conf.se("kuhn") and d.route == ("cloud" if conf.se("kuhn")
                                                                  > 0.5 else "edge")


def test_batched_rounds_draw_what_each_request_draws_alone(edge, scorer):
    # The server's edge thread: waiting requests go through decide_many together, each round's
    # samples in one llama.cpp batch.
    batches = []
    batched = EdgeSupplier(edge, scorer, batch=True, on_batch=batches.append)
    queries = [routing.make_query(m, Sampling(**OPTS)) for m in (DIVERSE, CAPITAL)]
    together = routing.decide_many([(_TwoRounds(), q) for q in queries], batched)
    assert batches == [2, 2]   # two rounds, both requests in each
    alone = [routing.decide(_TwoRounds(), q, EdgeSupplier(edge, scorer)) for q in queries]
    for (d1, e1), (d2, e2) in zip(together, alone):
        assert e1.samples.texts == e2.samples.texts and d1.route == d2.route
        assert d1.score == pytest.approx(d2.score, abs=1e-6)


def test_a_prompt_too_long_for_the_edge_goes_to_the_cloud(edge, scorer):
    long = [{"role": "user", "content": "Summarize: " + "the cat sat on the mat. " * 40}]
    d, conf = Controller(edge, None, "router-se-100", scorer=scorer).decide(long, max_tokens=16)
    assert d.route == "cloud" and d.reason.startswith("context") and conf is None
    assert d.n_samples == 0 and math.isnan(d.score) and d.threshold == 100


# --- pure logic: the path's rules, with stand-in edges that record what they are asked -------
class _Recorder:
    """A stand-in edge (pure logic): hidden states and samples are never computed here."""

    name = "recorder"

    def __init__(self):
        self.hidden_calls = []

    def hidden_state(self, messages):
        self.hidden_calls.append(messages)
        return np.arange(3.0)


class _Probe(Policy):
    """What a `sep` probe router looks like to the path: one hidden state, no samples."""

    needs = Need(hidden=True)
    threshold = 0.5

    def decide(self, prompt, evidence):
        return Decision.compare(float(evidence.hidden.sum()) / 10, self.threshold, "probe")


def test_hidden_state_is_fetched_once_and_given_to_the_policy():
    edge = _Recorder()
    q = routing.make_query("Hi there", Sampling())
    d, ev = routing.decide(_Probe(), q, EdgeSupplier(edge, scorer=None))
    assert edge.hidden_calls == [[{"role": "user", "content": "Hi there"}]]
    assert ev.hidden.tolist() == [0.0, 1.0, 2.0] and ev.confidence is None
    assert d.route == "edge" and d.reason == "probe 0.300 <= threshold 0.5"
    with pytest.raises(ValueError, match="hidden state.*no hidden_state"):
        routing.decide(_Probe(), q, EdgeSupplier(object(), scorer=None))


def test_a_saved_router_that_reads_the_edge_gets_what_it_declares():
    # A router (as a saved `sep` probe would be) that needs the prompt's hidden state: served
    # through RouterPolicy like any trained router, the path fetches the state for it.
    from confroute.routers.base import Router

    class ProbeRouter(Router):
        name = "probe"
        needs_hidden = True

        def score(self, prompts):
            raise AssertionError("a probe scores from the edge's evidence")

        def score_evidence(self, prompts, evidences):
            return np.array([float(e.hidden.mean()) / 2 for e in evidences])

    edge = _Recorder()
    policy = make_policy("probe", 0.4, ProbeRouter())   # how the server builds it
    d, ev = routing.decide(policy, routing.make_query("Hi", Sampling()),
                           EdgeSupplier(edge, scorer=None))
    assert len(edge.hidden_calls) == 1 and ev.hidden is not None
    assert (d.route, d.score, d.reason) == ("cloud", 0.5, "router score 0.500 > threshold 0.4")


def test_cloud_only_requests_never_reach_the_edge_or_the_policy():
    class Untouchable(Policy):
        threshold = 0.7

        def need(self, evidence, sampling):
            raise AssertionError("the policy was asked")

    q = routing.make_query("call a tool", Sampling(), cloud_only="tools: offered")
    d, ev = routing.decide(Untouchable(), q, EdgeSupplier(object(), scorer=None))
    assert (d.route, d.reason, d.threshold, d.n_samples) == ("cloud", "tools: offered", 0.7, 0)
    assert ev == Evidence()


def test_the_comparison_rule_and_bad_policies():
    assert Decision.compare(0.5, 0.5).route == "edge"           # equal stays on the edge
    assert Decision.compare(float("nan"), 9.0).route == "cloud"  # undefined escalates
    assert Decision.compare(0.2, 0.1, "router score").as_dict() == {
        "route": "cloud", "score": 0.2, "threshold": 0.1, "semantic_entropy": None,
        "reason": "router score 0.200 > threshold 0.1", "n_samples": 0, "meaning": ""}
    assert Decision("cloud", float("nan"), 1.0).as_dict()["score"] is None
    with pytest.raises(ValueError, match="Need.samples"):
        Need(samples=-1)
    with pytest.raises(ValueError, match="n must be"):
        Sampling(n=0)

    class Greedy(Policy):
        def need(self, evidence, sampling):
            return Need(hidden=True)   # never satisfied: the edge below gives nothing

        def decide(self, prompt, evidence):
            return Decision("edge", 0.0, 0.0)

    class Nothing:
        name = "nothing"

        def hidden_state(self, messages):
            return None

    q = routing.make_query("hi", Sampling())
    with pytest.raises(ValueError, match="still asks the edge for more"):
        routing.decide(Greedy(), q, EdgeSupplier(Nothing(), scorer=None))

    class Sloppy(Policy):
        def decide(self, prompt, evidence):
            return "edge"

    with pytest.raises(ValueError, match="must return a Decision"):
        routing.decide(Sloppy(), q, EdgeSupplier(Nothing(), scorer=None))


def test_route_request_fields():
    from confroute.server.errors import ApiError
    from confroute.server.schema import Limits, parse_route_request

    routers = {"se": None, "sw": None}

    def parse(obj):
        return parse_route_request(json.dumps(obj).encode(), Limits(), routers)

    msgs = [{"role": "user", "content": "hi"}]
    r = parse({"model": "router-se", "threshold": 0.8, "messages": msgs, "seed": 3})
    assert (r.router, r.threshold, r.seed, r.stream) == ("se", 0.8, 3, False)
    assert parse({"model": "router-sw-0.3", "threshold": 0.3, "messages": msgs}).threshold == 0.3
    assert parse({"model": "router-se-1", "messages": msgs, "stream": False}).threshold == 1
    for body, status, param in [
            ({"model": "router-se", "threshold": True, "messages": msgs}, 400, "threshold"),
            ({"model": "router-se", "threshold": 1e999, "messages": msgs}, 400, "threshold"),
            ({"model": "router-se-1", "threshold": 2, "messages": msgs}, 400, "threshold"),
            ({"model": "router-se-1", "stream": True, "messages": msgs}, 400, "stream"),
            ({"model": "router-se", "messages": msgs}, 404, "model")]:
        with pytest.raises(ApiError) as e:
            parse(body)
        assert (e.value.status, e.value.param) == (status, param), body
