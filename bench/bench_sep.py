"""What hidden states cost, and what a `sep` decision costs next to an SE decision, on the real
SmolLM2-135M.

- "hidden-state cost": n=5 samples of 24 tokens from a plain context (reference), from a
  context made with ``hidden_states=True`` (the eval callback, unarmed on every decode step),
  and with all layers' hidden states read in the same prefill.
- "decision cost": SE with n=5 (samples + MiniLM + core; reference) against the probe's
  decision (one prefill reading one layer + a dot product) — the issue's goal is >= 5x.
- "adaptive SE rounds": five rounds of samples of one ~190-token prompt, each reading the
  prompt again (reference) against each starting from the prompt kept after the last round.
- "kept sep query": the probe's prefill, then the edge's greedy answer, on a prompt of ~190
  tokens (a short HumanEval prompt's size, where the prefill is much of a short answer's
  cost): the answer reads the prompt again (reference: the kept prefill dropped) against the
  answer starting from the decision's prefill. Measured here under load: 2.0x.

Run: python -m pytest bench/bench_sep.py --benchmark-only
"""
import numpy as np
import pytest

from confroute.confidence.scorer import ConfidenceScorer

PROMPT = [{"role": "user", "content": "who wrote the novel war and peace and when was it "
                                      "first published"}]
COST = "hidden-state cost: n=5 samples, 24 tokens, SmolLM2-135M"
DECISION = "decision cost per prompt: SE n=5 vs sep (one prefill)"


@pytest.fixture(scope="module")
def plain():
    from confroute.models import default_edge

    m = default_edge(n_ctx=256)
    m.sample(PROMPT, n=2, max_tokens=4)
    yield m
    m.close()


@pytest.fixture(scope="module")
def hidden():
    from confroute.models import default_edge

    m = default_edge(n_ctx=256, hidden_states=True)
    m.sample(PROMPT, n=2, max_tokens=4)
    yield m
    m.close()


def _pedantic(benchmark, fn, rounds=3):
    return benchmark.pedantic(fn, rounds=rounds, iterations=1, warmup_rounds=1)


@pytest.mark.benchmark(group=COST)
def test_sample_plain_reference(benchmark, plain):
    s = _pedantic(benchmark, lambda: plain.sample(PROMPT, n=5, max_tokens=24, seed=1))
    benchmark.extra_info["completion_tokens"] = s.completion_tokens


@pytest.mark.benchmark(group=COST)
def test_sample_callback_unarmed(benchmark, hidden, plain):
    s = _pedantic(benchmark, lambda: hidden.sample(PROMPT, n=5, max_tokens=24, seed=1))
    assert s.texts == plain.sample(PROMPT, n=5, max_tokens=24, seed=1).texts


@pytest.mark.benchmark(group=COST)
def test_sample_with_all_hidden_states(benchmark, hidden):
    layers = list(range(hidden.n_layer + 1))
    s = _pedantic(benchmark, lambda: hidden.sample(PROMPT, n=5, max_tokens=24, seed=1,
                                                   hidden_layers=layers))
    assert s.hidden.shape == (hidden.n_layer + 1, hidden.n_embd)


@pytest.fixture(scope="module")
def scorer():
    from confroute.models import default_embedder

    return ConfidenceScorer(default_embedder(n_threads=1))


@pytest.mark.benchmark(group=DECISION)
def test_se_n5_decision_reference(benchmark, plain, scorer):
    c = _pedantic(benchmark, lambda: scorer.score(PROMPT, plain, n=5, max_tokens=24,
                                                  temperature=0.7, seed=0))
    assert c.n_samples == 5


@pytest.mark.benchmark(group=DECISION)
def test_sep_decision(benchmark, hidden):
    rng = np.random.default_rng(0)
    w = rng.normal(size=hidden.n_embd)

    def decide():
        h = hidden.hidden_states(PROMPT, [12])[0]
        return 1.0 / (1.0 + np.exp(-(h @ w)))

    p = _pedantic(benchmark, decide, rounds=5)
    assert 0.0 <= p <= 1.0


KEPT = "kept sep query: decision + 16-token greedy answer, ~190-token prompt"
LONG = [{"role": "user", "content": "Complete the function.\n\n```python\n" + "\n".join(
    f"def f{i}(xs: list, k: int) -> list:\n    \"\"\"Return the items of xs at positions "
    f"divisible by {i + 2}, each plus k.\n    >>> f{i}([1, 2, 3, 4], 1)\n    \"\"\"\n"
    for i in range(3)) + "```"}]


def _kept_query(model, drop: bool):
    h = model.hidden_states(LONG, [12])[0]
    if drop:
        model._clear_kv()   # what the path did before the edge kept the prefill
    return h, model.generate(LONG, max_tokens=16).text


@pytest.mark.benchmark(group=KEPT)
def test_kept_query_prefills_twice_reference(benchmark, hidden):
    _, text = _pedantic(benchmark, lambda: _kept_query(hidden, True), rounds=5)
    benchmark.extra_info["prompt_tokens"] = len(hidden.prompt_tokens(LONG))
    assert text == _kept_query(hidden, False)[1]


@pytest.mark.benchmark(group=KEPT)
def test_kept_query_reuses_the_prefill(benchmark, hidden):
    _pedantic(benchmark, lambda: _kept_query(hidden, False), rounds=5)


ROUNDS = "adaptive SE rounds: 3+2+2+2+1 samples of 24 tokens, ~190-token prompt"


def _rounds(model, drop: bool):
    texts, k = [], 0
    for n in (3, 2, 2, 2, 1):
        if drop:
            model._clear_kv()   # what each round did before the edge kept the prompt
        texts += model.sample(LONG, n=n, max_tokens=24, temperature=0.7, seed=k).texts
        k += n
    return texts


@pytest.mark.benchmark(group=ROUNDS)
def test_rounds_prefill_each_reference(benchmark, plain):
    texts = _pedantic(benchmark, lambda: _rounds(plain, True), rounds=5)
    assert texts == _rounds(plain, False)


@pytest.mark.benchmark(group=ROUNDS)
def test_rounds_reuse_the_prefill(benchmark, plain):
    _pedantic(benchmark, lambda: _rounds(plain, False), rounds=5)
