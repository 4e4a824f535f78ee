"""`confroute demo` end to end on the real models (Qwen-0.5B edge, Qwen-1.5B in-process
cloud)."""
import json
import subprocess
import sys

import pytest

from confroute.cli import main

CONFIDENT = "What is the opposite of hot? Answer in one word."
UNSURE = "How many legs does a spider have? Answer with a number."   # the 0.5B says 10


@pytest.mark.models
def test_demo_json_shows_both_routes(capsys):
    rc = main(["demo", "--json", "--prompt", CONFIDENT, "--prompt", UNSURE,
               "--cloud-max-tokens", "16"])
    out = capsys.readouterr()
    assert rc == 0, out.err
    rows = json.loads(out.out)
    assert [r["prompt"] for r in rows] == [CONFIDENT, UNSURE]
    for r in rows:
        assert {"prompt", "routed_to", "semantic_entropy", "n_samples", "answer"} <= set(r)
        assert r["n_samples"] == 5 and r["answer"].strip() and not r["degraded"]
    assert [r["routed_to"] for r in rows] == ["edge", "cloud"]
    assert rows[0]["semantic_entropy"] <= 1.0 < rows[1]["semantic_entropy"]
    assert rows[0]["model"] == "qwen2.5-coder-0.5b-instruct"
    assert rows[1]["model"] == "qwen2.5-coder-1.5b-instruct" and "8" in rows[1]["answer"]


def test_demo_table_and_options_parse():
    r = subprocess.run([sys.executable, "-m", "confroute.cli", "demo", "--help"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0
    for opt in ("--threshold", "--cloud-url", "--json", "--kind", "--n"):
        assert opt in r.stdout


@pytest.mark.models
def test_demo_code_prompt_uses_execution_se(capsys):
    from confroute.cli.demo import PROMPTS

    code = [p for p in PROMPTS if "Python function" in p]
    assert len(code) == 2
    rc = main(["demo", "--json", "--prompt", code[0], "--cloud-max-tokens", "16"])
    out = capsys.readouterr()
    assert rc == 0, out.err
    (row,) = json.loads(out.out)
    assert row["clustered_by"] == "execution" and row["n_samples"] == 5
    assert 1 <= row["n_clusters"] <= 5
