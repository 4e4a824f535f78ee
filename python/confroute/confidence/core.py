"""Semantic entropy and its baselines for ragged batches (natural logarithms).

A batch of B queries holds S samples in all: ``sample_offsets`` (B+1 ints, 0 .. S) says which
samples belong to query b; ``token_offsets`` (S+1 ints, 0 .. T) which tokens belong to sample s.

Every array argument accepts numpy arrays or nested lists. C-contiguous float32/float64 data and
int32/int64 indices are read in place (no copy); other dtypes or strides are converted once
(a copy); int32 offsets are widened to int64 (a copy of B+1 or S+1 ints). The GIL is released
while the core works; ``n_threads=0`` uses every hardware thread. Bad input raises ValueError.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from confroute import _core
from confroute._core import (  # noqa: F401  (re-exported; docs in cpp/bindings.cpp)
    cluster_by_similarity,
    semantic_entropy,
    sequence_logprobs,
    token_logprobs,
)


@dataclass(frozen=True)
class ConfidenceBatch:
    """Everything :func:`confidence_batch` computes. Per sample [S]: ``cluster_ids``,
    ``seq_logprob_sum``, ``seq_logprob_mean``. Per query [B]: ``n_samples``, ``n_clusters``,
    the three SE kinds, and the baselines: ``mean_token_logprob`` (mean over samples of the
    length-normalized logprob; higher = more confident), ``max_sequence_prob`` (exp of the
    largest summed logprob; higher = more confident), ``mean_perplexity`` (mean over samples
    of exp(-mean token logprob); higher = less confident)."""

    cluster_ids: np.ndarray
    seq_logprob_sum: np.ndarray
    seq_logprob_mean: np.ndarray
    n_samples: np.ndarray
    n_clusters: np.ndarray
    se_discrete: np.ndarray
    se_weighted: np.ndarray
    se_kuhn: np.ndarray
    mean_token_logprob: np.ndarray
    max_sequence_prob: np.ndarray
    mean_perplexity: np.ndarray

    def se(self, kind: str = "kuhn") -> np.ndarray:
        """The semantic entropy of one kind: 'discrete', 'weighted' or 'kuhn'."""
        if kind not in ("discrete", "weighted", "kuhn"):
            raise ValueError(f"unknown kind {kind!r}: use 'discrete', 'weighted' or 'kuhn'")
        return getattr(self, "se_" + kind)


def confidence_batch(
    token_logprobs,
    token_offsets,
    embeddings,
    sample_offsets,
    threshold: float,
    method: str = "greedy",
    likelihood: str = "mean",
    n_threads: int = 0,
) -> ConfidenceBatch:
    """The whole pipeline in one pass over the batch: sequence logprobs, clusters, every SE
    kind and the baselines. ``likelihood`` picks the sequence log-likelihood the weighted and
    Kuhn forms use: ``mean`` (length-normalized, as in the paper) or ``sum``."""
    out = _core.confidence_batch(
        token_logprobs, token_offsets, embeddings, sample_offsets, threshold, method,
        likelihood, n_threads,
    )
    return ConfidenceBatch(**out)
