"""ExecutionScorer on the real edge model (SmolLM2): code samples are clustered by what they
return on the prompt's example calls (in the sandbox); other prompts fall back to embeddings."""
import math

import numpy as np

from confroute.exec_clusters import ExecutionScorer, entry_point_of
from confroute.scorer import ConfidenceScorer

CODE = ("Write a Python function is_prime(n) that checks whether n is a prime number. For "
        "example, is_prime(7) is True, is_prime(9) is False and is_prime(2) is True.")


def test_code_prompt_is_clustered_by_execution(edge_model, embedder):
    s = ExecutionScorer(ConfidenceScorer(embedder, n=5, max_tokens=160, temperature=0.7,
                                         seed=0))
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
    s = ExecutionScorer(ConfidenceScorer(embedder, n=3, max_tokens=16, temperature=0.7,
                                         seed=0))
    c = s.score("What is the opposite of hot? Answer in one word.", edge_model)
    assert c.method == "embedding" and c.n_samples == 3
    assert s.n == 3  # the wrapped scorer's settings show through


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
