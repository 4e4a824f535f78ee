"""`confroute eval build` on the real models: a live edge (SmolLM2) against the recorded GPT-4,
killed with SIGKILL and resumed; every signal a column; the table replays with no
--weak/--strong, each signal with intervals."""
import json
import signal
import subprocess
import sys

import numpy as np
import pytest

from confroute.eval.data import load_table
pytestmark = pytest.mark.data
GPT4 = "gpt-4-1106-preview"
MIXTRAL = "mistralai/Mixtral-8x7B-Instruct-v0.1"
CLI = ("import sys\nfrom confroute.cli import main\nsys.exit(main(sys.argv[1:]))\n")

# the served policies' scores, one column each (eval build's default policies)
MMLU_SIGNALS = {"answer_logprob", "disagreement", "se", "se_discrete", "se_weighted"}


def _cmd(*args):
    return [sys.executable, "-c", CLI, "eval", *map(str, args)]


def _mmlu(data, ck, out, limit=3):
    return _cmd("build", "--benchmark", "mmlu", "--data", data, "--limit", limit, "--seed", 4,
                "--shots", 2, "--samples", 3, "--edge", "smollm2-135m-instruct",
                "--cloud", f"recorded:{GPT4}", "--checkpoint", ck, "--out", out)


def _records(ck):
    lines = open(ck, encoding="utf-8").read().splitlines()
    return [json.loads(l) for l in lines[1:] if l.endswith("}")]


def _run(cmd):
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    if r.returncode != 0 and "ModelError" in r.stderr:
        pytest.skip("local models not available: " + r.stderr.strip().splitlines()[-1])
    assert r.returncode == 0, r.stderr[-3000:]
    return r


def _kill_after_first_record(cmd, ck):
    """Starts the build and SIGKILLs it as soon as the checkpoint holds one record (the
    builder fsyncs each line; the loop polls that condition)."""
    import time

    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while p.poll() is None:
            if ck.exists() and len(_records(ck)) >= 1:
                p.send_signal(signal.SIGKILL)
                break
            time.sleep(0.05)
    finally:
        if p.poll() is None:
            p.kill()
        p.wait(timeout=60)
    assert p.returncode == -signal.SIGKILL, "the run ended before it could be killed"


@pytest.mark.models
@pytest.mark.system
def test_live_edge_against_recorded_cloud_resumes_and_replays(data_dir, tmp_path):
    full_ck, full_out = tmp_path / "full.jsonl", tmp_path / "full.csv"
    _run(_mmlu(data_dir, full_ck, full_out))
    ck, out = tmp_path / "ck.jsonl", tmp_path / "t.csv"
    _kill_after_first_record(_mmlu(data_dir, ck, out), ck)
    assert not out.exists() and 1 <= len(_records(ck)) < 3
    r = _run(_mmlu(data_dir, ck, out))
    recs = _records(ck)
    assert len(recs) == len({x["id"] for x in recs}) == 3          # nothing lost or repeated
    assert {x["model"] for x in recs} == {"smollm2-135m-instruct"}  # the cloud never ran

    full, t = load_table(full_out), load_table(out)  # no --weak/--strong: the meta names them
    assert (t.weak, t.strong) == ("smollm2-135m-instruct", GPT4)
    assert t.meta["models"] == {"smollm2-135m-instruct": "live", GPT4: "recorded"}
    assert t.prompts == full.prompts
    np.testing.assert_array_equal(t.quality, full.quality)
    assert set(t.signals) == MMLU_SIGNALS
    for k in t.signals:  # seeded per prompt: the resumed samples are the same samples
        np.testing.assert_allclose(t.signals[k], full.signals[k], rtol=1e-6, equal_nan=True)
    # the recorded column is the benchmark's own record for those prompts
    from confroute.eval.data import load_mmlu

    rec = load_mmlu(data_dir)
    by_prompt = dict(zip(rec.prompts, rec.column(GPT4)))
    assert [by_prompt[p] for p in t.prompts] == t.column(GPT4).tolist()
    # the graded answer continues the cue, as a server request ending in it is continued; the
    # record keeps the request seed and each sample's cluster in draw order
    assert all(x["answer"].startswith("Answer:") for x in recs)
    assert all(len(x["extra"]["sample_clusters"]) == 3 and isinstance(x["extra"]["seed"], int)
               for x in recs)
    assert np.all((t.signals["disagreement"] >= 0) & (t.signals["disagreement"] <= 1))
    assert np.all(t.signals["se_discrete"] <= np.log(3) + 1e-9)
    assert "signals:" in r.stdout

    rep = tmp_path / "rep"
    _run(_cmd("replay", "--table", out, "--router", "random", "--router", "signals",
              "--router", "signal:answer_logprob,higher=edge", "--bootstrap", 50,
              "--random-seeds", 3, "--no-plot", "--out", rep))
    m = json.load(open(rep / "metrics.json"))
    assert m["weak"]["model"] == "smollm2-135m-instruct" and m["strong"]["model"] == GPT4
    sig = [k for k in m["routers"] if k.startswith("signal:")]
    assert len(sig) == len(MMLU_SIGNALS) + 1
    assert "signal:answer_logprob,higher=edge" in m["routers"]
    for k in sig:
        assert set(m["routers"][k]["ci"]) >= {"apgr", "cpt20", "cpt50", "cpt80", "auroc"}
    assert m["routers"]["random"]["over_seeds"]["seeds"] == 3


@pytest.mark.models
@pytest.mark.system
def test_gsm8k_edge_signals_and_two_recorded_sides(data_dir, tmp_path):
    ck, out = tmp_path / "g.jsonl", tmp_path / "g.jsonl.csv"
    _run(_cmd("build", "--benchmark", "gsm8k", "--data", data_dir, "--limit", 2, "--samples", 5,
              "--max-tokens", 96, "--edge", "smollm2-135m-instruct", "--meaning", "exact",
              "--cloud", f"recorded:{MIXTRAL}", "--checkpoint", ck, "--out", out))
    t = load_table(out)
    assert t.strong == MIXTRAL and len(t) == 2
    assert set(t.signals) == MMLU_SIGNALS
    assert t.meta["sampling"]["meaning"] == "exact" and t.meta["sampling"]["n"] == 5
    recs = _records(ck)
    assert all(len(x["extra"]["samples"]) == 5 and x["extra"]["meaning"] == "exact"
               for x in recs)
    from confroute.eval.benchmarks import get_benchmark

    b = get_benchmark("gsm8k")
    items = {it.id: it for it in b.items(data_dir, "dev")}
    for x in recs:  # the share of samples whose final number differs from the graded answer's
        mine = b.answer_key(x["answer"], items[x["id"]])
        keys = [b.answer_key(s, items[x["id"]]) for s in x["extra"]["samples"]]
        want = np.mean([k is None or mine is None or k != mine for k in keys])
        assert x["signals"]["disagreement"] == pytest.approx(want)
        assert x["signals"]["answer_logprob"] > 0   # minus a mean log-prob
    assert all(x["usage"]["completion_tokens"] <= 96 for x in recs)
    # the samples in draw order replay SE at fewer samples, and adaptive stopping
    pre = tmp_path / "g5.csv"
    _run(_cmd("prefix", "--table", out, "--samples", 5, "--samples", 2, "--out", pre))
    tp = load_table(pre)
    np.testing.assert_allclose(tp.signals["se_n5"], t.signals["se"], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(tp.signals["se_discrete_n5"], t.signals["se_discrete"],
                               rtol=1e-9, atol=1e-12)
    assert np.all(tp.signals["se_discrete_n2"] <= np.log(2) + 1e-12)
    for x, se2 in zip(sorted(recs, key=lambda x: t.ids.index(x["id"])),
                      tp.signals["se_discrete_n2"]):
        a = x["extra"]["sample_clusters"][:2]  # two samples: 0 if they agree, else log 2
        assert se2 == pytest.approx(0.0 if a[0] == a[1] else np.log(2))
    adj = tmp_path / "ad.json"
    _run(_cmd("adaptive", "--table", out, "--threshold", 0.5, "--rule", "exact",
              "--bootstrap", 20, "--out", adj))
    res = json.load(open(adj))["results"][0]
    assert res["identical"] == 1.0 and 3 <= res["mean_samples"] <= 5 and res["n_max"] == 5
    # both sides recorded: nothing runs, the table is the recorded pair on the sampled prompts
    ck2, out2 = tmp_path / "r.jsonl", tmp_path / "r.csv"
    _run(_cmd("build", "--benchmark", "gsm8k", "--data", data_dir, "--limit", 20,
              "--edge", f"recorded:{MIXTRAL}", "--cloud", f"recorded:{GPT4}",
              "--checkpoint", ck2, "--out", out2))
    t2 = load_table(out2)
    assert len(t2) == 20 and not t2.signals and (t2.weak, t2.strong) == (MIXTRAL, GPT4)
    assert _records(ck2) == []


# `build --benchmark nope` loads the default edge and cloud (SmolLM2, Qwen) before it reads the
# benchmark name (cli/eval/build.py: _sides before _plan)
@pytest.mark.models
@pytest.mark.system
def test_build_errors_name_the_problem(data_dir, tmp_path):
    r = subprocess.run(_cmd("build", "--benchmark", "mmlu", "--data", data_dir, "--limit", 2,
                            "--edge", "recorded:nobody", "--cloud", f"recorded:{GPT4}",
                            "--checkpoint", tmp_path / "c", "--out", tmp_path / "o.csv"),
                       capture_output=True, text=True, timeout=300)
    assert r.returncode != 0 and "no recorded outcome of 'nobody'" in r.stderr
    r = subprocess.run(_cmd("build", "--benchmark", "nope", "--data", data_dir,
                            "--checkpoint", tmp_path / "c", "--out", tmp_path / "o.csv"),
                       capture_output=True, text=True, timeout=300)
    assert r.returncode != 0 and "unknown benchmark 'nope'" in r.stderr
