"""VectorIndex (FAISS) against brute-force cosine, save/load, components, bad input."""
import numpy as np
import pytest

import confroute
from helpers import reference as ref
from confroute import VectorIndex


def unit(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_search_matches_brute_force():
    rng = np.random.default_rng(0)
    base, queries = rng.normal(size=(500, 32)), rng.normal(size=(20, 32))
    index = VectorIndex(32)
    np.testing.assert_array_equal(index.add(base), np.arange(500))
    sims, ids = index.search(queries, 5)
    brute = unit(queries) @ unit(base).T
    want = np.argsort(-brute, axis=1)[:, :5]
    np.testing.assert_array_equal(ids, want)
    np.testing.assert_allclose(sims, np.take_along_axis(brute, want, 1), atol=1e-5)


def test_search_with_fewer_vectors_than_k():
    index = VectorIndex(3)
    index.add(np.eye(3)[:2])
    sims, ids = index.search([[1, 0, 0]], 4)
    assert ids[0, :2].tolist() == [0, 1] and ids[0, 2:].tolist() == [-1, -1]
    assert np.isneginf(sims[0, 2:]).all()


def test_range_search_and_components_match_reference():
    rng = np.random.default_rng(1)
    centres = rng.normal(size=(4, 16))
    x = centres[rng.integers(0, 4, 200)] + 0.2 * rng.normal(size=(200, 16))
    index = VectorIndex(16)
    index.add(x)
    lims, sims, ids = index.range_search(x[:3], 0.8)
    brute = unit(x[:3]) @ unit(x).T
    for q in range(3):
        np.testing.assert_array_equal(ids[lims[q]:lims[q + 1]], np.nonzero(brute[q] >= 0.8)[0])
    comp = index.components(0.8)
    want = ref.cluster_query(x, 0.8, "components")
    np.testing.assert_array_equal(comp, want)
    # the core's per-query clustering agrees on the same vectors
    np.testing.assert_array_equal(
        confroute.cluster_by_similarity(x, [0, len(x)], 0.8, "components"), comp)


def test_save_load_round_trip(tmp_path):
    rng = np.random.default_rng(2)
    index = VectorIndex(8)
    index.add(rng.normal(size=(50, 8)))
    index.save(tmp_path / "i.faiss")
    loaded = VectorIndex.load(tmp_path / "i.faiss")
    q = rng.normal(size=(3, 8))
    assert len(loaded) == 50 and loaded.dim == 8
    np.testing.assert_array_equal(loaded.search(q, 4)[1], index.search(q, 4)[1])


@pytest.mark.parametrize("call,match", [
    (lambda i: i.add(np.ones((2, 5))), "dimension 5"),
    (lambda i: i.add(np.zeros((1, 4))), "zero norm"),
    (lambda i: i.add([[1, 2, np.nan, 0]]), "NaN"),
    (lambda i: i.add(np.ones(4)), "2-D"),
    (lambda i: i.search(np.ones((1, 4)), 0), "k must be"),
    (lambda i: i.range_search(np.ones((1, 4)), 2.0), "similarity"),
])
def test_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call(VectorIndex(4))


def test_bad_dim_and_missing_file(tmp_path):
    with pytest.raises(ValueError, match="dim"):
        VectorIndex(0)
    with pytest.raises(ValueError, match="no index file"):
        VectorIndex.load(tmp_path / "missing.faiss")
