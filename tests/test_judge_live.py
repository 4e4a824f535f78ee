"""The judge end to end against a real OpenAI-compatible server: llama-cpp-python's
``llama_cpp.server`` serving the local Qwen GGUF on 127.0.0.1, through ``CloudModel``.
A 0.5B judge is weak; what is checked is the plumbing: real calls, outputs parsed or recorded
as failures (never a guessed number), both pairwise orders asked, and reruns served from the
cache without a single call."""
import os
import socket
import subprocess
import sys
import time

import pytest

from confroute.eval.judge import Judge, parse_best, parse_rating, parse_verdict

MAX_TOKENS = 48  # enough for "[[n]]" plus a short reason; keeps the test quick on 2 cores


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def judge_url(request, tmp_path_factory):
    """The shared ``llama_server`` fixture (tests/conftest.py) when there is one; otherwise
    start llama_cpp.server here the same way."""
    try:
        yield request.getfixturevalue("llama_server")
        return
    except pytest.FixtureLookupError:
        pass
    from confroute.models import ModelError, model_path
    from confroute.models.store import DEFAULT_CLOUD

    try:
        path = model_path(DEFAULT_CLOUD)
    except ModelError as e:
        pytest.skip(f"the local Qwen model is not available: {e}")
    httpx = pytest.importorskip("httpx")
    pytest.importorskip("llama_cpp.server.app")
    port = _free_port()
    # The server logs a lot to stderr: a file, not a pipe nobody drains (it would block).
    log = tmp_path_factory.mktemp("llama_server") / "server.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--model", str(path), "--host", "127.0.0.1",
         "--port", str(port), "--n_ctx", "2048", "--n_threads", "2", "--model_alias", "qwen"],
        stdout=subprocess.DEVNULL, stderr=open(log, "wb"))
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.time() + 120
        while True:
            if proc.poll() is not None:
                pytest.fail("llama_cpp.server exited: " + log.read_text()[-1000:])
            try:
                if httpx.get(url + "/models", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.time() > deadline:
                pytest.fail("llama_cpp.server did not come up within 120 s")
            time.sleep(0.25)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture()
def client(judge_url):
    from confroute.models import CloudModel

    c = CloudModel(judge_url, "qwen", timeout=120, max_retries=1)
    yield c
    c.close()


def test_judge_against_the_local_server(client, tmp_path):
    cache = tmp_path / "judge_cache.jsonl"
    j = Judge(client, cache=cache, max_tokens=MAX_TOKENS)
    r = j.grade("What is the capital of France?", "The capital of France is Paris.",
                reference="Paris")
    assert r.output.strip(), "the server returned an empty judgement"
    assert r.score == parse_rating(r.output)  # parsed, or None: never a made-up number
    assert r.score is None or 1 <= r.score <= 10
    p = j.pairwise("What is 2 + 2?", "2 + 2 = 4.", "2 + 2 = 5.")
    assert j.calls == 3  # one grade + both pairwise orders
    assert p.verdicts[0] in ("a", "b", "tie", None) and p.verdicts[1] in ("a", "b", "tie", None)
    assert (p.verdicts[0] is None) == (parse_verdict(p.outputs[0]) is None)
    b = j.best_of_k("What is 2 + 2?", "4", {"edge": "5", "cloud": "4"})
    assert (b.best is None) == (parse_best(b.output, 2) is None)
    assert j.calls == 4

    # A rerun on the same cache asks the server nothing and gives the same results.
    j2 = Judge(client, cache=cache, max_tokens=MAX_TOKENS)
    assert j2.grade("What is the capital of France?", "The capital of France is Paris.",
                    reference="Paris") == r
    assert j2.pairwise("What is 2 + 2?", "2 + 2 = 4.", "2 + 2 = 5.") == p
    assert j2.best_of_k("What is 2 + 2?", "4", {"edge": "5", "cloud": "4"}) == b
    assert j2.calls == 0
