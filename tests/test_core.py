"""The C++ core against the NumPy reference: random ragged batches, hand-worked examples,
properties, dtypes and layouts, and every documented bad input."""
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import confroute
from helpers import reference as ref

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# ---------- agreement with the reference on random ragged batches ----------

@SETTINGS
@given(seed=st.integers(0, 2**32 - 1), M=st.integers(0, 40), V=st.integers(1, 300),
       temperature=st.floats(0.05, 5.0), f32=st.booleans())
def test_token_logprobs_matches_reference(seed, M, V, temperature, f32):
    rng = np.random.default_rng(seed)
    logits = (rng.normal(size=(M, V)) * 10).astype(np.float32 if f32 else np.float64)
    ids = rng.integers(0, V, size=M)
    got = confroute.token_logprobs(logits, ids, temperature)
    want = ref.token_logprobs(logits, ids, temperature)
    assert got.dtype == np.float64 and got.shape == (M,)
    np.testing.assert_allclose(got, want, rtol=1e-5 if f32 else 1e-10, atol=1e-5 if f32 else 1e-10)


def test_token_logprobs_large_vocab_and_extreme_logits():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(16, 49152)).astype(np.float32) * 30
    logits[0] += 1e4  # a shift changes nothing
    logits[1, 5] = 1e4  # one dominant token: its logprob is 0, others -inf-ish but finite
    ids = rng.integers(0, 49152, size=16)
    ids[1] = 5
    got = confroute.token_logprobs(logits, ids)
    np.testing.assert_allclose(got, ref.token_logprobs(logits, ids), rtol=1e-5, atol=1e-4)
    assert got[1] == pytest.approx(0.0, abs=1e-6)
    assert np.all(got <= 1e-9)


@SETTINGS
@given(seed=st.integers(0, 2**32 - 1), B=st.integers(1, 60), n_max=st.integers(1, 12),
       threshold=st.floats(-1.0, 1.0), method=st.sampled_from(["greedy", "components"]),
       likelihood=st.sampled_from(["mean", "sum"]))
def test_pipeline_matches_reference(seed, B, n_max, threshold, method, likelihood):
    rng = np.random.default_rng(seed)
    tlp, toff, emb, soff = ref.random_batch(rng, B, n_max=n_max)
    got = confroute.confidence_batch(tlp, toff, emb, soff, threshold, method, likelihood)
    want = ref.confidence_batch(tlp, toff, emb, soff, threshold, method, likelihood)
    np.testing.assert_array_equal(got.cluster_ids, want["cluster_ids"])
    for field in ("n_samples", "n_clusters"):
        np.testing.assert_array_equal(getattr(got, field), want[field])
    for field in ("seq_logprob_sum", "seq_logprob_mean", "se_discrete", "se_weighted",
                  "se_kuhn", "mean_token_logprob", "max_sequence_prob", "mean_perplexity"):
        np.testing.assert_allclose(getattr(got, field), want[field], rtol=1e-9, atol=1e-12,
                                   err_msg=field)
    # The single-purpose functions agree with the pipeline.
    ids = confroute.cluster_by_similarity(emb, soff, threshold, method)
    np.testing.assert_array_equal(ids, got.cluster_ids)
    ll = confroute.sequence_logprobs(tlp, toff, likelihood)
    np.testing.assert_allclose(ll, want["seq_logprob_" + likelihood], rtol=1e-12, atol=1e-12)
    for kind in ("discrete", "weighted", "kuhn"):
        se = confroute.semantic_entropy(ids, soff, ll, kind)
        np.testing.assert_allclose(se, getattr(got, "se_" + kind), rtol=1e-12, atol=1e-12)


def test_thousands_of_queries():
    rng = np.random.default_rng(1)
    tlp, toff, emb, soff = ref.random_batch(rng, 3000, n_max=10, D=16)
    got = confroute.confidence_batch(tlp, toff, emb, soff, 0.8)
    want = ref.confidence_batch(tlp, toff, emb, soff, 0.8)
    np.testing.assert_array_equal(got.cluster_ids, want["cluster_ids"])
    np.testing.assert_allclose(got.se_kuhn, want["se_kuhn"], rtol=1e-9, atol=1e-12)
    # Same answers whatever the thread count.
    one = confroute.confidence_batch(tlp, toff, emb, soff, 0.8, n_threads=1)
    np.testing.assert_array_equal(one.se_weighted, got.se_weighted)


# ---------- hand-worked examples ----------

def test_discrete_hand_worked():
    # clusters {a, a, b, c}: p = (1/2, 1/4, 1/4); SE = 1/2 ln 2 + 2 * 1/4 ln 4 = 1.5 ln 2
    se = confroute.semantic_entropy([0, 0, 1, 2], [0, 4])
    assert se[0] == pytest.approx(1.5 * math.log(2), abs=1e-12)


def test_weighted_and_kuhn_hand_worked():
    # Two clusters: {s0, s1} with logprobs ln 0.3, ln 0.1 and {s2} with ln 0.1.
    # p(c0) = 0.4/0.5 = 0.8, p(c1) = 0.2.
    lp = np.log([0.3, 0.1, 0.1])
    ids = [0, 0, 1]
    w = confroute.semantic_entropy(ids, [0, 3], lp, "weighted")[0]
    k = confroute.semantic_entropy(ids, [0, 3], lp, "kuhn")[0]
    assert w == pytest.approx(-(0.8 * math.log(0.8) + 0.2 * math.log(0.2)), abs=1e-12)
    assert k == pytest.approx(-(math.log(0.8) + math.log(0.2)) / 2, abs=1e-12)


def test_sequence_logprobs_hand_worked():
    lp = [-1.0, -2.0, -3.0, -4.0]
    off = [0, 3, 4]
    np.testing.assert_allclose(confroute.sequence_logprobs(lp, off, "sum"), [-6, -4])
    np.testing.assert_allclose(confroute.sequence_logprobs(lp, off, "mean"), [-2, -4])


@pytest.mark.parametrize("reduce", ["sum", "mean"])
def test_an_empty_sample_has_no_likelihood(reduce):
    # An empty sample used to score 0 (probability 1) and outweigh every real answer. A
    # finished answer always holds its end-of-generation token, so an empty one is an error.
    with pytest.raises(ValueError, match="sample 1 has no tokens"):
        confroute.sequence_logprobs([-1.0, -2.0, -3.0, -4.0], [0, 3, 3, 4], reduce)
    with pytest.raises(ValueError, match="sample 1 has no tokens"):
        confroute.confidence_batch([-1.0, -2.0], [0, 1, 1, 2], EMB, [0, 3], 0.5,
                                   likelihood=reduce)
    with pytest.raises(ValueError, match="sample 1 has no tokens"):
        ref.sequence_logprobs([-1.0, -2.0], [0, 1, 1, 2], reduce)


def test_greedy_and_components_differ_on_a_chain():
    # a ~ b and b ~ c but a !~ c: greedy compares with first members only.
    ang = np.radians([0, 30, 60])
    emb = np.stack([np.cos(ang), np.sin(ang)], axis=1)
    thr = math.cos(math.radians(40))
    np.testing.assert_array_equal(confroute.cluster_by_similarity(emb, [0, 3], thr, "greedy"), [0, 0, 1])
    np.testing.assert_array_equal(confroute.cluster_by_similarity(emb, [0, 3], thr, "components"), [0, 0, 0])


# ---------- properties ----------

@SETTINGS
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 30))
def test_entropy_properties(seed, n):
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, n, size=n)
    _, ids = np.unique(ids, return_inverse=True)
    lp = rng.normal(size=n) * 3
    for kind in ("discrete", "weighted"):
        se = confroute.semantic_entropy(ids, [0, n], lp, kind)[0]
        assert -1e-12 <= se <= math.log(n) + 1e-9
    # invariant to sample order and to cluster relabelling
    perm = rng.permutation(n)
    relabel = rng.permutation(n)
    for kind in ("discrete", "weighted", "kuhn"):
        base = confroute.semantic_entropy(ids, [0, n], lp, kind)[0]
        assert confroute.semantic_entropy(ids[perm], [0, n], lp[perm], kind)[0] == pytest.approx(base, abs=1e-9)
        assert confroute.semantic_entropy(relabel[ids], [0, n], lp, kind)[0] == pytest.approx(base, abs=1e-9)


@pytest.mark.parametrize("n", [1, 2, 7, 50])
def test_one_cluster_is_zero_and_singletons_are_ln_n(n):
    lp = np.full(n, -1.7)
    for kind in ("discrete", "weighted", "kuhn"):
        assert confroute.semantic_entropy(np.zeros(n, int), [0, n], lp, kind)[0] == 0.0
        assert confroute.semantic_entropy(np.arange(n), [0, n], lp, kind)[0] == pytest.approx(math.log(n), abs=1e-12)


def test_far_apart_likelihoods_stay_finite():
    # A cluster 2000 nats below the other: p ~ e^-2000, Kuhn's -ln p stays finite (~1000).
    se = confroute.semantic_entropy([0, 1], [0, 2], [0.0, -2000.0], "kuhn")[0]
    assert se == pytest.approx(1000.0, rel=1e-9)


# ---------- dtypes, layouts, copies ----------

def test_dtypes_and_layouts_agree():
    rng = np.random.default_rng(3)
    tlp, toff, emb, soff = ref.random_batch(rng, 50, D=6)
    base = confroute.confidence_batch(tlp, toff, emb, soff, 0.7)
    wide = np.zeros((emb.shape[0], emb.shape[1] + 1))
    wide[:, 1:] = emb
    variants = [
        (tlp.astype(np.float32), toff.astype(np.int32), emb.astype(np.float32), soff.astype(np.int32)),
        (tlp.tolist(), toff.tolist(), emb.tolist(), soff.tolist()),
        (tlp, toff, wide[:, 1:], soff),                      # non-contiguous rows
        (np.repeat(tlp, 2)[::2], toff, np.asfortranarray(emb), soff.astype(np.uint16)),
    ]
    for t, to, e, so in variants:
        got = confroute.confidence_batch(t, to, e, so, 0.7)
        np.testing.assert_array_equal(got.n_samples, base.n_samples)
        np.testing.assert_allclose(got.se_kuhn, base.se_kuhn, rtol=1e-4, atol=1e-5)
    ids = base.cluster_ids
    for id_dtype in (np.int32, np.int64, np.uint8):
        np.testing.assert_allclose(confroute.semantic_entropy(ids.astype(id_dtype), soff), base.se_discrete)


def test_inputs_are_not_modified():
    rng = np.random.default_rng(4)
    tlp, toff, emb, soff = ref.random_batch(rng, 20)
    copies = [a.copy() for a in (tlp, toff, emb, soff)]
    confroute.confidence_batch(tlp, toff, emb, soff, 0.5)
    for a, c in zip((tlp, toff, emb, soff), copies):
        np.testing.assert_array_equal(a, c)


# ---------- bad input ----------

EMB = np.eye(3)
BAD_CASES = [
    ("sample_offsets\\[0\\] is 1", lambda: confroute.cluster_by_similarity(EMB, [1, 3], 0.5)),
    ("decreases", lambda: confroute.cluster_by_similarity(EMB, [0, 2, 1, 3], 0.5)),
    ("ends at 4 but there are 3", lambda: confroute.cluster_by_similarity(EMB, [0, 4], 0.5)),
    ("ends at 2 but there are 3", lambda: confroute.cluster_by_similarity(EMB, [0, 2], 0.5)),
    ("has no samples", lambda: confroute.cluster_by_similarity(EMB, [0, 0, 3], 0.5)),
    ("sample_offsets is empty", lambda: confroute.cluster_by_similarity(EMB, [], 0.5)),
    ("zero norm", lambda: confroute.cluster_by_similarity([[1, 0], [0, 0]], [0, 2], 0.5)),
    ("NaN or infinite", lambda: confroute.cluster_by_similarity([[1, 0], [np.nan, 0]], [0, 2], 0.5)),
    ("threshold must lie", lambda: confroute.cluster_by_similarity(EMB, [0, 3], 1.5)),
    ("threshold must lie", lambda: confroute.cluster_by_similarity(EMB, [0, 3], float("nan"))),
    ("unknown method", lambda: confroute.cluster_by_similarity(EMB, [0, 3], 0.5, "kmeans")),
    ("must be 2-D", lambda: confroute.cluster_by_similarity(np.ones(3), [0, 3], 0.5)),
    ("must hold real numbers", lambda: confroute.cluster_by_similarity(np.array([["a"]]), [0, 1], 0.5)),
    ("sample_offsets must hold integers", lambda: confroute.cluster_by_similarity(EMB, [0.0, 3.0], 0.5)),
    ("NaN or infinite", lambda: confroute.token_logprobs([[0.0, np.inf]], [0])),
    ("NaN or infinite", lambda: confroute.token_logprobs([[0.0, np.nan]], [0])),
    ("outside the vocabulary", lambda: confroute.token_logprobs([[0.0, 1.0]], [2])),
    ("outside the vocabulary", lambda: confroute.token_logprobs([[0.0, 1.0]], [-1])),
    ("temperature", lambda: confroute.token_logprobs([[0.0, 1.0]], [0], 0.0)),
    ("token_ids has 2 entries", lambda: confroute.token_logprobs([[0.0, 1.0]], [0, 1])),
    ("must be 2-D", lambda: confroute.token_logprobs([0.0, 1.0], [0])),
    ("NaN or infinite", lambda: confroute.sequence_logprobs([-1.0, np.nan], [0, 2])),
    ("unknown reduce", lambda: confroute.sequence_logprobs([-1.0], [0, 1], "max")),
    ("token_offsets\\[0\\]", lambda: confroute.sequence_logprobs([-1.0], [1, 1])),
    ("unknown kind", lambda: confroute.semantic_entropy([0], [0, 1], None, "shannon")),
    ("needs seq_logprobs", lambda: confroute.semantic_entropy([0], [0, 1], None, "weighted")),
    ("needs seq_logprobs", lambda: confroute.semantic_entropy([0], [0, 1], None, "kuhn")),
    ("seq_logprobs has 2 entries", lambda: confroute.semantic_entropy([0], [0, 1], [0.0, 0.0], "kuhn")),
    ("NaN or infinite", lambda: confroute.semantic_entropy([0], [0, 1], [np.inf], "kuhn")),
    ("outside \\[0, 2\\)", lambda: confroute.semantic_entropy([0, 2], [0, 2])),
    ("outside \\[0, 2\\)", lambda: confroute.semantic_entropy([0, -1], [0, 2])),
    ("token_offsets has 2 entries", lambda: confroute.confidence_batch([-1.0], [0, 1], EMB, [0, 3], 0.5)),
    ("NaN or infinite", lambda: confroute.confidence_batch([np.nan, -1, -1], [0, 1, 2, 3], EMB, [0, 3], 0.5)),
    ("unknown kind", lambda: confroute.confidence_batch([-1.0] * 3, [0, 1, 2, 3], EMB, [0, 3], 0.5).se("x")),
]


@pytest.mark.parametrize("match,call", BAD_CASES)
def test_bad_input_raises_value_error(match, call):
    with pytest.raises(ValueError, match=match):
        call()


@settings(max_examples=200, deadline=None)
@given(offsets=st.lists(st.integers(-3, 12), min_size=0, max_size=6),
       ids=st.lists(st.integers(-2, 12), min_size=0, max_size=10),
       lp=st.lists(st.floats(allow_nan=True, allow_infinity=True), min_size=0, max_size=10),
       kind=st.sampled_from(["discrete", "weighted", "kuhn"]))
def test_fuzz_entropy_never_crashes(offsets, ids, lp, kind):
    try:
        out = confroute.semantic_entropy(np.array(ids, dtype=np.int64), np.array(offsets, dtype=np.int64),
                                         np.array(lp) if lp else None, kind)
    except ValueError:
        return
    assert np.all(np.isfinite(out)) and np.all(out >= -1e-12)


@settings(max_examples=200, deadline=None)
@given(offsets=st.lists(st.integers(-3, 8), min_size=0, max_size=5),
       rows=st.integers(0, 8), dim=st.integers(0, 4), threshold=st.floats(-2, 2),
       method=st.sampled_from(["greedy", "components"]), seed=st.integers(0, 100))
def test_fuzz_clustering_never_crashes(offsets, rows, dim, threshold, method, seed):
    emb = np.random.default_rng(seed).integers(-1, 2, size=(rows, dim)).astype(np.float64)
    try:
        ids = confroute.cluster_by_similarity(emb, np.array(offsets, dtype=np.int64), threshold, method)
    except ValueError:
        return
    assert ids.shape == (rows,) and ids.min(initial=0) >= 0
