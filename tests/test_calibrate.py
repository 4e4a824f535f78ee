"""Calibration: the threshold for a cloud share, and the share reached on held-out prompts."""
import numpy as np
import pytest

from confroute.routers import get_router
from confroute.routers.calibrate import calibrate, split_prompts, threshold_for_share
from helpers.routers import planted, prompts, rows_for


def test_threshold_for_share_on_distinct_scores():
    s = np.linspace(0, 1, 101)
    for share in (0.0, 0.1, 0.3, 0.5):
        t = threshold_for_share(s, share)
        assert np.mean(s > t) == pytest.approx(share, abs=0.5 / 101 + 1e-12)
    # The lowest score stays on the edge: 100 of 101 is the most that can go to the cloud.
    assert threshold_for_share(s, 1.0) == 0.0


def test_threshold_with_repeated_scores_is_the_closest_reachable():
    s = np.array([0.0] * 50 + [0.5] * 30 + [1.0] * 20)  # reachable shares: .5, .2, 0
    assert threshold_for_share(s, 0.3) == 0.5     # share .2: |.2-.3| < |.5-.3|
    assert threshold_for_share(s, 0.35) == 0.5    # equally far: the cheaper one
    assert threshold_for_share(s, 0.9) == 0.0     # share .5, not a threshold below 0
    assert threshold_for_share(s, 1.0) == 0.0
    assert threshold_for_share(s, 0.0) == 1.0


def test_threshold_is_never_below_every_score():
    s = np.array([0.2, 0.2, 0.6, 0.9])
    for share in np.linspace(0, 1, 21):
        assert threshold_for_share(s, share) in (0.2, 0.6, 0.9)
    with pytest.raises(ValueError, match=r"router scores must lie in \[0, 1\]"):
        threshold_for_share([-0.1, 0.5], 0.5)


# Labelled prompts for a kNN router on the real MiniLM embedder: arithmetic needs the strong
# model, greetings do not, and the capitals are ties.
KNN_ROWS = ([("What is 17 times 23?", "strong"), ("Compute 144 divided by 12.", "strong"),
             ("What is 3 to the power of 5?", "strong")]
            + [("Hello there!", "weak"), ("Good morning, how are you?", "weak"),
               ("Hi! Nice to meet you.", "weak")]
            + [("What is the capital of France?", "tie"), ("What is the capital of Spain?", "tie")])
KNN_CALIBRATION = ["What is 45 plus 67?", "What is 9 times 8?", "Hey, how is it going?",
                   "Hello, good evening!", "What is the capital of Italy?",
                   "What is 100 minus 37?", "Hi there, friend.", "What is the capital of Peru?"]


@pytest.mark.parametrize("share", [1.0, 0.9, 0.3])
def test_a_calibrated_knn_router_can_be_served(embedder, tmp_path, share):
    # kNN with k = 1 scores only 0, 1/2 and 1: a share of 0.9 or 1 used to store a threshold
    # below 0, which RouterPolicy refuses, so the calibrated router could not be served.
    from confroute.labels import make_row
    from confroute.routers import Router
    from confroute.decision.names import RouterPolicy

    router = get_router("knn", embedder=embedder, k=1).fit(
        [make_row(p, "edge", "cloud", w) for p, w in KNN_ROWS])
    scores = router.score(KNN_CALIBRATION)
    assert sorted(set(scores.tolist())) == [0.0, 0.5, 1.0]  # all three levels occur
    result = calibrate(router, KNN_CALIBRATION, share)
    router.save(tmp_path / "knn")
    policy = RouterPolicy(Router.load(tmp_path / "knn", embedder=embedder))  # as served
    assert policy.threshold == result.threshold and result.threshold in (0.0, 0.5, 1.0)
    routes = [policy.decide(p).route for p in KNN_CALIBRATION]
    assert np.mean([r == "cloud" for r in routes]) == result.calibration_share
    # the greetings (score 0) always stay on the edge; the arithmetic goes to the cloud
    # whenever any prompt does
    assert routes[2] == routes[3] == routes[6] == "edge"
    if share >= 0.9:
        assert routes[0] == routes[1] == routes[5] == "cloud"


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
