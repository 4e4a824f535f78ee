"""When to stop sampling: is the SE routing decision at a threshold already settled?

The decision is "cloud" where the SE of ``n_max`` samples exceeds the threshold t, else
"edge" (``SECascade``). After k samples grouped into clusters of sizes c, the other
m = n_max - k samples can only join existing clusters or open new ones, and (greedy
clustering keeps every earlier sample where it is) the final discrete SE lies in
[H(c with all m added to the largest cluster), H(c and m singletons)] — the extremes in
majorization order of every reachable count vector, so the bounds are tight (a test checks
them against enumeration). When the whole interval is on one side of t the decision cannot
change: stopping there is **exact** (``rule="exact"``). This holds for discrete SE with greedy
clustering only: with ``components`` a later sample may merge clusters, and the weighted and
Kuhn forms depend on the unseen samples' likelihoods, which are unbounded.

``rule="confidence"`` stops earlier, when the decision is settled with probability at least
1 - delta under a Pólya-urn (Chinese-restaurant) predictive for the unseen samples: each joins
a cluster with probability proportional to its size, or opens a new one with weight ``alpha``
(by default averaged over its posterior given the clusters seen: SmolLM2 often gives k
distinct answers, and a fixed alpha = 1 then predicts repeats that do not come). That probability is a model, not a guarantee: its agreement with full-n SE is measured.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

import numpy as np

# SE values within this of the threshold are left to the full n (float rounding of the core)
MARGIN = 1e-9
RULES = ("exact", "confidence", "none")


def discrete_entropy(counts) -> float:
    c = np.asarray([x for x in counts if x > 0], dtype=np.float64)
    if c.size == 0:
        return 0.0
    p = c / c.sum()
    return float(-(p * np.log(p)).sum())


def entropy_bounds(counts: Sequence[int], remaining: int) -> Tuple[float, float]:
    """(min, max) discrete SE once ``remaining`` more samples join clusters of ``counts``."""
    c = [int(x) for x in counts if x > 0]
    if remaining < 0:
        raise ValueError(f"remaining samples must be >= 0, got {remaining}")
    if not c:
        raise ValueError("bounds need at least one sample drawn")
    low = sorted(c)
    low[-1] += remaining
    return discrete_entropy(low), discrete_entropy(c + [1] * remaining)


def settled(counts: Sequence[int], remaining: int, threshold: float) -> Optional[str]:
    """'edge' / 'cloud' when every completion decides so at ``threshold``; else None."""
    lo, hi = entropy_bounds(counts, remaining)
    if lo > threshold + MARGIN:
        return "cloud"
    if hi <= threshold - MARGIN:
        return "edge"
    return None


ALPHA_GRID = np.exp(np.linspace(np.log(0.05), np.log(200.0), 40))


def alpha_posterior(counts: Sequence[int]):
    """(grid, weights): the posterior of the urn's new-meaning weight given the clusters seen,
    under a log-uniform prior on [0.05, 200]; the partition's likelihood is Ewens',
    a^K Gamma(a) / Gamma(a + k)."""
    from math import lgamma

    c = [int(x) for x in counts if x > 0]
    k, K = sum(c), len(c)
    logw = np.array([K * np.log(a) + lgamma(a) - lgamma(a + k) for a in ALPHA_GRID])
    w = np.exp(logw - logw.max())
    return ALPHA_GRID, w / w.sum()


def p_cloud(counts: Sequence[int], remaining: int, threshold: float,
            alpha: Optional[float] = None, sims: int = 400, seed: int = 0) -> float:
    """P(final discrete SE > threshold) under the Pólya-urn predictive (module doc);
    ``alpha`` None: averaged over its posterior given the clusters seen
    (:func:`alpha_posterior`)."""
    base = [int(x) for x in counts if x > 0]
    if alpha is not None and not alpha > 0:
        raise ValueError(f"alpha must be > 0, got {alpha}")
    rng = np.random.default_rng(seed)
    if alpha is None:   # one weight per simulated completion, drawn from its posterior
        grid, w = alpha_posterior(base)
        alphas = rng.choice(grid, size=sims, p=w)
    else:
        alphas = np.full(sims, float(alpha))
    hits = 0
    for alpha in alphas:
        c = list(base)
        for _ in range(remaining):
            total = sum(c) + alpha
            u = rng.random() * total
            acc = 0.0
            for i, x in enumerate(c):
                acc += x
                if u < acc:
                    c[i] += 1
                    break
            else:
                c.append(1)
        hits += discrete_entropy(c) > threshold
    return hits / sims


def verdict(cluster_ids, se_discrete: float, n_max: int, threshold: float,
            rule: str = "exact", delta: float = 0.05, alpha: Optional[float] = None):
    """(decision or None to go on, exact, p_cloud) after the samples whose greedy cluster
    ids are given (their discrete SE ``se_discrete``, from the core) out of ``n_max``."""
    k = len(cluster_ids)
    remaining = n_max - k
    if remaining <= 0:
        return ("cloud" if se_discrete > threshold else "edge"), True, None
    if rule == "none":
        return None, False, None
    counts = np.bincount(np.asarray(cluster_ids))
    side = settled(counts, remaining, threshold)
    if side is not None:
        return side, True, None
    if rule == "confidence":
        p = p_cloud(counts, remaining, threshold, alpha, seed=k)
        if p <= delta or p >= 1 - delta:
            return ("cloud" if p >= 0.5 else "edge"), False, p
        return None, False, p
    return None, False, None


def schedule(n_max: int, first: int, step: int):
    """Round sizes: ``first``, then ``step`` at a time, up to ``n_max`` in all."""
    if not (2 <= first <= n_max) or step < 1:
        raise ValueError(f"need 2 <= first <= n_max and step >= 1; got first={first}, "
                         f"n_max={n_max}, step={step}")
    sizes, total = [first], first
    while total < n_max:
        sizes.append(min(step, n_max - total))
        total += sizes[-1]
    return sizes


@dataclass(frozen=True)
class AdaptiveResult:
    """What adaptive sampling decided. ``confidence`` covers the ``n_drawn`` samples drawn;
    ``decision`` is the route at ``threshold``; ``exact`` says it is the decision full-n
    discrete SE makes with these samples (the bound settled it, or all n_max were drawn);
    ``p_cloud`` is the confidence rule's last estimate (None under the exact rule)."""

    decision: str
    threshold: float
    n_drawn: int
    n_max: int
    rounds: int
    exact: bool
    rule: str
    confidence: object
    p_cloud: Optional[float] = None
