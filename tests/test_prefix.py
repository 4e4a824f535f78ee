"""The edge's stored samples replayed in draw order (pure logic; the CLI on a real SmolLM2
table is in test_eval_build): SE of the first k samples, and adaptive stopping."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from confroute import semantic_entropy
from confroute.confidence.stopping import discrete_entropy, settled
from confroute.eval.build import LiveRecord
from confroute.eval.prefix import (
    Draws, _ids_of, adaptive_replay, draws_of, prefix_se, prefix_signals, share_threshold,
)


def _rec(i, extra):
    return LiveRecord(str(i), "edge", "a", None, 0.0, extra=extra)


def test_canonical_answers_become_first_seen_cluster_ids():
    assert _ids_of(["7", "3", "7", None, None, "3"]).tolist() == [0, 1, 0, 2, 3, 1]
    d = draws_of([_rec(0, {"sample_clusters": [0, 1, 0],
                           "sample_mean_logprob": [-0.1, -0.2, -0.3]})])[0]
    assert d.cluster_ids.tolist() == [0, 1, 0]


def test_records_without_per_sample_draws_are_named():
    with pytest.raises(ValueError, match="record '3' has no per-sample 'sample_clusters'"):
        draws_of([_rec(3, {"sample_finish": ["stop"]})])
    with pytest.raises(ValueError, match="2 cluster ids for 3 samples"):
        draws_of([_rec(0, {"sample_clusters": [0, 1],
                           "sample_mean_logprob": [-1, -1, -1]})])


def test_prefix_se_is_the_core_se_of_the_first_k():
    rng = np.random.default_rng(0)
    draws = [Draws(str(i), _ids_of(rng.integers(0, 3, 8).tolist()), -rng.random(8))
             for i in range(20)]
    for k in (1, 4, 8):
        got = prefix_se(draws, k)
        for d, disc, kuhn in zip(draws, got["discrete"], got["kuhn"]):
            ids = _ids_of(d.cluster_ids[:k].tolist())
            assert disc == pytest.approx(discrete_entropy(np.bincount(ids)), abs=1e-12)
            want = semantic_entropy(ids, np.array([0, k]), d.mean_logprob[:k], kind="kuhn")
            assert kuhn == pytest.approx(float(want[0]), abs=1e-12)
    assert np.all(prefix_se(draws, 1)["discrete"] == 0)
    with pytest.raises(ValueError, match="fewer than 9 samples"):
        prefix_se(draws, 9)
    # another window: the SE of samples 4..7, cluster ids renumbered within it
    later = prefix_se(draws, 4, start=4)
    for d, disc in zip(draws, later["discrete"]):
        assert disc == pytest.approx(discrete_entropy(np.bincount(d.cluster_ids[4:])), abs=1e-12)
    assert set(prefix_signals(draws, 4, start=4)) == {
        "se_discrete_n4_from4", "se_weighted_n4_from4", "se_n4_from4"}
    with pytest.raises(ValueError, match="fewer than 9 samples"):
        prefix_se(draws, 4, start=5)
    with pytest.raises(ValueError, match="start >= 0"):
        prefix_se(draws, 4, start=-1)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(st.integers(0, 4), min_size=10, max_size=10), min_size=1,
                max_size=6), st.floats(0.05, 2.0))
def test_exact_rule_stops_at_the_first_settled_round_and_decides_as_full_n(rows, t):
    draws = [Draws(str(i), _ids_of(r), np.full(10, -1.0)) for i, r in enumerate(rows)]
    r = adaptive_replay(draws, t, n_max=10, first=3, step=2, rule="exact")
    assert r.identical.all()
    for d, n in zip(draws, r.n_drawn):
        # brute force: the first round end (3, 5, 7, 9, 10) where the bound settles it
        want = next(k for k in (3, 5, 7, 9, 10)
                    if k == 10 or settled(np.bincount(d.cluster_ids[:k]), 10 - k, t))
        assert n == want


def test_confidence_rule_draws_no_more_than_exact():
    rng = np.random.default_rng(1)
    draws = [Draws(str(i), _ids_of(rng.integers(0, rng.integers(1, 5), 10).tolist()),
                   np.full(10, -1.0)) for i in range(60)]
    ex = adaptive_replay(draws, 0.9, 10, rule="exact")
    co = adaptive_replay(draws, 0.9, 10, rule="confidence")
    assert np.all(co.n_drawn <= ex.n_drawn) and co.n_drawn.mean() < ex.n_drawn.mean()
    # where the confidence rule stopped as late as the exact rule, it decided the same
    same = co.n_drawn == ex.n_drawn
    assert np.all(co.cloud[same] == ex.cloud[same])
    with pytest.raises(ValueError, match="rule must be one of"):
        adaptive_replay(draws, 0.9, 10, rule="sometimes")


def test_share_threshold_splits_between_observed_values():
    se = np.array([0.0, 0.0, 0.5, 0.5, 1.0, 1.0, 1.0, 1.5])
    t = share_threshold(se, 0.5)
    assert t == pytest.approx(0.75) and (se > t).mean() == 0.5
    assert (se > share_threshold(se, 0.1)).mean() == pytest.approx(1 / 8)
    with pytest.raises(ValueError, match="cloud share"):
        share_threshold(se, 1.0)
    with pytest.raises(ValueError, match="same SE"):
        share_threshold(np.zeros(4), 0.5)
