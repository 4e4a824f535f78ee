"""Samples for several requests in shared llama.cpp batches.

``EdgeModel.sample`` runs the n samples of *one* prompt as parallel sequences. When several
requests wait for the edge at once, the engine hands them to ``EdgeModel.sample_many``, which
draws all their samples together (one ``llama_decode`` per step for every live sequence of
every request). Decode of a small model on a CPU is compute-bound per step, so one step for 15
sequences costs far less than three steps of 5 (measured here: 5 samples 1.65 s, 15 samples
3.67 s).

The grouping of waiting requests and the fallback to one request at a time when a batch fails
live in the work queue (``limits.WorkQueue``); this module is the engine's narrow view of the
edge: :func:`supported` tells whether the edge model offers ``sample_many`` (the engine samples
one prompt at a time otherwise), :class:`Job` is one request's share.
"""
from __future__ import annotations

from typing import List, Sequence

from confroute.models.types import SampleRequest, Samples

# One request's share of a batch: Job(prompt_tokens, n, max_tokens, temperature, seed).
Job = SampleRequest

# The public members of the edge model that batched sampling in the engine uses.
_USES = ("sample_many", "prompt_tokens", "n_seq_max", "n_ctx")


def supported(edge) -> bool:
    return all(hasattr(edge, a) for a in _USES)


def sample_many(edge, jobs: Sequence[Job]) -> List[Samples]:
    """One :class:`~confroute.models.types.Samples` per job; the jobs' sequences together
    must fit ``edge.n_seq_max`` and each prompt + max_tokens its ``n_ctx`` (else ValueError)."""
    return edge.sample_many(jobs)
