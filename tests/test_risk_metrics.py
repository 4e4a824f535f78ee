"""Risk-coverage and AURC, the deferral curve's area (AUDC, nAUDC), calls saved at
iso-quality, the calibrated P(edge correct) (cross-fitted isotonic regression, ECE, Brier), the
length baseline, and how they reach `eval replay` and `eval report`. Every expected value is
worked by hand in the comments; no model, no data.

The toy of test_metrics: weak quality [1, 0, 0, 1] (mean 0.5), strong [1, 1, 1, 0] (mean
0.75), router scores [0.4, 0.9, 0.1, 0.6] (higher = cloud = the edge less sure).
"""
import json
import math
from types import SimpleNamespace

import numpy as np
import pytest

from confroute.eval import metrics as M
from confroute.eval.table import OutcomeTable
from confroute.eval.intervals import paired_intervals
from confroute.eval.replay import replay
from confroute.eval.router_scores import answer_length_scores

QW = np.array([1.0, 0, 0, 1])
QS = np.array([1.0, 1, 1, 0])
SCORES = np.array([0.4, 0.9, 0.1, 0.6])
LOSS = 1 - QW  # the edge's loss: [0, 1, 1, 0]


# ------------------------------------------------------------------------------- risk-coverage


def test_risk_coverage_and_aurc_by_hand():
    # Kept on the edge by ascending score: p3 (loss 1), p1 (0), p4 (0), p2 (1).
    # Risk of the k kept: 1/1, 1/2, 1/3, 2/4 at coverage .25, .5, .75, 1.
    cov, risk = M.risk_coverage(SCORES, LOSS)
    assert cov.tolist() == [0.25, 0.5, 0.75, 1.0]
    assert risk.tolist() == pytest.approx([1, 1 / 2, 1 / 3, 1 / 2])
    # AURC = (1 + 1/2 + 1/3 + 1/2) / 4 = 7/12, which is 1 - AURAC (5/12 in test_metrics).
    assert M.aurc(SCORES, LOSS) == pytest.approx(7 / 12)
    assert M.aurc(SCORES, LOSS) == pytest.approx(1 - M.aurac(SCORES, QW))
    # The oracle keeps the two losses of 0 first: 0, 0, 1/3, 1/2 -> 5/24; eAURC 7/12 - 5/24.
    assert M.eaurc(SCORES, LOSS) == pytest.approx(3 / 8)
    assert M.eaurc(LOSS, LOSS) == pytest.approx(0.0)


def test_risk_coverage_averages_ties():
    # 0.2 (loss 0) first, then the tie at 0.5 counts 1/2 each: risks 0, 1/4, 1/3 -> 7/36.
    u, l = np.array([0.5, 0.5, 0.2]), np.array([1.0, 0, 0])
    assert M.risk_coverage(u, l)[1].tolist() == pytest.approx([0, 1 / 4, 1 / 3])
    assert M.aurc(u, l) == pytest.approx(7 / 36)
    assert M.aurc(u[[1, 0, 2]], l[[1, 0, 2]]) == pytest.approx(7 / 36)  # order-free


# ------------------------------------------------------------------------------- deferral


def test_audc_and_naudc_by_hand():
    # Cloud first by descending score: p2 (gain +1), p4 (-1), p1 (0), p3 (+1):
    # quality .5, .75, .5, .5, .75 at shares 0 .. 1 (each step 1/4).
    share, q = M.deferral_curve(SCORES, QW, QS)
    assert share.tolist() == [0, 0.25, 0.5, 0.75, 1]
    assert q.tolist() == pytest.approx([0.5, 0.75, 0.5, 0.5, 0.75])
    # Trapezoids: .25 * (.625 + .625 + .5 + .625) = .59375.
    assert M.audc(SCORES, QW, QS) == pytest.approx(0.59375)
    # APGR is AUDC rescaled: (.59375 - .5) / .25 = .375 (test_metrics' APGR).
    assert (M.audc(SCORES, QW, QS) - 0.5) / 0.25 == pytest.approx(0.375)
    # Oracle: gains +1, +1, 0, -1 -> .5, .75, 1, 1, .75 -> .25 * (.625+.875+1+.875) = .84375.
    # Worst: -1, 0, +1, +1 -> .5, .25, .25, .5, .75 -> .25 * (.375+.25+.375+.625) = .40625
    # (= q_weak + q_strong - oracle). nAUDC = (.59375 - .40625) / (.84375 - .40625) = 3/7.
    assert M.naudc(SCORES, QW, QS) == pytest.approx(3 / 7)
    assert M.naudc(QS - QW, QW, QS) == pytest.approx(1.0)
    assert M.naudc(QW - QS, QW, QS) == pytest.approx(0.0)
    # All tied = random tie-breaking: the straight line, area .625 -> (.625-.40625)/.4375 = .5.
    assert M.naudc(np.full(4, 0.3), QW, QS) == pytest.approx(0.5)
    # Every prompt with the same gain: nothing to order.
    assert math.isnan(M.naudc(SCORES, QW, QW))


def test_calls_saved_at_iso_quality_by_hand():
    share = np.array([0, 0.25, 0.5, 0.75, 1])
    q = np.array([0.5, 0.75, 0.5, 0.5, 0.75])
    # 95% of all-cloud .75 = .7125, first reached inside [0, .25]: (.7125 - .5) / (.75 - .5)
    # = .85 of the way -> share .2125, calls saved .7875.
    assert M.share_at_quality(share, q, 0.7125) == pytest.approx(0.2125)
    assert M.calls_saved(share, q, 0.75) == pytest.approx(0.7875)
    assert M.calls_saved(share, q, 0.75, level=1.0) == pytest.approx(0.75)
    # The edge alone (.5) already reaches 50% of .75: no cloud call needed.
    assert M.calls_saved(share, q, 0.75, level=0.5) == 1.0
    # From a floor of .5: target .5 + .5 * .25 = .625, halfway up the first step -> .875.
    assert M.calls_saved(share, q, 0.75, level=0.5, floor=0.5) == pytest.approx(0.875)
    assert math.isnan(M.calls_saved([0, 1], [0.5, 0.4], 1.0))  # .95 never reached


# ------------------------------------------------------------------------------- calibration


def test_brier_and_equal_mass_ece_by_hand():
    p, y = np.array([0.8, 0.2, 0.5, 1.0]), np.array([1.0, 0, 1, 1])
    # (.2^2 + .2^2 + .5^2 + 0) / 4 = .33 / 4
    assert M.brier(p, y) == pytest.approx(0.0825)
    # Sorted: .2 (0), .5 (1) | .8 (1), 1.0 (1): |.5 - .35| and |1 - .9| -> (.15 + .1) / 2.
    assert M.ece(p, y, bins=2) == pytest.approx(0.125)
    # One prompt per bin: (.2 + .5 + .2 + 0) / 4.
    assert M.ece(p, y, bins=4) == pytest.approx(0.225)
    assert M.ece(p, y, bins=10) == pytest.approx(0.225)  # never more bins than prompts
    # Five prompts in two bins of 3 and 2: |1/3 - .2| * 3/5 + |1 - .45| * 2/5 = .08 + .22.
    assert M.ece([0.1, 0.2, 0.3, 0.4, 0.5], [0, 0, 1, 1, 1], bins=2) == pytest.approx(0.30)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        M.brier([1.5], [1])


def test_isotonic_is_cross_fitted_by_hand():
    # Leave-one-out (folds = n): each prompt is predicted by the non-increasing fit of the
    # other three, interpolated linearly, ends clipped.
    # p1 (.1): fit .2->1 .3->0 .4->0, below the range -> 1.
    # p2 (.2): fit .1->1 .3->0 .4->0, halfway from .1 to .3 -> .5.   p3 (.3): likewise .5.
    # p4 (.4): fit .1->1 .2->1 .3->0, above the range -> 0.
    s, y = np.array([0.1, 0.2, 0.3, 0.4]), np.array([1.0, 1, 0, 0])
    p = M.isotonic_crossfit(s, y, folds=4)
    assert p.tolist() == pytest.approx([1, 0.5, 0.5, 0])
    # An in-sample fit would be [1, 1, 0, 0] with Brier 0; cross-fitted: (.25 + .25) / 4.
    assert M.brier(p, y) == pytest.approx(0.125)
    # With pooling: y 1 0 1 0 0 at .1 .. .5.
    # p1: fit on .2->0 .3->1 .4->0 .5->0 pools .2,.3 to .5 -> clip at .1 -> .5.
    # p2: fit .1->1 .3->1 .4->0 .5->0 -> 1 at .2.   p3: fit 1 0 . 0 0 -> 0 at .3.
    # p4: fit .1->1, .2/.3 pooled .5, .5->0 -> halfway from .3 (.5) to .5 (0) -> .25.
    # p5: that fit above its range -> 0.
    p = M.isotonic_crossfit([0.1, 0.2, 0.3, 0.4, 0.5], [1, 0, 1, 0, 0], folds=5)
    assert p.tolist() == pytest.approx([0.5, 1, 0, 0.25, 0])
    # seeded folds: the same seed, the same predictions
    rng = np.random.default_rng(0)
    s, y = rng.random(60), (rng.random(60) < 0.6).astype(float)
    assert np.array_equal(M.isotonic_crossfit(s, y, 5, seed=3), M.isotonic_crossfit(s, y, 5, 3))
    with pytest.raises(ValueError, match="2 folds"):
        M.isotonic_crossfit([0.1], [1.0])


# ------------------------------------------------------------------------------- replay


def _toy(copies=1):
    q = np.tile(np.stack([QW, QS], 1), (copies, 1))
    return OutcomeTable([f"p{i}" for i in range(4 * copies)], ["w", "s"], q, "w", "s")


def test_replay_reports_the_risk_metrics():
    from confroute.eval.router_scores import RowScores

    rep = replay(_toy(), {"toy": RowScores(SCORES, {})})
    r = rep.results[0].metrics["risk"]
    assert r["aurc"] == pytest.approx(7 / 12) and r["eaurc"] == pytest.approx(3 / 8)
    assert r["audc"] == pytest.approx(0.59375) and r["naudc"] == pytest.approx(3 / 7)
    # the sweep's curve is the hand curve: calls saved .7875 at target .7125
    assert r["iso_quality"]["target"] == pytest.approx(0.7125)
    assert r["iso_quality"]["calls_saved"] == pytest.approx(0.7875)
    # 100 coverage points: at .25 the first prompt (risk 1), at .26 the first two (1/2)
    rc = r["risk_coverage"]
    assert len(rc["coverage"]) == 100 and rc["coverage"][24] == 0.25
    assert rc["risk"][24] == 1.0 and rc["risk"][25] == 0.5 and rc["risk"][-1] == 0.5
    # four prompts are too few to cross-fit five folds: NaN, but the constant's Brier is there
    cal = r["p_edge_correct"]
    assert math.isnan(cal["ece"]) and cal["brier_base"] == pytest.approx(0.25)
    # three copies (12 prompts): a real fit; written as JSON (NaN -> null) and read back
    rep = replay(_toy(3), {"toy": RowScores(np.tile(SCORES, 3), {})}, n_boot=20)
    m = rep.results[0].metrics
    assert 0 <= m["risk"]["p_edge_correct"]["ece"] <= 1
    # three tied copies of each prompt: the deferral curve (ties averaged) is the same line
    assert m["risk"]["naudc"] == pytest.approx(3 / 7)
    assert set(m["ci"]) >= {"aurc", "naudc", "calls_saved"}
    lo, hi = m["ci"]["aurc"]
    assert 0 <= lo <= hi <= 1


def test_paired_interval_counts_a_lower_aurc_as_better():
    n = 40
    rng = np.random.default_rng(1)
    qw = (rng.random(n) < 0.5).astype(float)
    qs = np.ones(n)
    good = 1 - qw + 0.01 * rng.random(n)        # the edge's errors score high
    d = paired_intervals(good / good.max(), 1 - good / good.max(), qw, qs, n_boot=200, seed=2)
    assert d["aurc"]["diff"] < 0 and d["aurc"]["a_better"] == 1.0
    assert d["naudc"]["diff"] > 0 and d["naudc"]["a_better"] == 1.0


def test_report_has_the_risk_table(tmp_path):
    from confroute.cli.eval.replay import format_table, jsonable
    from confroute.eval.router_scores import RowScores
    from confroute.eval.report import markdown, read_replays

    rep = replay(_toy(3), {"toy": RowScores(np.tile(SCORES, 3), {}), "oracle": "oracle"},
                 n_boot=20)
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "metrics.json").write_text(json.dumps(jsonable(rep.to_json())))
    md = markdown(read_replays([str(tmp_path / "a")]))
    table1, risk = md.split("## Risk, deferral and calibration")
    row = next(l for l in risk.splitlines() if l.startswith("| toy |"))
    # Three tied copies of each toy prompt. AURC: kept in tie groups of 3 with losses 1, 0, 0,
    # 1: risks 1, 1, 1 | 3/4, 3/5, 3/6 | 3/7, 3/8, 3/9 | 4/10, 5/11, 6/12, mean 0.6118;
    # nAUDC 3/7 = 0.429 and calls saved 78.8% as for one copy; each with its interval.
    assert row.startswith("| toy | 0.612 [") and "| 0.429 [" in row and "| 78.8 [" in row
    printed = format_table(rep)
    assert "AURC" in printed and "saved@95%" in printed and "78.8%" in printed


# ------------------------------------------------------------------------------- length


def _records(tokens):
    return [SimpleNamespace(id=str(i), usage={"completion_tokens": t})
            for i, t in enumerate(tokens)]


def test_length_baseline_ranks_answer_tokens_by_hand():
    # tokens 10, 50, 50, 5: mid-ranks 2, 3.5, 3.5, 1 -> (rank - 1) / 3.
    s = answer_length_scores(_toy(), _records([10, 50, 50, 5]))
    assert s.label == "length"
    assert s.scores.tolist() == pytest.approx([1 / 3, 2.5 / 3, 2.5 / 3, 0])
    assert s.info["mean_tokens"] == pytest.approx(28.75) and s.info["distinct"] == 3
    with pytest.raises(ValueError, match="no record of 1"):
        answer_length_scores(_toy(), _records([10, 50, 50]))


def test_replay_cli_length_router_reads_the_checkpoint(tmp_path, capsys):
    from confroute import cli

    table = OutcomeTable(["a", "b", "c", "d"], ["edge", "cloud"], np.stack([QW, QS], 1),
                         "edge", "cloud", ids=["0", "1", "2", "3"],
                         meta={"checkpoint": "ck.jsonl", "signals_from": "edge"})
    table.save(tmp_path / "t.csv")
    recs = [{"kind": "confroute-outcomes-v1", "signals_from": "edge"}]
    recs += [{"id": str(i), "model": "edge", "answer": "x", "extracted": None, "quality": q,
              "usage": {"completion_tokens": t}} for i, (q, t) in
             enumerate(zip(QW, [10, 50, 50, 5]))]
    (tmp_path / "ck.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    assert cli.main(["eval", "replay", "--table", str(tmp_path / "t.csv"), "--router",
                     "length", "--router", "oracle", "--bootstrap", "0", "--random-seeds",
                     "0", "--no-plot", "--out", str(tmp_path / "o")]) == 0
    m = json.loads((tmp_path / "o" / "metrics.json").read_text())["routers"]
    assert m["length"]["baseline"]["checkpoint"].endswith("ck.jsonl")
    # By hand: the cloud takes b and c (tied, gains +1 and +1), then a (0), then d (-1):
    # quality .5, 1 (two at once), 1, .75 -> the oracle's order, nAUDC 1.
    assert m["length"]["risk"]["naudc"] == pytest.approx(1.0)
    # A recorded table names no checkpoint: a clear error, exit 2.
    OutcomeTable(["a", "b"], ["w", "s"], [[1, 0], [0, 1]], "w", "s").save(tmp_path / "r.csv")
    assert cli.main(["eval", "replay", "--table", str(tmp_path / "r.csv"), "--router",
                     "length", "--no-plot", "--out", str(tmp_path / "o2")]) == 2
    assert "answer lengths" in capsys.readouterr().err


def test_graded_quality_on_a_default_scale_does_not_break_replay():
    # 1-10 judge scores in a table made in code (its scale left at (0, 1)): the loss is
    # scaled by the range the qualities reach, (0, 10): edge loss (10 - q_weak) / 10.
    qw, qs = np.array([2.0, 9, 5, 10]), np.array([8.0, 9, 9, 4])
    t = OutcomeTable(["a", "b", "c", "d"], ["w", "s"], np.stack([qw, qs], 1), "w", "s")
    from confroute.eval.router_scores import RowScores

    r = replay(t, {"x": RowScores(SCORES, {})}).results[0].metrics["risk"]
    # kept by ascending score: c (.5), a (.8), d (0), b (.1): risks .5, .65, .4333, .35
    assert r["aurc"] == pytest.approx((0.5 + 0.65 + 1.3 / 3 + 0.35) / 4)
    assert r["p_edge_correct"]["target"] == "edge quality scaled to [0, 1]"
