"""Replay speed: one router swept over 100k prompts (201 thresholds), the metrics, and the
uncertainty metrics; seeded synthetic outcomes. Run: python -m pytest bench --benchmark-only"""
import numpy as np
import pytest

from confroute.eval import metrics as M
from confroute.eval.router_metrics import curve_metrics, sweep

N = 100_000


@pytest.fixture(scope="module")
def outcomes():
    rng = np.random.default_rng(0)
    qw = (rng.random(N) < 0.65).astype(float)
    qs = np.maximum(qw, (rng.random(N) < 0.8).astype(float))
    scores = np.clip(0.5 * (1 - qw) + 0.5 * rng.random(N), 0, 1)
    return scores, qw, qs


@pytest.mark.benchmark(group="replay 100k prompts")
def test_sweep(benchmark, outcomes):
    c = benchmark(sweep, *outcomes)
    assert c.share[0] == 0 and c.share[-1] == 1


@pytest.mark.benchmark(group="replay 100k prompts")
def test_sweep_and_metrics(benchmark, outcomes):
    s, qw, qs = outcomes
    m = benchmark(lambda: curve_metrics(sweep(s, qw, qs), qw.mean(), qs.mean()))
    assert 0.5 < m["apgr"]


@pytest.mark.benchmark(group="uncertainty 100k prompts")
def test_auroc(benchmark, outcomes):
    s, qw, _ = outcomes
    assert benchmark(M.auroc, s, qw) > 0.5


@pytest.mark.benchmark(group="uncertainty 100k prompts")
def test_prr(benchmark, outcomes):
    s, qw, _ = outcomes
    assert benchmark(M.prr, s, qw) > 0
