"""Batched edge sampling: the same samples as one prompt at a time (real SmolLM2), and the work
queue's grouping of waiting jobs (pure logic)."""
from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest

from confroute.server.limits import WorkQueue

PROMPTS = [[{"role": "user", "content": "What is the capital of France?"}],
           [{"role": "user", "content": "Name one random animal."}],
           [{"role": "user", "content": "Tell me a story."}]]


@pytest.fixture(scope="module")
def edge():
    from confroute.models import default_edge

    m = default_edge(n_threads=1, n_ctx=128, n_seq_max=16)
    yield m
    m.close()


@pytest.mark.models
@pytest.mark.parametrize("temperature,seed", [(0.0, None), (1.0, 11)])
def test_sample_many_draws_what_each_prompt_draws_alone(edge, temperature, seed):
    from confroute.models.types import SampleRequest
    from confroute.server.edge_worker import batching_supported

    assert batching_supported(edge)
    alone = [edge.sample(m, n=4, max_tokens=12, temperature=temperature, seed=seed)
             for m in PROMPTS]
    together = edge.sample_many([SampleRequest(edge.prompt_tokens(m), 4, 12, temperature, seed)
                                 for m in PROMPTS])
    for a, b in zip(alone, together):
        assert a.texts == b.texts and a.finish_reasons == b.finish_reasons
        assert a.prompt_tokens == b.prompt_tokens and a.completion_tokens == b.completion_tokens
        for x, y in zip(a.token_logprobs, b.token_logprobs):
            np.testing.assert_allclose(x, y, rtol=0, atol=1e-6)


@pytest.mark.models
def test_sample_many_refuses_what_does_not_fit(edge):
    from confroute.models.types import SampleRequest as Job

    p = edge.prompt_tokens(PROMPTS[0])
    with pytest.raises(ValueError, match="sequences"):
        edge.sample_many([Job(p, 9, 4, 1.0, 1), Job(p, 8, 4, 1.0, 1)])
    with pytest.raises(ValueError, match="context"):
        edge.sample_many([Job(p, 2, edge.n_ctx, 1.0, 1)])


def test_waiting_jobs_run_as_one_batch_and_fall_back_one_by_one_on_failure():
    calls, gate = [], threading.Event()

    def batch(payloads):
        calls.append(list(payloads))
        if "boom" in payloads:
            raise RuntimeError("batch failed")
        return [f"batched {p}" for p in payloads]

    async def until(cond, what):
        """Lets the other tasks and the worker run until cond() holds (no fixed wait)."""
        deadline = time.monotonic() + 30   # a bound on a failure, never reached on success
        while not cond():
            assert time.monotonic() < deadline, f"never happened: {what}"
            await asyncio.sleep(0.001)

    async def scenario():
        q = WorkQueue("t", capacity=8, batch_fn=batch, batch_fits=lambda ps: len(ps) <= 3)
        cancel = threading.Event()
        # `first` holds the worker until the gate opens; the others are all in line by then
        first = asyncio.ensure_future(q.run(gate.wait, cancel))
        jobs = [asyncio.ensure_future(q.run(lambda p=p: f"alone {p}", cancel, batch=p))
                for p in ("a", "b", "c", "d")]
        await until(lambda: q.depth == 5, "five jobs admitted")
        gate.set()
        out = await asyncio.gather(first, *jobs)
        await until(lambda: q.depth == 0, "every slot released")
        # then a batch that fails: each job runs on its own
        gate.clear()
        first = asyncio.ensure_future(q.run(gate.wait, cancel))
        jobs = [asyncio.ensure_future(q.run(lambda p=p: f"alone {p}", cancel, batch=p))
                for p in ("x", "boom")]
        await until(lambda: q.depth == 3, "three jobs admitted")
        gate.set()
        out2 = await asyncio.gather(first, *jobs)
        q.shutdown()
        return out, out2, q.depth

    out, out2, depth = asyncio.run(scenario())
    assert out[1:] == ["batched a", "batched b", "batched c", "alone d"]   # 3 fit, d alone
    assert calls[0] == ["a", "b", "c"] and out2[1:] == ["alone x", "alone boom"]
    assert depth == 0
