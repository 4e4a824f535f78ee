"""`confroute eval crossfit`: trained routers scored out of fold on the table they learn from,
on the real MiniLM embedder and the real SmolLM2 hidden states."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from confroute.eval.crossfit import crossfit, edge_hidden, folds_of, label_rows, with_signal
from confroute.eval.metrics import auroc
from confroute.eval.table import OutcomeTable

# two kinds of prompt the edge's hidden state tells apart at once; the table says the edge
# fails the arithmetic ones
SUMS = [f"What is {a} times {b} plus {c}?" for a, b, c in
        [(17, 23, 5), (41, 12, 9), (88, 7, 3), (36, 29, 14), (52, 61, 8), (73, 19, 2),
         (94, 38, 11), (27, 46, 6), (65, 84, 13), (19, 57, 4), (83, 26, 17), (48, 71, 1)]]
CAPITALS = [f"What is the capital of {c}?" for c in
            ["France", "Japan", "Kenya", "Peru", "Norway", "Egypt", "Canada", "Chile",
             "Greece", "India", "Spain", "Ghana"]]


def _table(prompts, q_weak, q_strong, signals=None):
    return OutcomeTable(prompts, ("edge", "cloud"), np.c_[q_weak, q_strong], "edge", "cloud",
                        name="t", signals=signals or {})


def test_folds_are_stratified_disjoint_and_cover_every_prompt():
    y = np.array([0] * 12 + [1] * 8)
    folds = folds_of(y, 4, seed=0)
    seen = np.concatenate([te for _, te in folds])
    assert sorted(seen.tolist()) == list(range(20))
    for tr, te in folds:
        assert not set(tr) & set(te)
        assert y[te].sum() == 2  # 8 positives over 4 folds
    with pytest.raises(ValueError, match="5 positives"):
        folds_of(np.array([0] * 10 + [1] * 5), 6, seed=0)
    with pytest.raises(ValueError, match="folds must be"):
        folds_of(y, 1, seed=0)


def test_label_rows_follow_each_target():
    t = _table(["a", "b", "c"], [1, 0, 0], [1, 1, 0], {"se_kuhn": np.array([0.1, 0.9, 0.5])})
    acc = label_rows(t, [0, 1, 2], "accuracy", t.q_strong - t.q_weak)
    assert [(r["winner_model_a"], r["winner_model_b"], r["winner_tie"]) for r in acc] == \
        [(0, 0, 1), (0, 1, 0), (0, 0, 1)]
    err = label_rows(t, [0, 1, 2], "error", (t.q_weak < 0.5).astype(float))
    assert [r["winner_model_b"] for r in err] == [0, 1, 1]
    se = label_rows(t, [0, 1, 2], "se", t.signal("se_kuhn"), split=0.5)
    assert [r["winner_model_b"] for r in se] == [0, 1, 0]
    assert [r["se_weak"] for r in se] == [0.1, 0.9, 0.5]


def test_an_out_of_fold_router_cannot_read_its_own_label(embedder):
    # Labels drawn at random: a 1-nearest-neighbour router that saw each prompt would score
    # it with its own label (AUROC 1); out of fold it can only guess.
    prompts = SUMS + CAPITALS
    y = np.random.default_rng(7).permutation([0] * 12 + [1] * 12)
    t = _table(prompts, 1 - y, np.ones(24))
    scores, info = crossfit(t, "knn", "error", folds=4, params={"k": 1}, embedder=embedder)
    assert np.isfinite(scores).all() and scores.min() >= 0 and scores.max() <= 1
    assert [f["n_train"] for f in info["fold_info"]] == [18] * 4
    assert auroc(scores, 1 - y) < 0.9  # in-fold it would be exactly 1.0


def test_sep_probe_out_of_fold_on_real_hidden_states(hidden_edge, tmp_path):
    prompts = SUMS + CAPITALS
    fails = np.array([1] * 12 + [0] * 12)
    t = _table(prompts, 1 - fails, np.ones(24))
    cache = str(tmp_path / "h.npz")
    H = edge_hidden(t, hidden_edge, cache)
    assert H.shape == (24, hidden_edge.n_layer + 1, hidden_edge.n_embd)
    scores, info = crossfit(t, "sep", "error", folds=4, hidden=H, params={"layer": 9})
    assert [f["layer"] for f in info["fold_info"]] == [9] * 4
    # every prompt scored by a probe that never saw it, and the kinds are told apart
    assert auroc(scores, 1 - fails) > 0.9
    # the cache gives the same states back (the second call needs no prefill of these)
    H2 = edge_hidden(t, hidden_edge, cache)
    np.testing.assert_array_equal(H, H2)
    with pytest.raises(ValueError, match="se' or 'error"):
        crossfit(t, "sep", "accuracy", folds=4, hidden=H)
    with pytest.raises(ValueError, match="needs the edge's hidden states"):
        crossfit(t, "sep", "error", folds=4)


def test_se_target_uses_each_training_folds_split(embedder):
    prompts = SUMS + CAPITALS
    se = np.r_[np.linspace(1.0, 1.6, 12), np.linspace(0.0, 0.3, 12)]
    t = _table(prompts, np.zeros(24), np.ones(24), {"se_kuhn": se})
    scores, info = crossfit(t, "mlp", "se", folds=3, embedder=embedder)
    # each split is the largest low SE of its own training folds: it separates the two kinds
    assert all(0.0 <= f["se_split"] <= 0.3 for f in info["fold_info"])
    assert len({f["se_split"] for f in info["fold_info"]}) > 1
    assert info["se_signal"] == "se_kuhn"
    t2 = with_signal(t, "cv_mlp_se", scores, info)
    assert t2.signal_higher("cv_mlp_se") == "cloud"
    with pytest.raises(ValueError, match="already has a signal"):
        with_signal(t2, "cv_mlp_se", scores)
    bad = _table(prompts, np.zeros(24), np.ones(24), {"se_kuhn": np.r_[se[:-1], np.nan]})
    with pytest.raises(ValueError, match="missing on 1 prompts"):
        crossfit(bad, "mlp", "se", folds=3, embedder=embedder)


@pytest.mark.models
@pytest.mark.system
def test_cli_adds_columns_keeps_the_input_and_replays(tmp_path):
    prompts = SUMS + CAPITALS
    src = tmp_path / "t.csv"
    y = np.array([1] * 12 + [0] * 12)
    _table(prompts, 1 - y, np.ones(24), {"se_kuhn": y * 1.0 + 0.1}).save(str(src))
    before = src.read_bytes()
    out = tmp_path / "cv.csv"
    cli = [sys.executable, "-m", "confroute.cli", "eval", "crossfit", "--table", str(src)]
    r = subprocess.run(cli + ["--router", "mlp", "--target", "error", "--target", "se",
                              "--folds", "3", "--out", str(out)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    assert src.read_bytes() == before
    head = out.read_text().splitlines()[0].split(",")
    assert "signal:cv_mlp_error" in head and "signal:cv_mlp_se" in head
    rep = tmp_path / "rep"
    r = subprocess.run([sys.executable, "-m", "confroute.cli", "eval", "replay", "--table",
                        str(out), "--router", "signal:cv_mlp_error", "--out", str(rep),
                        "--no-plot", "--bootstrap", "50"], capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stderr
    m = json.loads((rep / "metrics.json").read_text())
    assert "signal:cv_mlp_error" in json.dumps(m)
    for extra, msg in ((["--router", "mlp", "--out", str(src)], "must differ"),
                       (["--router", "sep", "--target", "error", "--out", str(out)],
                        "needs --edge")):
        r = subprocess.run(cli + extra, capture_output=True, text=True, timeout=600)
        assert r.returncode != 0 and msg in r.stderr, r.stderr
    assert src.read_bytes() == before
