"""Samples for several requests in shared llama.cpp batches.

``EdgeModel.sample`` runs the n samples of *one* prompt as parallel sequences. When several
requests wait for the edge at once, this draws all their samples together: each prompt is
decoded into its own first sequence and copied to its other sequences, then one
``llama_decode`` per step advances every live sequence of every request. Decode of a small
model on a CPU is compute-bound per step, so one step for 15 sequences costs far less than three
steps of 5 (measured here: 5 samples 1.65 s, 15 samples 3.67 s).

This is built on EdgeModel's internals (``_decode``, ``_logits``, ``_sampler``, ``_lock``), the
same steps as ``EdgeModel._steps`` for one prompt; a ``sample_many`` in EdgeModel itself is
the better home (see the server's notes). :func:`supported` tells whether the model offers them;
the engine falls back to one prompt at a time otherwise, or if a batch fails.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import List, Optional, Sequence

import numpy as np

_NEEDS = ("_decode", "_logits", "_sampler", "_lock", "_ll", "_ctx", "_vocab", "n_vocab",
          "n_batch", "n_seq_max", "n_ctx", "detokenize", "prompt_tokens")


def supported(edge) -> bool:
    return all(hasattr(edge, a) for a in _NEEDS)


@dataclass
class Job:
    prompt: List[int]
    n: int
    max_tokens: int
    temperature: float
    seed: Optional[int]


def sample_many(edge, jobs: Sequence[Job]):
    """One :class:`~confroute.models.types.Samples` per job; the jobs' sequences together
    must fit ``edge.n_seq_max`` and each prompt + max_tokens its ``n_ctx``."""
    from confroute import token_logprobs
    from confroute.models.types import Samples

    ll = edge._ll
    if sum(j.n for j in jobs) > edge.n_seq_max:
        raise ValueError("the jobs need more sequences than the model has")
    base, seq = [], 0
    for j in jobs:
        if len(j.prompt) + j.max_tokens > edge.n_ctx:
            raise ValueError("a job does not fit the context")
        base.append(seq)
        seq += j.n
    t0 = time.perf_counter()
    tokens = [[[] for _ in range(j.n)] for j in jobs]
    lps = [[[] for _ in range(j.n)] for j in jobs]
    finish = [["length"] * j.n for j in jobs]
    chains = []
    with edge._lock:
        mem = ll.llama_get_memory(edge._ctx)
        ll.llama_memory_clear(mem, True)
        try:
            live = []   # (job index, sample index)
            for k, j in enumerate(jobs):
                chains.append(edge._sampler(j.temperature, 0, 1.0, 0.0, j.seed))
                # The prompt into this job's first sequence, in chunks of n_batch; logits for
                # its last token only.
                p = j.prompt
                for start in range(0, len(p), edge.n_batch):
                    chunk = range(start, min(start + edge.n_batch, len(p)))
                    edge._decode([(p[i], i, base[k], i == len(p) - 1) for i in chunk])
                idx = (len(p) - 1) % edge.n_batch
                row = edge._logits(1, idx)[0].copy()
                for s in range(1, j.n):
                    ll.llama_memory_seq_cp(mem, base[k], base[k] + s, -1, -1)
                # Step 0 from the prompt's last logits, as EdgeModel._steps does.
                toks = [ll.llama_sampler_sample(chains[k], edge._ctx, idx) for _ in range(j.n)]
                lp = token_logprobs(np.broadcast_to(row, (j.n, edge.n_vocab)), toks, 1.0)
                for s, (t, v) in enumerate(zip(toks, lp)):
                    if _accept(edge, tokens[k][s], lps[k][s], finish[k], s, t, v, j.max_tokens):
                        live.append((k, s))
            while live:
                edge._decode([(tokens[k][s][-1], len(jobs[k].prompt) + len(tokens[k][s]) - 1,
                               base[k] + s, True) for k, s in live])
                # Each job's own sampler, its sequences in order: the same draws as alone.
                toks = [ll.llama_sampler_sample(chains[k], edge._ctx, i)
                        for i, (k, s) in enumerate(live)]
                lp = token_logprobs(edge._logits(len(live)), toks, 1.0)
                live = [(k, s) for (k, s), t, v in zip(live, toks, lp)
                        if _accept(edge, tokens[k][s], lps[k][s], finish[k], s, t, v,
                                   jobs[k].max_tokens)]
            texts = [tuple(edge.detokenize(t) for t in tokens[k]) for k in range(len(jobs))]
        finally:
            for c in chains:
                ll.llama_sampler_free(c)
    seconds = time.perf_counter() - t0
    return [Samples(texts=texts[k],
                    token_logprobs=tuple(np.asarray(v, np.float64) for v in lps[k]),
                    token_ids=tuple(np.asarray(t, np.int32) for t in tokens[k]),
                    finish_reasons=tuple(finish[k]), model=edge.name,
                    prompt_tokens=len(j.prompt),
                    completion_tokens=sum(len(t) for t in tokens[k]),
                    temperature=float(j.temperature), seconds=seconds)
            for k, j in enumerate(jobs)]


def _accept(edge, toks, lps, finish, s, tok, lp, max_tokens) -> bool:
    """Appends a sampled token; False when the sequence has ended."""
    if edge._ll.llama_vocab_is_eog(edge._vocab, tok):
        finish[s] = "stop"
        return False
    toks.append(int(tok))
    lps.append(float(lp))
    return len(toks) < max_tokens
