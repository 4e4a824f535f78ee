"""A chain of tiers as pure logic: the types, each tier decided by the one decision path on its
own edge (stand-in edges whose answer log-prob is set per prompt), the costs of the attempts,
and ChainController answering at the tier that keeps the query (or degraded when the cloud
fails)."""
from __future__ import annotations

import numpy as np
import pytest

from confroute.controller import ChainController
from confroute.decision.chain import Chain, Tier, decide_chain, settle
from confroute.decision.edge import EdgeSupplier
from confroute.decision.path import Decision, Evidence, make_query
from confroute.models.types import Samples


class FakeEdge:
    """An edge whose greedy answer has mean token log-prob ``-unsure[prompt]`` (so
    ``router-answer_logprob-T`` keeps the prompts it is at most T unsure of)."""

    def __init__(self, name, unsure):
        self.name, self.unsure, self.calls = name, unsure, 0

    def sample(self, messages, n, max_tokens, temperature, seed):
        self.calls += 1
        text = messages[-1]["content"]
        lp = np.full(4, -self.unsure[text])
        return Samples(texts=(f"{self.name}: {text}",) * n, token_logprobs=(lp,) * n,
                       token_ids=(np.arange(4),) * n, finish_reasons=("stop",) * n,
                       model=self.name, prompt_tokens=7 * n, completion_tokens=4 * n,
                       temperature=temperature, seconds=0.0)


class NoScorer:
    """answer_logprob reads no samples: nothing is ever scored."""

    def score_samples(self, samples, **kw):
        assert not samples
        return []


class FakeCloud:
    name = "big"

    def __init__(self, fail=False):
        self.fail, self.calls = fail, 0

    def chat(self, messages, **kw):
        self.calls += 1
        if self.fail:
            raise ConnectionError("down")

        class R:
            text, model, usage = "cloud answer", "big", {"prompt_tokens": 3,
                                                         "completion_tokens": 2}
        return R()


PROMPTS = {"easy": (0.1, 0.1), "middle": (0.9, 0.2), "hard": (0.9, 0.9)}
CHAIN = Chain.of(("small", "router-answer_logprob-0.5"), ("mid", "router-answer_logprob-0.5"),
                 "big", name="code")


def edges():
    return [FakeEdge("small", {p: u[0] for p, u in PROMPTS.items()}),
            FakeEdge("mid", {p: u[1] for p, u in PROMPTS.items()})]


def msg(p):
    return [{"role": "user", "content": p}]


def test_chain_types_are_checked():
    assert CHAIN.tiers[0] == Tier("small", "router-answer_logprob-0.5")
    assert [t.model for t in CHAIN.climbing] == ["small", "mid"]
    with pytest.raises(ValueError, match="at least two tiers"):
        Chain.of("big")
    with pytest.raises(ValueError, match="tier 1 .* needs a router string"):
        Chain.of("small", "big")
    with pytest.raises(ValueError, match="takes no policy"):
        Chain((Tier("small", "router-se-0.5"), Tier("big", "router-se-0.5")))
    with pytest.raises(ValueError, match="tier 2 \\(mid\\)"):
        Chain.of(("small", "router-se-0.5"), ("mid", "router-nonsense!-x"), "big").policies()


@pytest.mark.parametrize("prompt,tier", [("easy", 1), ("middle", 2), ("hard", 3)])
def test_a_query_climbs_while_its_tier_is_unsure(prompt, tier):
    es = edges()
    sup = [EdgeSupplier(e, scorer=NoScorer()) for e in es]
    cd = decide_chain(CHAIN, CHAIN.policies(), make_query(msg(prompt)), sup)
    assert cd.tier == tier and len(cd.attempts) == min(tier, 2)
    assert cd.model == ["small", "mid", "big"][tier - 1]
    assert cd.route == ("cloud" if tier == 3 else "edge")
    # each attempted tier drew its answer once (its cost), later tiers nothing
    assert [e.calls for e in es] == [1, int(tier > 1)]
    a = cd.attempts[0]
    assert (a.tier, a.model, a.prompt_tokens, a.completion_tokens) == (1, "small", 7, 4)
    assert a.decision.score == pytest.approx(PROMPTS[prompt][0])
    assert cd.reason.startswith("tier 1 (small): answer -mean logprob")
    assert cd.reason.endswith(f"tier {tier} ({cd.model}) answers")
    d = cd.as_dict()
    assert d["tier"] == tier and [t["tier"] for t in d["tiers"]] == list(range(1, len(
        cd.attempts) + 1))


def test_a_query_only_the_cloud_can_serve_climbs_without_edge_work():
    es = edges()
    q = make_query(msg("easy"), cloud_only="tools: only the cloud")
    cd = decide_chain(CHAIN, CHAIN.policies(), q, [EdgeSupplier(e, NoScorer()) for e in es])
    assert cd.tier == 3 and [e.calls for e in es] == [0, 0]
    assert all(a.decision.reason == "tools: only the cloud" for a in cd.attempts)


def test_settle_refuses_steps_that_do_not_fit_the_chain():
    up, keep = Decision("cloud", 1.0, 0.5), Decision("edge", 0.1, 0.5)
    with pytest.raises(ValueError, match="next tier was not asked"):
        settle(CHAIN, [(up, Evidence())])
    with pytest.raises(ValueError, match="a tier kept the query"):
        settle(CHAIN, [(keep, Evidence()), (keep, Evidence())])
    assert settle(CHAIN, [(keep, Evidence())]).tier == 1


def test_chain_controller_answers_at_the_tier_that_keeps_the_query():
    cloud = FakeCloud()
    ctl = ChainController(edges(), cloud, CHAIN, scorer=NoScorer())
    r = ctl.chat(msg("middle"))
    assert (r.tier, r.model, r.routed_to, r.answer) == (2, "mid", "edge", "mid: middle")
    assert set(r.usage) == {"tier1", "tier2"} and cloud.calls == 0
    r = ctl.chat(msg("hard"))
    assert (r.tier, r.answer, r.routed_to, r.degraded) == (3, "cloud answer", "cloud", False)
    assert set(r.usage) == {"tier1", "tier2", "cloud"}
    assert ctl.decide(msg("easy")).tier == 1
    with pytest.raises(ValueError, match="2 edge tiers, and 1 edge models"):
        ChainController(edges()[:1], cloud, CHAIN, scorer=NoScorer())


def test_a_failing_cloud_leaves_the_last_edge_tiers_answer_marked_degraded():
    r = ChainController(edges(), FakeCloud(fail=True), CHAIN, scorer=NoScorer()).chat(msg("hard"))
    assert (r.tier, r.answer, r.degraded) == (2, "mid: hard", True)
    assert r.decision.tier == 3 and "ConnectionError" in r.error
