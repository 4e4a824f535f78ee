"""Readable per-query NumPy references of the core's computations (slow on purpose)."""
from __future__ import annotations

import numpy as np


def token_logprobs(logits, token_ids, temperature=1.0):
    x = np.asarray(logits, dtype=np.float64) / temperature
    x = x - x.max(axis=1, keepdims=True)
    lse = np.log(np.exp(x).sum(axis=1))
    return x[np.arange(len(x)), np.asarray(token_ids)] - lse


def sequence_logprobs(token_lp, token_offsets, reduce="mean"):
    out = []
    for s in range(len(token_offsets) - 1):
        seg = np.asarray(token_lp[token_offsets[s]:token_offsets[s + 1]], dtype=np.float64)
        if len(seg) == 0:  # no likelihood: not even the end-of-generation token
            raise ValueError(f"sample {s} has no tokens")
        out.append(seg.sum() if reduce == "sum" else seg.mean())
    return np.array(out)


def cluster_query(emb, threshold, method="greedy"):
    e = np.asarray(emb, dtype=np.float64)
    e = e / np.linalg.norm(e, axis=1, keepdims=True)
    sim = e @ e.T
    n = len(e)
    ids = np.full(n, -1)
    if method == "greedy":
        firsts = []
        for i in range(n):
            for c, f in enumerate(firsts):
                if sim[i, f] >= threshold:
                    ids[i] = c
                    break
            else:
                ids[i] = len(firsts)
                firsts.append(i)
        return ids
    k = 0
    for i in range(n):  # flood fill from each unlabelled sample, in order
        if ids[i] >= 0:
            continue
        stack = [i]
        ids[i] = k
        while stack:
            j = stack.pop()
            for m in np.nonzero(sim[j] >= threshold)[0]:
                if ids[m] < 0:
                    ids[m] = k
                    stack.append(m)
        k += 1
    return ids


def cluster_by_similarity(emb, sample_offsets, threshold, method="greedy"):
    return np.concatenate([
        cluster_query(emb[sample_offsets[b]:sample_offsets[b + 1]], threshold, method)
        for b in range(len(sample_offsets) - 1)
    ]).astype(np.int32)


def cluster_log_probs(ids, lp=None):
    ids = np.asarray(ids)
    clusters = np.unique(ids)
    if lp is None:
        return np.log(np.array([np.mean(ids == c) for c in clusters]))
    lp = np.asarray(lp, dtype=np.float64)
    total = np.logaddexp.reduce(lp)
    return np.array([np.logaddexp.reduce(lp[ids == c]) - total for c in clusters])


def query_entropy(ids, lp=None, kind="discrete"):
    if kind == "discrete":
        log_p = cluster_log_probs(ids)
        return float(-(np.exp(log_p) * log_p).sum())
    log_p = cluster_log_probs(ids, lp)
    if kind == "weighted":
        return float(-(np.exp(log_p) * log_p).sum())
    return float(-log_p.mean())


def semantic_entropy(ids, sample_offsets, seq_lp=None, kind="discrete"):
    out = []
    for b in range(len(sample_offsets) - 1):
        lo, hi = sample_offsets[b], sample_offsets[b + 1]
        out.append(query_entropy(ids[lo:hi], None if seq_lp is None else seq_lp[lo:hi], kind))
    return np.array(out)


def confidence_batch(token_lp, token_offsets, emb, sample_offsets, threshold,
                     method="greedy", likelihood="mean"):
    """The whole pipeline, one query at a time, as a dict of the core's field names."""
    s_sum = sequence_logprobs(token_lp, token_offsets, "sum")
    s_mean = sequence_logprobs(token_lp, token_offsets, "mean")
    ll = s_mean if likelihood == "mean" else s_sum
    out = {k: [] for k in ("cluster_ids", "n_samples", "n_clusters", "se_discrete",
                           "se_weighted", "se_kuhn", "mean_token_logprob",
                           "max_sequence_prob", "mean_perplexity")}
    for b in range(len(sample_offsets) - 1):
        lo, hi = sample_offsets[b], sample_offsets[b + 1]
        ids = cluster_query(emb[lo:hi], threshold, method)
        out["cluster_ids"].append(ids)
        out["n_samples"].append(hi - lo)
        out["n_clusters"].append(len(np.unique(ids)))
        for kind in ("discrete", "weighted", "kuhn"):
            out["se_" + kind].append(query_entropy(ids, ll[lo:hi], kind))
        out["mean_token_logprob"].append(s_mean[lo:hi].mean())
        out["max_sequence_prob"].append(np.exp(s_sum[lo:hi].max()))
        out["mean_perplexity"].append(np.exp(-s_mean[lo:hi]).mean())
    out = {k: (np.concatenate(v) if k == "cluster_ids" else np.array(v)) for k, v in out.items()}
    out["seq_logprob_sum"] = s_sum
    out["seq_logprob_mean"] = s_mean
    return out


def random_batch(rng, B, n_max=10, t_max=20, D=8, n_meanings=3):
    """A ragged batch whose sample embeddings sit near a few meaning directions, so that
    clusters of every size occur."""
    n = rng.integers(1, n_max + 1, size=B)
    sample_offsets = np.concatenate([[0], np.cumsum(n)]).astype(np.int64)
    S = int(sample_offsets[-1])
    t = rng.integers(1, t_max + 1, size=S)  # every sample has at least its stop token
    token_offsets = np.concatenate([[0], np.cumsum(t)]).astype(np.int64)
    token_lp = -rng.exponential(1.0, size=int(token_offsets[-1]))
    centres = rng.normal(size=(n_meanings, D))
    emb = centres[rng.integers(0, n_meanings, size=S)] + 0.3 * rng.normal(size=(S, D))
    return token_lp, token_offsets, emb, sample_offsets
