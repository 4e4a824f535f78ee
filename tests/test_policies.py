"""The answer-first policies, the router-string grammar for every online policy, the one
sampling configuration and the one message normaliser: pure logic on hand-made evidence (the
real models run them in test_parity)."""
import math

import numpy as np
import pytest

from confroute.decision import path as routing
from confroute.models.types import Samples
from confroute.decision.policies import AnswerLogprob, Disagreement, SECascade, answer_score
from confroute.decision.names import ONLINE, RouterPolicy, policy_from_string
from confroute.decision.path import Evidence, Need, Sampling


def _answer(lps):
    return Samples(texts=("x",), token_logprobs=(np.asarray(lps, float),), token_ids=None,
                   finish_reasons=("stop",), model="m", prompt_tokens=3,
                   completion_tokens=len(lps), temperature=0.0, seconds=0.0)


class _Conf:
    n_samples = 4
    method = "exact"
    disagreement = 0.25

    def se(self, kind):
        return {"kuhn": 0.7, "discrete": 0.5, "weighted": 0.6}[kind]


def test_answer_logprob_is_minus_the_mean_and_needs_only_the_answer():
    p = AnswerLogprob(0.5)
    assert p.need(Evidence(), Sampling()) == Need(answer=True)
    ev = Evidence(answer=_answer([-0.2, -0.4, -0.9]))
    d = p.decide("q", ev)
    assert d.score == pytest.approx(0.5) and d.route == "edge"   # 0.5 <= 0.5
    assert AnswerLogprob(0.49).decide("q", ev).route == "cloud"
    assert math.isnan(answer_score(_answer([])))
    assert AnswerLogprob(10).decide("q", Evidence(answer=_answer([]))).route == "cloud"
    with pytest.raises(ValueError, match="needs the edge model's answer"):
        p.decide("q", Evidence())


def test_disagreement_and_se_read_the_scored_samples():
    ev = Evidence(confidence=_Conf(), answer=_answer([-1.0]))
    d = Disagreement(0.2).decide("q", ev)
    assert (d.score, d.route, d.meaning) == (0.25, "cloud", "exact")
    assert "meaning: exact" in d.reason
    assert Disagreement(0.3).need(Evidence(), Sampling(n=7)) == Need(samples=7, answer=True)
    assert SECascade(0.8, "kuhn").decide("q", ev).route == "edge"
    assert SECascade(0.55, "weighted").decide("q", ev).score == 0.6
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        Disagreement(1.5)
    with pytest.raises(ValueError, match="needs the edge model's answer and samples"):
        Disagreement(0.3).decide("q", Evidence(confidence=_Conf()))


def test_every_online_name_is_a_router_string():
    for name in ONLINE:
        p = policy_from_string(f"router-{name}-0.25")
        assert p.threshold == 0.25 and not isinstance(p, RouterPolicy)
    assert isinstance(policy_from_string("router-answer_logprob-2"), AnswerLogprob)
    assert policy_from_string("router-se_discrete-1").kind == "discrete"
    with pytest.raises(ValueError, match="is not a number"):
        policy_from_string("router-disagreement-high")
    with pytest.raises(ValueError, match="online policy 'disagreement'"):
        RouterPolicy.from_string("router-disagreement-0.3")


def test_needs_combine_and_one_evidence_serves_every_policy():
    assert (Need(3) | Need(hidden=True) | Need(answer=True)) == Need(3, True, True)

    class Edge:   # an edge supplier that records what it was asked
        asks = []

        def refusal(self, q):
            return None

        def supply(self, asks):
            self.asks.append([n for _, n, _ in asks])
            return [Evidence(confidence=_Conf(), answer=_answer([-0.1])) for _ in asks]

    q = routing.make_query("hi", Sampling(n=4))
    edge = Edge()
    ds, ev = routing.decide_all([AnswerLogprob(1), Disagreement(0.5), SECascade(1)], q, edge)
    assert edge.asks == [[Need(samples=4, answer=True)]]   # one draw covers all three
    assert [d.route for d in ds] == ["edge"] * 3
    assert [d.score for d in ds] == [pytest.approx(0.1), 0.25, 0.7]
    # another sample count, or rounds, get draws of their own: the first k of n samples
    # drawn together are not the k a request for k draws
    edge.asks.clear()

    class Rounds(Disagreement):
        adaptive = True

    ds, _ = routing.decide_all([SECascade(1), Disagreement(0.5), Rounds(0.5)],
                               routing.make_query("hi", Sampling(n=4)), edge)
    assert edge.asks == [[Need(samples=4, answer=True)]] * 2 and len(ds) == 3
    # the edge has no say: every policy sends it up, with the reason and its own threshold
    img = [{"role": "user", "content": [{"type": "text", "text": "what is this?"},
                                        {"type": "image_url", "image_url": {"url": "x"}}]}]
    ds, _ = routing.decide_all([AnswerLogprob(1), Disagreement(0.5)],
                               routing.make_query(img), edge)
    assert [d.route for d in ds] == ["cloud", "cloud"] and [d.threshold for d in ds] == [1, 0.5]
    assert "image_url parts that only the cloud can read" in ds[0].reason


def test_one_normaliser_keeps_cloud_parts_for_the_cloud():
    img = [{"role": "user", "content": [{"type": "text", "text": "what is this?"},
                                        {"type": "image_url", "image_url": {"url": "x"}}]}]
    q = routing.make_query(img)
    assert q.messages == img and q.edge_messages == [{"role": "user",
                                                      "content": "what is this?"}]
    assert q.cloud_only.startswith("content: messages[0] holds image_url parts")
    with pytest.raises(ValueError, match="unknown role"):
        routing.make_query([{"role": "robot", "content": "hi"}])
    cue = routing.make_query([{"role": "user", "content": "Write f."},
                              {"role": "assistant", "content": "```python\n"}])
    assert cue.prefix == "```python\n" and cue.prompt == "Write f."
    assert routing.make_query("hi").prefix == ""


def test_one_sampling_configuration():
    s = Sampling()
    assert (s.n, s.temperature, s.answer_temperature, s.max_tokens) == (5, 0.7, 0.0, 256)
    assert Sampling.from_dict({"n": 3, "seed": 4}) == Sampling(n=3, seed=4)
    with pytest.raises(ValueError, match=r"unknown setting\(s\) \['temp'\]"):
        Sampling.from_dict({"temp": 1})
    with pytest.raises(ValueError, match="seed must be an integer"):
        Sampling(seed=1.5)
    with pytest.raises(ValueError, match="temperature must be"):
        Sampling(answer_temperature=-1)
