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
from test_eval_data import DATA

pytestmark = pytest.mark.skipif(DATA is None, reason="shared/data not found")
GPT4 = "gpt-4-1106-preview"
MIXTRAL = "mistralai/Mixtral-8x7B-Instruct-v0.1"
CLI = ("import sys\nfrom confroute.cli import main\nsys.exit(main(sys.argv[1:]))\n")

MMLU_SIGNALS = {"se_discrete", "se_weighted", "se_kuhn", "n_clusters", "exact_se_discrete",
                "exact_se_weighted", "exact_se_kuhn", "exact_n_clusters", "mean_token_logprob",
                "max_sequence_prob", "perplexity", "option_entropy", "letter_mass",
                "top_letter_prob"}


def _cmd(*args):
    return [sys.executable, "-c", CLI, "eval", *map(str, args)]


def _mmlu(ck, out, limit=3):
    return _cmd("build", "--benchmark", "mmlu", "--data", DATA, "--limit", limit, "--seed", 4,
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


def test_live_edge_against_recorded_cloud_resumes_and_replays(tmp_path):
    full_ck, full_out = tmp_path / "full.jsonl", tmp_path / "full.csv"
    _run(_mmlu(full_ck, full_out))
    ck, out = tmp_path / "ck.jsonl", tmp_path / "t.csv"
    _kill_after_first_record(_mmlu(ck, out), ck)
    assert not out.exists() and 1 <= len(_records(ck)) < 3
    r = _run(_mmlu(ck, out))
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

    rec = load_mmlu(DATA)
    by_prompt = dict(zip(rec.prompts, rec.column(GPT4)))
    assert [by_prompt[p] for p in t.prompts] == t.column(GPT4).tolist()
    # the letter distribution is a distribution; its mass a probability
    assert np.all((t.signals["letter_mass"] > 0) & (t.signals["letter_mass"] <= 1))
    assert np.all(t.signals["option_entropy"] <= np.log(4) + 1e-9)
    assert np.all(t.signals["exact_n_clusters"] >= 1) and np.all(t.signals["exact_n_clusters"] <= 3)
    letters = [x["extra"]["letter_probs"] for x in recs]
    assert all(abs(sum(d.values()) - 1) < 1e-9 for d in letters)
    assert all(x["answer"] == max(x["extra"]["letter_probs"], key=x["extra"]["letter_probs"].get)
               for x in recs)
    assert "signals:" in r.stdout

    rep = tmp_path / "rep"
    _run(_cmd("replay", "--table", out, "--router", "random", "--router", "signals",
              "--router", "signal:letter_mass,higher=edge", "--bootstrap", 50,
              "--random-seeds", 3, "--no-plot", "--out", rep))
    m = json.load(open(rep / "metrics.json"))
    assert m["weak"]["model"] == "smollm2-135m-instruct" and m["strong"]["model"] == GPT4
    sig = [k for k in m["routers"] if k.startswith("signal:")]
    assert len(sig) == len(MMLU_SIGNALS) + 1
    assert "signal:letter_mass,higher=edge" in m["routers"]
    for k in sig:
        assert set(m["routers"][k]["ci"]) >= {"apgr", "cpt20", "cpt50", "cpt80", "auroc"}
    assert m["routers"]["random"]["over_seeds"]["seeds"] == 3


def test_gsm8k_edge_signals_and_two_recorded_sides(tmp_path):
    ck, out = tmp_path / "g.jsonl", tmp_path / "g.jsonl.csv"
    _run(_cmd("build", "--benchmark", "gsm8k", "--data", DATA, "--limit", 2, "--samples", 5,
              "--max-tokens", 96, "--edge", "smollm2-135m-instruct",
              "--cloud", f"recorded:{MIXTRAL}", "--checkpoint", ck, "--out", out))
    t = load_table(out)
    assert t.strong == MIXTRAL and len(t) == 2
    assert {"exact_se_discrete", "exact_se_kuhn", "se_kuhn", "perplexity",
            "greedy_disagreement", "answer_mean_logprob"} <= set(t.signals)
    recs = _records(ck)
    assert all(len(x["extra"]["sample_answers"]) == 5 for x in recs)
    from confroute.eval.benchmarks import get_benchmark

    b = get_benchmark("gsm8k")
    items = {it.id: it for it in b.items(DATA, "dev")}
    for x in recs:  # the share of samples whose final number differs from the graded answer's
        mine = b.answer_key(x["answer"], items[x["id"]])
        want = np.mean([k is None or k != mine for k in x["extra"]["sample_answers"]])
        assert x["signals"]["greedy_disagreement"] == pytest.approx(want)
        assert x["signals"]["answer_mean_logprob"] < 0
    assert all(x["usage"]["completion_tokens"] <= 96 for x in recs)
    # the samples in draw order replay SE at fewer samples, and adaptive stopping
    pre = tmp_path / "g5.csv"
    r = _run(_cmd("prefix", "--table", out, "--samples", 5, "--samples", 2, "--out", pre))
    tp = load_table(pre)
    np.testing.assert_allclose(tp.signals["exact_se_kuhn_n5"], t.signals["exact_se_kuhn"],
                               rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(tp.signals["exact_se_discrete_n5"],
                               t.signals["exact_se_discrete"], rtol=1e-9, atol=1e-12)
    assert np.all(tp.signals["exact_se_discrete_n2"] <= np.log(2) + 1e-12)
    from confroute.eval.prefix import _ids_of

    for x, se2 in zip(sorted(recs, key=lambda x: t.ids.index(x["id"])),
                      tp.signals["exact_se_discrete_n2"]):
        a = x["extra"]["sample_answers"][:2]  # two samples: 0 if they agree, else log 2
        assert se2 == pytest.approx(0.0 if len(set(_ids_of(a))) == 1 else np.log(2))
    adj = tmp_path / "ad.json"
    _run(_cmd("adaptive", "--table", out, "--threshold", 0.5, "--rule", "exact",
              "--bootstrap", 20, "--out", adj))
    res = json.load(open(adj))["results"][0]
    assert res["identical"] == 1.0 and 3 <= res["mean_samples"] <= 5 and res["n_max"] == 5
    # both sides recorded: nothing runs, the table is the recorded pair on the sampled prompts
    ck2, out2 = tmp_path / "r.jsonl", tmp_path / "r.csv"
    _run(_cmd("build", "--benchmark", "gsm8k", "--data", DATA, "--limit", 20,
              "--edge", f"recorded:{MIXTRAL}", "--cloud", f"recorded:{GPT4}",
              "--checkpoint", ck2, "--out", out2))
    t2 = load_table(out2)
    assert len(t2) == 20 and not t2.signals and (t2.weak, t2.strong) == (MIXTRAL, GPT4)
    assert _records(ck2) == []


def test_build_errors_name_the_problem(tmp_path):
    r = subprocess.run(_cmd("build", "--benchmark", "mmlu", "--data", DATA, "--limit", 2,
                            "--edge", "recorded:nobody", "--cloud", f"recorded:{GPT4}",
                            "--checkpoint", tmp_path / "c", "--out", tmp_path / "o.csv"),
                       capture_output=True, text=True, timeout=300)
    assert r.returncode != 0 and "no recorded outcome of 'nobody'" in r.stderr
    r = subprocess.run(_cmd("build", "--benchmark", "nope", "--data", DATA,
                            "--checkpoint", tmp_path / "c", "--out", tmp_path / "o.csv"),
                       capture_output=True, text=True, timeout=300)
    assert r.returncode != 0 and "unknown benchmark 'nope'" in r.stderr
