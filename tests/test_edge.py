"""The in-process edge model (SmolLM2-135M-Instruct GGUF) on real weights."""
import numpy as np
import pytest

Q = "What is the opposite of hot? Answer in one word."


def test_samples_have_finite_nonpositive_logprobs_matching_teacher_forcing(edge_model):
    s = edge_model.sample(Q, n=4, max_tokens=12, temperature=1.0, seed=1)
    assert s.n == 4 and len(s.token_logprobs) == 4 and len(s.finish_reasons) == 4
    assert s.completion_tokens == sum(len(lp) for lp in s.token_logprobs) > 0
    for text, ids, lp, fin in zip(s.texts, s.token_ids, s.token_logprobs, s.finish_reasons):
        assert lp.dtype == np.float64 and lp.ndim == 1 and len(lp) == len(ids)
        assert np.all(np.isfinite(lp)) and np.all(lp <= 0)
        assert fin in ("stop", "length") and (fin == "stop" or len(ids) == 12)
        assert edge_model.detokenize(ids) == text
        # a stopped answer ends with its end-of-generation token (in ids and logprobs, scored
        # by teacher forcing below too), which the text leaves out
        import llama_cpp
        assert (fin == "stop") == bool(llama_cpp.llama_vocab_is_eog(edge_model._vocab,
                                                                   int(ids[-1])))
        if fin == "stop":
            assert edge_model.detokenize(ids[:-1]) == text
        # The same tokens scored by one teacher-forced pass of a single sequence. The first
        # token comes from the same prompt logits (exact); later ones go through llama.cpp's
        # multi-token kernels, whose rounding differs from one-token decoding (measured up to
        # ~0.35 nats on single tokens of this Q4 model) — a misaligned or wrong token would be
        # off by whole nats.
        tf = edge_model.score_tokens(Q, ids)
        if len(ids):
            assert lp[0] == tf[0]
            np.testing.assert_allclose(lp, tf, atol=0.5)
            assert np.abs(lp - tf).mean() < 0.15


def test_cold_samples_are_more_likely_than_hot_ones(edge_model):
    cold = edge_model.sample(Q, n=6, max_tokens=16, temperature=0.2, seed=3)
    hot = edge_model.sample(Q, n=6, max_tokens=16, temperature=1.6, seed=3)

    def mean_lp(s):
        return np.mean([lp.mean() for lp in s.token_logprobs if len(lp)])

    assert mean_lp(cold) > mean_lp(hot) + 0.5


def test_parallel_greedy_sequences_equal_the_single_sequence(edge_model):
    # n sequences of one batch must not see each other: greedy rows equal the n=1 run exactly.
    one = edge_model.sample("Write a story about a dragon.", n=1, max_tokens=24, temperature=0)
    four = edge_model.sample("Write a story about a dragon.", n=4, max_tokens=24, temperature=0)
    assert four.texts == one.texts * 4
    for lp in four.token_logprobs:
        np.testing.assert_array_equal(lp, one.token_logprobs[0])


def test_sample_many_equals_separate_sample_calls(edge_model):
    # Two prompts in shared batches (one by messages, one by token ids) draw exactly what
    # each draws alone: greedy texts and logprobs equal bit for bit.
    from confroute.models.types import SampleRequest

    other = "Write a story about a dragon."
    alone = [edge_model.sample(Q, n=2, max_tokens=16, temperature=0),
             edge_model.sample(other, n=3, max_tokens=20, temperature=0)]
    together = edge_model.sample_many([
        SampleRequest(Q, n=2, max_tokens=16, temperature=0),
        SampleRequest(edge_model.prompt_tokens(other), n=3, max_tokens=20, temperature=0)])
    assert len(together) == 2
    for a, b in zip(alone, together):
        assert a.texts == b.texts and a.finish_reasons == b.finish_reasons
        assert a.prompt_tokens == b.prompt_tokens and a.completion_tokens == b.completion_tokens
        for x, y, ix, iy in zip(a.token_logprobs, b.token_logprobs, a.token_ids, b.token_ids):
            np.testing.assert_array_equal(ix, iy)
            np.testing.assert_array_equal(x, y)
    assert edge_model.sample_many([]) == []


def test_sample_many_refuses_more_sequences_than_n_seq_max(edge_model):
    from confroute.models.types import SampleRequest

    half = edge_model.n_seq_max // 2 + 1
    with pytest.raises(ValueError, match="n_seq_max"):
        edge_model.sample_many([SampleRequest(Q, n=half), SampleRequest(Q, n=half)])
    with pytest.raises(ValueError, match="request 1: .* exceeds the context"):
        edge_model.sample_many([SampleRequest(Q, n=1),
                                SampleRequest(Q, n=1, max_tokens=edge_model.n_ctx)])
    with pytest.raises(ValueError, match="token ids"):
        edge_model.sample_many([SampleRequest([1, edge_model.n_vocab], n=1)])
    with pytest.raises(ValueError, match="SampleRequest"):
        edge_model.sample_many([(Q, 2)])


def test_parallel_samples_differ_and_seed_reproduces(edge_model):
    a = edge_model.sample("Tell me a fun fact.", n=5, max_tokens=12, temperature=1.0, seed=7)
    b = edge_model.sample("Tell me a fun fact.", n=5, max_tokens=12, temperature=1.0, seed=7)
    assert a.texts == b.texts
    assert len(set(a.texts)) > 1  # the sequences really are separate draws


def test_greedy_generate_is_deterministic_and_stream_matches(edge_model):
    r1 = edge_model.generate(Q, max_tokens=12)
    r2 = edge_model.generate(Q, max_tokens=12)
    assert r1.text == r2.text and r1.text.strip()
    assert r1.usage["completion_tokens"] > 0 and r1.usage["prompt_tokens"] > 10
    assert r1.finish_reason in ("stop", "length")
    pieces = list(edge_model.chat(Q, max_tokens=12, temperature=0, stream=True))
    assert len(pieces) >= 2 and "".join(pieces) == r1.text


def test_multi_turn_and_list_content_use_the_chat_template(edge_model):
    msgs = [{"role": "system", "content": "You are terse."},
            {"role": "user", "content": [{"type": "text", "text": "Name a colour."}]},
            {"role": "assistant", "content": "Blue."},
            {"role": "user", "content": "Another one?"}]
    prompt = edge_model.format_prompt(msgs)
    for part in ("You are terse.", "Name a colour.", "Blue.", "Another one?"):
        assert part in prompt
    assert prompt.index("Name a colour.") < prompt.index("Blue.") < prompt.index("Another one?")
    assert edge_model.generate(msgs, max_tokens=6).text.strip()


def test_next_token_logprobs_is_a_distribution_slice(edge_model):
    ids = list(range(edge_model.n_vocab))
    lp = edge_model.next_token_logprobs(Q, ids)
    assert lp.shape == (edge_model.n_vocab,)
    assert np.exp(lp).sum() == pytest.approx(1.0, abs=1e-6)
    greedy = edge_model.generate(Q, max_tokens=1)
    assert edge_model.detokenize([int(np.argmax(lp))]) == greedy.text


@pytest.mark.parametrize("call, match", [
    (lambda m: m.sample([], n=2), "messages is empty"),
    (lambda m: m.sample(Q, n=0), "n must be"),
    (lambda m: m.sample(Q, n=2, max_tokens=0), "max_tokens"),
    (lambda m: m.sample(Q, n=2, temperature=-1), "temperature"),
    (lambda m: m.sample([{"role": "robot", "content": "hi"}]), "unknown role"),
    (lambda m: m.sample([{"role": "user"}]), "no 'content'"),
    (lambda m: m.sample([{"role": "user", "content": [{"type": "image_url"}]}]), "image_url"),
    (lambda m: m.sample(Q, n=99), "n_seq_max"),
    (lambda m: m.sample(Q, n=2, max_tokens=4000), "exceeds the context"),
    (lambda m: m.chat(Q, tools=[{}]), "does not support"),
    (lambda m: m.next_token_logprobs(Q, [-1]), "token ids"),
])
def test_bad_input_raises_clear_value_error(edge_model, call, match):
    with pytest.raises(ValueError, match=match):
        call(edge_model)


def test_missing_model_file_is_a_clear_error(tmp_path):
    from confroute.models import EdgeModel

    with pytest.raises(ValueError, match="does not exist"):
        EdgeModel(tmp_path / "nope.gguf")
