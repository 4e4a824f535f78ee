"""Adaptive sampling for the online SE router: the stopping bound (exact, against enumeration)
and adaptive vs full-n decisions on real SmolLM2 samples."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from confroute.confidence.stopping import (
    discrete_entropy, entropy_bounds, p_cloud, schedule, settled,
)


def _reachable(counts, m):
    """Every sorted count vector that m more samples can make (brute force)."""
    out = set()

    def rec(cur, m):
        if m == 0:
            out.add(tuple(sorted(cur)))
            return
        for i in range(len(cur)):
            nxt = list(cur)
            nxt[i] += 1
            rec(nxt, m - 1)
        rec(list(cur) + [1], m - 1)

    rec(list(counts), m)
    return out


@settings(max_examples=150, deadline=None)
@given(st.lists(st.integers(1, 4), min_size=1, max_size=4), st.integers(0, 5))
def test_bounds_are_the_extremes_of_every_completion(counts, m):
    hs = [discrete_entropy(v) for v in _reachable(counts, m)]
    lo, hi = entropy_bounds(counts, m)
    assert lo == pytest.approx(min(hs), abs=1e-12)
    assert hi == pytest.approx(max(hs), abs=1e-12)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(1, 4), min_size=1, max_size=4), st.integers(0, 4),
       st.floats(0.0, 2.0))
def test_settled_means_every_completion_decides_the_same(counts, m, t):
    side = settled(counts, m, t)
    finals = {"cloud" if discrete_entropy(v) > t else "edge" for v in _reachable(counts, m)}
    if side is not None:
        assert finals == {side}
    if m == 0 and abs(discrete_entropy(counts) - t) > 1e-6:
        assert side is not None  # nothing left to draw: always settled (off the margin)


def test_schedule_and_bad_arguments():
    assert schedule(10, 3, 2) == [3, 2, 2, 2, 1]
    assert schedule(5, 5, 1) == [5]
    for bad in [(10, 1, 2), (10, 11, 2), (10, 3, 0)]:
        with pytest.raises(ValueError):
            schedule(*bad)
    with pytest.raises(ValueError, match="at least one sample"):
        entropy_bounds([], 3)
    with pytest.raises(ValueError, match="alpha"):
        p_cloud([2, 1], 3, 0.5, alpha=0)


def test_p_cloud_follows_the_evidence():
    # all five samples distinct: high SE is near certain; all five equal: low SE likely
    assert p_cloud([1, 1, 1, 1, 1], 5, 0.5) > 0.95
    assert p_cloud([5], 5, 0.9) < 0.2


PROMPTS = ["What is the capital of France?", "Who wrote the novel War and Peace?",
           "Write one word that rhymes with cat.", "What is 2 + 2?",
           "Tell me a random fact about any animal.", "Name a colour.",
           "when did the eagles win last super bowl", "What is the boiling point of water?"]


@pytest.fixture(scope="module")
def scorer(embedder):
    from confroute.confidence.scorer import ConfidenceScorer

    return ConfidenceScorer(embedder, similarity=0.8)


def test_adaptive_decides_as_full_n_se_on_real_prompts(edge_model, scorer):
    # The exact rule stops only where no completion to n_max could change the decision, and
    # the rounds draw the same samples either way: the decisions must be identical.
    kw = dict(n_max=8, first=3, step=2, max_tokens=16, temperature=1.0)
    drawn, stopped_early = [], 0
    for i, p in enumerate(PROMPTS):
        msgs = [{"role": "user", "content": p}]
        full = scorer.score_adaptive(msgs, edge_model, threshold=0.0, rule="none", seed=i,
                                     **kw)
        assert full.n_drawn == 8 and full.exact
        se_full = full.confidence.se_discrete
        for t in (0.4, 0.8, 1.2):
            ad = scorer.score_adaptive(msgs, edge_model, threshold=t, rule="exact", seed=i, **kw)
            assert ad.decision == ("cloud" if se_full > t else "edge"), (p, t, ad.n_drawn)
            assert ad.exact
            k = ad.n_drawn
            assert ad.confidence.samples.texts == full.confidence.samples.texts[:k]
            np.testing.assert_array_equal(ad.confidence.cluster_ids,
                                          full.confidence.cluster_ids[:k])
            drawn.append(k)
            stopped_early += k < 8
    assert stopped_early > 0  # the rule does stop on real prompts, not only at n_max
    assert np.mean(drawn) < 8


def test_adaptive_confidence_rule_reports_its_estimate(edge_model, scorer):
    msgs = [{"role": "user", "content": PROMPTS[4]}]
    r = scorer.score_adaptive(msgs, edge_model, threshold=0.5, rule="confidence", delta=0.1,
                              n_max=8, first=3, step=2, max_tokens=16, seed=3)
    assert r.decision in ("edge", "cloud") and 3 <= r.n_drawn <= 8
    if not r.exact:
        assert r.p_cloud is not None and (r.p_cloud <= 0.1 or r.p_cloud >= 0.9)
        assert r.decision == ("cloud" if r.p_cloud >= 0.5 else "edge")


def test_adaptive_bad_arguments(edge_model, scorer):
    from confroute.confidence.scorer import ConfidenceScorer

    msgs = [{"role": "user", "content": "hi"}]
    with pytest.raises(ValueError, match="rule"):
        scorer.score_adaptive(msgs, edge_model, 0.5, rule="bayes")
    with pytest.raises(ValueError, match="threshold"):
        scorer.score_adaptive(msgs, edge_model, -1.0)
    with pytest.raises(ValueError, match="greedy"):
        ConfidenceScorer(scorer.embedder, method="components").score_adaptive(
            msgs, edge_model, 0.5)


def test_adaptive_policy_measures_and_decides(edge_model, scorer):
    from confroute.confidence.stopping import AdaptiveResult
    from confroute.decision.policies import AdaptiveSECascade

    policy = AdaptiveSECascade(0.8, n_max=6, first=3, step=2)
    msgs = [{"role": "user", "content": PROMPTS[0]}]
    r = policy.measure(scorer, msgs, edge_model, max_tokens=12, temperature=1.0, seed=5, n=99)
    assert isinstance(r, AdaptiveResult) and r.n_max == 6 and r.n_drawn <= 6
    d = policy.decide(PROMPTS[0], r)
    assert d.route == r.decision and d.score == r.confidence.se_discrete
    assert d.threshold == 0.8
    for bad in [dict(threshold=-1), dict(threshold=0.5, rule="x"), dict(threshold=0.5, first=1),
                dict(threshold=0.5, delta=0.7)]:
        with pytest.raises(ValueError):
            AdaptiveSECascade(**bad)


def test_decision_path_draws_and_decides_as_score_adaptive(edge_model, scorer):
    # The shared decision path (routing.decide + EdgeSupplier, as the Controller and the
    # server run it) asks the policy round by round: the same samples, the same stop, the same
    # decision as ConfidenceScorer.score_adaptive.
    from confroute.decision import path as routing
    from confroute.decision.policies import AdaptiveSECascade
    from confroute.decision.edge import EdgeSupplier

    supplier = EdgeSupplier(edge_model, scorer)
    for i, p in enumerate(PROMPTS[:4]):
        policy = AdaptiveSECascade(1.2, n_max=8, first=3, step=2)
        q = routing.make_query([{"role": "user", "content": p}],
                               routing.Sampling(n=5, max_tokens=12, temperature=1.0, seed=i))
        d, ev = routing.decide(policy, q, supplier)
        # the path draws a request's samples at its seed + 1 (its answer at the seed)
        ref = scorer.score_adaptive(q.edge_messages, edge_model, 1.2, n_max=8, first=3, step=2,
                                    max_tokens=12, temperature=1.0, seed=i + 1)
        assert (d.route, d.n_samples) == (ref.decision, ref.n_drawn)
        assert ev.samples.texts == ref.confidence.samples.texts
        assert d.semantic_entropy == pytest.approx(ref.confidence.se_discrete)


def test_router_string_for_adaptive_se():
    from confroute.decision.policies import AdaptiveSECascade
    from confroute.decision.names import make_policy, policy_from_string

    p = policy_from_string("router-se_adaptive-1.5")
    assert isinstance(p, AdaptiveSECascade) and p.threshold == 1.5 and p.n_max == 10
    assert make_policy("se_adaptive", 0.7, samples=6).n_max == 6
    with pytest.raises(ValueError, match="not a number"):
        policy_from_string("router-se_adaptive-x")
    with pytest.raises(ValueError, match="threshold"):
        make_policy("se_adaptive", None)
