"""Embedders: MiniLM ONNX (default) separates meaning; the llama.cpp backend's contract."""
import numpy as np
import pytest


def test_minilm_separates_paraphrases_from_unrelated_text(embedder):
    v = embedder.embed(["The capital of France is Paris.", "Paris is France's capital city.",
                        "I had pasta for lunch.", ""])
    assert v.shape == (4, embedder.dim) == (4, 384) and v.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    sim = v @ v.T
    assert sim[0, 1] > 0.8 and sim[0, 2] < 0.3
    # Batching does not change a row.
    np.testing.assert_allclose(embedder.embed(["I had pasta for lunch."])[0], v[2], atol=1e-5)
    assert embedder.embed([]).shape == (0, 384)


def test_minilm_truncates_long_texts(embedder):
    v = embedder.embed(["word " * 2000])
    assert v.shape == (1, 384) and np.isfinite(v).all()


@pytest.mark.parametrize("bad, match", [("one string", "list of strings"),
                                        ([1, 2], "must be a string")])
def test_bad_embed_input(embedder, bad, match):
    with pytest.raises(ValueError, match=match):
        embedder.embed(bad)


@pytest.mark.models
def test_llama_embedder_backend_on_a_gguf():
    from confroute.models import LlamaEmbedder, model_path

    e = LlamaEmbedder(model_path("smollm2-135m-instruct"), n_threads=1)
    v = e.embed(["hello world", "", "a longer sentence about something else"])
    assert v.shape == (3, e.dim) and e.dim == 576
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    with pytest.raises(ValueError, match="does not exist"):
        LlamaEmbedder("/nonexistent.gguf")
