"""The live outcome builder on the real local models (SmolLM2 as edge, Qwen as the cloud
stand-in), greedy, on a 2-question MMLU subset: a run killed with SIGKILL and resumed gives the
same table as an uninterrupted run, with no answer lost or repeated."""
import json
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from confroute.eval.data import load_table
from confroute.models.store import DEFAULT_CLOUD, DEFAULT_EDGE
pytestmark = [pytest.mark.models, pytest.mark.system, pytest.mark.data]
LIMIT = 2


def _build_cmd(data, ck, out):
    code = ("import sys, argparse\n"
            "from confroute.cli import eval as E\n"
            "p = argparse.ArgumentParser(); E.add_arguments(p)\n"
            "sys.exit(E.run(p.parse_args(sys.argv[1:])))\n")
    return [sys.executable, "-c", code, "build", "--benchmark", "mmlu", "--data", str(data),
            "--limit", str(LIMIT), "--checkpoint", str(ck), "--out", str(out)]


def _records(ck):
    return [json.loads(l) for l in open(ck, encoding="utf-8").read().splitlines()[1:] if l]


def test_killed_build_resumes_to_the_same_table(data_dir, tmp_path):
    full_ck, full_out = tmp_path / "full.jsonl", tmp_path / "full.csv"
    r = subprocess.run(_build_cmd(data_dir, full_ck, full_out), capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]

    ck, out = tmp_path / "ck.jsonl", tmp_path / "t.csv"
    p = subprocess.Popen(_build_cmd(data_dir, ck, out), stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 240
        while time.time() < deadline and p.poll() is None:
            if ck.exists() and len(_records(ck)) >= 1:
                break
            time.sleep(0.05)
        assert p.poll() is None, "the run ended before it could be killed"
        p.send_signal(signal.SIGKILL)
        p.wait(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
    killed_at = len(_records(ck))
    assert 1 <= killed_at < 2 * LIMIT and not out.exists()

    r = subprocess.run(_build_cmd(data_dir, ck, out), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    recs = _records(ck)
    keys = [(x["id"], x["model"]) for x in recs]
    assert len(keys) == len(set(keys)) == 2 * LIMIT  # nothing repeated, nothing lost
    # Named, not inferred from the means: on 2 questions both models may score 0.
    pair = dict(weak=DEFAULT_EDGE, strong=DEFAULT_CLOUD)
    full, resumed = load_table(full_out, **pair), load_table(out, **pair)
    assert resumed.models == full.models and resumed.prompts == full.prompts
    np.testing.assert_array_equal(resumed.quality, full.quality)
    # Greedy decoding: the very answers agree, not only the grades.
    answers = {(x["id"], x["model"]): x["answer"] for x in _records(full_ck)}
    assert {(x["id"], x["model"]): x["answer"] for x in recs} == answers
