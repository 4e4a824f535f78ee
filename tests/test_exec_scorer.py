"""The scorer's meaning, per prompt: on the real edge model (SmolLM2) code samples are
clustered by what they return on the prompt's example calls (in the sandbox); other prompts by
embedding; answers that mark a final number by that number; and the edge's own answer against
its samples (disagreement) under each meaning."""
import math

import numpy as np
import pytest

from confroute.confidence.execution import entry_point_of
from confroute.models.types import Samples
from confroute.confidence.scorer import ConfidenceScorer

CODE = ("Write a Python function is_prime(n) that checks whether n is a prime number. For "
        "example, is_prime(7) is True, is_prime(9) is False and is_prime(2) is True.")


def test_code_prompt_is_clustered_by_execution(edge_model, embedder):
    s = ConfidenceScorer(embedder, n=5, max_tokens=160, temperature=0.7, seed=0)
    assert s.meaning == "auto"
    c = s.score(CODE, edge_model)
    assert entry_point_of(c.samples.texts) == "is_prime"
    assert c.method == "execution" and c.n_samples == 5
    assert len(c.cluster_ids) == 5 and c.n_clusters == int(c.cluster_ids.max()) + 1
    assert 0.0 <= c.se_discrete <= math.log(5) + 1e-12
    # the chosen answer belongs to the largest behaviour cluster
    counts = np.bincount(c.cluster_ids)
    assert counts[c.cluster_ids[c.best_index]] == counts.max()
    assert "execute" in c.seconds


def test_other_prompts_keep_embedding_clusters(edge_model, embedder):
    s = ConfidenceScorer(embedder, n=3, max_tokens=16, temperature=0.7, seed=0)
    c = s.score("What is the opposite of hot? Answer in one word.", edge_model)
    assert c.method == "embedding" and c.n_samples == 3
    forced = ConfidenceScorer(embedder, n=3, max_tokens=16, temperature=0.7, seed=0,
                              meaning="execution")
    c = forced.score("What is the opposite of hot? Answer in one word.", edge_model)
    assert c.method == "embedding (not code)"   # the fallback is named, never a crash


def _samples(texts):
    return Samples(texts=tuple(texts), token_logprobs=tuple(np.full(3, -0.5) for _ in texts),
                   token_ids=None, finish_reasons=("stop",) * len(texts), model="m",
                   prompt_tokens=1, completion_tokens=3 * len(texts), temperature=0.7,
                   seconds=0.0)


def test_marked_final_numbers_are_the_meaning_and_disagreement_counts_other_answers():
    s = ConfidenceScorer(embedder=object())   # never asked: these are judged by their number
    texts = ["6 * 7 = 42, so the answer is 42", "The answer is 42.", "\\boxed{41}",
             "I think the answer is 40"]
    c = s.score_samples([_samples(texts)], prompts=["What is 6 * 7?"],
                        answers=["So the answer is 42."])[0]
    assert c.method == "exact" and c.n_clusters == 3
    assert c.cluster_ids.tolist() == [0, 0, 1, 2]
    assert c.disagreement == pytest.approx(2 / 4)
    assert c.se_discrete == pytest.approx(-(0.5 * math.log(0.5) + 2 * 0.25 * math.log(0.25)))


def test_code_samples_by_behaviour_and_the_answer_against_them():
    s = ConfidenceScorer(embedder=object())
    prompt = "def double(x):\n    \"\"\"Twice x.\n    >>> double(2)\n    4\n    \"\"\"\n"
    good = "```python\ndef double(x):\n    return 2 * x\n```"
    alike = "```python\ndef double(x):\n    return x + x\n```"
    bad = "```python\ndef double(x):\n    return x ** 2\n```"
    c = s.score_samples([_samples([good, alike, bad])], prompts=[prompt],
                        answers=[good])[0]
    # x**2 agrees with 2*x on the example (2) but not on its variants: behaviour differs
    assert c.method == "execution" and c.cluster_ids.tolist() == [0, 0, 1]
    assert c.disagreement == pytest.approx(1 / 3)


def test_code_with_nothing_to_call_falls_back_and_says_so(embedder):
    s = ConfidenceScorer(embedder)
    texts = ["```python\ndef rev(s):\n    return s[::-1]\n```"] * 2
    c = s.score_samples([_samples(texts)], prompts=["Write a function that reverses text."],
                        answers=[texts[0]])[0]
    assert c.method == "embedding (no example calls)" and c.disagreement == 0.0


def test_entry_point_needs_a_majority():
    assert entry_point_of(["```python\ndef f(x):\n    return x\n```", "def f(y): pass",
                           "no code"]) == "f"
    assert entry_point_of(["def f(x): pass", "def g(x): pass", "text", "text"]) is None


def test_entry_point_is_the_function_the_prompt_calls():
    prompt = "Write is_prime(n). For example, is_prime(7) is True and is_prime(9) is False."
    samples = ["def helper(k):\n    return k\n\ndef is_prime(n):\n    return n > 1",
               "def check_prime(n):\n    return True", "def check_prime(n): pass", "text"]
    # Only one sample defines the asked-for name; the others fail its calls (their behaviour).
    assert entry_point_of(samples, prompt) == "is_prime"
    assert entry_point_of(samples) == "check_prime"   # without the prompt: the majority
    assert entry_point_of(["def g(x): pass"] * 3, prompt) == "g"   # nothing asked is defined
