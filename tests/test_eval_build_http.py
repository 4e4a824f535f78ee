"""Measured = served for an edge over HTTP: `eval build --edge-url URL --edge-model NAME` draws
the edge's answer and samples through HttpEdge and the decision path, as `confroute serve`
with `edge.base_url` does, so a row's `signal:<policy>` is what `POST /v1/route` of that
server returns for the same router string and request seed, and the answer
`/v1/chat/completions` serves when the edge keeps the query is the graded one.

The edge is SmolLM2 on the package's own llama server (llama-cpp-python, 1 thread,
127.0.0.1), which both the build and the server reach. An HTTP edge cannot continue an
assistant message, so the request is the benchmark's messages without its cue (HumanEval's
function header) and the whole reply is graded, as a chat model's.

The two runs do not send the server the same sequence of requests (the server draws the
answer again for each router string), and llama-cpp-python by default evaluates only what a
prompt does not share with the previous request, so a prompt's logits would depend on the
request before it (a clean clone's tiny data set showed answer_logprob 0.1711 against 0.1695).
The llama server here runs with `--fresh-prompts`: every prompt is evaluated whole, so each
request is a function of itself and its seed. The comparison allows float round-off (1e-9
relative), as test_parity does for the in-process edge."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile

import httpx
import pytest

from helpers.processes import free_port, start_llama_server, stop_process
from helpers.servers import confroute_server

pytestmark = [pytest.mark.models, pytest.mark.system]

ALIAS = "smol"
# llama-cpp-python's server samples with repeat_penalty 1.1, top_k 40, min_p 0.05 unless told
# otherwise: the build (--edge-extra-body) and the server (edge.extra_body) send the same
NEUTRAL = {"repeat_penalty": 1.0, "top_k": 0, "min_p": 0.0}
SAMPLES, TOKENS, SEED, LIMIT = 3, 48, 3, 2
COUNTS = ("disagreement", "se_discrete")
LIKELIHOOD = ("answer_logprob", "se", "se_weighted")
CLI = "import sys\nfrom confroute.cli import main\nsys.exit(main(sys.argv[1:]))\n"


@pytest.fixture(scope="module")
def smol_url():
    """SmolLM2 on `python -m confroute.models.llama.server --n_threads 1`, as an alias."""
    from confroute.models import store

    with tempfile.NamedTemporaryFile("w+", prefix="smol-server-", suffix=".log") as log:
        port = free_port()
        proc = start_llama_server(store.model_path("smollm2-135m-instruct"), port, log,
                                  alias=ALIAS, threads=1, fresh_prompts=True)
        try:
            yield f"http://127.0.0.1:{port}/v1"
        finally:
            stop_process(proc)


def _build(data_dir, url, out, *extra):
    cmd = [sys.executable, "-c", CLI, "eval", "build", "--benchmark", "humaneval", "--data",
           str(data_dir), "--limit", LIMIT, "--seed", SEED, "--samples", SAMPLES,
           "--max-tokens", TOKENS, "--edge-url", url, "--edge-model", ALIAS,
           "--edge-extra-body", json.dumps(NEUTRAL),
           "--cloud", "recorded:gpt-4", "--checkpoint", out / "ck.jsonl",
           "--out", out / "t.csv", "--no-progress", *extra]
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=900,
                          env={**os.environ, "CONFROUTE_N_THREADS": "1"})


@pytest.fixture(scope="module")
def built(data_dir, smol_url, tmp_path_factory):
    """The table `eval build --edge-url` writes, its checkpoint's header and edge records."""
    out = tmp_path_factory.mktemp("build")
    r = _build(data_dir, smol_url, out)
    assert r.returncode == 0, r.stderr[-3000:]
    from confroute.eval.data import load_table

    lines = (out / "ck.jsonl").read_text(encoding="utf-8").splitlines()
    records = {o["id"]: o for o in map(json.loads, lines[1:]) if o["model"] == ALIAS}
    return load_table(str(out / "t.csv")), json.loads(lines[0]), records, out


@pytest.fixture(scope="module")
def server(smol_url, tmp_path_factory):
    """`confroute serve` whose edge is the same llama server, with the table's sampling; its
    cloud is never called (the routes below only decide, or keep the query on the edge)."""
    cfg = {"edge": {"base_url": smol_url, "model": ALIAS, "extra_body": NEUTRAL,
                    "timeout_s": 300},
           "cloud": {"base_url": "http://127.0.0.1:9/v1", "model": "none", "timeout_s": 5},
           "routers": [{"name": n, "thresholds": [1 if n == "disagreement" else 1000]}
                       for n in COUNTS + LIKELIHOOD],
           "sampling": {"n": SAMPLES, "temperature": 0.7, "max_tokens": TOKENS}}
    with confroute_server(cfg, tmp_path_factory.mktemp("serve")) as s:
        yield s


def _post(server, path, body):
    r = httpx.post(server.url + path, json=body, timeout=600)
    assert r.status_code == 200, r.text
    return r.json()


def test_route_scores_equal_the_table_and_the_served_answer_is_the_graded_one(
        built, data_dir, server):
    from confroute.eval.benchmarks import get_benchmark

    table, _, records, _ = built
    assert set(table.signals) == set(COUNTS + LIKELIHOOD) and len(table) == LIMIT
    bench = get_benchmark("humaneval")
    items = {it.id: it for it in bench.items(str(data_dir), "dev")}
    for row, item_id in enumerate(table.ids):
        rec, p = records[item_id], bench.prompt(items[item_id])
        assert p.cue    # HumanEval has one; the HTTP edge's request goes without it
        request = {"messages": [dict(m) for m in p.messages], "seed": rec["extra"]["seed"]}
        for name in COUNTS + LIKELIHOOD:
            t = 1 if name == "disagreement" else 1000
            d = _post(server, "/route", {**request, "model": f"router-{name}-{t}"})
            assert d["route"] == "edge", d
            assert d["score"] == pytest.approx(table.signals[name][row], rel=1e-9,
                                               abs=1e-12), (item_id, name)
            if name == "disagreement":
                assert d["meaning"] == rec["extra"]["meaning"]
        # the reply served when the edge keeps the query is the graded answer, cue-less
        c = _post(server, "/chat/completions", {**request, "model": "router-se-1000"})
        assert c["confroute"]["routed_to"] == "edge"
        assert c["choices"][0]["message"]["content"] == rec["answer"]
        q, _ = bench.grade(rec["answer"], items[item_id])
        assert q == rec["quality"]


def test_the_checkpoint_names_the_http_edge_and_a_resume_cannot_switch_it(built, smol_url,
                                                                        data_dir):
    _, header, _, out = built
    assert header["http_models"] == {ALIAS: {"base_url": smol_url, "model": ALIAS,
                                             "extra_body": {"top_p": 1.0, **NEUTRAL}}}
    # the same server under another address is another edge as far as the checkpoint knows
    other = smol_url.replace("127.0.0.1", "localhost")
    r = _build(data_dir, other, out)
    assert r.returncode == 2 and "the checkpoint was made with other settings" in r.stderr
    assert "http_models: checkpoint" in r.stderr and other in r.stderr
