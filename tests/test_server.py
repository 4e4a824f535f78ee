"""`confroute serve` end to end: the real server process on a free loopback port, the real edge
model (SmolLM2) and a real cloud (Qwen behind llama_cpp.server, reached through a recording
pass-through so the tests can see what the cloud was sent), driven by the official `openai`
client and by raw HTTP for malformed input."""
from __future__ import annotations

import concurrent.futures as cf
import json
import re
import socket
import threading
import time

import httpx
import openai
import pytest

from helpers.servers import CHAT, MATH, confroute_server, recorded_qwen_cloud, trained_sw_dir

pytestmark = [pytest.mark.models, pytest.mark.system]  # the real `confroute serve` process
KEY = "sk-test-server-key-0123456789"
CLOUD_KEY = "sk-test-cloud-key-abcdef"
AUTH = {"Authorization": f"Bearer {KEY}"}
EDGE = "router-se-100"      # SE never exceeds 100 nats: always the edge
CLOUD = "router-se-0"       # any disagreement among the samples: the cloud
DIVERSE = [{"role": "user", "content": "Name one random animal."}]


@pytest.fixture(scope="module")
def cloud():
    with recorded_qwen_cloud() as proxy:
        yield proxy




@pytest.fixture(scope="module")
def sw_router_dir(embedder, tmp_path_factory):
    """A trained `sw` router (helpers.servers.trained_sw_dir)."""
    return trained_sw_dir(embedder, tmp_path_factory)


@pytest.fixture(scope="module")
def server(cloud, sw_router_dir, tmp_path_factory):
    import os

    os.environ["CONFROUTE_TEST_CLOUD_KEY"] = CLOUD_KEY
    # llama_cpp.server's chat templates fail on list-form content: the server joins text parts
    cfg = {"edge": {"n_threads": 1, "n_ctx": 256},   # one thread: see llama_cpp_server
           "cloud": {"base_url": cloud.url, "model": "qwen", "timeout_s": 60,
                     "api_key_env": "CONFROUTE_TEST_CLOUD_KEY"},
           "routers": [{"name": "se", "thresholds": [0, 100], "samples": 3},
                       {"name": "sw", "path": sw_router_dir}],   # calibrated threshold
           "limits": {"max_body_bytes": 65536, "max_messages": 16, "max_content_chars": 8000,
                      "max_tokens": 64, "max_n": 4},
           "queue_size": 2, "sampling": {"max_tokens": 16}}
    with confroute_server(cfg, tmp_path_factory.mktemp("serve"), api_key=KEY,
                          log_level="info") as s:
        yield s


@pytest.fixture
def client(server):
    return openai.OpenAI(base_url=server.url, api_key=KEY, max_retries=0, timeout=120)


def facts(completion) -> dict:
    return completion.model_extra["confroute"]


def test_models_lists_the_router_ids(client):
    assert [m.id for m in client.models.list().data] == ["router-se-0", "router-se-100",
                                                          "router-sw-0.5"]


def test_trained_router_decides_from_the_prompt_alone(client, cloud):
    hard = client.chat.completions.create(model="router-sw-0.5", messages=[
        {"role": "user", "content": MATH[0]}], max_tokens=8)
    f = facts(hard)
    assert f["routed_to"] == "cloud" and f["score"] > 0.5 and f["semantic_entropy"] is None
    assert f["n_samples"] == 0 and "edge" not in f["usage"]   # no edge sampling at all
    easy = client.chat.completions.create(model="router-sw-0.5", messages=[
        {"role": "user", "content": CHAT[0]}], max_tokens=8)
    f = facts(easy)
    assert f["routed_to"] == "edge" and f["score"] <= 0.5 and easy.choices[0].message.content
    assert f["usage"]["edge"]["completion_tokens"] <= 8
    # Streaming an edge answer with no samples drawn: tokens as llama.cpp makes them.
    chunks = list(client.chat.completions.create(model="router-sw-0.5", stream=True,
                                                 max_tokens=12,
                                                 stream_options={"include_usage": True},
                                                 messages=[{"role": "user", "content": CHAT[1]}]))
    f = chunks[-1].model_extra["confroute"]
    assert f["routed_to"] == "edge"
    assert sum(1 for c in chunks if c.choices and c.choices[0].delta.content) >= 2
    u = f["usage"]["edge"]
    assert u["prompt_tokens"] > 0 and 0 < u["completion_tokens"] <= 13   # tokens re-counted
    assert chunks[-1].usage.total_tokens == u["prompt_tokens"] + u["completion_tokens"]
    # Another threshold on the same router, from the model name alone; out of range: 400.
    f = facts(client.chat.completions.create(model="router-sw-1", max_tokens=4, messages=[
        {"role": "user", "content": MATH[0]}]))
    assert f["routed_to"] == "edge" and f["threshold"] == 1
    with pytest.raises(openai.BadRequestError, match="threshold"):
        client.chat.completions.create(model="router-sw-2", max_tokens=4, messages=[
            {"role": "user", "content": MATH[0]}])


def test_edge_answer_carries_routing_facts_in_body_and_headers(client):
    raw = client.chat.completions.with_raw_response.create(
        model=EDGE, max_tokens=16, seed=1,
        messages=[{"role": "system", "content": "Answer briefly."},
                  {"role": "user", "content": "What is 2+2?"},
                  {"role": "assistant", "content": "4"},
                  {"role": "user", "content": "And 3+3?"}])
    c = raw.parse()
    f = facts(c)
    assert f["routed_to"] == "edge" and f["degraded"] is False
    assert c.model == f["model"] and "qwen" not in c.model.lower()
    assert c.choices[0].message.content.strip()
    assert 0 <= f["semantic_entropy"] <= 100 and f["threshold"] == 100 and f["n_samples"] == 3
    assert raw.headers["x-confroute-routed-to"] == "edge"
    assert raw.headers["x-confroute-model"] == c.model
    assert float(raw.headers["x-confroute-semantic-entropy"]) == pytest.approx(
        f["semantic_entropy"], rel=1e-5)
    # Usage per model: only the edge ran; the totals add up.
    assert set(f["usage"]) == {"edge"}
    u = f["usage"]["edge"]
    assert u["prompt_tokens"] > 0 and 0 < u["completion_tokens"] <= 3 * 16
    assert c.usage.total_tokens == u["prompt_tokens"] + u["completion_tokens"]


def test_cloud_answer_from_list_form_content(client, cloud):
    messages = [{"role": "user", "content": [{"type": "text", "text": "Name one random"},
                                             {"type": "text", "text": "animal."}]}]
    c = client.chat.completions.create(model=CLOUD, messages=messages, max_tokens=16, seed=7)
    f = facts(c)
    # Threshold 0: the cloud unless all samples agree; either way the facts must agree.
    assert (f["routed_to"] == "cloud") == (f["semantic_entropy"] > 0)
    assert f["routed_to"] == "cloud", "3 samples of a random animal at T=1 should disagree"
    assert c.model == f["model"] and c.choices[0].message.content
    assert set(f["usage"]) == {"edge", "cloud"} and f["usage"]["cloud"]["completion_tokens"] > 0
    sent = cloud.bodies[-1]
    assert sent["messages"] == [{"role": "user", "content": "Name one random\nanimal."}]
    assert sent["max_tokens"] == 16 and sent["seed"] == 7


def test_tools_with_nested_schemas_go_to_the_cloud_untouched(client, cloud):
    tools = [{"type": "function", "function": {
        "name": "book_trip", "description": "Book a trip",
        "parameters": {"type": "object", "required": ["legs"], "properties": {
            "legs": {"type": "array", "items": {"type": "object", "properties": {
                "from": {"type": "string"}, "to": {"type": "string"},
                "when": {"type": "object", "properties": {
                    "date": {"type": "string", "format": "date"},
                    "flex": {"anyOf": [{"type": "integer"}, {"type": "null"}]}}}}}},
            "meta": {"$ref": "#/$defs/meta"}},
            "$defs": {"meta": {"type": "object", "additionalProperties": True}}}}}]
    choice = {"type": "function", "function": {"name": "book_trip"}}
    c = client.chat.completions.create(model=EDGE, tools=tools, tool_choice=choice,
                                       max_tokens=16, messages=[
                                           {"role": "user", "content": "Book Paris to Rome."}])
    f = facts(c)
    # Even the always-edge router sends it to the cloud: only the cloud can call tools.
    assert f["routed_to"] == "cloud" and f["reason"].startswith("tools")
    assert f["n_samples"] == 0 and "edge" not in f["usage"]   # the edge was not run
    sent = cloud.bodies[-1]
    assert sent["tools"] == tools and sent["tool_choice"] == choice


def test_a_prompt_too_long_for_the_edge_goes_to_the_cloud(client):
    long = "Summarize: " + "the cat sat on the mat. " * 40      # ~280 tokens > n_ctx 256
    c = client.chat.completions.create(model=EDGE, max_tokens=8, messages=[
        {"role": "user", "content": long}])
    f = facts(c)
    assert f["routed_to"] == "cloud" and f["reason"].startswith("context")
    assert f["n_samples"] == 0 and c.choices[0].message.content


def test_n_stop_and_seed_on_the_edge(client):
    c = client.chat.completions.create(model=EDGE, n=2, stop=["\n", "."], seed=3,
                                       max_tokens=24, messages=[
                                           {"role": "user", "content": "Describe the sea."}])
    assert [ch.index for ch in c.choices] == [0, 1]
    for ch in c.choices:
        assert "\n" not in ch.message.content and "." not in ch.message.content
    again = client.chat.completions.create(model=EDGE, n=2, stop=["\n", "."], seed=3,
                                           max_tokens=24, messages=[
                                               {"role": "user", "content": "Describe the sea."}])
    assert [ch.message.content for ch in again.choices] == [ch.message.content
                                                            for ch in c.choices]


@pytest.mark.parametrize("model", [EDGE, CLOUD])
def test_streaming_in_openai_chunk_format(client, model):
    stream = client.chat.completions.create(model=model, messages=DIVERSE, max_tokens=16,
                                            seed=7, stream=True,
                                            stream_options={"include_usage": True})
    chunks = list(stream)
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert text.strip()
    first, last = chunks[0], chunks[-1]
    assert first.choices[0].delta.role == "assistant"
    f = last.model_extra["confroute"]
    assert f["routed_to"] == ("edge" if model == EDGE else "cloud") and not f["degraded"]
    assert all(ch.model == f["model"] for ch in chunks)
    assert last.usage.total_tokens == sum(u["prompt_tokens"] + u["completion_tokens"]
                                          for u in f["usage"].values())
    assert [ch.choices[0].finish_reason for ch in chunks if ch.choices][-1] in ("stop", "length")


# --- bad input: always OpenAI's error JSON, a 4xx naming the field, never a 5xx or a hang ------
MSG = [{"role": "user", "content": "hi"}]
BAD = [
    ("not json", b"{'model': ", 400, None),
    ("array body", b"[1, 2]", 400, None),
    ("missing model", {"messages": MSG}, 400, "model"),
    ("unknown model", {"model": "gpt-4o", "messages": MSG}, 404, "model"),
    ("missing messages", {"model": EDGE}, 400, "messages"),
    ("messages not a list", {"model": EDGE, "messages": "hi"}, 400, "messages"),
    ("empty messages", {"model": EDGE, "messages": []}, 400, "messages"),
    ("bad role", {"model": EDGE, "messages": [{"role": "robot", "content": "x"}]}, 400,
     "messages[0].role"),
    ("content wrong type", {"model": EDGE, "messages": [{"role": "user", "content": 5}]}, 400,
     "messages[0].content"),
    ("bad content part", {"model": EDGE, "messages": [{"role": "user", "content": [
        {"type": "text", "text": "a"}, {"type": "video"}]}]}, 400, "messages[0].content[1].type"),
    ("n as string", {"model": EDGE, "messages": MSG, "n": "2"}, 400, "n"),
    ("n too big", {"model": EDGE, "messages": MSG, "n": 5}, 400, "n"),
    ("max_tokens too big", {"model": EDGE, "messages": MSG, "max_tokens": 65}, 400,
     "max_tokens"),
    ("max_tokens bool", {"model": EDGE, "messages": MSG, "max_tokens": True}, 400, "max_tokens"),
    ("temperature too hot", {"model": EDGE, "messages": MSG, "temperature": 2.5}, 400,
     "temperature"),
    ("five stops", {"model": EDGE, "messages": MSG, "stop": list("abcde")}, 400, "stop"),
    ("seed float", {"model": EDGE, "messages": MSG, "seed": 1.5}, 400, "seed"),
    ("stream not bool", {"model": EDGE, "messages": MSG, "stream": "yes"}, 400, "stream"),
    ("unknown field", {"model": EDGE, "messages": MSG, "temprature": 1}, 400, "temprature"),
    ("tool_choice without tools", {"model": EDGE, "messages": MSG, "tool_choice": "auto"}, 400,
     "tool_choice"),
    ("tool without name", {"model": EDGE, "messages": MSG,
                           "tools": [{"type": "function", "function": {}}]}, 400,
     "tools[0].function.name"),
    ("too many messages", {"model": EDGE, "messages": MSG * 17}, 400, "messages"),
    ("content too long", {"model": EDGE, "messages": [{"role": "user", "content": "x" * 8001}]},
     400, "messages"),
    ("threshold out of range", {"model": "router-se-1e9", "messages": MSG}, 404, "model"),
]


@pytest.mark.parametrize("name,body,status,param", BAD, ids=[b[0] for b in BAD])
def test_malformed_requests_get_4xx_naming_the_field(server, name, body, status, param):
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    r = httpx.post(server.url + "/chat/completions", content=data, timeout=30,
                   headers={**AUTH, "Content-Type": "application/json"})
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err["param"] == param and err["message"] and err["type"] == "invalid_request_error"


def test_oversized_body_is_refused_before_reading(server):
    big = json.dumps({"model": EDGE, "messages": [{"role": "user", "content": "x" * 70000}]})
    r = httpx.post(server.url + "/chat/completions", content=big, headers=AUTH, timeout=30)
    assert r.status_code == 413 and r.json()["error"]["code"] == "body_too_large"

    def chunked():   # no Content-Length: the limit is counted while reading
        for _ in range(20):
            yield b"x" * 8192

    r = httpx.post(server.url + "/chat/completions", content=chunked(), headers=AUTH, timeout=30)
    assert r.status_code == 413


def test_unknown_path_and_method_get_openai_errors(server):
    r = httpx.get(server.url + "/completions", headers=AUTH, timeout=10)
    assert r.status_code == 404 and "error" in r.json()
    r = httpx.get(server.url + "/chat/completions", headers=AUTH, timeout=10)
    assert r.status_code == 405 and "error" in r.json()


def test_api_key_is_required_and_compared(server):
    body = {"model": EDGE, "messages": MSG, "max_tokens": 4}
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": KEY},
                    {"Authorization": f"Basic {KEY}"}):
        r = httpx.post(server.url + "/chat/completions", json=body, headers=headers, timeout=30)
        assert r.status_code == 401 and r.json()["error"]["type"] == "authentication_error"
        assert r.headers["www-authenticate"] == "Bearer"
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=server.url, api_key="nope", max_retries=0).models.list()
    assert httpx.get(server.root + "/metrics", timeout=10).status_code == 401
    assert httpx.get(server.root + "/health", timeout=10).json()["status"] == "ok"


def test_full_queue_answers_429_with_retry_after(server):
    # One request runs on the edge and queue_size=2 wait; the rest must be refused at once.
    body = {"model": EDGE, "messages": [{"role": "user", "content": "Tell me a story."}],
            "max_tokens": 64}
    start = threading.Barrier(8)

    def one(_):
        start.wait()
        return httpx.post(server.url + "/chat/completions", json=body, headers=AUTH,
                          timeout=120)

    with cf.ThreadPoolExecutor(8) as pool:
        rs = list(pool.map(one, range(8)))
    codes = sorted(r.status_code for r in rs)
    assert set(codes) <= {200, 429}, codes
    assert 1 <= codes.count(200) <= 3 and codes.count(429) >= 5
    for r in rs:
        if r.status_code == 429:
            assert r.json()["error"]["type"] == "rate_limit_error"
            assert int(r.headers["retry-after"]) >= 1


def _post_and_hold(server, body) -> socket.socket:
    """A chat request on a raw socket, left open: the test decides when the client leaves."""
    url = httpx.URL(server.url + "/chat/completions")
    data = json.dumps(body).encode()
    sock = socket.create_connection((url.host, url.port), timeout=30)
    sock.sendall(b"POST " + url.raw_path + b" HTTP/1.1\r\nHost: " + url.host.encode()
                 + b"\r\nAuthorization: Bearer " + KEY.encode()
                 + b"\r\nContent-Type: application/json\r\nContent-Length: "
                 + str(len(data)).encode() + b"\r\n\r\n" + data)
    return sock


def _wait_for(cond, what: str, timeout: float = 120.0) -> None:
    """Polls cond() until it holds; the timeout bounds a failure, it never passes a test."""
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"never happened: {what}"
        time.sleep(0.01)


def test_clients_that_leave_free_their_queued_work(server):
    before = server.metric('confroute_dropped_jobs_total{model="edge"}', AUTH)
    gone_before = server.metric("confroute_client_disconnects_total", AUTH)
    body = {"model": EDGE, "messages": [{"role": "user", "content": "Tell me a story."}],
            "max_tokens": 64}
    depth = 'confroute_queue_depth{model="edge"}'
    # One request alone first: the idle edge worker takes it at once (sent together, the
    # three would be sampled as one batch and none would wait in line). Then two behind it.
    socks = [_post_and_hold(server, body)]
    try:
        _wait_for(lambda: server.metric(depth, AUTH) == 1, "the first request admitted")
        socks += [_post_and_hold(server, body) for _ in range(2)]
        _wait_for(lambda: server.metric(depth, AUTH) == 3, "two requests in line")
        for sock in socks:
            sock.setblocking(False)
            with pytest.raises(BlockingIOError):
                sock.recv(1)   # no answer yet: each client leaves before its answer
    finally:
        for sock in socks:
            sock.close()
    # The running job finishes (llama.cpp cannot be interrupted mid-sample); queued ones drop.
    _wait_for(lambda: server.metric(depth, AUTH) == 0, "the edge queue drained")
    assert server.metric('confroute_dropped_jobs_total{model="edge"}', AUTH) - before == 2
    assert server.metric("confroute_client_disconnects_total", AUTH) - gone_before == 3


def test_client_leaving_mid_stream_stops_the_cloud_stream(server, cloud):
    aborted = cloud.aborted_streams
    with httpx.stream("POST", server.url + "/chat/completions", headers=AUTH, timeout=60,
                      json={"model": CLOUD, "messages": DIVERSE, "seed": 7, "max_tokens": 64,
                            "stream": True}) as r:
        assert r.headers["x-confroute-routed-to"] == "cloud"
        for line in r.iter_lines():
            if '"content": "' in line and '"role"' not in line:
                break   # first piece of text: hang up
    deadline = time.monotonic() + 20
    while cloud.aborted_streams == aborted and time.monotonic() < deadline:
        time.sleep(0.2)
    assert cloud.aborted_streams == aborted + 1   # the upstream connection was closed early
    assert server.metric('confroute_streams_stopped_total{model="cloud"}', AUTH) == 1


def test_client_leaving_mid_stream_stops_the_edge_generation(server):
    # The trained router keeps small talk on the edge and streams its tokens as they come.
    series = 'confroute_streams_stopped_total{model="edge"}'
    stopped = server.metric(series, AUTH)
    with httpx.stream("POST", server.url + "/chat/completions", headers=AUTH, timeout=60,
                      json={"model": "router-sw-0.5", "stream": True, "max_tokens": 64,
                            "messages": [{"role": "user", "content": CHAT[2]}]}) as r:
        assert r.headers["x-confroute-routed-to"] == "edge"
        for line in r.iter_lines():
            if '"content": "' in line and '"role"' not in line:
                break   # first piece of text: hang up
    deadline = time.monotonic() + 20
    while server.metric(series, AUTH) == stopped and time.monotonic() < deadline:
        time.sleep(0.2)
    assert server.metric(series, AUTH) == stopped + 1   # generation stopped between tokens
    assert server.metric('confroute_queue_depth{model="edge"}', AUTH) == 0


def test_metrics_are_prometheus_text(server):
    text = httpx.get(server.root + "/metrics", headers=AUTH, timeout=10).text
    sample = re.compile(r'^[a-z_]+(\{[a-z_]+="[^"]*"(,[a-z_]+="[^"]*")*\})? -?[0-9.e+Inf]+$')
    for line in text.splitlines():
        assert line.startswith("# HELP ") or line.startswith("# TYPE ") or sample.match(line), line
    assert server.metric('confroute_routed_total{route="edge"}', AUTH) >= 1
    assert server.metric('confroute_routed_total{route="cloud"}', AUTH) >= 1
    assert server.metric('confroute_semantic_entropy_count{router="se"}', AUTH) >= 1
    assert server.metric('confroute_rejected_total{reason="queue_full"}', AUTH) >= 1
    # The requests that waited together in the 429 test drew their samples in one batch.
    assert server.metric("confroute_edge_batch_requests_count", AUTH) >= 1
    assert server.metric('confroute_edge_batch_requests_bucket{le="1"}', AUTH) == 0
    assert server.metric('confroute_requests_total{status="401"}', AUTH) >= 1


def test_keys_never_reach_the_log(server, cloud):
    # The cloud key was used (the cloud saw it) and the server key checked, yet neither is
    # in the server's log.
    httpx.post(server.url + "/chat/completions", headers=AUTH, timeout=60,
               json={"model": EDGE, "messages": MSG, "max_tokens": 4})
    assert cloud.authorizations and set(cloud.authorizations) == {f"Bearer {CLOUD_KEY}"}
    log = server.log()
    assert "->" in log   # per-request lines are logged at info level
    assert KEY not in log and CLOUD_KEY not in log
