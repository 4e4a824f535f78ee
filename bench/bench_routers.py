"""Scoring latency of the trained routers, embedding excluded, against a 100k-prompt training
set (synthetic: 384-d unit vectors around 1,000 topic centres, like sentence embeddings of
varied prompts). Run: python -m pytest bench/bench_routers.py --benchmark-only

Groups put the reference (exact search over all 100k / scikit-learn's own predict) beside the
fast path, and conftest.py prints the ratio. extra_info records what the fast path changes:
kNN's agreement with exact search, SW's score change when only the top-k neighbours enter."""
import numpy as np
import pytest

from confroute.routers import get_router

N, D = 100_000, 384


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((1000, D)).astype(np.float32)
    topic = rng.integers(0, 1000, N + 1000)
    X = centres[topic] + 0.6 * rng.standard_normal((N + 1000, D)).astype(np.float32)
    p_strong = rng.random(1000)  # each topic has its own chance that the strong model wins
    y = np.where(rng.random(N) < p_strong[topic[:N]], 1.0, 0.0)
    y[rng.random(N) < 0.2] = 0.5
    return X[:N], y, X[N:]


@pytest.fixture(scope="module")
def routers(data):
    X, y, _ = data
    return {
        "knn_exact": get_router("knn", index="exact").fit_embeddings(X, y),
        "knn_ivf": get_router("knn", index="ivf").fit_embeddings(X, y),
        "sw_all": get_router("sw", top_k=N, index="exact").fit_embeddings(X, y),
        "sw_top1000_exact": get_router("sw", top_k=1000, index="exact").fit_embeddings(X, y),
        "sw_top1000_ivf": get_router("sw", top_k=1000, index="ivf").fit_embeddings(X, y),
        "mf": get_router("mf").fit_embeddings(X[:20000], y[:20000]),
    }


def one(queries, i=[0]):
    i[0] = (i[0] + 1) % len(queries)
    return queries[i[0]: i[0] + 1]


@pytest.mark.benchmark(group="knn k=1, one prompt, 100k index")
def test_knn_reference_exact(benchmark, data, routers):
    benchmark(lambda: routers["knn_exact"].score_embeddings(one(data[2])))


@pytest.mark.benchmark(group="knn k=1, one prompt, 100k index")
def test_knn_ivf(benchmark, data, routers):
    benchmark(lambda: routers["knn_ivf"].score_embeddings(one(data[2])))
    a = routers["knn_exact"].score_embeddings(data[2])
    b = routers["knn_ivf"].score_embeddings(data[2])
    benchmark.extra_info["same_score_as_exact"] = float(np.mean(a == b))


@pytest.mark.benchmark(group="sw, one prompt, 100k index")
def test_sw_reference_all_prompts(benchmark, data, routers):
    benchmark.pedantic(lambda: routers["sw_all"].score_embeddings(one(data[2])), rounds=20,
                       iterations=1)


def _sw_change(routers, name, Q):
    full = routers["sw_all"].score_embeddings(Q)
    near = routers[name].score_embeddings(Q)
    rank = lambda v: np.argsort(np.argsort(v))
    return {"mean_abs_change": float(np.mean(np.abs(full - near))),
            "max_abs_change": float(np.max(np.abs(full - near))),
            "rank_corr": float(np.corrcoef(rank(full), rank(near))[0, 1])}


@pytest.mark.benchmark(group="sw, one prompt, 100k index")
def test_sw_top1000_exact(benchmark, data, routers):
    benchmark(lambda: routers["sw_top1000_exact"].score_embeddings(one(data[2])))
    benchmark.extra_info.update(_sw_change(routers, "sw_top1000_exact", data[2][:200]))


@pytest.mark.benchmark(group="sw, one prompt, 100k index")
def test_sw_top1000_ivf(benchmark, data, routers):
    benchmark(lambda: routers["sw_top1000_ivf"].score_embeddings(one(data[2])))
    benchmark.extra_info.update(_sw_change(routers, "sw_top1000_ivf", data[2][:200]))


@pytest.mark.benchmark(group="mf and mlp, one prompt")
def test_mf(benchmark, data, routers):
    benchmark(lambda: routers["mf"].score_embeddings(one(data[2])))


@pytest.fixture(scope="module")
def mlp_pair(data):
    """The MLP router and the scikit-learn classifier with the same weights."""
    from sklearn.neural_network import MLPClassifier

    from confroute.routers.features import hard_targets

    X, y, _ = data
    r = get_router("mlp", max_iter=50).fit_embeddings(X[:5000], y[:5000])
    Xh, yh, w = hard_targets(r._check_dim(X[:5000] / np.linalg.norm(X[:5000], axis=1)[:, None]), y[:5000])
    clf = MLPClassifier(hidden_layer_sizes=(r.hidden,), max_iter=1).fit(Xh[:10], yh[:10])
    clf.coefs_, clf.intercepts_ = [r._w1, r._w2], [r._b1, r._b2]
    return r, clf


@pytest.mark.benchmark(group="mf and mlp, one prompt")
def test_mlp_reference_sklearn_predict(benchmark, data, mlp_pair):
    r, clf = mlp_pair
    q = data[2] / np.linalg.norm(data[2], axis=1, keepdims=True)
    benchmark(lambda: clf.predict_proba(one(q))[:, 1])
    np.testing.assert_allclose(clf.predict_proba(q)[:, 1], r.score_embeddings(data[2]), atol=1e-6)


@pytest.mark.benchmark(group="mf and mlp, one prompt")
def test_mlp_numpy_forward(benchmark, data, mlp_pair):
    benchmark(lambda: mlp_pair[0].score_embeddings(one(data[2])))


@pytest.mark.benchmark(group="knn exact, 1000 prompts (per-prompt loop vs one batch)")
def test_batch_reference_one_by_one(benchmark, data, routers):
    Q = data[2]
    benchmark.pedantic(lambda: [routers["knn_exact"].score_embeddings(Q[i:i + 1])
                                for i in range(len(Q))], rounds=2, iterations=1)


@pytest.mark.benchmark(group="knn exact, 1000 prompts (per-prompt loop vs one batch)")
def test_batch_scoring(benchmark, data, routers):
    benchmark.pedantic(lambda: routers["knn_exact"].score_embeddings(data[2]), rounds=3,
                       iterations=1)
