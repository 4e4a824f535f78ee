"""The SE label job on Ray against the single-process job, on the same prompts (NQ-open) and the
job's default sampling (n=4, 24 tokens, SmolLM2 weak, Qwen strong, 1 llama.cpp thread per
model); and Ray's cost per block with work that costs nothing.

Run: python -m pytest bench/bench_distributed.py --benchmark-only -s
Models load outside the timed part on both sides (each replica loads its own; its start-up is
in extra_info). Prompts/s and the machine's load average are in each benchmark's extra_info:
the machine is shared, so read the ratio of one run, not the absolute numbers.
"""
import json
import os
import tempfile
import time

import pytest

ray = pytest.importorskip("ray")

from confroute.runtime.blocks import BlockStore  # noqa: E402
from confroute.runtime.distributed import RayJob  # noqa: E402
from confroute.runtime.ray_cluster import RayOptions  # noqa: E402

DATA = os.environ.get("CONFROUTE_DATA") or os.path.join(os.path.dirname(__file__), "..", "..",
                                                         "shared", "data")
NQ = os.path.join(DATA, "nq_open", "dev.jsonl")
N_PROMPTS = int(os.environ.get("BENCH_PROMPTS", "8"))
GROUP = f"SE label job, {N_PROMPTS} NQ-open prompts, n=4, 24 tokens"
OVERHEAD = "Ray per block (block of 1 item that costs nothing) vs the commit alone"
needs_nq = pytest.mark.skipif(not os.path.exists(NQ), reason="no shared/data/nq_open")


def _args():
    import argparse

    from confroute.cli import label

    p = argparse.ArgumentParser()
    label.add_arguments(p)
    return p.parse_args(["--prompts", NQ, "--out", "unused", "--threads", "1"])


@pytest.fixture(scope="module")
def prompts():
    with open(NQ) as f:
        return [json.loads(line)["question"] for line in f][:N_PROMPTS]


@pytest.fixture(scope="module")
def session():
    import logging

    t = time.perf_counter()
    ray.init(address="local", num_cpus=os.cpu_count(), include_dashboard=False,
             log_to_driver=False, logging_level=logging.ERROR, object_store_memory=256 * 2**20)
    started = time.perf_counter() - t
    yield started
    ray.shutdown()


def _load(benchmark, when="before"):
    benchmark.extra_info[f"load_average_{when}"] = [round(x, 2) for x in os.getloadavg()]


def _rate(benchmark, n):
    benchmark.extra_info["prompts_per_s"] = round(n / benchmark.stats.stats.median, 4)
    benchmark.extra_info["seconds_per_prompt"] = round(benchmark.stats.stats.median / n, 3)
    _load(benchmark, "after")


@needs_nq
@pytest.mark.benchmark(group=GROUP)
def test_label_single_process_reference(benchmark, prompts):
    from confroute.cli import label
    from confroute.eval.label_job import run_label_job

    args = _args()
    weak, strong, strong_name = label._models(None, None, None, 1)
    config = label._config(args, weak.name, strong_name)
    se_fn = label._se_fn(weak, strong, config)

    def job():
        with tempfile.TemporaryDirectory() as d:
            run_label_job(prompts, os.path.join(d, "l.jsonl"), config, se_fn, progress=False)

    _load(benchmark)
    benchmark.pedantic(job, rounds=1, iterations=1)
    _rate(benchmark, len(prompts))


@needs_nq
@pytest.mark.parametrize("replicas", [1, 2])
@pytest.mark.benchmark(group=GROUP)
def test_label_ray(benchmark, session, prompts, replicas):
    from confroute.cli import label

    t = time.perf_counter()
    with RayJob(label._LabelReplica(_args(), None),
                RayOptions(replicas=replicas, block_size=2)) as job:
        benchmark.extra_info["ray_init_s"] = round(session, 2)
        benchmark.extra_info["replicas_ready_s"] = round(time.perf_counter() - t, 2)

        def run():
            with tempfile.TemporaryDirectory() as d:
                rows = job.run(list(enumerate(prompts)), BlockStore(d), progress=False)
            assert sorted(rows) == list(range(len(prompts)))

        _load(benchmark)
        benchmark.pedantic(run, rounds=1, iterations=1)
    _rate(benchmark, len(prompts))


def _free_work():
    def factory():
        return (lambda key, payload: payload), {}

    return factory


N_BLOCKS = 200


@pytest.mark.benchmark(group=OVERHEAD)
def test_commit_only_reference(benchmark):
    def commits():
        with tempfile.TemporaryDirectory() as d:
            store = BlockStore(d)
            for k in range(N_BLOCKS):
                store.commit([k], [k])

    benchmark.pedantic(commits, rounds=3, iterations=1)
    benchmark.extra_info["ms_per_block"] = round(1e3 * benchmark.stats.stats.median / N_BLOCKS, 3)
    _load(benchmark)


@pytest.mark.benchmark(group=OVERHEAD)
def test_ray_block(benchmark, session):
    with RayJob(_free_work(), RayOptions(replicas=1, block_size=1), poll_seconds=0.5) as job:
        def run():
            with tempfile.TemporaryDirectory() as d:
                job.run([(k, k) for k in range(N_BLOCKS)], BlockStore(d), progress=False)

        benchmark.pedantic(run, rounds=3, iterations=1)
    benchmark.extra_info["ms_per_block"] = round(1e3 * benchmark.stats.stats.median / N_BLOCKS, 3)
    _load(benchmark)
