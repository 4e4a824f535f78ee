"""confroute.integrations.litellm: a real ``litellm.Router`` picks the edge or the cloud
deployment of a model group by confroute's decision (``POST /v1/route`` of `confroute serve`).

- The pure logic (tags, the router of a group, the route request, the choice, the headers),
  and the hooks' wiring in a real Router against stand-ins on 127.0.0.1: an OpenAI-compatible
  edge and cloud that say who answered, and a route endpoint that decides by the prompt.
- End to end (models, system): SmolLM2 and Qwen on the package's llama server,
  `confroute serve` deciding with SmolLM2 over HTTP (SE of its samples), and chat requests
  through a Router answered by the deployment confroute chose, some by the edge and some by
  the cloud, with the decision's reason on the response.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no fetch of LiteLLM's price list
litellm = pytest.importorskip("litellm")

from confroute.integrations.litellm import (  # noqa: E402
    ConfrouteRouting, choose, group_router, response_headers, route_body, tagged_routes)
from helpers.servers import send_json  # noqa: E402

HOST = "127.0.0.1"
TOOLS = [{"type": "function", "function": {"name": "lookup", "parameters": {
    "type": "object", "properties": {"q": {"type": "string"}}}}}]


class Stub:
    """A JSON endpoint on 127.0.0.1: ``answer(path, body) -> (status, obj)``; records bodies."""

    def __init__(self, answer):
        self.bodies, self._lock = [], threading.Lock()
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))))
                with stub._lock:
                    stub.bodies.append(body)
                send_json(self, *answer(self.path, body))

        self._server = ThreadingHTTPServer((HOST, 0), Handler)
        self.url = f"http://{HOST}:{self._server.server_address[1]}/v1"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    @property
    def hits(self):
        with self._lock:
            return len(self.bodies)

    def close(self):
        self._server.shutdown()
        self._server.server_close()


def chat_stub(name, fail_first=0):
    """An OpenAI-compatible chat endpoint that answers 'from <name>' (after ``fail_first``
    HTTP 500s)."""
    left = [fail_first]

    def answer(path, body):
        if left[0] > 0:
            left[0] -= 1
            return 500, {"error": {"message": f"{name} is down"}}
        return 200, {"id": "x", "object": "chat.completion", "created": 0, "model": name,
                     "choices": [{"index": 0, "finish_reason": "stop", "message": {
                         "role": "assistant", "content": f"from {name}"}}],
                     "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}}
    return Stub(answer)


def route_stub(status=200):
    """A route endpoint that decides by the prompt: 'hard' or tools go to the cloud."""
    def answer(path, body):
        if status != 200:
            return status, {"error": {"message": "no router named router-knn", "param": "model",
                                      "type": "invalid_request_error"}}
        hard = "hard" in body["messages"][-1]["content"] or "tools" in body
        score = 0.9 if hard else 0.1
        return 200, {"object": "route", "router": body["model"], "model": "edge-or-cloud",
                     "route": "cloud" if hard else "edge", "score": score, "threshold": 0.5,
                     "semantic_entropy": score, "n_samples": 3, "usage": {},
                     "reason": f"semantic entropy {score} {'>' if hard else '<='} threshold 0.5"}
    return Stub(answer)


def group(edge_url, cloud_url, name="cr", router=None):
    info = {"confroute_router": router} if router else {}
    return [{"model_name": name, "litellm_params": {"model": "openai/edge", "api_base": edge_url,
                                                    "api_key": "none"},
             "model_info": {"confroute": "edge", **info}},
            {"model_name": name, "litellm_params": {"model": "openai/cloud", "api_base": cloud_url,
                                                    "api_key": "none"},
             "model_info": {"confroute": "cloud", **info}}]


@contextlib.contextmanager
def registered(routing):
    """``routing`` as a LiteLLM callback for the block (LiteLLM's callback lists are global)."""
    litellm.logging_callback_manager.add_litellm_callback(routing)
    try:
        yield routing
    finally:
        litellm.logging_callback_manager.remove_callback_from_all_lists(routing)


def ask(router, model, content, **kw):
    return asyncio.run(router.acompletion(model=model, messages=[
        {"role": "user", "content": content}], **kw))


@pytest.fixture
def stubs():
    edge, cloud, route = chat_stub("edge"), chat_stub("cloud"), route_stub()
    yield edge, cloud, route
    for s in (edge, cloud, route):
        s.close()


# -- the pure logic ---------------------------------------------------------------------------

def test_tags_name_the_routes_and_the_router_of_a_group():
    ds = group("http://e/v1", "http://c/v1", router="router-se-0.8")
    routes = tagged_routes("cr", ds)
    assert [d["litellm_params"]["model"] for d in routes["edge"]] == ["openai/edge"]
    assert [d["litellm_params"]["model"] for d in routes["cloud"]] == ["openai/cloud"]
    assert group_router("cr", ds, None) == "router-se-0.8"
    assert group_router("cr", group("e", "c"), "router-disagreement-0.4") == \
        "router-disagreement-0.4"
    plain = [{"model_name": "gpt", "litellm_params": {"model": "openai/gpt"}}]
    assert tagged_routes("gpt", plain) is None           # not confroute's group: left alone
    with pytest.raises(ValueError, match="'openai/gpt' has no model_info.confroute"):
        tagged_routes("cr", ds + [{**plain[0], "model_name": "cr"}])
    bad = [{**ds[0], "model_info": {"confroute": "local"}}]
    with pytest.raises(ValueError, match="'openai/edge' has model_info.confroute = 'local'"):
        tagged_routes("cr", bad)
    with pytest.raises(ValueError, match="names no confroute router"):
        group_router("cr", group("e", "c"), None)
    mixed = [ds[0], {**ds[1], "model_info": {"confroute": "cloud",
                                             "confroute_router": "router-se-0.5"}}]
    with pytest.raises(ValueError, match="different routers"):
        group_router("cr", mixed, None)
    with pytest.raises(ValueError, match="router string"):
        group_router("cr", group("e", "c", router="se-0.8"), None)


def test_the_route_request_carries_what_changes_the_decision_and_no_litellm_keys():
    request = {"model": "cr", "max_tokens": 12, "seed": 7, "temperature": 0.0, "stop": ["\n"],
               "tools": TOOLS, "tool_choice": "auto", "top_p": 0.9, "stream": False,
               "metadata": {"model_group": "cr"}, "litellm_trace_id": "t", "n": None}
    body = route_body("router-se-0.8", [{"role": "user", "content": "hi"}], request)
    assert body == {"model": "router-se-0.8", "messages": [{"role": "user", "content": "hi"}],
                    "max_tokens": 12, "seed": 7, "temperature": 0.0, "stop": ["\n"],
                    "tools": TOOLS, "tool_choice": "auto"}
    assert route_body("router-se", [], {"seed": None}) == {"model": "router-se",
                                                           "messages": []}


def test_choice_follows_the_decision_and_falls_back_when_its_route_has_no_deployment():
    ds = group("e", "c")
    routes = tagged_routes("cr", ds)
    d = {"route": "cloud", "router": "router-se-0.5", "score": 0.9, "threshold": 0.5,
         "reason": "semantic entropy 0.9 > threshold 0.5"}
    keep, facts = choose("cr", routes, d)
    assert keep == [ds[1]] and facts == {**d, "model_group": "cr", "routed_to": "cloud",
                                         "degraded": False}
    # no healthy cloud (cooldown): the edge answers, degraded, as confroute's server does
    keep, down = choose("cr", {"edge": [ds[0]], "cloud": []}, d)
    assert keep == [ds[0]] and (down["routed_to"], down["degraded"]) == ("edge", True)
    assert down["note"] == "no healthy cloud deployment in model group 'cr'"
    # a retry decides nothing again: the facts of the first try are a decision too
    keep, again = choose("cr", routes, down)
    assert keep == [ds[1]] and again == facts
    keep, up = choose("cr", {"edge": [], "cloud": [ds[1]]}, {**d, "route": "edge"})
    assert keep == [ds[1]] and (up["routed_to"], up["degraded"]) == ("cloud", False)
    h = response_headers(facts)
    assert h["x-confroute-routed-to"] == "cloud" and h["x-confroute-score"] == "0.9"
    assert h["x-confroute-reason"] == d["reason"] and h["x-confroute-degraded"] == "false"
    assert "x-confroute-semantic-entropy" not in h        # the decision carried none


@pytest.mark.parametrize("kwargs,match", [
    ({"url": "http://127.0.0.1:6060"}, "url must be confroute serve's base URL"),
    ({"url": "ftp://127.0.0.1:6060/v1"}, "url must be"),
    ({"url": 6060}, "url must be"),
    ({"router": "se-0.8"}, "router must be a confroute router string"),
    ({"router": 0.8}, "router must be"),
    ({"timeout_s": 0}, "timeout_s must be"),
    ({"timeout_s": float("nan")}, "timeout_s must be"),
    ({"timeout_s": True}, "timeout_s must be"),
    ({"on_error": "retry"}, "on_error must be one of"),
])
def test_bad_arguments_are_value_errors_naming_them(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ConfrouteRouting(**{"url": "http://127.0.0.1:6060/v1", **kwargs})


# -- the hooks in a real litellm.Router, against stand-ins ------------------------------------

def test_router_sends_each_request_to_the_deployment_confroute_chose(stubs):
    edge, cloud, route = stubs
    routing = ConfrouteRouting(route.url, "router-se-0.5", api_key="k")
    other = chat_stub("other")
    try:
        with registered(routing):
            r = litellm.Router(model_list=group(edge.url, cloud.url) + [
                {"model_name": "plain", "litellm_params": {"model": "openai/plain",
                                                           "api_base": other.url,
                                                           "api_key": "none"}}])
            easy = ask(r, "cr", "an easy one", max_tokens=12, seed=7)
            hard = ask(r, "cr", "a hard one", max_tokens=12, seed=7)
            tools = ask(r, "cr", "an easy one", tools=TOOLS)
            plain = ask(r, "plain", "a hard one")
    finally:
        other.close()
    assert easy.choices[0].message.content == "from edge"
    assert hard.choices[0].message.content == "from cloud"
    assert tools.choices[0].message.content == "from cloud"
    assert plain.choices[0].message.content == "from other"
    assert (edge.hits, cloud.hits, route.hits) == (1, 2, 3)   # 'plain' asked no decision
    facts = easy._hidden_params["confroute"]
    assert (facts["route"], facts["routed_to"], facts["model_group"]) == ("edge", "edge", "cr")
    assert facts["reason"] == "semantic entropy 0.1 <= threshold 0.5"
    assert hard._hidden_params["confroute"]["reason"].startswith("semantic entropy 0.9 >")
    assert "confroute" not in plain._hidden_params
    first = route.bodies[0]
    assert first == {"model": "router-se-0.5", "max_tokens": 12, "seed": 7,
                     "messages": [{"role": "user", "content": "an easy one"}]}
    assert route.bodies[2]["tools"] == TOOLS


def test_a_retry_is_not_decided_again(stubs):
    _, cloud, route = stubs
    flaky = chat_stub("edge", fail_first=1)
    try:
        with registered(ConfrouteRouting(route.url, "router-se-0.5")):
            r = litellm.Router(model_list=group(flaky.url, cloud.url), num_retries=2)
            resp = ask(r, "cr", "an easy one")
    finally:
        flaky.close()
    facts = resp._hidden_params["confroute"]
    assert route.hits == 1 and flaky.hits + cloud.hits == 2
    # the edge failed once; the retry went wherever the one decision and LiteLLM's cooldown
    # allowed, and the answer says so
    assert resp.choices[0].message.content == f"from {facts['routed_to']}"


def test_when_confroute_cannot_decide_the_query_goes_up_or_fails(stubs):
    edge, cloud, route = stubs
    route.close()                                          # nothing listens there any more
    with registered(ConfrouteRouting(route.url, "router-se-0.5", timeout_s=5)):
        r = litellm.Router(model_list=group(edge.url, cloud.url))
        resp = ask(r, "cr", "an easy one")
    facts = resp._hidden_params["confroute"]
    assert resp.choices[0].message.content == "from cloud" and facts["route"] == "cloud"
    assert facts["reason"].startswith("confroute unavailable: ConnectError")
    with registered(ConfrouteRouting(route.url, "router-se-0.5", timeout_s=5,
                                     on_error="raise")):
        r = litellm.Router(model_list=group(edge.url, cloud.url), num_retries=0)
        with pytest.raises(Exception, match="did not decide"):
            ask(r, "cr", "an easy one")
    assert edge.hits == 0 and cloud.hits == 1


def test_a_refused_route_request_and_a_sync_call_are_errors(stubs):
    edge, cloud, _ = stubs
    refusing = route_stub(status=404)
    try:
        with registered(ConfrouteRouting(refusing.url, "router-knn-0.5")):
            r = litellm.Router(model_list=group(edge.url, cloud.url), num_retries=0)
            with pytest.raises(Exception, match="no router named router-knn") as err:
                ask(r, "cr", "an easy one")
            assert "HTTP 404" in str(err.value)
            # LiteLLM's sync path runs no deployment filter: refused, not routed at random
            with pytest.raises(Exception, match="filters deployments on async calls only"):
                r.completion(model="cr", messages=[{"role": "user", "content": "hi"}])
    finally:
        refusing.close()
    assert edge.hits == cloud.hits == 0


# -- end to end: real models, real servers ----------------------------------------------------

# Sampled at temperature 0.3, SmolLM2 says the same thing three times to the first two (SE 0
# when measured) and three different things to the last two (SE above 1 nat).
PROMPTS = ["What is the capital of France? Answer with one word.",
           "What color is the sky? Answer with one word.",
           "Invent a name for a pet.", "Name one random animal."]
NEUTRAL = {"repeat_penalty": 1.0, "top_k": 0, "min_p": 0.0}
SEED, MAX_TOKENS = 7, 12


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    """SmolLM2 (alias 'smol') and Qwen (alias 'qwen') on the package's llama server, one
    thread each; each seen by LiteLLM through a recording pass-through; and `confroute serve`
    whose edge is that SmolLM2 server over HTTP (the route endpoint never calls its cloud)."""
    from confroute.models import store
    from helpers.servers import FlakyCloud, confroute_server

    with contextlib.ExitStack() as stack:
        servers = {}
        for alias, name in (("smol", "smollm2-135m-instruct"), ("qwen", store.DEFAULT_CLOUD)):
            servers[alias] = stack.enter_context(_llama(store.model_path(name), alias))
        cfg = {"edge": {"base_url": servers["smol"], "model": "smol", "extra_body": NEUTRAL,
                        "timeout_s": 120},
               "cloud": {"base_url": servers["qwen"], "model": "qwen", "timeout_s": 120},
               "routers": [{"name": "se", "thresholds": [0.5]}],
               "sampling": {"n": 3, "max_tokens": MAX_TOKENS, "temperature": 0.3}}
        serve = stack.enter_context(confroute_server(cfg, tmp_path_factory.mktemp("litellm")))
        edge = stack.enter_context(FlakyCloud(servers["smol"]))
        cloud = stack.enter_context(FlakyCloud(servers["qwen"]))
        yield serve, edge, cloud


@contextlib.contextmanager
def _llama(path, alias):
    import tempfile

    from helpers.processes import free_port, start_llama_server, stop_process

    with tempfile.NamedTemporaryFile("w+", prefix=f"{alias}-server-", suffix=".log") as log:
        port = free_port()
        proc = start_llama_server(path, port, log, alias=alias, threads=1)
        try:
            yield f"http://{HOST}:{port}/v1"
        finally:
            stop_process(proc)


@pytest.mark.models
@pytest.mark.system
def test_a_real_router_is_answered_by_the_model_confroute_chose_both_ways(live):
    import httpx

    serve, edge, cloud = live
    # The scores first, from the route endpoint itself; the cut goes halfway between the
    # surest and the least sure prompt, so that some stay on the edge and some go up.
    scores = {}
    for p in PROMPTS:
        r = httpx.post(serve.url + "/route", timeout=180, json={
            "model": "router-se", "threshold": 0, "seed": SEED, "max_tokens": MAX_TOKENS,
            "messages": [{"role": "user", "content": p}]})
        assert r.status_code == 200, r.text
        scores[p] = r.json()["score"]
    lo, hi = min(scores.values()), max(scores.values())
    assert hi > lo, f"the prompts' SE did not differ: {scores}"
    cut = round((lo + hi) / 2, 4)

    routing = ConfrouteRouting(serve.url, timeout_s=180)
    model_list = [
        {"model_name": "smart", "litellm_params": {"model": "openai/smol", "api_base": edge.url,
                                                   "api_key": "none"},
         "model_info": {"confroute": "edge", "confroute_router": f"router-se-{cut}"}},
        {"model_name": "smart", "litellm_params": {"model": "openai/qwen", "api_base": cloud.url,
                                                   "api_key": "none"},
         "model_info": {"confroute": "cloud"}}]
    seen = {}
    with registered(routing):
        router = litellm.Router(model_list=model_list, num_retries=0, timeout=180)
        for p in PROMPTS:
            before = (edge.hits, cloud.hits)
            resp = ask(router, "smart", p, max_tokens=MAX_TOKENS, seed=SEED)
            facts = resp._hidden_params["confroute"]
            seen[p] = facts
            route = facts["route"]
            assert route == ("cloud" if facts["score"] > cut else "edge"), facts
            assert facts["routed_to"] == route and not facts["degraded"]
            assert facts["router"] == f"router-se-{cut:g}" and facts["threshold"] == cut
            assert facts["reason"].startswith("semantic entropy ") and facts["n_samples"] == 3
            # answered by that deployment alone, and by its model
            assert (edge.hits - before[0], cloud.hits - before[1]) == \
                ((1, 0) if route == "edge" else (0, 1)), facts
            assert resp.model == ("smol" if route == "edge" else "qwen")
            assert resp.choices[0].message.content
            body = (edge if route == "edge" else cloud).bodies[-1]
            assert body["seed"] == SEED and body["max_tokens"] == MAX_TOKENS
    print(f"\ncut {cut}: " + "; ".join(f"{p!r} SE {f['score']:.3f} -> {f['routed_to']}"
                                        for p, f in seen.items()))
    assert {f["routed_to"] for f in seen.values()} == {"edge", "cloud"}, (cut, scores)
