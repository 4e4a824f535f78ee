"""The default edge's weights: SmolLM2 requantized from the shipped Q4_1 file to Q8_0 (with
flash attention), whose batched samples cost less on x86. It must score text as well as the
file it is made from, and its batched rows must equal single sequences exactly."""
import numpy as np
import pytest

from confroute.models import local_model, store

pytestmark = pytest.mark.models

# (question, reference answer): teacher-forced, so the score is the model's, not a draw
PAIRS = [
    ("What is the capital of France?", "The capital of France is Paris."),
    ("Natalia sold clips to 48 of her friends in April, and then she sold half as many clips "
     "in May. How many clips did Natalia sell altogether in April and May?",
     "In May she sold 48 / 2 = 24 clips. Altogether she sold 48 + 24 = 72 clips. The answer "
     "is 72."),
    ("Why is the sky blue?", "Sunlight is scattered by the molecules in the air, and blue "
     "light is scattered much more than red light, so the sky looks blue."),
    ("Write a Python function that returns the square of a number.",
     "def square(x):\n    return x * x"),
    ("Name three primary colors.", "Red, blue and yellow are the three primary colors."),
    ("How many days are in a week?", "There are seven days in a week."),
]


@pytest.fixture(scope="module")
def shipped():
    m = local_model("smollm2-135m-instruct", n_ctx=512, n_threads=1)
    yield m
    m.close()


def _nll(model):
    lps = [model.score_tokens(q, model.tokenize(a)) for q, a in PAIRS]
    return float(-np.mean(np.concatenate(lps)))


def test_default_edge_is_the_q8_model_with_its_options(edge_model):
    assert edge_model.name == store.DEFAULT_EDGE == "smollm2-135m-instruct-q8"
    assert edge_model.flash_attn and edge_model.path.endswith("Q8_0.gguf")
    plain = local_model(store.DEFAULT_EDGE, n_ctx=64, n_threads=1, flash_attn=False)
    assert not plain.flash_attn   # an explicit setting wins over the registry's
    plain.close()


def test_q8_scores_text_as_well_as_the_shipped_file(edge_model, shipped):
    # Measured on 80 GSM8K train answers: -0.006 nats/token [-0.010, -0.003] against Q4_1;
    # a Q4_0 requantization of the same file lost +0.265 [+0.241, +0.287]. On these six
    # answers (measured when this test was written): Q4_1 1.334, q8 1.309, Q4_0 1.415,
    # which this bound refuses.
    assert abs(_nll(edge_model) - _nll(shipped)) < 0.05


def test_q8_batched_rows_equal_the_single_sequence(edge_model):
    # a row in a batch of 8 rounds as a single sequence does: the served batch draws exactly
    # what a table's single sequence drew
    p = "Write a story about a dragon."
    one = edge_model.sample(p, n=1, max_tokens=24, temperature=0)
    eight = edge_model.sample(p, n=8, max_tokens=24, temperature=0)
    assert eight.texts == one.texts * 8
    for lp in eight.token_logprobs:
        np.testing.assert_array_equal(lp, one.token_logprobs[0])
