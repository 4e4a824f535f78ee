"""A three-model chain served by the real `confroute serve` process: SmolLM2 (tier 1, the main
edge) -> Qwen2.5-Coder-0.5B (tier 2, an in-process edge of `edges`) -> a cloud that is Qwen on a
real llama.cpp server behind a recording pass-through. Each tier climbs on its answer's
log-prob; the thresholds are set from the scores measured here on the same models, so that
each of the three tiers answers one prompt."""
from __future__ import annotations

import httpx
import pytest

from helpers.servers import confroute_server, recorded_qwen_cloud

pytestmark = [pytest.mark.models, pytest.mark.system]
PROMPTS = ["What is the capital of France?", "Write a Python function that reverses a string.",
           "Name one random animal.", "Who wrote the novel Middlemarch?"]
MAX_TOKENS, N_CTX = 16, 256


def msgs(p):
    return [{"role": "user", "content": p}]


def measured(model_name):
    """Each prompt's answer score (minus the greedy answer's mean token log-prob), as the
    server's tier draws it."""
    from confroute.decision.policies import answer_score
    from confroute.models import local_model

    m = local_model(model_name, n_ctx=N_CTX, n_threads=1)
    try:
        return {p: answer_score(m.sample(msgs(p), n=1, max_tokens=MAX_TOKENS, temperature=0.0,
                                         seed=0)) for p in PROMPTS}
    finally:
        m.close()


def between(scores, order):
    """A threshold halfway between the lowest score and the next: the first prompt stays."""
    lo, nxt = scores[order[0]], scores[order[1]]
    assert nxt - lo > 2e-3, f"scores too close to split: {scores}"
    return round((lo + nxt) / 2, 6)


def test_a_three_model_chain_answers_at_three_tiers(tmp_path):
    from confroute.models import store

    s1, s2 = measured(store.DEFAULT_EDGE), measured(store.DEFAULT_CLOUD)
    first = sorted(PROMPTS, key=s1.get)
    t1 = between(s1, first)                                  # first[0] stays on SmolLM2
    second = sorted(first[1:], key=s2.get)
    t2 = between(s2, second)                                 # second[0] stays on Qwen
    want = {first[0]: 1, second[0]: 2, **{p: 3 for p in second[1:]}}
    with recorded_qwen_cloud() as cloud:
        cfg = {"edge": {"name": "smol", "n_threads": 1, "n_ctx": N_CTX, "n_seq_max": 8},
               "edges": [{"name": "qwen", "model": store.DEFAULT_CLOUD, "n_threads": 1,
                          "n_ctx": N_CTX, "n_seq_max": 8}],
               "cloud": {"base_url": cloud.url, "model": "qwen-cloud", "timeout_s": 120},
               "chains": [{"name": "three", "tiers": [
                   {"edge": "smol", "router": f"router-answer_logprob-{t1}"},
                   {"edge": "qwen", "router": f"router-answer_logprob-{t2}"}]}],
               "routers": [{"name": "answer_logprob", "thresholds": [t1]}],
               "limits": {"max_n": 2}, "sampling": {"max_tokens": MAX_TOKENS}}
        with confroute_server(cfg, tmp_path) as server:
            for p, tier in want.items():
                hits = cloud.hits
                r = httpx.post(server.url + "/chat/completions", timeout=300, json={
                    "model": "chain-three", "messages": msgs(p), "seed": 0})
                assert r.status_code == 200, r.text
                facts = r.json()["confroute"]
                assert (facts["tier"], r.headers["x-confroute-tier"]) == (tier, str(tier)), facts
                assert cloud.hits == hits + (tier == 3)
                if tier < 3:   # the cloud's own name is the llama server's alias
                    assert r.json()["model"] == [store.DEFAULT_EDGE, store.DEFAULT_CLOUD][tier - 1]
                scores = [t["score"] for t in facts["tiers"]]
                assert scores[0] == pytest.approx(s1[p], abs=1e-3)
                if tier > 1:
                    assert scores[1] == pytest.approx(s2[p], abs=1e-3)
                    assert "tier2" in facts["usage"] and facts["usage"]["tier2"]["model"] \
                        == store.DEFAULT_CLOUD
                assert r.json()["choices"][0]["message"]["content"]
            # the route endpoint decides the same, without calling the cloud
            hits = cloud.hits
            d = httpx.post(server.url + "/route", timeout=300, json={
                "model": "chain-three", "messages": msgs(second[-1])}).json()
            assert (d["tier"], d["route"], len(d["tiers"])) == (3, "cloud", 2)
            assert cloud.hits == hits
            # the two-model router beside it: SmolLM2 or the cloud, as before
            r = httpx.post(server.url + "/chat/completions", timeout=300, json={
                "model": f"router-answer_logprob-{t1}", "messages": msgs(first[0])})
            assert r.json()["confroute"]["routed_to"] == "edge"
            assert "tier" not in r.json()["confroute"]
