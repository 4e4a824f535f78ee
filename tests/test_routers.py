"""The trained routers on synthetic embeddings: planted rules, the SW fit, save/load, errors."""
import json

import numpy as np
import pytest

from confroute.routers import Router, get_router
from confroute.routers.sw import SWRouter, sw_probability
from helpers.routers import TableEmbedder, planted, prompts, rows_for

ROUTERS = ["sw", "mf", "mlp", "knn"]


@pytest.fixture(scope="module")
def data():
    return planted()


@pytest.mark.parametrize("name", ROUTERS)
def test_router_learns_a_planted_rule(name, data):
    X, y, emb = data
    train, test = np.arange(400), np.arange(400, 600)
    router = get_router(name, embedder=emb).fit(rows_for(train, y))
    assert (router.strong, router.weak) == ("cloud", "edge")
    s = router.score(prompts(test))
    assert s.dtype == np.float64 and s.shape == (200,)
    assert np.all((s >= 0) & (s <= 1))
    strong, weak, tie = s[y[test] == 1], s[y[test] == 0], s[y[test] == 0.5]
    # every strong-centre prompt above every weak-centre prompt, ties in between on average
    assert strong.min() > weak.max(), (name, strong.min(), weak.max())
    assert weak.mean() < tie.mean() < strong.mean()
    assert router.info["n_train"] == 400 and router.info["n_tie"] == int((y[train] == 0.5).sum())


@pytest.mark.parametrize("name", ROUTERS)
def test_save_load_gives_identical_scores(name, data, tmp_path):
    X, y, emb = data
    router = get_router(name, embedder=emb).fit(rows_for(np.arange(300), y))
    router.threshold = 0.4
    router.save(tmp_path / name)
    config = json.loads((tmp_path / name / "router.json").read_text())
    assert config["name"] == name and config["format_version"] == 1
    assert config["embedder"] == {"name": "table", "dim": 32}
    loaded = Router.load(tmp_path / name, embedder=emb)
    assert type(loaded) is type(router) and loaded.threshold == 0.4
    test = prompts(range(300, 600))
    np.testing.assert_array_equal(loaded.score(test), router.score(test))
    np.testing.assert_array_equal(loaded.route(test), router.score(test) > 0.4)


def test_sw_hand_worked_two_points():
    # q1 = e1 (strong won), q2 = e2 (weak won); gamma = 10, S = cos / max cos.
    sims = np.array([[1.0, 0.0],     # q = e1: S = (1, 0), w = (10^2, 10^1)
                     [0.8, 0.6],     # S = (1, 0.75),  w = (10^2, 10^1.75)
                     [0.5, 0.5]])    # S = (1, 1): equal weights
    y = np.array([1.0, 0.0])
    expect = [100 / 110, 100 / (100 + 10**1.75), 0.5]
    np.testing.assert_allclose(sw_probability(sims, y), expect, rtol=1e-12)
    # the same through the router (embeddings e1, e2 and the queries above)
    r = SWRouter().fit_embeddings(np.eye(2), y)
    np.testing.assert_allclose(r.score_embeddings(sims), expect, rtol=1e-6)
    # a tie is half a win: with a third point (tie) on q = e1's side
    np.testing.assert_allclose(sw_probability([[1.0, 0.0, 1.0]], np.array([1.0, 0.0, 0.5])),
                               [(100 + 50) / 210], rtol=1e-12)
    # scale="none": weights from the plain cosine (the literal paper formula)
    np.testing.assert_allclose(sw_probability([[0.5, 0.0]], y, scale="none"),
                               [10**1.5 / (10**1.5 + 10)], rtol=1e-12)


def test_sw_equals_a_weighted_logistic_fit():
    """The closed form is the weighted-logistic BT MLE: compare with scikit-learn's."""
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(3)
    X = rng.standard_normal((60, 8))
    y = rng.choice([0.0, 0.5, 1.0], 60)
    q = rng.standard_normal((1, 8))
    Xn = X / np.linalg.norm(X, axis=1, keepdims=True)
    qn = q / np.linalg.norm(q)
    sims = qn @ Xn.T
    w = 10 ** (1 + sims[0] / sims.max())
    # BT with two models: one coefficient on the feature (strong=+1, weak=-1) = 1 per battle;
    # a tie enters as half a win and half a loss.
    feat = np.ones((120, 1))
    yy = np.concatenate([np.where(y == 0.5, 1, y), np.where(y == 0.5, 0, y)])
    ww = np.concatenate([np.where(y == 0.5, w / 2, w / 2), np.where(y == 0.5, w / 2, w / 2)])
    lr = LogisticRegression(fit_intercept=False, C=1e12, tol=1e-12, max_iter=1000)
    lr.fit(feat, yy, sample_weight=ww)
    p_lr = lr.predict_proba([[1.0]])[0, 1]
    r = SWRouter().fit_embeddings(X, y)
    assert r.score_embeddings(q)[0] == pytest.approx(p_lr, abs=1e-6)


def test_sw_top_k_restricts_the_fit(data):
    X, y, emb = data
    full = SWRouter(embedder=emb).fit_embeddings(X[:400], y[:400])
    all_k = SWRouter(embedder=emb, top_k=400).fit_embeddings(X[:400], y[:400])
    near = SWRouter(embedder=emb, top_k=20).fit_embeddings(X[:400], y[:400])
    test = X[400:]
    np.testing.assert_allclose(all_k.score_embeddings(test), full.score_embeddings(test),
                               atol=1e-6)
    # with only near neighbours, far clusters no longer pull the score to the middle
    s_full, s_near = full.score_embeddings(test), near.score_embeddings(test)
    strong = y[400:] == 1
    assert s_near[strong].mean() > s_full[strong].mean()
    assert s_near[y[400:] == 0].mean() < s_full[y[400:] == 0].mean()


def test_knn_k1_copies_the_nearest_label_and_k3_averages():
    X = np.array([[1, 0, 0], [0.9, 0.1, 0], [0, 1, 0], [0, 0, 1]], dtype=float)
    y = np.array([1.0, 0.5, 0.0, 0.0])
    r1 = get_router("knn").fit_embeddings(X, y)
    np.testing.assert_array_equal(r1.score_embeddings(X), y)
    r3 = get_router("knn", k=3).fit_embeddings(X, y)
    assert r3.score_embeddings([[1, 0.05, 0]])[0] == pytest.approx(0.5)  # (1 + 0.5 + 0) / 3


def test_knn_ivf_index_agrees_with_exact_on_clustered_data():
    rng = np.random.default_rng(1)
    centres = rng.standard_normal((20, 16)) * 4
    which = rng.integers(0, 20, 4000)
    X = centres[which] + rng.standard_normal((4000, 16))
    y = (which % 2).astype(float)
    exact = get_router("knn", k=5, index="exact").fit_embeddings(X[:3000], y[:3000])
    ivf = get_router("knn", k=5, index="ivf").fit_embeddings(X[:3000], y[:3000])
    a, b = exact.score_embeddings(X[3000:]), ivf.score_embeddings(X[3000:])
    assert np.mean(np.abs(a - b) < 1e-9) > 0.95


def test_mf_model_scores_give_the_probability(data):
    X, y, emb = data
    r = get_router("mf", embedder=emb).fit(rows_for(np.arange(200), y))
    Xn = X[200:210] / np.linalg.norm(X[200:210], axis=1, keepdims=True)
    s = r.model_scores(Xn)
    np.testing.assert_allclose(r.score_embeddings(X[200:210]),
                               1 / (1 + np.exp(-(s[:, 1] - s[:, 0]))), rtol=1e-6)


# ---------------------------------------------------------------- bad input

def test_unknown_router_name():
    with pytest.raises(ValueError, match="unknown router 'nope'.*known:.*knn.*mf.*mlp.*sw"):
        get_router("nope")


def test_dimension_mismatch_between_router_and_embedder(data, tmp_path):
    X, y, emb = data
    get_router("knn", embedder=emb).fit(rows_for(range(50), y)).save(tmp_path / "r")
    small = TableEmbedder(X[:, :16])
    with pytest.raises(ValueError, match="trained on 32-dimensional.*gives 16"):
        Router.load(tmp_path / "r", embedder=small)
    r = get_router("knn", embedder=emb).fit(rows_for(range(50), y))
    small.dim = 32  # an embedder that says 32 but returns 16
    r._embedder = small
    with pytest.raises(ValueError, match="trained on 32-dimensional.*got 16"):
        r.score(["p1"])
    with pytest.raises(ValueError, match="dimension 32, the embedder 16"):
        get_router("sw", embedder=TableEmbedder(X[:, :16])).fit_embeddings(X[:10], y[:10])


def test_other_bad_input(data, tmp_path):
    X, y, emb = data
    with pytest.raises(ValueError, match="not trained"):
        get_router("sw", embedder=emb).score(["p1"])
    with pytest.raises(ValueError, match="targets must be 0"):
        get_router("mf").fit_embeddings(X[:3], [0.0, 0.3, 1.0])
    with pytest.raises(ValueError, match="only one outcome"):
        get_router("mlp").fit_embeddings(X[:4], [1.0, 1.0, 1.0, 1.0])
    with pytest.raises(ValueError, match="holds no saved router"):
        Router.load(tmp_path)
    with pytest.raises(ValueError, match="list of strings"):
        get_router("knn", embedder=emb).fit(rows_for(range(5), y)).score("p1")
    (tmp_path / "empty.jsonl").write_text("")
    with pytest.raises(ValueError, match="holds no label rows"):
        get_router("sw", embedder=emb).fit(str(tmp_path / "empty.jsonl"))


def test_caching_embedder_embeds_each_text_once():
    from confroute.routers.features import CachingEmbedder

    calls = []

    class Counting(TableEmbedder):
        def embed(self, texts):
            calls.extend(texts)
            return super().embed(texts)

    X = np.random.default_rng(0).standard_normal((10, 4))
    c = CachingEmbedder(Counting(X), max_items=5)
    np.testing.assert_array_equal(c.embed(["p1", "p2", "p1"]), np.float32(X[[1, 2, 1]]))
    np.testing.assert_array_equal(c.embed(["p2", "p3"]), np.float32(X[[2, 3]]))
    assert calls == ["p1", "p2", "p3"] and c.dim == 4
    np.testing.assert_array_equal(c.embed(prompts(range(10))), np.float32(X))  # > max_items
    assert len(c._cache) == 5


def test_sw_scores_in_chunks_like_in_one_block(data, monkeypatch):
    import confroute.routers.sw as sw_module

    X, y, emb = data
    r = SWRouter().fit_embeddings(X[:300], y[:300])
    whole = r.score_embeddings(X[300:])
    monkeypatch.setattr(sw_module, "SIMILARITY_BUDGET", 300 * 7)  # chunks of 7 queries
    np.testing.assert_allclose(r.score_embeddings(X[300:]), whole, rtol=1e-6)
