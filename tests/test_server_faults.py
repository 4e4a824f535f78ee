"""`confroute serve` when the cloud fails: a small HTTP server that returns 500s, stalls or drops
the connection, and a real llama_cpp.server that the test kills. Every request must still be
answered (by the edge, marked degraded), and the circuit breaker must stop calling a failing
cloud, then probe it again."""
from __future__ import annotations

import time

import httpx
import openai
import pytest

from helpers.servers import FlakyCloud, confroute_server, llama_cpp_server

pytestmark = [pytest.mark.models, pytest.mark.system]  # the real `confroute serve` process

# Tools make a request cloud-only whatever the router says: a reliable way to need the cloud.
TOOLS = [{"type": "function", "function": {"name": "lookup", "parameters": {
    "type": "object", "properties": {"q": {"type": "string"}}}}}]
ASK = [{"role": "user", "content": "Say hello."}]
RESET_S = 3.0


@pytest.fixture(scope="module")
def smol_server():
    from confroute.models import store

    # SmolLM2 as the "cloud": a real llama_cpp.server that loads in a fraction of a second.
    with llama_cpp_server(store.model_path(store.DEFAULT_EDGE)) as (url, proc):
        yield url, proc


@pytest.fixture(scope="module")
def flaky(smol_server):
    with FlakyCloud(smol_server[0], mode="500", stall_s=60) as f:
        yield f


def _config(url, failures):
    return {"edge": {"n_threads": 1},
            # long enough for a healthy answer on a loaded machine (at 1.5 s, healthy calls to
            # SmolLM2 timed out under load), far shorter than a stall
            "cloud": {"base_url": url, "model": "cloud", "timeout_s": 10},
            "routers": [{"name": "se", "thresholds": [100], "samples": 3}],
            "breaker": {"failures": failures, "reset_s": RESET_S},
            "sampling": {"max_tokens": 8}, "max_inflight": 2, "limits": {"body_timeout_s": 1.0}}


@pytest.fixture(scope="module")
def server(flaky, tmp_path_factory):
    with confroute_server(_config(flaky.url, 2), tmp_path_factory.mktemp("faults")) as s:
        yield s


def ask(server, stream=False, **kw):
    client = openai.OpenAI(base_url=server.url, api_key="none", max_retries=0, timeout=60)
    return client.chat.completions.create(model="router-se-100", messages=ASK, tools=TOOLS,
                                          max_tokens=8, stream=stream, **kw)


def health(server):
    return httpx.get(server.root + "/health", timeout=10).json()


def test_failing_cloud_degrades_to_the_edge_then_the_breaker_opens_and_probes(server, flaky):
    # 1. HTTP 500: the edge answers, marked degraded, with the reason.
    flaky.mode = "500"
    c = ask(server)
    f = c.model_extra["confroute"]
    assert f["routed_to"] == "edge" and f["degraded"] is True and "500" in f["error"]
    assert c.choices[0].message.content is not None and c.model == f["model"]
    # 2. A stall past the cloud timeout (10 s): answered, degraded, and the error says the
    # cloud call timed out (the stall would end in a 503 after 60 s, so the client gave up).
    flaky.mode = "stall"
    f = ask(server).model_extra["confroute"]
    assert f["degraded"] and "Timeout" in f["error"]
    # 3. Two failures in a row: the breaker is open; the cloud is not called at all.
    assert health(server)["breaker"] == "open"
    hits = flaky.hits
    f = ask(server).model_extra["confroute"]
    assert f["degraded"] and "breaker" in f["error"] and flaky.hits == hits
    # 4. After reset_s one probe goes through; the cloud works again, so the breaker closes.
    flaky.mode = "forward"
    deadline = time.monotonic() + RESET_S + 30   # waits for the state, not a fixed time
    while health(server)["breaker"] == "open" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert health(server)["breaker"] == "half_open"
    f = ask(server).model_extra["confroute"]
    assert f["routed_to"] == "cloud" and not f["degraded"] and flaky.hits == hits + 1
    assert health(server)["breaker"] == "closed"
    text = httpx.get(server.root + "/metrics", timeout=10).text
    assert "confroute_degraded_total 3" in text and "confroute_cloud_errors_total{" in text


def test_dropped_connection_degrades_a_stream(server, flaky):
    flaky.mode = "drop"
    try:
        chunks = list(ask(server, stream=True))
    finally:
        flaky.mode = "forward"
    f = chunks[0].model_extra["confroute"]
    assert f["degraded"] and f["routed_to"] == "edge"
    assert chunks[-1].model_extra["confroute"]["degraded"]
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] in ("stop", "length")


def test_cloud_stream_cut_midway_ends_with_an_error_event(server, flaky):
    flaky.mode = "cut"
    try:
        with pytest.raises(openai.APIError, match="broke off"):
            for chunk in ask(server, stream=True, stream_options={"include_usage": True}):
                f = chunk.model_extra.get("confroute")
                assert f is None or f["routed_to"] == "cloud"   # chosen before the cut
    finally:
        flaky.mode = "forward"
    text = httpx.get(server.root + "/metrics", timeout=10).text
    assert 'confroute_requests_total{status="502"} 1' in text


def test_requests_beyond_max_inflight_get_429_while_the_cloud_stalls(server, flaky):
    import concurrent.futures as cf
    import threading

    flaky.mode = "stall"
    start = threading.Barrier(4)

    def one(_):
        start.wait()
        return httpx.post(server.url + "/chat/completions", timeout=60, json={
            "model": "router-se-100", "messages": ASK, "tools": TOOLS, "max_tokens": 8})

    try:
        with cf.ThreadPoolExecutor(4) as pool:
            rs = list(pool.map(one, range(4)))
    finally:
        flaky.mode = "forward"
    codes = sorted(r.status_code for r in rs)
    assert codes == [200, 200, 429, 429], codes   # max_inflight 2; the two served degrade
    for r in rs:
        if r.status_code == 429:
            assert r.json()["error"]["code"] == "too_many_requests" and r.headers["retry-after"]
        else:
            assert r.json()["confroute"]["degraded"]


def test_a_body_that_trickles_in_gets_408(server):
    import socket

    host, port = server.root[len("http://"):].split(":")
    with socket.create_connection((host, int(port)), timeout=30) as s:
        s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
                  b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"model\"")
        # uvicorn may send the headers and the body separately: read until it closes.
        # A server that never answered would raise socket.timeout here (30 s), not hang.
        reply = b""
        while chunk := s.recv(4096):
            reply += chunk
    reply = reply.decode()
    assert reply.startswith("HTTP/1.1 408") and "body_timeout" in reply


def test_killed_cloud_server_still_gets_every_request_answered(tmp_path_factory):
    from confroute.models import store

    with llama_cpp_server(store.model_path(store.DEFAULT_EDGE)) as (url, proc), \
            confroute_server(_config(url, 100), tmp_path_factory.mktemp("kill")) as s:
        f = ask(s).model_extra["confroute"]
        assert f["routed_to"] == "cloud" and not f["degraded"]
        proc.kill()   # the cloud dies
        proc.wait(10)
        for stream in (False, True):
            if stream:
                chunks = list(ask(s, stream=True))
                f = chunks[-1].model_extra["confroute"]
            else:
                f = ask(s).model_extra["confroute"]
            assert f["routed_to"] == "edge" and f["degraded"] and "Connect" in f["error"]
        assert health(s)["breaker"] == "closed"   # 100 failures needed to open it
