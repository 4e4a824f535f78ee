"""Routing and uncertainty metrics against a 4-prompt toy worked by hand.

Toy: weak quality [1, 0, 0, 1] (mean 0.5), strong [1, 1, 1, 0] (mean 0.75), gap 0.25.
Router scores [0.4, 0.9, 0.1, 0.6] send prompts to the strong model in the order
p2 (gain +1), p4 (gain -1), p1 (0), p3 (+1), so the curve is
share 0, .25, .5, .75, 1 -> quality .5, .75, .5, .5, .75 -> PGR 0, 1, 0, 0, 1.
"""
import math

import numpy as np
import pytest

from confroute.eval import metrics as M
from confroute.eval.router_metrics import sweep

QW = np.array([1.0, 0, 0, 1])
QS = np.array([1.0, 1, 1, 0])
SCORES = np.array([0.4, 0.9, 0.1, 0.6])
SHARE = np.array([0, 0.25, 0.5, 0.75, 1])
QUAL = np.array([0.5, 0.75, 0.5, 0.5, 0.75])


def test_sweep_reproduces_the_hand_curve():
    c = sweep(SCORES, QW, QS, n_points=201)
    # Quantile thresholds between two scores repeat a point; the distinct points are ours.
    pts = sorted(set(zip(c.share.round(12), c.quality.round(12))))
    assert pts == list(zip(SHARE, QUAL))
    assert c.share[0] == 0 and c.share[-1] == 1


def test_apgr_auc_cpt_by_hand():
    # APGR: trapezoids of width .25 over PGR 0,1,0,0,1 -> .125 + .125 + 0 + .125
    assert M.apgr(SHARE, QUAL, 0.5, 0.75) == pytest.approx(0.375)
    c = sweep(SCORES, QW, QS)
    assert M.apgr(c.share, c.quality, 0.5, 0.75) == pytest.approx(0.375)
    assert M.auc(SHARE, QUAL) == pytest.approx(0.59375)
    # First crossing, interpolated inside [0, .25] where PGR rises 0 -> 1.
    assert M.cpt(SHARE, QUAL, 0.5, 0.75, 0.5) == pytest.approx(0.125)
    assert M.cpt(SHARE, QUAL, 0.5, 0.75, 0.2) == pytest.approx(0.05)
    assert M.cpt(SHARE, QUAL, 0.5, 0.75, 0.8) == pytest.approx(0.2)
    assert M.cpt(SHARE, QUAL, 0.5, 0.75, 0.0) == 0.0
    assert M.quality_at(SHARE, QUAL, [0.125, 0.6]).tolist() == pytest.approx([0.625, 0.5])


def test_cpt_never_reached_and_no_gap_are_nan():
    low = np.array([0.5, 0.55, 0.6, 0.6, 0.6])
    assert math.isnan(M.cpt(SHARE, low, 0.5, 0.75, 0.8))
    assert math.isnan(M.cpt(SHARE, QUAL, 0.75, 0.5, 0.5))   # weak better than strong
    assert math.isnan(M.apgr(SHARE, QUAL, 0.6, 0.6))        # no gap


def test_all_tied_scores_give_the_straight_line():
    c = sweep(np.full(4, 0.3), QW, QS)
    assert c.share.tolist() == [0, 1]
    assert M.apgr(c.share, c.quality, 0.5, 0.75) == pytest.approx(0.5)


def test_cost_at_share_by_hand():
    edge = M.Prices(per_output_token=0.001)
    cloud = M.Prices(per_call=0.01, per_input_token=1e-4, per_output_token=2e-4)
    # edge: 5 samples x 50 tokens x .001 = .25 on every query; cloud: .01 + .01 + .04 = .06
    c = M.cost_at_share([0, 0.5, 1], edge, cloud, 100, 50, 200, edge_samples=5)
    assert c.tolist() == pytest.approx([0.25, 0.28, 0.31])
    c = M.cost_at_share([0.5], edge, cloud, 100, 50, 200, edge_samples=5, edge_always=False)
    assert c.tolist() == pytest.approx([0.5 * 0.05 + 0.5 * 0.06])
    with pytest.raises(ValueError, match="per_call"):
        M.Prices(per_call=-1)


def test_uncertainty_metrics_by_hand():
    # Incorrect (weak) answers: p2 (0.9), p3 (0.1); correct: p1 (0.4), p4 (0.6).
    # Pairs ranked right: (.9,.4), (.9,.6); wrong: (.1,.4), (.1,.6) -> 0.5.
    assert M.auroc(SCORES, QW) == pytest.approx(0.5)
    # Retained by ascending uncertainty: p3 0, p1 1, p4 1, p2 0 -> means 0, 1/2, 2/3, 1/2.
    assert M.aurac(SCORES, QW) == pytest.approx((0 + 0.5 + 2 / 3 + 0.5) / 4)
    # Oracle: 1, 1, 2/3, 1/2; random: 0.5 -> PRR = (5/12 - 1/2) / (19/24 - 1/2) = -2/7.
    assert M.prr(SCORES, QW) == pytest.approx(-2 / 7)
    assert M.prr(1 - QW, QW) == pytest.approx(1.0)
    assert M.auroc(1 - QW, QW) == 1.0
    assert math.isnan(M.auroc(SCORES, np.ones(4)))


def test_uncertainty_metrics_do_not_depend_on_tie_order():
    u = np.array([0.5, 0.5, 0.5, 0.1])
    q = np.array([1.0, 0, 1, 1])
    a = M.prr(u, q)
    b = M.prr(u[[2, 1, 0, 3]], q[[2, 1, 0, 3]])
    assert a == pytest.approx(b)
    # The error (0.5) ties two correct answers (1/2 each) and beats one (0.1): 2/3.
    assert M.auroc(u, q) == pytest.approx(2 / 3)
    # Ascending: 0.1 (q 1), then the tied three count 2/3 each: means 1, 5/6, 7/9, 3/4.
    assert M.aurac(u, q) == pytest.approx((1 + 5 / 6 + 7 / 9 + 3 / 4) / 4)


def test_auroc_matches_sklearn_on_random_ties():
    from sklearn import metrics as sk  # a dependency of the package (routers)
    rng = np.random.default_rng(0)
    u = rng.integers(0, 6, 300).astype(float)
    c = rng.integers(0, 2, 300).astype(float)
    assert M.auroc(u, c) == pytest.approx(sk.roc_auc_score(1 - c, u))


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="non-decreasing"):
        M.apgr([0, 0.6, 0.5, 1], [0, 0, 0, 0], 0, 1)
    with pytest.raises(ValueError, match="NaN"):
        M.auc([0, 1], [0, float("nan")])
    with pytest.raises(ValueError, match="0/1"):
        M.auroc([0.1, 0.2], [0.5, 1])
    with pytest.raises(ValueError, match="same"):
        M.prr([0.1, 0.2], [1.0])
