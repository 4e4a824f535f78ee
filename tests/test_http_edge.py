"""The edge served over HTTP (confroute.models.http_edge.HttpEdge): SmolLM2 behind the
package's own llama server (llama-cpp-python, 1 thread, 127.0.0.1), as the edge of
`confroute serve` (edge.base_url), of the decision path and of a Controller; compared with the
same GGUF in-process; and what such an edge refuses (no logprobs, hidden states, a prefix)."""
from __future__ import annotations

import math
import subprocess
import sys
import tempfile

import httpx
import numpy as np
import pytest

from helpers.processes import free_port, start_llama_server, stop_process
from helpers.servers import FlakyCloud, confroute_server

pytestmark = [pytest.mark.models, pytest.mark.system]

ALIAS = "smol"
SHIPPED = "smollm2-135m-instruct"   # the Q4_1 file as shipped, flash attention off
# llama-cpp-python's server samples with repeat_penalty 1.1, top_k 40, min_p 0.05 unless told
# otherwise (top_p 1 HttpEdge always sends): these make it draw as the in-process edge does.
NEUTRAL = {"repeat_penalty": 1.0, "top_k": 0, "min_p": 0.0}
OPEN = [{"role": "user", "content": "Say a random word."}]
FRANCE = [{"role": "user", "content": "What is the capital of France?"}]
N = 3
SAMPLING = {"n": N, "max_tokens": 8, "temperature": 1.0}


@pytest.fixture(scope="module")
def smol_url():
    """SmolLM2 on `python -m confroute.models.llama.server --n_threads 1`, as an alias."""
    from confroute.models import store

    with tempfile.NamedTemporaryFile("w+", prefix="smol-server-", suffix=".log") as log:
        proc = start_llama_server(store.model_path(SHIPPED), free_port(), log,
                                  alias=ALIAS, threads=1)
        try:
            yield f"http://127.0.0.1:{proc.args[proc.args.index('--port') + 1]}/v1"
        finally:
            stop_process(proc)


@pytest.fixture(scope="module")
def smol_local():
    from confroute.models import local_model

    m = local_model(SHIPPED, n_ctx=512, n_threads=1)
    yield m
    m.close()


@pytest.fixture(scope="module")
def edge(smol_url):
    from confroute.models.http_edge import HttpEdge

    e = HttpEdge(smol_url, ALIAS, extra_body=NEUTRAL, timeout=120, max_retries=0)
    yield e
    e.close()


@pytest.fixture(scope="module")
def served(smol_url, tmp_path_factory):
    """`confroute serve` with the HTTP edge; its cloud is the same llama server seen through
    a recording pass-through (so a test can count what went to the cloud)."""
    with FlakyCloud(smol_url) as cloud:
        cfg = {"edge": {"base_url": smol_url, "model": ALIAS, "extra_body": NEUTRAL,
                        "timeout_s": 120},
               "cloud": {"base_url": cloud.url, "model": ALIAS, "timeout_s": 120},
               "routers": [{"name": "se", "thresholds": [0.5]},
                           {"name": "se_discrete", "thresholds": [0.5]}],
               "sampling": SAMPLING}
        with confroute_server(cfg, tmp_path_factory.mktemp("serve")) as server:
            yield server, cloud


def _post(server, path, body):
    r = httpx.post(server.url + path, json=body, timeout=180)
    assert r.status_code == 200, r.text
    return r.json()


def test_serve_routes_both_ways(served):
    """A threshold above ln n keeps every query on the HTTP edge; for a seed whose samples
    differ (SE > 0, found with /v1/route), threshold 0 sends it to the cloud."""
    server, cloud = served
    seed = None
    for s in range(1, 6):
        d = _post(server, "/route", {"model": "router-se_discrete-5", "messages": OPEN,
                                     "seed": s})
        if d["semantic_entropy"] > 0:
            seed = s
            break
    assert seed is not None, "no seed gave differing samples"
    hits = cloud.hits
    kept = _post(server, "/chat/completions", {"model": "router-se_discrete-5",
                                               "messages": OPEN, "seed": seed})
    assert kept["confroute"]["routed_to"] == "edge" and kept["model"] == ALIAS
    assert kept["confroute"]["n_samples"] == N and kept["choices"][0]["message"]["content"]
    assert cloud.hits == hits
    up = _post(server, "/chat/completions", {"model": "router-se_discrete-0", "messages": OPEN,
                                             "seed": seed, "max_tokens": 8})
    assert up["confroute"]["routed_to"] == "cloud", up["confroute"]
    assert not up["confroute"]["degraded"] and cloud.hits == hits + 1


def test_route_se_from_remote_samples_against_in_process(served, smol_local):
    """`/v1/route` scores the HTTP edge's own samples. They cannot equal the in-process
    edge's samples for the same seed: llama-cpp-python seeds its own sampler chain (top-k,
    top-p, min-p, temperature, dist) per request and ignores ``n`` (so the samples are
    requests seeded seed+1, seed+2, ...), while the in-process edge draws the n samples as
    parallel sequences of one batch from one seeded chain. So the SE values differ; what must
    agree is checked: the number of samples, discrete SE in [0, ln n] (the SE of a
    probability over at most n clusters), and a finite likelihood-weighted SE, which needs
    the remote logprobs."""
    from confroute import Controller
    from confroute.decision.path import Sampling

    server, _ = served
    remote = _post(server, "/route", {"model": "router-se_discrete-5", "messages": OPEN,
                                      "seed": 11})
    kuhn = _post(server, "/route", {"model": "router-se-5", "messages": OPEN, "seed": 11})
    local, conf = Controller(smol_local, None, "router-se_discrete-5",
                             sampling=Sampling(**SAMPLING)).decide(OPEN, seed=11)
    assert remote["n_samples"] == local.n_samples == N == conf.n_samples
    for se in (remote["semantic_entropy"], local.semantic_entropy):
        assert 0.0 <= se <= math.log(N) + 1e-9
    assert kuhn["semantic_entropy"] is not None and math.isfinite(kuhn["semantic_entropy"])


def test_greedy_answer_and_logprobs_match_in_process(edge, smol_local, smol_url):
    """Greedy decoding over HTTP gives the in-process greedy answer, token for token, and
    the same token logprobs: both run the same GGUF through llama.cpp's CPU kernels, one
    sequence, flash attention off, and both take logprobs from the raw logits (temperature
    1). Measured: they agree to ~3e-7 nats (float32 round-off of the log-softmax); 1e-4
    allows for a different thread count or batch split. HTTP logprobs leave out the stop
    token (OpenAI does), the in-process ones keep it, so the first len(remote) are compared.

    Why NEUTRAL is needed: with llama-cpp-python's default repeat_penalty (1.1) 'greedy'
    penalizes tokens already written, and the answer leaves the in-process one at the first
    repeated token (here ' la' -> ' le' at token 11)."""
    for msgs in (FRANCE, [{"role": "user", "content": "Write a haiku about rain."}]):
        a = edge.sample(msgs, n=1, max_tokens=32, temperature=0.0)
        b = smol_local.sample(msgs, n=1, max_tokens=32, temperature=0.0)
        assert a.texts == b.texts and a.has_logprobs
        k = len(a.token_logprobs[0])
        assert k == len(b.token_logprobs[0]) - (b.finish_reasons[0] == "stop")
        np.testing.assert_allclose(a.token_logprobs[0], b.token_logprobs[0][:k], atol=1e-4)
    from confroute.models.http_edge import HttpEdge

    plain = HttpEdge(smol_url, ALIAS, timeout=120, max_retries=0)
    try:
        c = plain.sample(FRANCE, n=1, max_tokens=32, temperature=0.0)
    finally:
        plain.close()
    b = smol_local.sample(FRANCE, n=1, max_tokens=32, temperature=0.0)
    assert c.texts != b.texts   # the server's own repeat_penalty 1.1


def test_samples_n_and_controller(edge):
    """n samples with logprobs (llama-cpp-python ignores n: the client asks again), the
    supplier refuses a prefix to continue without a request, and a Controller serves it."""
    from confroute import Controller
    from confroute.decision.path import Sampling

    s = edge.sample(OPEN, n=N, max_tokens=8, temperature=1.0, seed=3)
    assert s.n == N and s.has_logprobs and s.model == ALIAS
    with FlakyCloud(edge.base_url) as counted:
        from confroute.models.http_edge import HttpEdge

        e = HttpEdge(counted.url, ALIAS, extra_body=NEUTRAL, timeout=120, max_retries=0)
        c = Controller(e, None, "router-se_discrete-5", sampling=Sampling(**SAMPLING))
        d, _ = c.decide(FRANCE + [{"role": "assistant", "content": "The capital"}])
        assert d.route == "cloud" and d.reason.startswith("prefix:")
        assert "cannot continue" in d.reason and counted.hits == 0
        d, conf = c.decide(FRANCE, seed=2)
        assert d.route == "edge" and conf.n_samples == N and counted.hits == 1 + N
        e.close()


def test_missing_logprobs_and_hidden_state_are_refused(smol_url):
    """An endpoint without logprobs: the likelihood-based policies are refused, naming those
    that remain; the count-based ones are served. Hidden states: in-process only."""
    from confroute.decision import path as routing
    from confroute.models.http_edge import HttpEdge
    from confroute.decision.policies import AnswerLogprob, Disagreement, SECascade
    from confroute.decision.path import Need, Policy
    from confroute.confidence.scorer import ConfidenceScorer
    from confroute.server import _http_edge, build
    from confroute.server.config import from_dict
    from confroute.decision.edge import EdgeSupplier

    with FlakyCloud(smol_url, mode="no_logprobs") as bare:
        e = HttpEdge(bare.url, ALIAS, extra_body=NEUTRAL, timeout=120, max_retries=0)
        for p in (SECascade(0.5), SECascade(0.5, kind="weighted"), AnswerLogprob(0.5)):
            with pytest.raises(ValueError, match="returns none") as err:
                e.check_policy(p)
            assert "disagreement, se_discrete" in str(err.value)
        for p in (SECascade(0.5, kind="discrete"), Disagreement(0.5)):
            e.check_policy(p)
        assert bare.hits == 1    # the one-token question, asked once
        supplier = EdgeSupplier(e, ConfidenceScorer(meaning="exact"))
        q = routing.make_query(FRANCE, routing.Sampling(n=2, max_tokens=4))
        with pytest.raises(ValueError, match="se_weighted"):
            routing.decide(SECascade(0.5), q, supplier)
        assert bare.hits == 1    # refused before any sampling
        d, ev = routing.decide(Disagreement(1.0), q, supplier)
        assert d.route == "edge" and ev.samples.token_logprobs is None
        # the server refuses to start with a likelihood router on such an edge
        cfg = from_dict({"edge": {"base_url": bare.url, "model": ALIAS},
                         "cloud": {"base_url": bare.url, "model": ALIAS},
                         "routers": [{"name": "se", "thresholds": [0.5]}]})
        with pytest.raises(ValueError, match="cannot be served"):
            build(cfg, models=(e, e.client, supplier.scorer, {}))
        e.close()

    class Probe(Policy):
        needs = Need(hidden=True)

    e = HttpEdge(smol_url, ALIAS, timeout=120, max_retries=0)
    with pytest.raises(ValueError, match="in-process only: the HTTP edge 'smol'"):
        routing.decide(Probe(), routing.make_query(FRANCE), EdgeSupplier(e, None))
    cfg = from_dict({"edge": {"base_url": smol_url, "model": ALIAS}})

    class Sep:   # a router that reads the hidden state, as routers.sep.SEPRouter says
        needs_hidden = True

    with pytest.raises(ValueError, match="router 'sep' reads the edge's hidden state"):
        _http_edge(cfg.edge, {"sep": Sep()})
    e.close()


def test_config_checks():
    from confroute.server.config import from_dict

    with pytest.raises(ValueError, match="edge.model is required"):
        from_dict({"edge": {"base_url": "http://127.0.0.1:1/v1"}})
    with pytest.raises(ValueError, match="edge.base_url must start"):
        from_dict({"edge": {"base_url": "127.0.0.1:1", "model": "m"}})
    with pytest.raises(ValueError, match="apply to an HTTP edge"):
        from_dict({"edge": {"extra_body": {"top_k": 0}}})
    cfg = from_dict({"edge": {"base_url": "http://127.0.0.1:1/v1", "model": "m",
                              "api_key_env": "EDGE_KEY", "extra_body": NEUTRAL}})
    assert cfg.edge.base_url.endswith("/v1") and cfg.edge.extra_body == NEUTRAL


def test_eval_build_edge_url_side(smol_url):
    """`eval build --edge-url URL --edge-model NAME`: the edge is an HttpEdge."""
    from confroute.cli.eval.build import side_model
    from confroute.models.http_edge import HttpEdge

    class Args:
        edge, edge_model, edge_url, cloud_url = None, ALIAS, smol_url, None

    name, m = side_model(ALIAS, "edge", Args)
    assert isinstance(m, HttpEdge) and name == ALIAS
    Args.edge_model = None
    with pytest.raises(ValueError, match="--edge-url needs --edge-model"):
        side_model(None, "edge", Args)
    assert subprocess.run([sys.executable, "-m", "confroute.cli", "eval", "build", "--help"],
                          capture_output=True, text=True).stdout.count("--edge-url") >= 1
