"""A chain of tiers replayed and calibrated on a hand-computed table of four prompts
(confroute.eval.chain), joined from two outcome tables, and through `confroute eval chain` and
`confroute calibrate --tier`.

The table: tiers small -> mid -> big; small's signal [.1 .5 .6 .9], mid's [.2 .1 .8 .9];
quality small [1 0 0 0], mid [0 1 1 0], big [1 1 1 1]. With pass shares {0, .5, 1}:

  p1  p2  | answered by (small, mid, big)   | quality | cost (attempts)
  0   any | all small                       | .25     | 1
  .5  0   | a b small; c d mid              | .50     | 1.5
  .5  .5  | a b small; c mid; d big         | .75     | 1.75
  .5  1   | a b small; c d big              | .75     | 2
  1   0   | all mid                         | .50     | 2
  1   .5  | a b mid; c d big                | .75     | 2.5
  1   1   | all big                         | 1       | 3

The frontier over cost normalized to [0, 1] ((c - 1) / 2): (0, .25), (.25, .5), (.375, .75),
(1, 1); PGR 0, 1/3, 2/3, 1; APGR = .25 * 1/6 + .125 * 1/2 + .625 * 5/6 = 0.625.
"""
from __future__ import annotations

import json

import numpy as np
import pytest

from confroute.eval.chain import (best_at_share, chain_intervals, chain_metrics, chain_scores,
                                  grid_points, join_tables, pass_threshold, served_thresholds,
                                  tier_spec)
from confroute.eval.table import OutcomeTable

IDS = ("a", "b", "c", "d")
SMALL, MID, BIG = [1, 0, 0, 0], [0, 1, 1, 0], [1, 1, 1, 1]


def tables():
    """Two tables as eval build writes them: small vs recorded big with small's signals, and
    mid vs big with mid's (in another row order, with one row the first lacks)."""
    t1 = OutcomeTable(IDS, ("small", "big"), np.array([SMALL, BIG]).T, "small", "big",
                      name="smol", ids=IDS, signals={"answer_logprob": [.1, .5, .6, .9]},
                      meta={"signals_from": "small"})
    order = [3, 2, 1, 0]
    t2 = OutcomeTable([IDS[i] for i in order] + ["e"], ("mid", "big"),
                      np.array([[MID[i] for i in order] + [1], [BIG[i] for i in order] + [1]]).T,
                      "mid", "big", name="qwen", ids=[IDS[i] for i in order] + ["e"],
                      signals={"answer_logprob": [[.2, .1, .8, .9][i] for i in order] + [0]},
                      meta={"signals_from": "mid"})
    return t1, t2


TIERS = [("small", "answer_logprob"), ("mid", "answer_logprob"), ("big", None)]


def scores():
    return chain_scores(join_tables(tables()), TIERS)


def test_join_keeps_the_shared_ids_and_names_signals_after_their_model():
    t = join_tables(tables())
    assert t.ids == IDS and t.models == ("small", "big", "mid")
    assert sorted(t.signals) == ["answer_logprob@mid", "answer_logprob@small"]
    assert list(t.signal("answer_logprob@mid")) == [.2, .1, .8, .9]
    assert list(t.column("mid")) == MID
    bad = OutcomeTable(IDS, ("big", "x"), np.array([[0, 0, 0, 0], SMALL]).T, "x", "big",
                       ids=IDS)
    with pytest.raises(ValueError, match="'big' is in two tables"):
        join_tables([tables()[0], bad])
    with pytest.raises(ValueError, match="share no prompt id"):
        join_tables([tables()[0], OutcomeTable(["q"], ("x", "y"), [[0, 1]], "x", "y",
                                               ids=["q"])])


def test_a_tier_reads_its_own_models_signal():
    t1, _ = tables()
    cs = chain_scores(t1, [("small", "router-answer_logprob"), ("big", None)])
    assert list(cs.scores[:, 0]) == [.1, .5, .6, .9] and cs.signals == ("answer_logprob",)
    with pytest.raises(ValueError, match="no signal 'answer_logprob' of model 'big'"):
        chain_scores(join_tables(tables()), [("big", "answer_logprob"), ("mid", None)])
    assert tier_spec("big", ("small", "big")) == ("big", None)
    assert tier_spec("small:answer_logprob", ("small", "big")) == ("small", "answer_logprob")
    with pytest.raises(ValueError, match="MODEL:SIGNAL"):
        tier_spec("nothing", ("small", "big"))


def test_pass_threshold_moves_ties_together_and_nan_climbs():
    s = np.array([.1, .5, .5, .9])
    assert pass_threshold(s, 0) == .9 and pass_threshold(s, 1) == -np.inf
    assert pass_threshold(s, .25) == .5            # only .9 climbs
    assert pass_threshold(s, .5) == .5             # the tie at .5 stays together
    assert pass_threshold(np.array([np.nan, .3]), 0) == .3   # NaN climbs anyway


def test_the_grid_routes_as_computed_by_hand():
    pts = {p.pass_shares: p for p in grid_points(scores(), step=0.5)}
    want = {(0.5, 0.0): (.5, 1.5, (.5, .5, 0)), (0.5, 0.5): (.75, 1.75, (.5, .25, .25)),
            (0.5, 1.0): (.75, 2.0, (.5, 0, .5)), (1.0, 0.0): (.5, 2.0, (0, 1, 0)),
            (1.0, 0.5): (.75, 2.5, (0, .5, .5)), (1.0, 1.0): (1.0, 3.0, (0, 0, 1)),
            (0.0, 0.5): (.25, 1.0, (1, 0, 0))}
    for key, (q, c, ans) in want.items():
        p = pts[key]
        assert (p.quality, p.cost) == pytest.approx((q, c)), key
        assert p.answered == pytest.approx(ans), key
    assert pts[(0.5, 0.5)].thresholds == (.5, .8)
    assert pts[(0.5, 0.5)].reached == pytest.approx((1, .5, .25))


def test_the_allocation_rule_and_the_apgr_over_cost():
    cs = scores()
    pts = grid_points(cs, step=0.5)
    assert best_at_share(pts, 0.25).pass_shares == (0.5, 0.5)
    assert best_at_share(pts, 0.5).pass_shares == (0.5, 0.5)    # same quality, cheaper
    assert best_at_share(pts, 0.0).pass_shares == (0.5, 0.0)
    assert best_at_share(pts, 1.0).quality == 1.0
    assert served_thresholds(cs, best_at_share(pts, 0.25)) == [.5, .8]
    m, _ = chain_metrics(cs, [0.25], step=0.5)
    assert m["apgr"] == pytest.approx(0.625)
    assert m["frontier"]["cost"] == pytest.approx([0, .25, .375, 1])
    assert m["at_cloud_share"]["0.25"]["quality"] == .75
    ci = chain_intervals(cs, [0.25], step=0.5, n_boot=50, seed=1)
    assert ci["n_boot"] == 50 and len(ci["apgr"]) == 2
    assert ci["q@0.25"][0] <= ci["q@0.25"][1]
    costly = chain_scores(join_tables(tables()), TIERS, cost=[1, 2, 10])
    assert best_at_share(grid_points(costly, 0.5), 0.25).cost == pytest.approx(1 + 1 + 2.5)


def test_eval_chain_and_calibrate_on_the_joined_tables(tmp_path, capsys):
    from confroute.cli import main

    t1, t2 = tables()
    t1.save(tmp_path / "smol.csv")
    t2.save(tmp_path / "qwen.csv")
    chain = ["--table", str(tmp_path / "smol.csv"), "--join", str(tmp_path / "qwen.csv"),
             "--tier", "small:answer_logprob", "--tier", "mid:answer_logprob",
             "--tier", "big", "--step", "0.5"]
    out = tmp_path / "out"
    assert main(["eval", "chain", *chain, "--out", str(out), "--shares", "0.25",
                 "--bootstrap", "20"]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["apgr"] == pytest.approx(0.625) and len(m["tiers"]) == 3
    assert [t["quality"] for t in m["tiers"]] == [.25, .5, 1.0]
    assert "apgr" in m["ci"] and "tier 3: big" in capsys.readouterr().out
    assert (out / "grid.csv").read_text().startswith("pass1,pass2,threshold1")
    head = (out / "chain_table.csv").read_text().splitlines()[0]
    assert head.endswith("small,mid,big,signal:answer_logprob@small,signal:answer_logprob@mid")
    assert main(["calibrate", *chain, "--cloud-share", "0.25", "--json"]) == 0
    c = json.loads(capsys.readouterr().out)
    assert [t["router"] for t in c["tiers"]] == ["router-answer_logprob-0.5",
                                                 "router-answer_logprob-0.8"]
    assert c["answered"] == [.5, .25, .25] and c["server_config_chain"]["tiers"][0]["edge"] \
        == "small"
    no_last = chain[:-4] + chain[-2:]
    assert main(["calibrate", *no_last, "--cloud-share", "0.25"]) == 2
    assert "the last, which is MODEL alone" in capsys.readouterr().err
