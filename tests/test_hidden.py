"""Hidden states from the edge model's prefill (llama.cpp's eval callback), on real SmolLM2."""
import numpy as np
import pytest

from confroute.models.types import SampleRequest
from helpers.edge import count_prefills
from helpers.processes import THREADS

Q = "What is the capital of France? Answer in one word."
OTHER = "Name a large animal that lives in the sea."


def test_hidden_states_do_not_change_samples_or_logprobs(edge_model, hidden_edge):
    # Same seed, same prompt: the plain model, the callback model without hidden states, and
    # the callback model reading hidden states all draw the same tokens with the same
    # logprobs, bit for bit (the callback splits the graph's evaluation, not its ops).
    kw = dict(n=4, max_tokens=16, temperature=1.0, seed=7)
    plain = edge_model.sample(Q, **kw)
    armed = hidden_edge.sample(Q, **kw)
    read = hidden_edge.sample(Q, hidden_layers=[0, 10, -1], **kw)
    for s in (armed, read):
        assert s.texts == plain.texts
        for a, b in zip(s.token_logprobs, plain.token_logprobs):
            np.testing.assert_array_equal(a, b)
    assert plain.hidden is None and armed.hidden is None
    assert read.hidden.shape == (3, hidden_edge.n_embd)
    np.testing.assert_array_equal(edge_model.next_token_logprobs(Q, range(100)),
                                  hidden_edge.next_token_logprobs(Q, range(100)))


def test_hidden_states_are_the_prompts_last_token_state(hidden_edge):
    m = hidden_edge
    layers = list(range(m.n_layer + 1))
    h = m.hidden_states(Q, layers)
    assert h.shape == (m.n_layer + 1, m.n_embd) and h.dtype == np.float32
    assert np.isfinite(h).all()
    # the same prefill inside sample() reads the same states
    s = m.sample(Q, n=2, max_tokens=4, seed=1, hidden_layers=layers)
    np.testing.assert_array_equal(s.hidden, h)
    # a different prompt, or the prompt without its last token, gives other states
    toks = m.prompt_tokens(Q)
    assert not np.allclose(m.hidden_states(toks[:-1], [-1]), h[-1:], atol=1e-3)
    assert not np.allclose(m.hidden_states(OTHER, [5]), h[5:6], atol=1e-3)
    # result_norm = RMSNorm(last block's state) * w, w the output-norm weights: the ratio of
    # the two states, after RMS scaling, is the same vector w for every prompt — so both
    # were read from the same row
    def weights(hh):
        last = hh[-2].astype(np.float64)
        return hh[-1] / (last / np.sqrt(np.mean(last ** 2) + 1e-5))

    w2 = weights(m.hidden_states(OTHER, [m.n_layer - 1, m.n_layer]))
    np.testing.assert_allclose(weights(h), w2, rtol=1e-3, atol=1e-4)


def test_final_norm_layer_equals_llama_cpp_embeddings_output(hidden_edge):
    # llama.cpp's own embeddings output (an embedding context, pooling none, every token
    # output) at the prompt's last token is the state we read as layer n_layer.
    import llama_cpp

    m = hidden_edge
    toks = m.prompt_tokens(Q)
    ref = llama_cpp.Llama(m.path, embedding=True, pooling_type=llama_cpp.LLAMA_POOLING_TYPE_NONE,
                          n_ctx=256, n_threads=THREADS, verbose=False,
                          flash_attn=m.flash_attn)   # as the edge runs
    try:
        ref._batch.set_batch(toks, n_past=0, logits_all=True)
        ref._ctx.decode(ref._batch)
        row = llama_cpp.llama_get_embeddings_ith(ref._ctx.ctx, len(toks) - 1)
        emb = np.ctypeslib.as_array(row, shape=(m.n_embd,)).copy()
    finally:
        ref.close()
    np.testing.assert_array_equal(m.hidden_states(toks, [-1])[0], emb)


def test_chunked_prefill_reads_the_last_chunks_last_token(hidden_edge):
    # A prompt longer than n_batch is decoded in chunks (the early ones output no rows): the
    # state is the last token's, as from one chunk up to kernel rounding.
    from confroute.models import default_edge

    small = default_edge(n_ctx=512, n_threads=THREADS, hidden_states=True, n_batch=8)
    try:
        toks = hidden_edge.prompt_tokens(OTHER + " " + Q)
        assert len(toks) > 2 * 8
        a = small.hidden_states(toks, [3, -1])
        b = hidden_edge.hidden_states(toks, [3, -1])
    finally:
        small.close()
    for x, y in zip(a, b):
        assert x @ y / np.linalg.norm(x) / np.linalg.norm(y) > 0.999


def test_keep_stops_after_the_prefill_or_goes_on_unchanged(hidden_edge):
    seen = []

    def no(hiddens):
        seen.append(hiddens)
        return False

    kw = dict(n=3, max_tokens=12, temperature=1.0, seed=4, hidden_layers=[-1])
    stopped = hidden_edge.sample(Q, keep=no, **kw)
    assert stopped.n == 0 and stopped.completion_tokens == 0
    assert len(seen) == 1 and len(seen[0]) == 1
    np.testing.assert_array_equal(seen[0][0], stopped.hidden)
    kept = hidden_edge.sample(Q, keep=lambda h: True, **kw)
    full = hidden_edge.sample(Q, **kw)
    assert kept.texts == full.texts and kept.n == 3
    np.testing.assert_array_equal(kept.hidden, stopped.hidden)


def test_bad_hidden_requests(edge_model, hidden_edge):
    with pytest.raises(ValueError, match="hidden_states=True"):
        edge_model.hidden_states(Q, [0])
    with pytest.raises(ValueError, match="hidden_states=True"):
        edge_model.sample(Q, n=1, max_tokens=2, hidden_layers=[0])
    n = hidden_edge.n_layer
    for bad, msg in [([n + 1], "outside"), ([-(n + 2)], "outside"), ([], "no layers"),
                     ([1, 1], "repeat"), (["a"], "integer"), ([True], "integer")]:
        with pytest.raises(ValueError, match=msg):
            hidden_edge.hidden_states(Q, bad)
    with pytest.raises(ValueError, match="keep needs hidden_layers"):
        hidden_edge.sample(Q, n=1, max_tokens=2, keep=lambda h: True)


def test_sample_many_reads_each_prompts_own_state(hidden_edge):
    from confroute.models.types import SampleRequest

    m = hidden_edge
    out = m.sample_many([SampleRequest(Q, 2, 4, 1.0, 1), SampleRequest(OTHER, 3, 4, 1.0, 2)],
                        hidden_layers=[4, -1])
    np.testing.assert_array_equal(out[0].hidden, m.hidden_states(Q, [4, -1]))
    np.testing.assert_array_equal(out[1].hidden, m.hidden_states(OTHER, [4, -1]))
    assert [s.n for s in out] == [2, 3]


def test_a_sample_right_after_the_hidden_state_reuses_its_prefill(edge_model, hidden_edge,
                                                                  monkeypatch):
    # A router reads the prompt's hidden state; the kept query's answer then starts from that
    # prefill instead of reading the prompt again, and draws what a fresh prefill draws.
    kw = dict(n=3, max_tokens=12, temperature=1.0, seed=9)
    fresh = edge_model.sample(Q, **kw)
    greedy = edge_model.generate(Q, max_tokens=10)
    prefills = count_prefills(hidden_edge, monkeypatch)
    hidden_edge.hidden_state(Q)
    reused = hidden_edge.sample(Q, **kw)
    assert len(prefills) == 1
    assert reused.texts == fresh.texts and reused.prompt_tokens == fresh.prompt_tokens
    for a, b in zip(reused.token_logprobs, fresh.token_logprobs):
        np.testing.assert_array_equal(a, b)
    # kept after the samples too (their cells dropped): the same prompt again (adaptive SE's
    # next round) and then its greedy answer (a kept query's) start from it as well
    again = hidden_edge.sample(Q, **kw)
    assert len(prefills) == 1 and again.texts == fresh.texts
    for a, b in zip(again.token_logprobs, fresh.token_logprobs):
        np.testing.assert_array_equal(a, b)
    assert hidden_edge.generate(Q, max_tokens=10).text == greedy.text and len(prefills) == 1
    # another prompt, or anything decoded in between, is a fresh prefill
    hidden_edge.sample(OTHER, n=1, max_tokens=2, seed=1)
    assert len(prefills) == 2
    hidden_edge.next_token_logprobs(OTHER, [1, 2])
    assert hidden_edge.sample(Q, **kw).texts == fresh.texts and len(prefills) == 4
    hidden_edge.hidden_state(Q)
    hidden_edge.next_token_logprobs(OTHER, [1, 2])
    assert hidden_edge.sample(Q, **kw).texts == fresh.texts and len(prefills) == 7
    # a sample that must read hidden states itself prefills (the callback runs in it)
    hidden_edge.hidden_state(Q)
    read = hidden_edge.sample(Q, hidden_layers=[-1], **kw)
    assert len(prefills) == 9 and read.texts == fresh.texts


def test_rounds_of_samples_of_one_prompt_read_it_once(edge_model, monkeypatch):
    # Adaptive SE draws in rounds (3, then 2 more, seeded apart); each round after the first
    # starts from the prompt's kept prefill and draws what a fresh prefill draws.
    from confroute.models import default_edge

    plain = default_edge(n_ctx=256, n_seq_max=4, n_threads=THREADS)
    want = [plain.sample(Q, n=n, max_tokens=12, temperature=0.7, seed=s)
            for n, s in ((3, 1), (2, 4), (1, 5))]
    plain.close()
    edge_model.sample(OTHER, n=1, max_tokens=1)   # whatever an earlier test left is dropped
    prefills = count_prefills(edge_model, monkeypatch)
    got = [edge_model.sample(Q, n=n, max_tokens=12, temperature=0.7, seed=s)
           for n, s in ((3, 1), (2, 4), (1, 5))]
    assert len(prefills) == 1
    for g, w in zip(got, want):
        assert g.texts == w.texts
        for a, b in zip(g.token_logprobs, w.token_logprobs):
            np.testing.assert_array_equal(a, b)
    # several prompts in one batch: the first one's prefill is used and kept, the others'
    # are read and dropped
    edge_model.sample_many([SampleRequest(Q, 2, 8, 0.7, 1), SampleRequest(OTHER, 2, 8, 0.7, 1)])
    assert len(prefills) == 2
    assert edge_model.sample(Q, n=3, max_tokens=12, temperature=0.7, seed=1).texts == \
        want[0].texts and len(prefills) == 2
    assert edge_model.sample(OTHER, n=1, max_tokens=4, seed=2) and len(prefills) == 3
