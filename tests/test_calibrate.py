"""Calibration: the threshold for a cloud share, and the share reached on held-out prompts."""
import numpy as np
import pytest

from confroute.routers import get_router
from confroute.routers.calibrate import calibrate, split_prompts, threshold_for_share

from test_routers import planted, prompts, rows_for


def test_threshold_for_share_on_distinct_scores():
    s = np.linspace(0, 1, 101)
    for share in (0.0, 0.1, 0.3, 0.5, 1.0):
        t = threshold_for_share(s, share)
        assert np.mean(s > t) == pytest.approx(share, abs=0.5 / 101 + 1e-12)


def test_threshold_with_repeated_scores_is_the_closest_reachable():
    s = np.array([0.0] * 50 + [0.5] * 30 + [1.0] * 20)  # reachable shares: 1, .5, .2, 0
    assert np.mean(s > threshold_for_share(s, 0.3)) == 0.2   # |.2-.3| < |.5-.3|
    assert np.mean(s > threshold_for_share(s, 0.35)) == 0.2  # equally far: the cheaper one
    assert np.mean(s > threshold_for_share(s, 0.9)) == 1.0
    assert np.mean(s > threshold_for_share(s, 0.0)) == 0.0


@pytest.mark.parametrize("bad", [-0.1, 1.5])
def test_bad_share(bad):
    with pytest.raises(ValueError, match="cloud share"):
        threshold_for_share([0.1, 0.2], bad)
    with pytest.raises(ValueError, match="non-empty"):
        threshold_for_share([], 0.3)


@pytest.mark.parametrize("name", ["sw", "mf", "mlp"])
def test_calibration_hits_the_share_on_held_out_prompts(name):
    X, y, emb = planted(n=1600, seed=5)
    router = get_router(name, embedder=emb).fit(rows_for(range(400), y))
    cal, held = split_prompts(prompts(range(400, 1600)), heldout_fraction=0.5, seed=1)
    result = calibrate(router, cal, 0.3, held)
    assert router.threshold == result.threshold
    assert result.calibration_share == pytest.approx(0.3, abs=0.01)
    # 600 held-out prompts from the same distribution: binomial sd ~ 0.019
    assert result.heldout_share == pytest.approx(0.3, abs=0.06)
    assert np.mean(router.route(held)) == result.heldout_share
    assert router.info["calibration"]["target_share"] == 0.3


def test_split_prompts():
    cal, held = split_prompts([f"p{i}" for i in range(10)], 0.3, seed=0)
    assert len(held) == 3 and len(cal) == 7 and not set(cal) & set(held)
    with pytest.raises(ValueError, match="held-out fraction"):
        split_prompts(["a"], 1.0)
