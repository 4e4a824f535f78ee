"""The confidence core against the per-query NumPy reference, scaling in the batch size, and
token_logprobs on a 49k vocabulary against NumPy. Run: python -m pytest bench --benchmark-only"""
import numpy as np
import pytest

import confroute
from helpers import reference as ref


def make_batch(B, N=10, T=128, D=384, seed=0):
    """B queries x N samples x T tokens, embeddings of width D near a few meanings (float32)."""
    rng = np.random.default_rng(seed)
    S = B * N
    sample_offsets = np.arange(0, S + 1, N, dtype=np.int64)
    token_offsets = np.arange(0, S * T + 1, T, dtype=np.int64)
    token_lp = -rng.exponential(1.0, size=S * T).astype(np.float32)
    centres = rng.normal(size=(4, D)).astype(np.float32)
    emb = centres[rng.integers(0, 4, size=S)] + 0.3 * rng.normal(size=(S, D)).astype(np.float32)
    return token_lp, token_offsets, emb, sample_offsets


@pytest.fixture(scope="module")
def batch4096():
    return make_batch(4096)


@pytest.mark.benchmark(group="pipeline B=4096 N=10 T=128 D=384")
def test_pipeline_reference(benchmark, batch4096):
    benchmark.pedantic(ref.confidence_batch, args=(*batch4096, 0.9), rounds=2, iterations=1)


@pytest.mark.benchmark(group="pipeline B=4096 N=10 T=128 D=384")
def test_pipeline_core(benchmark, batch4096):
    r = benchmark(confroute.confidence_batch, *batch4096, 0.9)
    want = ref.confidence_batch(*batch4096, 0.9)
    np.testing.assert_allclose(r.se_kuhn, want["se_kuhn"], rtol=1e-6, atol=1e-9)


@pytest.mark.benchmark(group="pipeline B=4096 N=10 T=128 D=384")
def test_pipeline_core_one_thread(benchmark, batch4096):
    benchmark(confroute.confidence_batch, *batch4096, 0.9, n_threads=1)


@pytest.mark.parametrize("B", [1024, 4096, 16384, 65536])
@pytest.mark.benchmark(group="pipeline scaling (per-query cost = median / B)")
def test_pipeline_scaling(benchmark, B):
    batch = make_batch(B, seed=B)
    benchmark.extra_info["us_per_query"] = None
    benchmark.pedantic(confroute.confidence_batch, args=(*batch, 0.9), rounds=3, iterations=1)
    benchmark.extra_info["us_per_query"] = benchmark.stats.stats.median / B * 1e6


@pytest.fixture(scope="module")
def logits49k():
    rng = np.random.default_rng(1)
    logits = (rng.normal(size=(64, 49152)) * 4).astype(np.float32)
    return logits, rng.integers(0, 49152, size=64)


@pytest.mark.benchmark(group="token_logprobs M=64 V=49152 float32")
def test_token_logprobs_reference(benchmark, logits49k):
    benchmark(ref.token_logprobs, *logits49k)


@pytest.mark.benchmark(group="token_logprobs M=64 V=49152 float32")
def test_token_logprobs_core(benchmark, logits49k):
    got = benchmark(confroute.token_logprobs, *logits49k)
    np.testing.assert_allclose(got, ref.token_logprobs(*logits49k), rtol=1e-5, atol=1e-5)


@pytest.mark.benchmark(group="token_logprobs M=8 V=49152 float32 (one decode step of 8 samples)")
def test_token_logprobs_step_reference(benchmark, logits49k):
    benchmark(ref.token_logprobs, logits49k[0][:8], logits49k[1][:8])


@pytest.mark.benchmark(group="token_logprobs M=8 V=49152 float32 (one decode step of 8 samples)")
def test_token_logprobs_step_core(benchmark, logits49k):
    benchmark(confroute.token_logprobs, logits49k[0][:8], logits49k[1][:8])
