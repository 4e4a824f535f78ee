"""The OpenAI-compatible client against a real llama_cpp.server (Qwen2.5-Coder-0.5B), plus a
tiny local HTTP server that fails on purpose for the retry logic."""
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from confroute.models.cloud import CloudError, CloudModel

Q = "What is 2 + 3? Answer with a number only."


@pytest.fixture(scope="module")
def cloud(llama_server):
    c = CloudModel(llama_server, "qwen", timeout=120, max_retries=1)
    yield c
    c.close()


def test_chat_answers_with_usage(cloud):
    r = cloud.chat(Q, max_tokens=8, temperature=0)
    assert "5" in r.text
    assert r.usage["prompt_tokens"] > 5 and 0 < r.usage["completion_tokens"] <= 8
    assert r.finish_reason in ("stop", "length") and r.raw["choices"]


def test_sample_gets_n_answers_with_logprobs(cloud):
    s = cloud.sample("Name a fruit.", n=3, max_tokens=6, temperature=1.0, seed=1)
    assert s.n == 3 and s.has_logprobs and s.completion_tokens > 0
    for lp in s.token_logprobs:
        assert lp.ndim == 1 and len(lp) > 0 and np.all(np.isfinite(lp)) and np.all(lp <= 0)


def test_stream_yields_the_same_text_as_one_call(cloud):
    full = cloud.chat(Q, max_tokens=8, temperature=0).text
    chunks = list(cloud.chat(Q, max_tokens=8, temperature=0, stream=True))
    text = "".join((c["choices"][0].get("delta") or {}).get("content") or "" for c in chunks
                   if c.get("choices"))
    assert len(chunks) > 1 and text == full


def test_extra_options_reach_the_server(cloud):
    # 'stop' is passed through untouched: the server cuts the answer at the first space.
    long = cloud.chat("Write two sentences about cats.", max_tokens=20, temperature=0).text
    cut = cloud.chat("Write two sentences about cats.", max_tokens=20, temperature=0,
                     stop=[" "]).text
    assert " " in long.strip() and " " not in cut and long.startswith(cut)


def test_list_form_and_multi_turn_messages(cloud):
    msgs = [{"role": "system", "content": "Answer with a number only."},
            {"role": "user", "content": [{"type": "text", "text": "What is 2 + 2?"}]},
            {"role": "assistant", "content": "4"},
            {"role": "user", "content": [{"type": "text", "text": "And 3 + 3?"}]}]
    assert "6" in cloud.chat(msgs, max_tokens=6, temperature=0).text


def _free_port():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_url_is_a_clear_error_after_retries():
    port = _free_port()  # nothing listens there
    c = CloudModel(f"http://127.0.0.1:{port}/v1", "m", timeout=2, max_retries=2, backoff=0.01)
    with pytest.raises(CloudError, match=r"failed after 3 tries \(ConnectError"):
        c.chat(Q)


class _Flaky(BaseHTTPRequestHandler):
    """Answers 503, then 429, then a valid completion; or always the status in `fixed`."""

    calls = []
    fixed = None

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        _Flaky.calls.append(body)
        status = _Flaky.fixed or {1: 503, 2: 429}.get(len(_Flaky.calls), 200)
        payload = ({"model": "m", "choices": [{"message": {"content": "ok"},
                                               "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": 3, "completion_tokens": 1}}
                   if status == 200 else {"error": {"message": f"status {status}"}})
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if status == 429:
            self.send_header("Retry-After", "0")
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *a):
        pass


@pytest.fixture
def flaky():
    _Flaky.calls, _Flaky.fixed = [], None
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Flaky)
    th = threading.Thread(target=srv.serve_forever, daemon=True)
    th.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


def test_retries_on_503_and_429_then_succeeds(flaky):
    c = CloudModel(flaky, "m", api_key="k", timeout=5, max_retries=3, backoff=0.01)
    r = c.chat(Q, tools=[{"type": "function", "function": {"name": "f"}}], tool_choice="auto")
    assert r.text == "ok" and len(_Flaky.calls) == 3
    assert _Flaky.calls[-1]["tools"][0]["function"]["name"] == "f"  # passed through untouched
    assert _Flaky.calls[-1]["tool_choice"] == "auto"
    assert c.base_url.endswith("/v1")  # a bare host gets the OpenAI path


def test_client_errors_are_not_retried(flaky):
    _Flaky.fixed = 400
    c = CloudModel(flaky, "m", timeout=5, max_retries=3, backoff=0.01)
    with pytest.raises(CloudError, match="refused the request.*HTTP 400: status 400") as e:
        c.chat(Q)
    assert e.value.status == 400 and len(_Flaky.calls) == 1


def test_persistent_5xx_gives_up(flaky):
    _Flaky.fixed = 500
    c = CloudModel(flaky, "m", timeout=5, max_retries=2, backoff=0.01)
    with pytest.raises(CloudError, match="failed after 3 tries.*HTTP 500"):
        c.chat(Q)
    assert len(_Flaky.calls) == 3


@pytest.mark.parametrize("kwargs, match", [
    (dict(base_url="localhost:8000", model="m"), "http://"),
    (dict(base_url="http://x", model=""), "model"),
    (dict(base_url="http://x", model="m", timeout=0), "timeout"),
])
def test_bad_construction_is_a_value_error(kwargs, match):
    with pytest.raises(ValueError, match=match):
        CloudModel(**kwargs)


@pytest.mark.parametrize("messages, opts, match", [
    ([], {}, "messages is empty"),
    ([{"role": "wizard", "content": "x"}], {}, "unknown role"),
    (Q, {"n": 0}, "n must be"),
    (Q, {"max_tokens": -5}, "max_tokens"),
])
def test_bad_requests_fail_before_the_network(messages, opts, match):
    c = CloudModel("http://127.0.0.1:9", "m", timeout=1, max_retries=0)
    with pytest.raises(ValueError, match=match):
        c.chat(messages, **opts)
