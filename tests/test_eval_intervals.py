"""Replay intervals, signal routers, stratified samples and the Table-1 report (pure logic on
hand-made tables; the live builds with the real models are in test_eval_build.py)."""
import json

import numpy as np
import pytest

from confroute.eval import metrics as M
from confroute.eval.benchmarks import get_benchmark, item_seed, stratified_sample
from confroute.eval.data import load_table
from confroute.eval.items import Item
from confroute.eval.table import OutcomeTable
from confroute.eval.intervals import bootstrap_intervals, mean_intervals, paired_intervals
from confroute.eval.replay import replay
from confroute.eval.router_metrics import sweep
from confroute.eval.router_scores import signal_scores
from confroute.routers.random import RandomRouter


def _table(qw, qs, signals=None, meta=None):
    n = len(qw)
    return OutcomeTable([f"p{i}" for i in range(n)], ["edge", "cloud"],
                        np.stack([qw, qs], 1).astype(float), "edge", "cloud",
                        signals=signals or {}, meta=meta or {})


# ------------------------------------------------------------------------------- intervals

def test_bootstrap_of_a_hand_computable_case():
    # Row A: edge wrong, cloud right; row B: both right. A router that ranks A first.
    # Resamples of 2 rows: {A,A} (1/4): a gap on every row, the curve is the diagonal, APGR
    # 0.5; {B,B} (1/4): no gap, APGR undefined; {A,B}/{B,A} (1/2): A goes first, PGR is 1
    # from share 1/2 on, APGR = 1/4 + 1/2 = 0.75. Percentiles of the defined values: 0.5, 0.75.
    ci = bootstrap_intervals([1.0, 0.0], [0.0, 1.0], [1.0, 1.0], n_boot=4000, seed=1)
    assert ci["apgr"] == [0.5, 0.75]
    # CPT(50%): 0.5 on {A,A} (the diagonal), 0.25 on {A,B} (half of the first half-step).
    assert ci["cpt50"] == [0.25, 0.5] and ci["cpt50_unreached"] == 0.0
    assert ci["no_gap"] == pytest.approx(0.25, abs=0.03)  # {B,B}: no CPT, not "unreached"


def test_bootstrap_on_uniform_gap_is_exact():
    # Every prompt: edge wrong, cloud right. Any order gives the diagonal in every resample.
    ci = bootstrap_intervals(np.linspace(0, 1, 50), np.zeros(50), np.ones(50), n_boot=200)
    assert ci["apgr"] == pytest.approx([0.5, 0.5])
    assert ci["cpt50"] == pytest.approx([0.5, 0.5]) and ci["cpt80"] == pytest.approx([0.8, 0.8])
    assert ci["auroc"] == [None, None]  # every answer wrong: AUROC undefined, not a number


def _apgr_by_hand(s, qw, qs):
    """APGR from first principles: send prompts to the cloud in descending score order, one
    prompt at a time (tied scores as one block), trapezoid over the share."""
    n = len(s)
    gap = qs.mean() - qw.mean()
    order = np.argsort(-s, kind="stable")
    share, qual = [0.0], [qw.mean()]
    k = 0
    while k < n:
        j = k
        while j + 1 < n and s[order[j + 1]] == s[order[k]]:
            j += 1
        k = j + 1
        sent = order[:k]
        q = (qw.sum() - qw[sent].sum() + qs[sent].sum()) / n
        share.append(k / n)
        qual.append(q)
    p = (np.array(qual) - qw.mean()) / gap
    return float(np.sum(np.diff(share) * (p[1:] + p[:-1]) / 2))


def _random_case(seed, n):
    """Random scores and 0/1 outcomes: the edge right 40% of the time, the cloud 80%."""
    rng = np.random.default_rng(seed)
    s = rng.random(n)
    return s, (rng.random(n) < 0.4).astype(float), (rng.random(n) < 0.8).astype(float)


def test_bootstrap_matches_an_independent_computation():
    n = 40
    s, qw, qs = _random_case(5, n)
    ci = bootstrap_intervals(s, qw, qs, n_points=n + 1, n_boot=300, seed=7)
    # The same resamples, drawn the same way, scored with the hand-written APGR.
    draw = np.random.default_rng(7)
    vals = []
    for _ in range(300):
        idx = draw.integers(0, n, n)
        if qs[idx].mean() > qw[idx].mean():
            vals.append(_apgr_by_hand(s[idx], qw[idx], qs[idx]))
    assert ci["apgr"] == pytest.approx(list(np.percentile(vals, [2.5, 97.5])), abs=1e-9)
    # and the point estimate on the full table agrees with the hand version too
    c = sweep(s, qw, qs, n + 1)
    assert M.apgr(c.share, c.quality, qw.mean(), qs.mean()) == pytest.approx(
        _apgr_by_hand(s, qw, qs))


def test_random_is_mean_and_sd_over_seeds_and_overlap_is_marked():
    rng = np.random.default_rng(0)
    n = 200
    qw = (rng.random(n) < 0.4).astype(float)
    qs = (rng.random(n) < 0.8).astype(float)
    good = (qs - qw) + rng.normal(0, 0.3, n)     # knows where the cloud helps
    noise = rng.random(n)                        # knows nothing
    t = _table(qw, qs, {"good": good, "noise": noise})
    rep = replay(t, ["random", "signal:good", "signal:noise"], n_boot=300, random_seeds=10)
    r = {x.label: x.metrics for x in rep.results}
    vals = []
    for seed in range(10):
        c = sweep(RandomRouter(seed).score(list(t.prompts)), qw, qs)
        vals.append(M.apgr(c.share, c.quality, qw.mean(), qs.mean()))
    o = r["random"]["over_seeds"]["apgr"]
    assert o["mean"] == pytest.approx(np.mean(vals)) and o["sd"] == pytest.approx(
        np.std(vals, ddof=1))
    assert r["random"]["apgr"] == pytest.approx(np.mean(vals))
    assert r["signal:good"]["overlaps_random"]["apgr"] is False
    assert r["signal:noise"]["overlaps_random"]["apgr"] is True
    lo, hi = r["signal:good"]["ci"]["apgr"]
    assert lo <= r["signal:good"]["apgr"] <= hi


def test_model_quality_gets_an_interval():
    qw = np.r_[np.ones(30), np.zeros(70)]
    qs = np.r_[np.ones(80), np.zeros(20)]
    (w, s_) = mean_intervals([qw, qs], n_boot=2000, seed=1)
    # the normal approximation of a proportion's interval: p +- 1.96 sqrt(p(1-p)/n)
    for (lo, hi), p in ((w, 0.3), (s_, 0.8)):
        half = 1.96 * np.sqrt(p * (1 - p) / 100)
        assert lo == pytest.approx(p - half, abs=0.02) and hi == pytest.approx(p + half, abs=0.02)
    rep = replay(_table(qw, qs), ["oracle"], n_boot=50, seed=3)
    assert rep.to_json()["weak"]["ci"] == mean_intervals([qw, qs], 50, 3)[0]
    assert "ci" not in replay(_table(qw, qs), ["oracle"]).to_json()["strong"]
    assert mean_intervals([np.ones(5)], n_boot=10) == [[1.0, 1.0]]


def test_paired_difference_uses_the_same_resamples():
    n = 60
    s, qw, qs = _random_case(3, n)
    # Against a constant router (every resample with a gap: the diagonal, APGR 0.5), the
    # difference's interval is the router's own interval shifted by 0.5 -- only if both
    # routers were replayed on the very same resamples.
    d = paired_intervals(s, np.zeros(n), qw, qs, n_boot=300, seed=4)
    own = bootstrap_intervals(s, qw, qs, n_boot=300, seed=4)
    assert d["apgr"]["ci"] == pytest.approx(np.array(own["apgr"]) - 0.5, abs=1e-12)
    c = sweep(s, qw, qs)
    assert d["apgr"]["diff"] == pytest.approx(M.apgr(c.share, c.quality, qw.mean(),
                                                     qs.mean()) - 0.5)
    # a router against itself: no difference in any resample, and never "better"
    same = paired_intervals(s, s, qw, qs, n_boot=100)
    assert same["apgr"] == {"diff": 0.0, "ci": [0.0, 0.0], "a_better": 0.0, "n": 100}


def test_paired_difference_separates_a_good_router_from_a_bad_one():
    rng = np.random.default_rng(0)
    n = 200
    qw = (rng.random(n) < 0.4).astype(float)
    qs = (rng.random(n) < 0.8).astype(float)
    good = (qs - qw) + rng.normal(0, 0.3, n)
    t = _table(qw, qs, {"good": good, "bad": -good, "noise": rng.random(n)})
    rep = replay(t, ["random", "signal:good", "signal:bad", "signal:noise"],
                 random_seeds=5, compare=[("signal:good", "signal:bad"),
                                          ("signal:noise", "signal:good")])
    gb, ng = rep.comparisons
    assert (gb["a"], gb["b"]) == ("signal:good", "signal:bad")
    assert gb["apgr"]["ci"][0] > 0 and gb["apgr"]["a_better"] == 1.0
    assert gb["cpt50"]["diff"] < 0 and gb["cpt50"]["ci"][1] < 0   # good reaches 50% sooner
    assert gb["auroc"]["ci"][0] > 0
    assert ng["apgr"]["ci"][1] < 0 and ng["apgr"]["a_better"] < 0.01
    assert gb["n_boot"] == 1000   # n_boot=0 in replay: comparisons still get intervals
    assert rep.to_json()["comparisons"][0]["a"] == "signal:good"
    for bad, what in [(("signal:good", "nope"), "no router 'nope'"),
                      (("random", "signal:good"), "random over seeds"),
                      (("signal:good", "signal:good"), "against itself")]:
        with pytest.raises(ValueError, match=what):
            replay(t, ["random", "signal:good"], random_seeds=5, compare=[bad])


# ------------------------------------------------------------------------------- signals

def test_signal_router_direction_missing_values_and_errors(tmp_path):
    qw = np.array([1, 1, 0, 0, 1.0])
    qs = np.ones(5)
    lp = np.array([-0.1, -0.2, -3.0, np.nan, -0.5])   # mean logprob: higher = confident
    t = _table(qw, qs, {"mean_token_logprob": lp},
               {"signal_higher": {"mean_token_logprob": "edge"}})
    t.save(tmp_path / "t.csv")
    back = load_table(tmp_path / "t.csv")  # no --weak/--strong: the meta file names them
    assert (back.weak, back.strong) == ("edge", "cloud")
    assert np.isnan(back.signal("mean_token_logprob")[3])
    (label, sc, info), = signal_scores(back, "signals")
    assert label == "signal:mean_token_logprob,higher=edge" and info["n_missing"] == 1
    # the missing prompt first, then the least confident, the most confident last
    assert list(np.argsort(-sc)) == [3, 2, 4, 1, 0]
    rep = replay(back, ["signal:mean_token_logprob,higher=edge"])
    # rows 3, 2 (the edge's two errors) go first: PGR 0.5 at share 0.2, 1 from 0.4 on:
    # APGR = 0.2 * 0.25 + 0.2 * 0.75 + 0.6 * 1 = 0.8
    assert rep.results[0].metrics["apgr"] == pytest.approx(0.8)
    (_, flipped, _), = signal_scores(back, "signal:mean_token_logprob")
    assert flipped[2] < flipped[0]
    with pytest.raises(ValueError, match="no signal 'se_kuhn'"):
        replay(back, ["signal:se_kuhn"])
    with pytest.raises(ValueError, match="higher must be"):
        replay(back, ["signal:mean_token_logprob,higher=up"])
    with pytest.raises(ValueError, match="no signal columns"):
        replay(_table(qw, qs), ["signals"])


# ------------------------------------------------------------------------------- sampling

def test_stratified_sample_is_seeded_proportional_and_nested():
    sizes = {"a": 61, "b": 29, "c": 7, "d": 3}
    items = [Item(f"{g}{i}", f"q {g} {i}", "A", g) for g, k in sizes.items() for i in range(k)]
    N = len(items)
    for seed in range(5):
        order = stratified_sample(items, N, seed=seed)
        assert sorted(x.id for x in order) == sorted(x.id for x in items)
        for n in (1, 7, 20, 33, 64, 99):  # every prefix is stratified: within 2 per group
            groups = [x.group for x in order[:n]]
            for g, k in sizes.items():
                assert abs(groups.count(g) - n * k / N) < 2, (seed, n, g)
    s = stratified_sample(items, 20, seed=3)
    assert [x.id for x in s] == [x.id for x in stratified_sample(items, 20, seed=3)]
    assert [x.id for x in s] != [x.id for x in stratified_sample(items, 20, seed=4)]
    assert [x.id for x in stratified_sample(items, 40, seed=3)][:20] == [x.id for x in s]
    assert sorted(x.id for x in stratified_sample(items, 500, seed=0)) == sorted(
        x.id for x in items)
    with pytest.raises(ValueError, match="sample size"):
        stratified_sample(items, 0)
    assert item_seed(0, "a1") == item_seed(0, "a1") != item_seed(1, "a1")


@pytest.mark.data
def test_mmlu_sample_spans_subjects_and_drops_contaminated(data_dir):
    b = get_benchmark("mmlu")
    every = b.items(data_dir, include_contaminated=True)
    clean = b.items(data_dir)
    assert len(clean) < len(every)  # the contaminated prompts are gone by default
    n = min(300, len(clean) // 2)
    s = stratified_sample(clean, n, seed=0)
    subjects = {x.group for x in s}
    # every subject (the shared data's 57), not those of the first n rows (4 of the shared's)
    assert len(s) == n and subjects == {x.group for x in clean}
    assert all(dict(x.recorded).keys() >= {"gpt-4-1106-preview"} for x in s)
    p = b.prompt(s[0])
    assert p.cue == "Answer:" and p.messages[0]["role"] == "system"
    shots = [m for m in p.messages[1:-1] if m["role"] == "assistant"]
    assert 1 <= len(shots) <= 5 and all(m["content"][-1] in "ABCD" for m in shots)
    assert s[0].prompt.rstrip()[:-len("Answer:")].rstrip() == p.messages[-1]["content"]
    assert all(m["content"] != p.messages[-1]["content"] for m in p.messages[1:-1])


# ------------------------------------------------------------------------------- report

def test_report_writes_table1(tmp_path):
    from confroute.cli.eval.replay import jsonable
    from confroute.eval.report import write_report

    rng = np.random.default_rng(1)
    n = 150
    qw = (rng.random(n) < 0.3).astype(float)
    qs = (rng.random(n) < 0.9).astype(float)
    t = _table(qw, qs, {"se_kuhn": (qs - qw) + rng.normal(0, 0.5, n)})
    folders = []
    for name in ("mmlu", "gsm8k"):
        rep = replay(t, ["random", "oracle", "signals"], n_boot=100, random_seeds=5)
        d = tmp_path / name
        d.mkdir()
        out = jsonable(rep.to_json())
        out["cost_per_query_at_share"] = {"0": 1.0, "0.5": 2.0, "1": 3.0}
        out["cost_edge_samples"] = 6
        (d / "metrics.json").write_text(json.dumps(out))
        folders.append(str(d))
    paths = write_report(folders, str(tmp_path / "r"))
    md = open(paths["markdown"]).read()
    lines = [l for l in md.splitlines() if l.startswith("| ")]
    assert lines[0].count("CPT(50%)") == 2 and lines[0].count("APGR") == 2
    rows = [l.split(" | ")[0].strip("| ") for l in lines[1:4]]
    assert rows == ["random", "oracle", "signal:se_kuhn"]
    assert " ± " in lines[1] and "[" in lines[2]
    assert "| mmlu | 6 | 1 | 2 | 3 |" in md
    assert open(paths["png"], "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="no metrics.json"):
        write_report([str(tmp_path)], str(tmp_path / "x"))


def test_bad_bootstrap_settings_are_clear_errors():
    s, qw, qs = _random_case(0, 10)
    for fn, args in [(bootstrap_intervals, (s, qw, qs)), (paired_intervals, (s, s, qw, qs))]:
        with pytest.raises(ValueError, match="n_boot must be >= 2, got 1"):
            fn(*args, n_boot=1)
        with pytest.raises(ValueError, match=r"level must be in \(0, 1\), got 1.5"):
            fn(*args, n_boot=10, level=1.5)
    with pytest.raises(ValueError, match="n_boot must be >= 2, got 0"):
        mean_intervals([qw], n_boot=0)
