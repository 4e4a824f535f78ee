"""Edge sampling speed on the real SmolLM2-135M, as shipped (Q4_1, the default edge) and as
``smollm2-135m-instruct-q8`` (the same weights requantized to Q8_0, flash attention): n=8
parallel samples (one llama.cpp batch sharing the prompt) against n=1 with the same
max_tokens, and against 8 separate generations; and the confidence computation (MiniLM
embeddings + core) per query next to the generation.

Run: python -m pytest bench/bench_edge.py --benchmark-only
The goal: 8 samples together at >= 1.8x the tokens/s of one sequence, at the same threads.
Each benchmark's extra_info holds its tokens/s; the n8 ones also ``tok_s_ratio_vs_n1`` (their
tokens/s over n1_reference's of the same model in the same run), and the run's summary prints
each group's tokens/s ratios (bench/conftest.py).
"""
import pytest

from confroute.confidence.scorer import ConfidenceScorer

PROMPT = ("You are helping a student. Explain in a few sentences why the sky looks blue during "
          "the day and red at sunset, mentioning how sunlight is scattered by the air.")
MAX_TOKENS = 64
MODELS = ("smollm2-135m-instruct", "smollm2-135m-instruct-q8")


def _group(model):
    return f"edge sampling, {model}, {MAX_TOKENS} new tokens"


@pytest.fixture(scope="module", params=MODELS)
def edge(request):
    from confroute.models import local_model

    m = local_model(request.param)  # threads: CONFROUTE_N_THREADS, else all cores (up to 8)
    m.sample(PROMPT, n=2, max_tokens=4)  # warm up the graph allocation
    yield m
    m.close()


@pytest.fixture(scope="module")
def rates():
    """Tokens/s of each edge benchmark in this run, {model: {name: tok/s}}: the n8 ones record
    their ratio to n1 of the same model (the run's summary prints it)."""
    return {}


def _threads():
    from confroute.models.llama.model import _threads as threads

    return threads(None)


def _run(benchmark, fn, rates=None, name=None, edge=None):
    if edge is not None:
        benchmark.group = _group(edge.name)
    out = benchmark.pedantic(fn, rounds=3, iterations=1, warmup_rounds=0)
    tokens = out.completion_tokens if hasattr(out, "completion_tokens") else out
    tok_s = tokens / benchmark.stats.stats.median
    benchmark.extra_info["completion_tokens"] = tokens
    benchmark.extra_info["tokens_per_s"] = round(tok_s, 1)
    if rates is not None:
        benchmark.extra_info["threads"] = _threads()
        got = rates.setdefault(edge.name, {})
        got[name] = tok_s
        if name != "n1" and "n1" in got:
            benchmark.extra_info["tok_s_ratio_vs_n1"] = round(tok_s / got["n1"], 2)
    return out


def test_edge_n1_reference(benchmark, edge, rates):
    _run(benchmark, lambda: edge.sample(PROMPT, n=1, max_tokens=MAX_TOKENS, temperature=1.0,
                                        seed=1), rates, "n1", edge)


def test_edge_n8_parallel(benchmark, edge, rates):
    s = _run(benchmark, lambda: edge.sample(PROMPT, n=8, max_tokens=MAX_TOKENS,
                                            temperature=1.0, seed=1), rates, "n8_parallel", edge)
    assert s.n == 8


def test_edge_n8_sequential(benchmark, edge, rates):
    def eight_calls():
        return sum(edge.sample(PROMPT, n=1, max_tokens=MAX_TOKENS, temperature=1.0,
                               seed=i).completion_tokens for i in range(8))

    _run(benchmark, eight_calls, rates, "n8_sequential", edge)


OVERHEAD = "confidence per query: generation (n=5, 32 tokens) vs embed + core"


@pytest.fixture(scope="module")
def scorer():
    from confroute.models import default_embedder

    return ConfidenceScorer(default_embedder(), n=5, max_tokens=32, temperature=1.0, seed=0)


def test_generation_n5_reference(benchmark, edge):
    benchmark.group = f"{OVERHEAD}, {edge.name}"
    _run(benchmark, lambda: edge.sample(PROMPT, n=5, max_tokens=32, temperature=1.0, seed=0))


def test_confidence_embed_and_core(benchmark, edge, scorer):
    benchmark.group = f"{OVERHEAD}, {edge.name}"
    samples = edge.sample(PROMPT, n=5, max_tokens=32, temperature=1.0, seed=0)
    c = benchmark(lambda: scorer.score_samples([samples])[0])
    assert c.n_samples == 5
    benchmark.extra_info.update({k: round(v * 1e3, 3) for k, v in c.seconds.items()
                                 if k != "generate"})
