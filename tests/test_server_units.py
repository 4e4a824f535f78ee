"""The server's pure logic without a process: request checks (including a fuzz over arbitrary
JSON), the circuit breaker on a fake clock, the Prometheus text, stop handling, config errors."""
from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from confroute.server import config as cfgmod
from confroute.server.breaker import CircuitBreaker
from confroute.server.answers import truncate_at_stop
from confroute.server.errors import ApiError
from confroute.server.metrics import ServerMetrics
from confroute.server.schema import ChatRequest, Limits, parse_chat_request

ROUTERS = {"se": None, "sw": None}
LIMITS = Limits(max_body_bytes=4096, max_messages=4, max_content_chars=200, max_tokens=64,
                max_n=4, max_tools=2)


def parse(obj) -> ChatRequest:
    return parse_chat_request(json.dumps(obj).encode(), LIMITS, ROUTERS)


def test_a_full_request_is_read_as_sent():
    tools = [{"type": "function", "function": {"name": "f", "parameters": {
        "type": "object", "properties": {"a": {"type": "array", "items": {"$ref": "#/x"}}}}}}]
    msgs = [{"role": "system", "content": "be brief"},
            {"role": "user", "content": [{"type": "text", "text": "a"},
                                         {"type": "text", "text": "b"}]}]
    r = parse({"model": "router-sw-0.35", "messages": msgs, "n": 2, "max_tokens": 8,
               "temperature": 0, "stop": "\n", "seed": -3, "tools": tools,
               "tool_choice": "auto", "top_p": 0.5, "user": "u1", "stream": True,
               "stream_options": {"include_usage": True}})
    assert (r.router, r.threshold, r.n, r.max_tokens, r.temperature) == ("sw", 0.35, 2, 8, 0.0)
    assert r.messages == msgs and r.edge_messages[1] == {"role": "user", "content": "a\nb"}
    assert r.stop == ("\n",) and r.seed == -3 and r.stream and r.include_usage
    assert r.cloud_only.startswith("tools")
    assert r.cloud_extra() == {"top_p": 0.5, "user": "u1", "tools": tools, "tool_choice": "auto",
                               "stop": ["\n"], "seed": -3}
    assert parse({"model": "router-se-1", "messages": msgs}).cloud_only is None
    assert parse({"model": "router-se-1", "messages": msgs, "tools": tools,
                  "tool_choice": "none"}).cloud_only is None
    assert parse({"model": "router-se-1", "messages": msgs,
                  "max_completion_tokens": 5}).max_tokens == 5


def test_images_and_tool_history_need_the_cloud():
    img = [{"role": "user", "content": [{"type": "text", "text": "what is this"},
                                        {"type": "image_url", "image_url": {"url": "http://x"}}]}]
    assert parse({"model": "router-se-1", "messages": img}).cloud_only.startswith("content")
    hist = [{"role": "user", "content": "weather?"},
            {"role": "assistant", "content": None, "tool_calls": [{"id": "1"}]},
            {"role": "tool", "tool_call_id": "1", "content": "sunny"}]
    assert parse({"model": "router-se-1", "messages": hist}).cloud_only.startswith("tools")


@pytest.mark.parametrize("body,status,param", [
    ({"model": "router-se-1", "messages": [{"role": "tool", "content": "x"}]}, 400,
     "messages[0].tool_call_id"),
    ({"model": "router-se-1", "messages": [{"role": "user"}]}, 400, "messages[0].content"),
    ({"model": "router-se-1", "messages": [{"role": "user", "content": "x", "name": 3}]}, 400,
     "messages[0].name"),
    ({"model": "router-se-1", "messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": "http://x"}]}]}, 400,
     "messages[0].content[0].image_url"),
    ({"model": "router-se-1", "messages": [{"role": "user", "content": "x"}],
      "stream_options": {"include_usage": True}}, 400, "stream_options"),
    ({"model": "router-se-1", "messages": [{"role": "user", "content": "x"}],
      "tools": [{"type": "function", "function": {"name": "f"}}],
      "tool_choice": {"type": "function", "function": {"name": "g"}}}, 400,
     "tool_choice.function.name"),
    ({"model": "router-se-1", "messages": [{"role": "user", "content": "x"}],
      "tools": [{"type": "function", "function": {"name": "f", "parameters": []}}]}, 400,
     "tools[0].function.parameters"),
    ({"model": "router-se-1", "messages": [{"role": "user", "content": "x"}], "tools": [
        {"type": "function", "function": {"name": n}} for n in "abc"]}, 400, "tools"),
    ({"model": "router-se-1", "messages": [{"role": "user", "content": "x"}],
      "logit_bias": [1]}, 400, "logit_bias"),
    ({"model": "router-knn-0.5", "messages": [{"role": "user", "content": "x"}]}, 404, "model"),
    ({"model": "router-se-", "messages": [{"role": "user", "content": "x"}]}, 404, "model"),
    ({"model": 5, "messages": [{"role": "user", "content": "x"}]}, 400, "model"),
])
def test_each_bad_field_is_named(body, status, param):
    with pytest.raises(ApiError) as e:
        parse(body)
    assert (e.value.status, e.value.param) == (status, param)
    assert e.value.body()["error"]["message"]


def test_bodies_too_large_or_too_deep_are_4xx():
    with pytest.raises(ApiError) as e:
        parse_chat_request(b" " * 5000, LIMITS, ROUTERS)
    assert e.value.status == 413
    with pytest.raises(ApiError) as e:
        parse_chat_request(b"[" * 3000 + b"]" * 3000, Limits(max_body_bytes=10 ** 6), ROUTERS)
    assert e.value.status == 400


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
                    lambda kids: st.lists(kids, max_size=3) |
                    st.dictionaries(st.text(max_size=5), kids, max_size=3), max_leaves=12)
FIELDS = st.sampled_from(["model", "messages", "n", "max_tokens", "temperature", "stop", "seed",
                          "stream", "tools", "tool_choice", "stream_options", "top_p", "user"])
MESSAGE = st.fixed_dictionaries({"role": st.sampled_from(["user", "assistant", "tool", "x"])},
                                optional={"content": JSON, "tool_calls": JSON,
                                          "tool_call_id": JSON, "name": JSON})


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(FIELDS, JSON, max_size=6), st.lists(MESSAGE, max_size=3),
       st.sampled_from(["router-se-0.5", "router-sw-1", "router-x-1", "nope"]))
def test_any_json_gives_a_request_or_a_4xx(fields, messages, model):
    body = {"model": model, "messages": messages, **fields}
    try:
        r = parse(body)
    except ApiError as e:
        assert 400 <= e.status < 500 and e.body()["error"]["message"]
    else:
        assert r.messages and 1 <= r.n <= LIMITS.max_n


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def test_breaker_opens_after_failures_and_probes_once():
    clock = Clock()
    b = CircuitBreaker(failures=2, reset_s=10, clock=clock)
    assert b.allow() and b.state == "closed"
    b.record_failure()
    b.record_success()          # a success in between resets the count
    b.record_failure()
    assert b.state == "closed" and b.allow()
    b.record_failure()
    assert b.state == "open" and not b.allow()
    clock.t = 9.9
    assert not b.allow()
    clock.t = 10.0
    assert b.state == "half_open"
    assert b.allow() and not b.allow()   # one probe at a time
    b.record_failure()                   # the probe failed: open for another reset_s
    assert b.state == "open" and not b.allow()
    clock.t = 20.0
    assert b.allow()
    b.release_probe()                    # the probe's client left: another may probe
    assert b.allow()
    b.record_success()
    assert b.state == "closed" and b.allow() and b.allow()
    assert b.opened_total == 2


def test_metrics_text():
    m = ServerMetrics()
    m.requests.inc(status="200")
    m.requests.inc(status="200")
    m.latency.observe(0.3, route="edge")
    m.latency.observe(7.0, route="edge")
    m.latency.observe(float("nan"), route="edge")   # ignored
    m.routed.inc(route='we"ird\n')
    text = m.render()
    assert 'confroute_requests_total{status="200"} 2' in text
    assert 'confroute_request_latency_seconds_bucket{route="edge",le="0.25"} 0' in text
    assert 'confroute_request_latency_seconds_bucket{route="edge",le="0.5"} 1' in text
    assert 'confroute_request_latency_seconds_bucket{route="edge",le="10"} 2' in text
    assert 'confroute_request_latency_seconds_bucket{route="edge",le="+Inf"} 2' in text
    assert 'confroute_request_latency_seconds_count{route="edge"} 2' in text
    assert 'confroute_request_latency_seconds_sum{route="edge"} 7.3' in text
    assert r'confroute_routed_total{route="we\"ird\n"} 1' in text
    assert "# TYPE confroute_queue_depth gauge" in text


def test_stop_strings_cut_like_openai():
    assert truncate_at_stop("a. b\nc", (".", "\n")) == ("a", True)
    assert truncate_at_stop("a b", ("\n",)) == ("a b", False)
    assert truncate_at_stop("abc", None) == ("abc", False)
    assert truncate_at_stop("xyz", ("yz", "x")) == ("", True)


def test_config_errors_name_the_setting(tmp_path):
    assert cfgmod.from_dict({}).model_ids() == ["router-se-0.8"]
    cfg = cfgmod.from_dict({"routers": [{"name": "se", "thresholds": [0.5, 1]},
                                        {"name": "sw", "path": "/r", "thresholds": [0.35]}]})
    assert cfg.model_ids() == ["router-se-0.5", "router-se-1", "router-sw-0.35"]
    for bad, words in [({"edge": {"gpu": 1}}, "edge.gpu"), ({"routers": []}, "routers"),
                       ({"routers": [{"name": "sw"}]}, "path"),
                       ({"routers": [{"name": "se", "threshold": 1}]}, "thresholds"),
                       ({"cloud": {"base_url": "http://x"}}, "cloud.model"),
                       ({"cloud": {"base_url": "http://x", "model": "m", "timeout_s": 0}},
                        "timeout"),
                       ({"port": 70000}, "port"), ({"colour": 1}, "config.colour"),
                       ({"routers": [{"name": "se", "thresholds": "0.5"}]}, "list of numbers"),
                       ({"edge": {"n_seq_max": 4}}, "n_seq_max"),
                       ({"routers": [{"name": "se", "thresholds": [0.5],
                                      "calibrated_edge": 3}]}, "calibrated_edge must be a")]:
        with pytest.raises(ValueError, match=words.replace(".", r"\.")):
            cfgmod.from_dict(bad)
    p = tmp_path / "c.json"
    p.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        cfgmod.load(str(p))
    with pytest.raises(ValueError, match="does not exist"):
        cfgmod.load(str(tmp_path / "missing.json"))


def test_a_setting_the_server_never_reads_is_refused():
    # routers[].sample_max_tokens was accepted and never read (the samples are the answer,
    # drawn at the answer's length): a config naming it is an error, not a silent no-op.
    with pytest.raises(ValueError, match="sample_max_tokens is not a known setting"):
        cfgmod.from_dict({"routers": [{"name": "se", "thresholds": [0.5],
                                       "sample_max_tokens": 10}]})
