"""The SE cascade on real models: SmolLM2 in-process, Qwen behind a real llama_cpp.server."""
import socket
import subprocess
import sys
import tempfile
import threading

import pytest

import confroute
from confroute.controller import Decision, RoutedAnswer
from confroute.decision.path import Evidence, Need, Policy, Sampling
from confroute.models.cloud import CloudModel
from confroute.confidence.scorer import ConfidenceScorer

CONFIDENT = "What is the opposite of hot? Answer in one word."
UNSURE = "Who won the Tour de France in 1937?"
# seed 3: SmolLM2's SE of CONFIDENT is 0.97 and of UNSURE 1.49 (the threshold is 1)
SAMPLING = Sampling(n=5, max_tokens=32, temperature=0.7, seed=3)
CHEAP = Sampling(n=3, max_tokens=10, temperature=0.7, seed=0)   # when SE does not matter


@pytest.fixture(scope="module")
def scorer(embedder):
    return ConfidenceScorer(embedder, n=5, max_tokens=32, temperature=0.7, seed=0)


@pytest.fixture(scope="module")
def cheap(embedder):
    """Few short samples: for tests where the SE value does not matter."""
    return ConfidenceScorer(embedder, n=3, max_tokens=10, temperature=0.7, seed=0)


class _AlwaysCloud(Policy):
    def need(self, evidence, sampling):
        return Need(samples=sampling.n)

    def decide(self, prompt, evidence):
        return Decision("cloud", evidence.confidence.se_kuhn, 0.0)


@pytest.fixture(scope="module")
def controller(edge_model, llama_server, scorer):
    cloud = CloudModel(llama_server, "qwen", timeout=120, max_retries=1)
    return confroute.Controller(edge_model, cloud, confroute.SECascade(1.0), scorer=scorer,
                                cloud_max_tokens=24, sampling=SAMPLING)


def test_confident_prompt_stays_on_the_edge_with_its_answer(controller, edge_model):
    r = controller.chat(CONFIDENT)
    assert isinstance(r, RoutedAnswer)
    assert r.routed_to == "edge" and not r.degraded and r.error is None
    assert r.semantic_entropy <= 1.0 and r.score == r.confidence.se_kuhn
    assert r.n_samples == 5 and r.threshold == 1.0
    # The answer is the edge's greedy answer, drawn with the samples (no second generation),
    # and only the edge spent tokens: the samples' and the answer's.
    greedy = edge_model.sample(CONFIDENT, n=1, max_tokens=32, temperature=0.0, seed=3)
    assert r.answer == greedy.texts[0] and "cold" in r.answer.lower()
    assert set(r.usage) == {"edge"}
    assert r.usage["edge"]["completion_tokens"] == (r.confidence.samples.completion_tokens
                                                    + greedy.completion_tokens)
    assert r.latency_s > 0 and r.model == r.confidence.samples.model


def test_decide_alone_matches_chat(controller):
    # The routing step on its own (a server streams the cloud answer itself after it).
    decision, confidence = controller.decide(CONFIDENT)
    assert decision.route == "edge" and decision.score == confidence.se_kuhn
    assert decision.score == controller.chat(CONFIDENT).score   # the same seeded draws


def test_uncertain_prompt_goes_to_the_cloud(controller):
    r = controller.chat(UNSURE)
    assert r.routed_to == "cloud" and not r.degraded
    assert r.semantic_entropy > 1.0 and r.model.startswith("qwen") and r.answer.strip()
    assert r.usage["cloud"]["completion_tokens"] > 0 and r.usage["edge"]["completion_tokens"] > 0
    d = r.as_dict()
    assert d["routed_to"] == "cloud" and d["confidence"]["n_samples"] == 5


def test_multi_turn_list_content_through_the_cascade(edge_model, cheap, llama_server):
    msgs = [{"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": [{"type": "text", "text": "Hi!"}]},
            {"role": "assistant", "content": "Hello! How can I help?"},
            {"role": "user", "content": [{"type": "text", "text": UNSURE}]}]
    cloud = CloudModel(llama_server, "qwen", timeout=120, max_retries=1)
    r = confroute.Controller(edge_model, cloud, _AlwaysCloud(), scorer=cheap,
                             cloud_max_tokens=12, sampling=CHEAP).chat(msgs)
    assert r.routed_to == "cloud" and r.answer.strip() and not r.degraded
    # The edge saw the whole conversation through its chat template.
    assert r.usage["edge"]["prompt_tokens"] == len(edge_model.prompt_tokens(msgs))


def _cascade_to(edge_model, scorer, cloud):
    return confroute.Controller(edge_model, cloud, _AlwaysCloud(), scorer=scorer,
                                sampling=CHEAP)


@pytest.mark.system
def test_killed_cloud_gives_a_degraded_edge_answer(edge_model, cheap, qwen_path):
    from helpers.processes import free_port, start_llama_server, stop_process

    port = free_port()
    with tempfile.NamedTemporaryFile("w+", suffix=".log") as log:
        proc = start_llama_server(qwen_path, port, log)
        try:
            cloud = CloudModel(f"http://127.0.0.1:{port}/v1", "qwen", timeout=30,
                               max_retries=1, backoff=0.01)
            assert cloud.chat("Hi", max_tokens=2).usage["completion_tokens"] > 0  # it was up
        finally:
            stop_process(proc)
    r = _cascade_to(edge_model, cheap, cloud).chat(UNSURE)
    assert r.routed_to == "edge" and r.degraded and "CloudError" in r.error
    # the edge's answer: the greedy draw every policy that judges an answer gets
    assert r.answer == edge_model.sample(UNSURE, n=1, max_tokens=10, temperature=0.0).texts[0]
    assert "cloud" not in r.usage


def test_absent_cloud_gives_a_degraded_edge_answer(edge_model, cheap):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cloud = CloudModel(f"http://127.0.0.1:{port}", "m", timeout=2, max_retries=1, backoff=0.01)
    r = _cascade_to(edge_model, cheap, cloud).chat(UNSURE)
    assert r.degraded and r.routed_to == "edge" and "ConnectError" in r.error


def test_cloud_timeout_gives_a_degraded_edge_answer(edge_model, cheap):
    # A server that accepts the connection and never answers.
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(4)
    held = []
    t = threading.Thread(target=lambda: held.append(srv.accept()), daemon=True)
    t.start()
    cloud = CloudModel(f"http://127.0.0.1:{srv.getsockname()[1]}", "m", timeout=0.5,
                       max_retries=0)
    try:
        r = _cascade_to(edge_model, cheap, cloud).chat(UNSURE)
    finally:
        for conn, _ in held:
            conn.close()
        srv.close()
    assert r.degraded and "ReadTimeout" in r.error


class _PromptOnly(Policy):
    """A policy that judges the prompt alone (as trained routers do): pure logic."""

    def __init__(self, route):
        self.route, self.seen = route, []

    def decide(self, prompt, evidence):
        self.seen.append((prompt, evidence))
        return Decision(self.route, 0.3, 0.5)


def test_policy_without_samples_generates_once_on_the_edge(edge_model, scorer):
    policy = _PromptOnly("edge")
    msgs = [{"role": "user", "content": "Hello"}, {"role": "assistant", "content": "Hi"},
            {"role": "user", "content": CONFIDENT}]
    r = confroute.Controller(edge_model, None, policy, scorer=scorer,
                             sampling=SAMPLING).chat(msgs, max_tokens=8)
    assert policy.seen == [(CONFIDENT, Evidence())]  # the last user message, no samples drawn
    assert r.routed_to == "edge" and r.n_samples == 0 and r.confidence is None
    assert r.answer.strip() and 0 < r.usage["edge"]["completion_tokens"] <= 8
    assert r.score == 0.3 and r.threshold == 0.5


def test_bad_input_is_a_clear_value_error(edge_model, scorer):
    ctl = _cascade_to(edge_model, scorer, None)
    with pytest.raises(ValueError, match="empty"):
        ctl.chat([])
    with pytest.raises(ValueError, match="unknown role"):
        ctl.chat([{"role": "admin", "content": "x"}])
    with pytest.raises(ValueError, match="n must be"):
        ctl.chat("hi", n=0)
    with pytest.raises(ValueError, match="threshold"):
        confroute.SECascade(-1)
    with pytest.raises(ValueError, match="kind"):
        confroute.SECascade(1.0, kind="renyi")
    with pytest.raises(ValueError, match="route"):
        Decision("moon", 0.0, 0.0)
    with pytest.raises(ValueError, match="policy"):
        confroute.Controller(edge_model, None, object())


def test_imports_stay_light():
    code = ("import sys, confroute; confroute.Controller; confroute.SECascade; "
            "import confroute.models; "
            "assert 'llama_cpp' not in sys.modules and 'onnxruntime' not in sys.modules "
            "and 'httpx' not in sys.modules, sorted(m for m in sys.modules if 'llama' in m)")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_router_strings_pick_the_policy(edge_model, scorer):
    ctl = confroute.Controller(edge_model, None, "router-se-0.8", scorer=scorer)
    assert isinstance(ctl.policy, confroute.SECascade) and ctl.policy.threshold == 0.8
    with pytest.raises(ValueError, match="not a number"):
        confroute.Controller(edge_model, None, "router-se-high", scorer=scorer)
    with pytest.raises(ValueError, match="unknown router"):
        confroute.Controller(edge_model, None, "router-nosuch-0.3", scorer=scorer)
    with pytest.raises(ValueError, match="outside"):
        confroute.Controller(edge_model, None, "router-sw-1.5", scorer=scorer)
