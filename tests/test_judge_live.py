"""The judge end to end against a real OpenAI-compatible server: llama-cpp-python's
``llama_cpp.server`` serving the local Qwen GGUF on 127.0.0.1 (the ``llama_server`` fixture of
tests/conftest.py), through ``CloudModel``.
A 0.5B judge is weak; what is checked is the plumbing: real calls, outputs parsed or recorded
as failures (never a guessed number), both pairwise orders asked, and reruns served from the
cache without a single call."""
import pytest

from confroute.eval.judge import Judge

MAX_TOKENS = 48  # enough for "[[n]]" plus a short reason; keeps the test quick on 2 cores


@pytest.fixture()
def client(llama_server):
    import httpx

    from confroute.models import CloudModel

    # The judge model's name is part of the cache key: take the one the server reports.
    model = httpx.get(llama_server + "/models", timeout=10).json()["data"][0]["id"]
    c = CloudModel(llama_server, model, timeout=120, max_retries=1)
    yield c
    c.close()


def test_judge_against_the_local_server(client, tmp_path):
    cache = tmp_path / "judge_cache.jsonl"
    j = Judge(client, cache=cache, max_tokens=MAX_TOKENS)
    r = j.grade("What is the capital of France?", "The capital of France is Paris.",
                reference="Paris")
    assert r.output.strip(), "the server returned an empty judgement"
    # What the parsers make of outputs is tested on recorded GPT-4 judgements (test_judge.py);
    # here: a rating, if any, is on the scale.
    assert r.score is None or 1 <= r.score <= 10
    p = j.pairwise("What is 2 + 2?", "2 + 2 = 4.", "2 + 2 = 5.")
    assert j.calls == 3  # one grade + both pairwise orders
    assert len(p.outputs) == 2 and all(o.strip() for o in p.outputs)
    assert p.verdicts[0] in ("a", "b", "tie", None) and p.verdicts[1] in ("a", "b", "tie", None)
    b = j.best_of_k("What is 2 + 2?", "4", {"edge": "5", "cloud": "4"})
    assert b.output.strip()
    assert j.calls == 4

    # A rerun on the same cache asks the server nothing and gives the same results.
    j2 = Judge(client, cache=cache, max_tokens=MAX_TOKENS)
    assert j2.grade("What is the capital of France?", "The capital of France is Paris.",
                    reference="Paris") == r
    assert j2.pairwise("What is 2 + 2?", "2 + 2 = 4.", "2 + 2 = 5.") == p
    assert j2.best_of_k("What is 2 + 2?", "4", {"edge": "5", "cloud": "4"}) == b
    assert j2.calls == 0


def test_eval_judge_command(llama_server, client, tmp_path, capsys, monkeypatch):
    import json

    from confroute import cli

    monkeypatch.setattr(cli, "COMMANDS", {"eval": cli.COMMANDS["eval"]})
    answers = tmp_path / "answers.jsonl"
    answers.write_text(json.dumps({"question": "What is 3 + 4?", "answer": "7",
                                   "reference": "7"}) + "\n")
    argv = ["eval", "judge", "--answers", str(answers), "--judge-url", llama_server,
            "--judge-model", client.model, "--cache", str(tmp_path / "c.jsonl"),
            "--out", str(tmp_path / "o.jsonl"), "--max-tokens", str(MAX_TOKENS)]
    assert cli.main(argv) == 0
    first = capsys.readouterr().out
    assert "1 judge calls" in first
    row = json.loads((tmp_path / "o.jsonl").read_text())
    assert row["judge_output"].strip() and (row["score"] is None or 1 <= row["score"] <= 10)
    assert cli.main(argv) == 0
    assert "0 judge calls" in capsys.readouterr().out  # served from the cache
    answers.write_text('{"question": "q"}\n')
    assert cli.main(argv) == 2
    assert "line 1: missing field 'answer'" in capsys.readouterr().err
