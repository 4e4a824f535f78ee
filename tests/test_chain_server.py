"""A chain served, as pure logic: the server config's `edges` and `chains`, a request's
`chain-<name>` model through the ASGI app with stand-in edges and an in-process stand-in cloud
(Starlette's TestClient), the tier facts in the body and the headers, the route endpoint, and
the two-model routers served beside the chain unchanged. The real models and server process:
tests/test_chain_serve_models.py."""
from __future__ import annotations

import pytest
from starlette.testclient import TestClient

from confroute.server import build
from confroute.server.config import from_dict
from confroute.server.model_names import tier_router
from test_chain import NoScorer, FakeEdge, PROMPTS


class StandInCloud:
    """An in-process cloud (no base_url): whole answers only."""

    name = "big"

    def __init__(self):
        self.calls = 0

    def chat(self, messages, n=1, max_tokens=16, temperature=1.0, seed=None, **kw):
        self.calls += 1

        class R:
            texts, finish_reasons, finish_reason = ("cloud answer",), ("stop",), "stop"
            model, usage = "big", {"prompt_tokens": 3, "completion_tokens": 2}
        return R()


CONFIG = {"edge": {"name": "small", "batch": False},
          "edges": [{"name": "mid", "model": "mid.gguf", "batch": False}],
          "chains": [{"name": "code", "tiers": [
              {"edge": "small", "router": "router-answer_logprob-0.5"},
              {"edge": "mid", "router": "router-answer_logprob-0.5"}]}],
          "routers": [{"name": "answer_logprob", "thresholds": [0.5]}]}


@pytest.fixture()
def served():
    small, mid = (FakeEdge(n, {p: u[i] for p, u in PROMPTS.items()})
                  for i, n in enumerate(("small", "mid")))
    cloud = StandInCloud()
    app, _ = build(from_dict(CONFIG), models=(small, cloud, NoScorer(), {}),
                   edges={"mid": mid})
    with TestClient(app) as client:
        yield client, cloud


def chat(client, prompt, model="chain-code", path="/v1/chat/completions", **kw):
    return client.post(path, json={"model": model, "messages": [
        {"role": "user", "content": prompt}], "max_tokens": 8, **kw})


@pytest.mark.parametrize("prompt,tier,answer", [("easy", 1, "small: easy"),
                                                ("middle", 2, "mid: middle"),
                                                ("hard", 3, "cloud answer")])
def test_a_chain_request_is_answered_by_the_tier_that_keeps_it(served, prompt, tier, answer):
    client, cloud = served
    r = chat(client, prompt)
    assert r.status_code == 200, r.text
    body, facts = r.json(), r.json()["confroute"]
    assert body["choices"][0]["message"]["content"] == answer
    assert facts["tier"] == tier and len(facts["tiers"]) == min(tier, 2)
    assert facts["routed_to"] == ("cloud" if tier == 3 else "edge")
    assert facts["reason"].endswith("answers") and "tier 1 (small)" in facts["reason"]
    assert [t["model"] for t in facts["tiers"]] == ["small", "mid"][:min(tier, 2)]
    assert set(facts["usage"]) == {f"tier{i}" for i in range(1, min(tier, 2) + 1)} | (
        {"cloud"} if tier == 3 else set())
    assert r.headers["x-confroute-tier"] == str(tier)
    assert r.headers["x-confroute-tier-routes"] == ",".join(
        ["cloud"] * (min(tier, 2) - (tier < 3)) + (["edge"] if tier < 3 else []))
    assert cloud.calls == (tier == 3)
    # the route endpoint: the same decision, no answer, no cloud call
    d = chat(client, prompt, path="/v1/route").json()
    assert (d["tier"], d["router"], d["model"]) == (tier, "chain-code",
                                                    ["small", "mid", "big"][tier - 1])
    assert d["tiers"][0]["score"] == pytest.approx(PROMPTS[prompt][0])
    assert cloud.calls == (tier == 3)


def test_a_streamed_chain_answer_and_the_two_model_router_beside_it(served):
    client, _ = served
    with client.stream("POST", "/v1/chat/completions", json={
            "model": "chain-code", "stream": True, "max_tokens": 8,
            "messages": [{"role": "user", "content": "middle"}]}) as r:
        text = "".join(r.iter_text())
    assert r.status_code == 200 and "mid: middle".split()[0] in text
    assert r.headers["x-confroute-tier"] == "2"
    r = chat(client, "middle", model="router-answer_logprob-0.5")
    assert r.json()["confroute"]["routed_to"] == "cloud" and "tier" not in r.json()["confroute"]
    ids = [m["id"] for m in client.get("/v1/models").json()["data"]]
    assert "chain-code" in ids and "router-answer_logprob-0.5" in ids
    assert chat(client, "easy", model="chain-nope").status_code == 404
    r = chat(client, "easy", path="/v1/route", threshold=0.3)
    assert r.status_code == 400 and r.json()["error"]["param"] == "threshold"


def test_chain_config_is_checked():
    assert tier_router("router-se-0.8") == ("se", 0.8)
    assert tier_router("router-answer_logprob-0.2:0.9+disagreement-0.4") == (
        "answer_logprob-0.2:0.9+disagreement", 0.4)
    bad = [({"edges": [{"model": "x.gguf"}]}, "needs a 'name'"),
           ({"edges": [{"name": "edge", "model": "x.gguf"}]}, "names repeat"),
           ({"chains": [{"name": "c", "tiers": [{"edge": "nope", "router": "router-se-1"}]}]},
            "no edge 'nope'"),
           ({"chains": [{"name": "c", "tiers": [{"edge": "edge", "router": "router-se"}]}]},
            "ends with its threshold"),
           ({"chains": [{"name": "c", "tiers": [{"edge": "edge", "router": "router-knn-0.3"}]}]},
            "'knn' is not an online policy"),
           ({"chains": [{"name": "C!", "tiers": []}]}, "lowercase"),
           ({"chains": [{"name": "c", "tiers": []}]}, "at least one edge tier"),
           ({"chains": [{"name": "c", "tiers": [{"edge": "edge"}]}]}, "needs 'edge'"),
           ({"edges": [{"name": "m", "base_url": "http://x/v1", "model": "m"}]},
            "in-process models")]
    for extra, match in bad:
        with pytest.raises(ValueError, match=match):
            from_dict(extra)
    cfg = from_dict(CONFIG)
    assert [e for e in cfg.edge_configs] == ["small", "mid"]
    assert from_dict({}).chains == () and from_dict({}).edge.name == "edge"
