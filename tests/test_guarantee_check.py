"""The quality-drop guarantee checked by resampling, on tiny tables worked out by hand."""
import math

import numpy as np
import pytest
from scipy.stats import binom

from confroute.eval.guarantee import check_guarantee, clopper_pearson


def _table(n_gain: int, gain_score: float, n_zero: int):
    """``n_gain`` prompts the cloud gets right and the edge wrong, scored ``gain_score``; then
    ``n_zero`` both get right, scored 0."""
    scores = np.r_[np.full(n_gain, gain_score), np.zeros(n_zero)]
    q_weak = np.r_[np.zeros(n_gain), np.ones(n_zero)]
    q_strong = np.ones(n_gain + n_zero)
    return scores, q_weak, q_strong


def test_a_perfect_score_never_violates_and_needs_exactly_the_cloud_wins():
    # 20 cloud wins scored 1, 20 ties scored 0; 20 calibration prompts, eps 0.2.
    # Every grid threshold below 1 keeps only ties on the edge: drop 0, so the positive part's
    # p-value is (1 - 0.2)^20 = 0.0115, doubled (loss 'both') 0.023 <= 0.05: accepted.
    # t = 1 keeps all: drop k/20 with k >= 1 cloud wins drawn, p >= 2 * 0.153: rejected.
    # So t = 0.999 on every draw, the drop is 0 and the cloud share is the cloud wins' share.
    s, qw, qs = _table(20, 1.0, 20)
    c = check_guarantee(s, qw, qs, eps=0.2, delta=0.05, n_cal=20, draws=50, seed=1)
    g = c.guarantee
    assert (g.n_draws, g.n_refused, g.n_violations, g.violation_share) == (50, 0, 0, 0.0)
    assert all(d.threshold == 0.999 for d in g.draws)
    assert all(d.heldout_drop == 0.0 and d.calibration_drop == 0.0 for d in g.draws)
    # 20 of each kind in all: the rest holds 20 - k cloud wins of its 20 prompts
    assert all(d.heldout_share == pytest.approx(1.0 - d.calibration_share) for d in g.draws)
    assert g.heldout_drop.mean == 0.0 and g.heldout_drop.p95 == 0.0
    assert c.population_share == 0.5 and c.all_edge_drop == 0.5
    assert g.violation_interval == pytest.approx((0.0, 1.0 - 0.025 ** (1 / 50)))


def test_too_small_a_draw_refuses_every_time_and_a_refusal_is_no_violation():
    # 5 calibration prompts: even a drop of 0 gives p = 2 * 0.95^5 > 0.05 for eps 0.05
    s, qw, qs = _table(20, 1.0, 20)
    c = check_guarantee(s, qw, qs, eps=0.05, delta=0.05, n_cal=5, draws=30, seed=0)
    g = c.guarantee
    assert (g.n_refused, g.n_violations, g.violation_share) == (30, 0, 0.0)
    assert all(d.refused and math.isnan(d.threshold) for d in g.draws)
    assert math.isnan(g.heldout_drop.mean) and math.isnan(g.heldout_share.p50)
    # the share-based calibration always answers
    assert c.share.n_refused == 0 and len(c.share.draws) == 30


def test_the_point_estimate_violates_where_the_guarantee_holds():
    # 8 cloud wins scored 0.5, 32 ties scored 0; 20 calibration prompts, eps 0.25. With k
    # cloud wins in the draw (hypergeometric: 40, 8, 20):
    # - share-based: t = 0.5 (all on the edge) has calibration drop k/20 <= 0.25 iff k <= 5;
    #   then the rest loses (8 - k)/20 > 0.25 iff k <= 2. Violation iff k <= 2.
    # - guarantee: t < 0.5 has drop 0 and p = 2 * 0.75^20 = 0.006: accepted; t = 0.5 with
    #   k = 1 has p = 2 * exp(-20 KL(0.05 || 0.25)) = 0.11 > 0.05. Violation iff k = 0.
    s, qw, qs = _table(8, 0.5, 32)
    c = check_guarantee(s, qw, qs, eps=0.25, delta=0.05, n_cal=20, draws=200, seed=0)
    ks = [round(20 * (d.calibration_share + d.calibration_drop)) for d in c.share.draws]
    for k, p, g in zip(ks, c.share.draws, c.guarantee.draws):
        assert (p.heldout_drop > 0.25) == (k <= 2)
        assert p.heldout_drop == pytest.approx((8 - k) / 20 if k <= 5 else 0.0)
        assert (g.heldout_drop > 0.25) == (k == 0)
        if k:
            assert g.threshold == 0.499 and g.heldout_share == pytest.approx((8 - k) / 20)
    assert c.share.n_violations == sum(k <= 2 for k in ks) > c.guarantee.n_violations
    assert c.guarantee.n_violations == sum(k == 0 for k in ks)
    # the guarantee sends every drawn cloud win up; the point estimate often none
    assert c.guarantee.heldout_share.mean > c.share.heldout_share.mean


def test_clopper_pearson_of_known_counts():
    assert clopper_pearson(0, 200) == pytest.approx((0.0, 1.0 - 0.025 ** (1 / 200)))
    assert clopper_pearson(10, 10) == pytest.approx((0.025 ** (1 / 10), 1.0))
    lo, hi = clopper_pearson(3, 10)
    # the bounds where seeing >= 3 (resp. <= 3) of 10 has probability 2.5%
    assert binom.sf(2, 10, lo) == pytest.approx(0.025)
    assert binom.cdf(3, 10, hi) == pytest.approx(0.025)
    lo, hi = clopper_pearson(5, 10)
    assert lo == pytest.approx(1.0 - hi)


@pytest.mark.parametrize("kw, match", [
    (dict(n_cal=40), "n_cal"),
    (dict(n_cal=0), "n_cal"),
    (dict(draws=0), "draws"),
    (dict(eps=0.0), "eps"),
    (dict(delta=1.0), "delta"),
    (dict(loss="bogus"), "loss"),
])
def test_bad_settings_name_what_is_wrong(kw, match):
    s, qw, qs = _table(20, 1.0, 20)
    args = dict(eps=0.2, delta=0.05, n_cal=20, draws=2)
    args.update(kw)
    with pytest.raises(ValueError, match=match):
        check_guarantee(s, qw, qs, **args)


def test_bad_arrays_name_what_is_wrong():
    s, qw, qs = _table(20, 1.0, 20)
    with pytest.raises(ValueError, match="same length"):
        check_guarantee(s[:-1], qw, qs, 0.2, n_cal=20)
    with pytest.raises(ValueError, match="finite"):
        check_guarantee(np.r_[s[:-1], np.nan], qw, qs, 0.2, n_cal=20)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        check_guarantee(s * 2, qw, qs, 0.2, n_cal=20)
    with pytest.raises(ValueError, match="quality range"):
        check_guarantee(s, qw, qs * 3, 0.2, n_cal=20)
    with pytest.raises(ValueError, match="k must"):
        clopper_pearson(5, 4)


def test_the_record_is_json_with_refusals_as_null():
    import json

    s, qw, qs = _table(20, 1.0, 20)
    c = check_guarantee(s, qw, qs, eps=0.05, delta=0.05, n_cal=5, draws=3, seed=0)
    d = json.loads(json.dumps(c.to_dict(draws=True), allow_nan=False))
    assert d["guarantee"]["n_refused"] == 3 and d["guarantee"]["heldout_drop"]["mean"] is None
    assert d["guarantee"]["draws"][0]["threshold"] is None
    assert d["guarantee"]["violation_interval"] == pytest.approx([0.0, 1 - 0.025 ** (1 / 3)])
    assert "draws" not in c.to_dict()["share"]


def test_the_cli_writes_the_check_of_a_signal_column(tmp_path, capsys, monkeypatch):
    import csv
    import json

    from confroute import cli

    # only `eval` registered: the other commands' modules are not under test here
    monkeypatch.setattr(cli, "COMMANDS", {"eval": cli.COMMANDS["eval"]})
    s, qw, qs = _table(20, 1.0, 20)
    path = tmp_path / "t.csv"
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["prompt", "edge", "cloud", "signal:perfect"])
        w.writerows([f"p{i}", qw[i], qs[i], s[i]] for i in range(40))
    out = tmp_path / "out"
    rc = cli.main(["eval", "guarantee", "--table", str(path), "--signal", "perfect",
                   "--eps", "0.2", "--eps", "0.05", "--n-cal", "20", "--draws", "10",
                   "--out", str(out)])
    assert rc == 0
    d = json.loads((out / "guarantee.json").read_text())
    assert (d["weak"], d["strong"], d["score"]) == ("edge", "cloud", "perfect")
    first, second = d["checks"]
    assert first["eps"] == 0.2 and first["guarantee"]["n_violations"] == 0
    assert second["eps"] == 0.05 and second["guarantee"]["n_refused"] == 10
    rows = list(csv.DictReader(open(out / "draws.csv")))
    assert len(rows) == 2 * 2 * 10  # eps x method x draw
    assert "guarantee" in capsys.readouterr().out
