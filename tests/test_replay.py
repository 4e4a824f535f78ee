"""Replay over the recorded dev outcomes: random is the diagonal, the oracle bounds all."""
import numpy as np
import pytest

from confroute.eval import metrics as M
from confroute.eval.data import load_benchmark
from confroute.eval.table import OutcomeTable
from confroute.eval.replay import replay
from confroute.eval.router_scores import resolve_router
from confroute.routers.base import Router
from confroute.eval.baselines import ScoresRouter
from confroute.routers.random import RandomRouter
from helpers.data import DATA, SHARED_ONLY, needs_data


@pytest.fixture(scope="module", params=["gsm8k", "mmlu"])
def binary_table(request):
    if DATA is None:
        pytest.skip(SHARED_ONLY)
    return load_benchmark(request.param, DATA)


@pytest.mark.data
@needs_data
def test_random_is_the_diagonal_on_dev(binary_table):
    # on the recorded tables of hundreds of prompts: the tolerances are for their size
    rep = replay(binary_table, {f"seed{s}": RandomRouter(seed=s) for s in range(20)})
    apgr = np.array([r.metrics["apgr"] for r in rep.results])
    cpt50 = np.array([r.metrics["cpt50"] for r in rep.results])
    # Each seed is one random walk around the diagonal; their mean is close to it.
    assert abs(apgr.mean() - 0.5) < 0.03, apgr
    assert abs(cpt50.mean() - 0.5) < 0.04, cpt50
    tol = 0.05 if len(binary_table) > 5000 else 0.12
    assert np.all(np.abs(apgr - 0.5) < tol), apgr


class _LengthRouter(Router):
    """A prompt-only signal for the dominance check: longer prompt -> cloud."""

    name = "length"

    def score(self, prompts):
        n = np.array([len(p) for p in prompts], dtype=float)
        return (n - n.min()) / (n.max() - n.min())


@pytest.mark.data
@pytest.mark.parametrize("bench", ["gsm8k", "mmlu", "mt-bench"])
def test_oracle_dominates_every_router(data_dir, bench):
    t = load_benchmark(bench, data_dir)
    routers = {"oracle": "oracle", "length": _LengthRouter(), "shorter": _Inverted(),
               **{f"random{s}": RandomRouter(seed=s) for s in range(5)}}
    rep = replay(t, routers)
    grid = np.linspace(0, 1, 201)
    curves = {r.label: M.quality_at(r.curve.share, r.curve.quality, grid) for r in rep.results}
    oracle = curves.pop("oracle")
    for label, q in curves.items():
        assert np.all(oracle >= q - 1e-12), label
    res = {r.label: r.metrics for r in rep.results}
    assert all(res["oracle"]["apgr"] > m["apgr"] for k, m in res.items() if k != "oracle")
    # The curve spans all-weak to all-strong.
    for r in rep.results:
        assert r.curve.quality[0] == pytest.approx(rep.q_weak)
        assert r.curve.quality[-1] == pytest.approx(rep.q_strong)


class _Inverted(_LengthRouter):
    name = "shorter"

    def score(self, prompts):
        return 1 - super().score(prompts)


def _toy():
    return OutcomeTable(["a", "b", "c", "d"], ["w", "s"],
                        np.array([[1, 1], [0, 1], [0, 1], [1, 0]], dtype=float), "w", "s")


def test_router_specs(tmp_path):
    t = _toy()
    label, r = resolve_router("random:seed=7", t)
    assert isinstance(r, RandomRouter) and r.seed == 7
    # A saved router folder works as a spec (what trained routers will pass).
    RandomRouter(seed=3).save(tmp_path / "saved")
    label, r = resolve_router(str(tmp_path / "saved"), t)
    assert label == "saved" and r.seed == 3
    np.testing.assert_array_equal(r.score(t.prompts), RandomRouter(seed=3).score(t.prompts))
    label, r = resolve_router("oracle", t)
    assert r.score(["b", "d", "a"]).tolist() == [1.0, 0.0, 0.5]
    with pytest.raises(ValueError, match="unknown router 'nope'"):
        resolve_router("nope", t)
    with pytest.raises(ValueError, match="bad option"):
        resolve_router("random:seed=1,x", t)
    with pytest.raises(ValueError, match="random.*options"):
        resolve_router("random:colour=red", t)


def test_random_scores_are_per_prompt_and_seeded():
    r = RandomRouter(seed=1)
    a = r.score(["x", "y", "z"])
    assert r.score(["z", "x"]).tolist() == [a[2], a[0]]
    assert not np.array_equal(a, RandomRouter(seed=2).score(["x", "y", "z"]))
    assert np.all((a >= 0) & (a < 1))


def test_scores_router_reads_a_file(tmp_path):
    p = tmp_path / "se.csv"
    p.write_text("prompt,se,logprob\na,0.1,-0.5\nb,2.0,-3\nc,1.5,-2\nd,0.0,-0.1\n")
    r = ScoresRouter(path=str(p), column="se")  # entropies in nats: rescaled, order kept
    assert r.score(["a", "b", "c", "d"]).tolist() == pytest.approx([0.05, 1.0, 0.75, 0.0])
    lp = ScoresRouter(path=str(p), column="logprob", higher="edge")
    assert np.argsort(lp.score(["a", "b", "c", "d"])).tolist() == [3, 0, 2, 1]
    rep = replay(_toy(), {"se": f"scores:path={p},column=se", "oracle": "oracle"})
    # By hand: b, c, a, d go to the cloud in turn, so PGR (gap 0.5 -> 0.75) is 0, 1, 2, 2, 1
    # at shares 0, .25, .5, .75, 1; trapezoids: .25 * (.5 + 1.5 + 2 + 1.5) = 1.375.
    assert rep.results[0].metrics["apgr"] == pytest.approx(1.375)
    with pytest.raises(ValueError, match=r"no score for 1 of 2 prompts"):
        r.score(["a", "zzz"])
    with pytest.raises(ValueError, match="missing column 'nope'"):
        ScoresRouter(path=str(p), column="nope")
    with pytest.raises(ValueError, match="outside"):
        ScoresRouter(path=str(p), column="se", rescale=False)


def test_replay_rejects_bad_router_output():
    class Bad(Router):
        name = "bad"

        def score(self, prompts):
            return np.full(len(prompts), 2.0)

    with pytest.raises(ValueError, match="outside"):
        replay(_toy(), [Bad()])
