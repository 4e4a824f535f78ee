"""The on-disk embedding cache with the real MiniLM: the second router trained on the same
prompts, in a fresh cache object (as in a new process), embeds nothing."""
import numpy as np
import pytest

from confroute.labels import make_row
from confroute.routers import get_router
from confroute.routers.features import CachingEmbedder, disk_cache_dir

PROMPTS = [f"Question {i}: what is {i} times {i + 3}?" if i % 2 else
           f"Tell me a short story about a {['cat', 'dog', 'owl', 'fox'][i % 4]} number {i}."
           for i in range(60)]


def _rows():
    return [make_row(p, "edge", "cloud", "strong" if i % 2 else "weak")
            for i, p in enumerate(PROMPTS)]


def test_second_fit_reads_the_disk_cache(tmp_path, embedder):
    first = CachingEmbedder(embedder, disk=str(tmp_path))
    a = get_router("mf", embedder=first).fit(_rows())
    assert first.embedded == len(PROMPTS)
    second = CachingEmbedder(embedder, disk=str(tmp_path))  # a new process would start so
    b = get_router("knn", embedder=second).fit(_rows())
    assert second.embedded == 0  # every vector came from disk
    np.testing.assert_array_equal(second.embed(PROMPTS), first.embed(PROMPTS))
    np.testing.assert_allclose(second.embed(PROMPTS[:3]), embedder.embed(PROMPTS[:3]), atol=1e-6)
    assert a.score(PROMPTS[:4]).shape == b.score(PROMPTS[:4]).shape == (4,)
    # a new text is embedded once and stored for the next one
    second.embed(PROMPTS + ["something new"])
    assert second.embedded == 1
    third = CachingEmbedder(embedder, disk=str(tmp_path))
    third.embed(["something new"])
    assert third.embedded == 0


def test_cache_is_per_embedder_and_survives_damage(tmp_path, embedder):
    c = CachingEmbedder(embedder, disk=str(tmp_path))
    c.embed(PROMPTS[:5])

    class Other:
        name, dim = "other-embedder", embedder.dim

        def embed(self, texts):
            return np.ones((len(texts), self.dim), np.float32)

    o = CachingEmbedder(Other(), disk=str(tmp_path))
    np.testing.assert_array_equal(o.embed(PROMPTS[:5]), np.ones((5, embedder.dim)))
    assert o.embedded == 5  # MiniLM's vectors are never handed to another embedder
    from pathlib import Path

    shard, = Path(c.disk).glob("*.npz")
    shard.write_bytes(b"not a zip")  # a damaged shard: its texts are embedded again
    again = CachingEmbedder(embedder, disk=str(tmp_path))
    np.testing.assert_allclose(again.embed(PROMPTS[:5]), c.embed(PROMPTS[:5]), atol=1e-6)
    assert again.embedded == 5


def test_default_embedder_uses_confroute_home(monkeypatch, tmp_path):
    monkeypatch.setenv("CONFROUTE_HOME", str(tmp_path))
    assert disk_cache_dir() == str(tmp_path / "embeddings")
    monkeypatch.setenv("CONFROUTE_EMBED_CACHE", "0")
    assert disk_cache_dir() is None
