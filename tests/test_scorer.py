"""The confidence scorer on the real edge model and MiniLM; a fake model only for pure logic."""
import math

import numpy as np
import pytest

import confroute
from confroute.models.types import Samples
from confroute.confidence.meaning import best_index_of, one_hot
from confroute.confidence.scorer import ConfidenceScorer

CONFIDENT = "What is the opposite of hot? Answer in one word."
UNSURE = "Who won the Tour de France in 1937?"


@pytest.fixture(scope="module")
def scorer(embedder):
    return ConfidenceScorer(embedder, n=5, max_tokens=32, temperature=0.7, seed=0)


def test_confident_prompt_has_lower_se_than_an_unknown_fact(scorer, edge_model):
    sure, unsure = scorer.score_many([CONFIDENT, UNSURE], edge_model)
    for c in (sure, unsure):
        assert c.method == "embedding" and c.n_samples == 5 and c.samples.n == 5
        assert c.cluster_ids.shape == (5,) and c.n_clusters == len(set(c.cluster_ids))
        for k in ("discrete", "weighted", "kuhn"):
            assert 0 <= c.se(k) and math.isfinite(c.se(k))
        assert c.se("discrete") <= math.log(5) + 1e-9
        assert c.mean_token_logprob < 0 and 0 < c.max_sequence_prob <= 1
        assert c.mean_perplexity >= 1
        assert set(c.seconds) == {"generate", "embed", "core"}
    assert sure.n_clusters < unsure.n_clusters
    for k in ("discrete", "weighted", "kuhn"):
        assert sure.se(k) < unsure.se(k)
    assert "cold" in sure.answer.lower()


def test_numbers_equal_the_core_on_the_same_samples(scorer, edge_model, embedder):
    c = scorer.score(UNSURE, edge_model)
    s = c.samples
    lens = [len(lp) for lp in s.token_logprobs]
    ref = confroute.confidence_batch(np.concatenate(s.token_logprobs), np.cumsum([0] + lens),
                                     embedder.embed(list(s.texts)), [0, s.n], threshold=0.8)
    np.testing.assert_array_equal(c.cluster_ids, ref.cluster_ids)
    assert c.se_kuhn == pytest.approx(ref.se_kuhn[0], abs=1e-6)
    assert c.se_weighted == pytest.approx(ref.se_weighted[0], abs=1e-6)
    assert c.max_sequence_prob == pytest.approx(ref.max_sequence_prob[0], rel=1e-6)
    # The chosen answer belongs to the largest cluster and is its most likely member.
    members = np.flatnonzero(c.cluster_ids == c.cluster_ids[c.best_index])
    assert len(members) == np.bincount(c.cluster_ids).max()
    assert c.best_index == members[np.argmax(c.seq_logprob_mean[members])]


def test_empty_edge_answers_count_their_stop_token_and_are_never_the_answer(scorer, edge_model):
    # The assistant turn already holds its answer, so most samples stop at once: empty texts.
    import llama_cpp

    ids = edge_model.prompt_tokens(CONFIDENT) + edge_model.tokenize("Cold.")
    s = edge_model.sample(ids, n=6, max_tokens=12, temperature=1.0, seed=1)
    empty = [i for i, t in enumerate(s.texts) if t == ""]
    assert 2 <= len(empty) < s.n   # this seeded draw: three empty, three not
    for i in empty:
        # the answer is its end-of-generation token: one token, with the model's probability
        # of stopping right there (no longer 0 tokens and log-probability 0)
        assert s.finish_reasons[i] == "stop" and len(s.token_ids[i]) == 1
        assert llama_cpp.llama_vocab_is_eog(edge_model._vocab, int(s.token_ids[i][0]))
        assert len(s.token_logprobs[i]) == 1 and -20 < s.token_logprobs[i][0] < 0
    c = scorer.score_samples([s])[0]
    # The empty answers are the largest cluster, and the most likely: still not the answer.
    assert np.bincount(c.cluster_ids).max() == len(empty)
    assert len({c.cluster_ids[i] for i in empty}) == 1
    assert c.answer.strip() and c.best_index not in empty
    np.testing.assert_array_equal(c.seq_logprob_mean[empty], [s.token_logprobs[i][0] for i in empty])
    assert math.isfinite(c.se_kuhn) and math.isfinite(c.se_weighted)


def test_exact_answer_clustering(scorer, edge_model):
    c = scorer.score_exact("What is 12 + 7? Answer with a number.", edge_model,
                           extract="number", n=5, max_tokens=24)
    assert c.method == "exact" and len(c.answers) == 5
    # Equal extracted answers share a cluster; different or missing ones do not.
    for i in range(5):
        for j in range(5):
            same = c.answers[i] is not None and c.answers[i] == c.answers[j]
            assert (c.cluster_ids[i] == c.cluster_ids[j]) == (same or i == j)
    assert c.n_clusters == len({a if a is not None else ("none", i)
                                for i, a in enumerate(c.answers)})


def test_multiple_choice_letter_distribution_in_one_pass(scorer, edge_model):
    q = ("Which planet is known as the Red Planet?\nA. Venus\nB. Mars\nC. Jupiter\nD. Saturn\n"
         "Answer with the letter only.")
    c = scorer.score_options(q, edge_model)
    p = np.exp(c.seq_logprob_mean)
    assert c.method == "options" and c.answers == ("A", "B", "C", "D")
    assert p.sum() == pytest.approx(1.0, abs=1e-9)
    h = -(p * np.log(p)).sum()
    assert c.se_weighted == pytest.approx(h, abs=1e-9) and 0 < h <= math.log(4)
    assert c.answer == "ABCD"[int(np.argmax(p))]
    with pytest.raises(ValueError, match="two distinct"):
        scorer.score_options(q, edge_model, letters="AA")


class _Fake:
    """A model stand-in for the pure logic: fixed texts, optional logprobs."""

    name = "fake"

    def __init__(self, texts, lps=None):
        self.texts, self.lps = texts, lps

    def sample(self, messages, n, max_tokens, temperature, seed):
        lps = None if self.lps is None else tuple(np.asarray(x, float) for x in self.lps)
        return Samples(tuple(self.texts), lps, None, ("stop",) * len(self.texts), "fake", 1,
                       3, temperature, 0.0)


class _OneHot:
    dim = 3

    def embed(self, texts):
        table = {"a": 0, "b": 1, "c": 2}
        return np.eye(3, dtype=np.float32)[[table[t] for t in texts]]


def test_missing_logprobs_give_nan_not_a_silent_number():
    sc = ConfidenceScorer(_OneHot(), n=4)
    c = sc.score("q", _Fake(["a", "a", "b", "c"]))
    assert c.se_discrete == pytest.approx(-(0.5 * math.log(0.5) + 2 * 0.25 * math.log(0.25)))
    assert math.isnan(c.se_kuhn) and math.isnan(c.se_weighted)
    assert math.isnan(c.max_sequence_prob)
    assert c.answer == "a"  # first member of the largest cluster


def test_best_index_prefers_the_largest_cluster_then_likelihood():
    ids = np.array([0, 1, 1, 2, 1])
    assert best_index_of(ids, np.array([-0.1, -3.0, -0.5, -0.2, -2.0])) == 2
    # A tie between clusters goes to the one holding the most likely sample.
    assert best_index_of(np.array([0, 0, 1, 1]), np.array([-2.0, -1.0, -0.5, -3.0])) == 2
    emb = one_hot(["7", None, "7", None])
    sim = emb @ emb.T
    assert sim[0, 2] == 1 and sim[1, 3] == 0 and sim[0, 1] == 0


def test_an_empty_answer_is_never_chosen_over_a_real_one():
    # The empty samples form the largest cluster and are the most likely: still not chosen.
    ids, mean = np.array([0, 0, 0, 1, 2]), np.array([-0.1, -0.1, -0.2, -1.0, -2.0])
    assert best_index_of(ids, mean, ["", "", "  \n", "Paris", "Lyon"]) == 3
    assert best_index_of(ids, None, ["", "", "", "Lyon", "Paris"]) == 3
    # Only empty answers: the most likely of them (nothing better exists).
    assert best_index_of(np.array([0, 0]), np.array([-2.0, -1.0]), ["", ""]) == 1


def test_an_empty_sample_without_logprobs_makes_the_likelihoods_unknown():
    # A server that leaves the stop token out gives an empty answer no logprobs at all: its
    # likelihood is unknown, so the SE kinds that need it are NaN, not a made-up number.
    sc = ConfidenceScorer(_OneHot(), n=3)
    c = sc.score("q", _Fake(["a", "a", "b"], [[-0.5], [], [-0.1, -0.2]]))
    assert math.isnan(c.se_kuhn) and math.isnan(c.se_weighted)
    assert np.isnan(c.seq_logprob_mean).all()
    assert c.se_discrete == pytest.approx(-(2 / 3 * math.log(2 / 3) + 1 / 3 * math.log(1 / 3)))


@pytest.mark.parametrize("kwargs, match", [
    (dict(similarity=1.5), "cosine"), (dict(method="kmeans"), "greedy"),
    (dict(likelihood="max"), "likelihood"),
])
def test_bad_scorer_options(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ConfidenceScorer(_OneHot(), **kwargs)


def test_bad_prompts_are_value_errors():
    sc = ConfidenceScorer(_OneHot())
    with pytest.raises(ValueError, match="empty"):
        sc.score([], _Fake(["a"]))
    with pytest.raises(ValueError, match="list of prompts"):
        sc.score_many("one string", _Fake(["a"]))
    with pytest.raises(ValueError, match="extract"):
        sc.score_exact("q", _Fake(["a"]), extract="date")
