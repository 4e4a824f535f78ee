"""The edge's samples replayed in draw order: SE of their first k, and adaptive stopping.

``eval build`` keeps, per prompt and in draw order, each sample's cluster under the meaning the
served path judged it by (``sample_clusters``; ``meaning`` says which) and its mean token
log-prob (``sample_mean_logprob``). So one table built with n samples also answers, without
another model run:

- :func:`prefix_signals` — SE of the first k samples, as if the table had been built with k
  (the first k of n draws are k draws from the same distribution; not bit for bit a k-sample
  run, whose sampler chains differ);
- :func:`adaptive_replay` — how many samples adaptive SE (``confidence.stopping``) draws before
  its decision at a threshold is settled, and whether that decision is full-n SE's. The rounds
  take the stored samples in order, so the samples and the stopping code are those of the
  online policy; only which samples a round draws differs (online, round k is seeded k).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

import numpy as np

CLUSTERS = "sample_clusters"   # a record's per-sample cluster ids, in draw order
# the served SE policy of each kind (its router-string name)
SE_NAMES = {"kuhn": "se", "discrete": "se_discrete", "weighted": "se_weighted"}
KINDS = ("discrete", "weighted", "kuhn")


@dataclass(frozen=True)
class Draws:
    """One prompt's samples in draw order: cluster ids (first-seen order) and mean token
    log-probs."""

    id: str
    cluster_ids: np.ndarray
    mean_logprob: np.ndarray


def _ids_of(keys) -> np.ndarray:
    """Equal keys share a cluster, numbered by first appearance (the rule of execution
    clusters); a missing key (no answer found) is a cluster of its own."""
    from confroute.confidence.execution import cluster_ids

    return cluster_ids([(k,) if k is not None else (None, i) for i, k in enumerate(keys)])


def draws_of(records) -> List[Draws]:
    """The edge's per-sample draws from checkpoint records (``LiveRecord``s of the signals'
    model); ValueError naming the first record that lacks them."""
    key, out = CLUSTERS, []
    for r in records:
        ex = r.extra
        if key not in ex or "sample_mean_logprob" not in ex:
            raise ValueError(f"record {r.id!r} has no per-sample {key!r} and "
                             f"'sample_mean_logprob' (built before they were kept, or without "
                             f"samples): rebuild it with `eval build --samples N`")
        ids = np.asarray(ex[key], np.int64)
        lp = np.asarray(ex["sample_mean_logprob"], np.float64)
        if ids.shape != lp.shape or ids.size == 0:
            raise ValueError(f"record {r.id!r}: {ids.size} cluster ids for {lp.size} samples")
        out.append(Draws(r.id, ids, lp))
    return out


def prefix_se(draws: Sequence[Draws], k: int, start: int = 0) -> Dict[str, np.ndarray]:
    """Discrete, weighted and Kuhn SE of each prompt's samples ``start .. start + k - 1``
    (the first ``k`` by default; another window of the same draws shows how much SE at k
    samples moves from draw to draw), by the core."""
    from confroute.confidence.core import semantic_entropy

    if k < 1 or start < 0:
        raise ValueError(f"need k >= 1 and start >= 0, got k={k}, start={start}")
    short = [d.id for d in draws if d.cluster_ids.size < start + k]
    if short:
        raise ValueError(f"{len(short)} prompts have fewer than {start + k} samples (first: "
                         f"{short[0]!r})")
    # cluster ids renumbered within the window (the core wants 0..K-1 per prompt)
    ids = np.concatenate([_ids_of(d.cluster_ids[start:start + k].tolist()) for d in draws])
    lp = np.concatenate([d.mean_logprob[start:start + k] for d in draws])
    off = np.arange(len(draws) + 1, dtype=np.int64) * k
    return {kind: np.asarray(semantic_entropy(ids, off, None if kind == "discrete" else lp,
                                              kind=kind), np.float64) for kind in KINDS}


def prefix_signals(draws: Sequence[Draws], k: int, start: int = 0
                   ) -> Dict[str, np.ndarray]:
    """``{<policy>_n<k>[_from<start>]: values}``: the SE policies' column names (``se``,
    ``se_discrete``, ``se_weighted``) with the sample window appended."""
    tail = f"_from{start}" if start else ""
    return {f"{SE_NAMES[kind]}_n{k}{tail}": v
            for kind, v in prefix_se(draws, k, start).items()}


@dataclass(frozen=True)
class AdaptiveReplay:
    """Per prompt: samples drawn, the adaptive decision, full-n SE's decision (True = cloud)."""

    threshold: float
    rule: str
    n_max: int
    n_drawn: np.ndarray
    cloud: np.ndarray
    cloud_full: np.ndarray

    @property
    def identical(self) -> np.ndarray:
        return self.cloud == self.cloud_full


def adaptive_replay(draws: Sequence[Draws], threshold: float, n_max: int, first: int = 3,
                    step: int = 2, rule: str = "exact", delta: float = 0.05
                    ) -> AdaptiveReplay:
    """Adaptive SE (``stopping.verdict`` after each round of ``stopping.schedule``) on the
    first ``n_max`` stored samples of each prompt."""
    from confroute.confidence import stopping

    if rule not in stopping.RULES:
        raise ValueError(f"rule must be one of {stopping.RULES}, got {rule!r}")
    sizes = stopping.schedule(n_max, first, step)
    full = prefix_se(draws, n_max)["discrete"]
    drawn, cloud = [], []
    for d, se_full in zip(draws, full):
        k, decision = 0, None
        for size in sizes:
            k += size
            ids = d.cluster_ids[:k]
            # at n_max the core's SE decides, as full-n SE does
            se = se_full if k == n_max else stopping.discrete_entropy(np.bincount(ids))
            decision = stopping.verdict(ids, se, n_max, threshold, rule, delta)[0]
            if decision is not None:
                break
        drawn.append(k)
        cloud.append(decision == "cloud")
    return AdaptiveReplay(float(threshold), rule, n_max, np.array(drawn), np.array(cloud),
                          full > threshold)


def share_threshold(se: np.ndarray, share: float) -> float:
    """A threshold (nats) that sends about ``share`` of the prompts to the cloud (SE above it):
    the midpoint between the two distinct SE values the share falls between."""
    if not 0 < share < 1:
        raise ValueError(f"cloud share must lie in (0, 1), got {share}")
    v = np.unique(np.round(np.asarray(se, np.float64), 12))
    if v.size < 2:
        raise ValueError("every prompt has the same SE: no threshold splits them")
    mids = (v[:-1] + v[1:]) / 2
    shares = np.array([(se > m).mean() for m in mids])
    return float(mids[int(np.argmin(np.abs(shares - share)))])


def checkpoint_records(path: str, model: Optional[str] = None) -> list:
    """The records of ``model`` (default: the checkpoint's ``signals_from``, the edge) in a
    checkpoint of ``eval build``."""
    import json

    from confroute.eval.build import read_checkpoint

    with open(path, encoding="utf-8") as f:
        try:
            header = json.loads(f.readline())
        except json.JSONDecodeError:
            raise ValueError(f"{path}: line 1: not a confroute outcome checkpoint") from None
    model = model or header.get("signals_from")
    recs = [r for r in read_checkpoint(path, {}).values() if r.model == model]
    if not recs:
        raise ValueError(f"{path}: no records of model {model!r}")
    return recs
