"""`POST /v1/route` on the real server process: the decision only (which model would serve a
chat request, and why), the same as `Controller.decide` for the same request, with the chat
endpoint's key, limits and errors, and never a call to the cloud. The cloud is Qwen on a real
llama_cpp.server behind a recording pass-through (tests/helpers/servers.py)."""
from __future__ import annotations

import json
import math

import httpx
import pytest

from helpers.servers import MATH, confroute_server, recorded_qwen_cloud, trained_sw_dir

pytestmark = [pytest.mark.models, pytest.mark.system]  # the real `confroute serve` process
KEY = "sk-test-route-key-0123456789"
AUTH = {"Authorization": f"Bearer {KEY}"}
DIVERSE = [{"role": "user", "content": "Name one random animal."}]
TOOLS = [{"type": "function", "function": {"name": "lookup", "parameters": {
    "type": "object", "properties": {"q": {"type": "string"}}}}}]
SAMPLES, MAX_TOKENS, SEED = 3, 16, 7


@pytest.fixture(scope="module")
def cloud():
    with recorded_qwen_cloud() as proxy:
        yield proxy


@pytest.fixture(scope="module")
def sw_dir(embedder, tmp_path_factory):
    """A trained `sw` router (helpers.servers.trained_sw_dir)."""
    return trained_sw_dir(embedder, tmp_path_factory)


@pytest.fixture(scope="module")
def server(cloud, sw_dir, tmp_path_factory):
    cfg = {"edge": {"n_threads": 1, "n_ctx": 256, "n_seq_max": 16},
           "cloud": {"base_url": cloud.url, "model": "qwen", "timeout_s": 60},
           "routers": [{"name": "se", "thresholds": [0, 0.8, 100], "samples": SAMPLES},
                       {"name": "sw", "path": sw_dir}],
           "limits": {"max_tokens": 64, "max_n": 4, "max_body_bytes": 65536},
           "sampling": {"max_tokens": MAX_TOKENS}}
    with confroute_server(cfg, tmp_path_factory.mktemp("route"), api_key=KEY) as s:
        yield s


@pytest.fixture(scope="module")
def edge():
    # The server's edge model, as its config builds it (same context, threads, sequences).
    from confroute.models import default_edge

    m = default_edge(n_ctx=256, n_threads=1, n_seq_max=16)
    yield m
    m.close()


def route(server, body, headers=AUTH):
    return httpx.post(server.url + "/route", json=body, headers=headers, timeout=180)


def test_route_answers_which_model_and_why_without_calling_the_cloud(server, cloud):
    before = cloud.hits
    edge_name = httpx.get(server.root + "/health", timeout=10).json()["edge"]
    r = route(server, {"model": "router-se-0", "messages": DIVERSE, "seed": SEED})
    assert r.status_code == 200, r.text
    d = r.json()
    assert d["object"] == "route" and d["router"] == "router-se-0" and "choices" not in d
    assert (d["route"], d["model"], d["threshold"], d["n_samples"]) == ("cloud", "qwen", 0, 3)
    assert d["semantic_entropy"] > 0 and d["score"] == d["semantic_entropy"]
    assert d["reason"] == f"semantic entropy {d['score']:.3f} > threshold 0 (meaning: embedding)"
    assert d["meaning"] == "embedding"
    assert d["usage"]["edge"]["completion_tokens"] > 0      # the edge was sampled
    # The threshold may come as a field, the model naming the router alone.
    d = route(server, {"model": "router-se", "threshold": 100, "messages": DIVERSE}).json()
    assert (d["route"], d["model"], d["threshold"]) == ("edge", edge_name, 100)
    # A trained router judges the prompt alone: no samples.
    d = route(server, {"model": "router-sw-0.5", "messages": [
        {"role": "user", "content": MATH[0]}]}).json()
    assert (d["route"], d["n_samples"], d["semantic_entropy"], d["usage"]) == ("cloud", 0, None,
                                                                                {})
    assert d["score"] > 0.5 and d["reason"].startswith("router score")
    # Requests only the cloud can serve, and prompts longer than the edge's context.
    d = route(server, {"model": "router-se-100", "tools": TOOLS, "messages": DIVERSE}).json()
    assert d["route"] == "cloud" and d["reason"].startswith("tools") and d["n_samples"] == 0
    long = [{"role": "user", "content": "Summarize: " + "the cat sat on the mat. " * 40}]
    d = route(server, {"model": "router-se-100", "messages": long}).json()
    assert d["route"] == "cloud" and d["reason"].startswith("context") and d["score"] is None
    assert cloud.hits == before, cloud.bodies[before:]
    # The recorder does see the cloud when the chat endpoint calls it.
    r = httpx.post(server.url + "/chat/completions", headers=AUTH, timeout=180, json={
        "model": "router-se-100", "tools": TOOLS, "messages": DIVERSE, "max_tokens": 4})
    assert r.status_code == 200 and cloud.hits == before + 1


@pytest.mark.parametrize("model,policy", [("router-se-0.8", "router-se-0.8"),
                                          ("router-sw-0.5", "router-{sw_dir}-0.5")])
def test_route_equals_controller_decide_for_the_same_request(server, edge, embedder, sw_dir,
                                                             model, policy):
    from confroute.controller import Controller
    from confroute.confidence.scorer import ConfidenceScorer

    messages = [{"role": "system", "content": "Answer briefly."},
                {"role": "user", "content": "Name a colour of the rainbow."}]
    got = route(server, {"model": model, "messages": messages, "seed": SEED}).json()
    ctl = Controller(edge, None, policy.format(sw_dir=sw_dir), scorer=ConfidenceScorer(embedder))
    # the server's sampling and the Controller's have one default (temperature included)
    decision, _ = ctl.decide(messages, n=SAMPLES, max_tokens=MAX_TOKENS, seed=SEED)
    want = decision.as_dict()
    assert set(want) <= set(got)
    for k in ("route", "threshold", "n_samples", "reason"):
        assert got[k] == want[k], k
    for k in ("score", "semantic_entropy"):
        assert (got[k] is None) == (want[k] is None), k
        if want[k] is not None:
            assert got[k] == pytest.approx(want[k], abs=1e-6), k
    assert math.isfinite(want["score"])


MSG = [{"role": "user", "content": "hi"}]
BAD = [
    ("not json", b"{'model': ", 400, None),
    ("threshold a string", {"model": "router-se", "threshold": "high", "messages": MSG}, 400,
     "threshold"),
    ("threshold negative", {"model": "router-se", "threshold": -1, "messages": MSG}, 400,
     "threshold"),
    ("threshold twice", {"model": "router-se-0.8", "threshold": 0.5, "messages": MSG}, 400,
     "threshold"),
    ("trained threshold above 1", {"model": "router-sw-2", "messages": MSG}, 400, "model"),
    ("stream", {"model": "router-se-0.8", "stream": True, "messages": MSG}, 400, "stream"),
    ("missing messages", {"model": "router-se-0.8"}, 400, "messages"),
    ("bad role", {"model": "router-se-0.8", "messages": [{"role": "robot", "content": "x"}]},
     400, "messages[0].role"),
    ("n too big", {"model": "router-se-0.8", "messages": MSG, "n": 5}, 400, "n"),
    ("unknown field", {"model": "router-se-0.8", "messages": MSG, "treshold": 1}, 400,
     "treshold"),
    ("no threshold anywhere", {"model": "router-se", "messages": MSG}, 404, "model"),
    ("unknown router", {"model": "router-knn-0.5", "messages": MSG}, 404, "model"),
]


def test_bad_route_requests_are_refused_like_chat_requests(server, cloud):
    before = cloud.hits
    for name, body, status, param in BAD:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        r = httpx.post(server.url + "/route", content=data, timeout=30,
                       headers={**AUTH, "Content-Type": "application/json"})
        assert r.status_code == status, (name, r.text)
        err = r.json()["error"]
        assert (err["param"], err["type"]) == (param, "invalid_request_error"), name
        assert err["message"], name
    for headers in ({}, {"Authorization": "Bearer wrong"}):
        r = route(server, {"model": "router-se-0.8", "messages": MSG}, headers)
        assert r.status_code == 401 and r.json()["error"]["type"] == "authentication_error"
    big = {"model": "router-se-0.8", "messages": [{"role": "user", "content": "x" * 70000}]}
    assert route(server, big).status_code == 413
    assert httpx.get(server.url + "/route", headers=AUTH, timeout=10).status_code == 405
    assert cloud.hits == before
