"""What the scorer returns for one prompt: :class:`Confidence`, its semantic entropies (nats,
of the kinds in :data:`KINDS`), the likelihood baselines and the answer to give."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Optional, Tuple

import numpy as np

from confroute.models.types import Samples

KINDS = ("discrete", "weighted", "kuhn")


@dataclass(frozen=True)
class Confidence:
    """Everything known about one prompt's uncertainty. Entropies are in nats; higher = less
    confident. ``best_index`` is the most likely member (length-normalized logprob) of the
    largest cluster: the answer to give if this model keeps the query. Fields that need
    logprobs are NaN when the model gave none. ``seconds`` splits the time into generate /
    embed / core."""

    method: str   # "embedding" | "exact" | "execution" | "options", or a fallback such as
                  # "embedding (no example calls)"
    n_samples: int
    n_clusters: int
    cluster_ids: np.ndarray
    se_discrete: float
    se_weighted: float
    se_kuhn: float
    mean_token_logprob: float
    max_sequence_prob: float
    mean_perplexity: float
    seq_logprob_sum: np.ndarray
    seq_logprob_mean: np.ndarray
    best_index: int
    similarity: Optional[float]  # the cosine that joined meanings (embedding only)
    samples: Optional[Samples] = field(default=None, repr=False)
    answers: Optional[Tuple[Optional[str], ...]] = None
    seconds: Dict[str, float] = field(default_factory=dict)
    # the share of samples whose meaning differs from the edge's answer (NaN: no answer given)
    disagreement: float = float("nan")

    def se(self, kind: str = "kuhn") -> float:
        if kind not in KINDS:
            raise ValueError(f"unknown SE kind {kind!r}; use one of {KINDS}")
        return getattr(self, "se_" + kind)

    @property
    def answer(self) -> str:
        """The chosen answer: a sample's text, or the top option letter."""
        if self.samples is not None:
            return self.samples.texts[self.best_index]
        return self.answers[self.best_index] if self.answers else ""

    def as_dict(self) -> Dict[str, object]:
        """Plain JSON-able numbers (no samples)."""
        return {"method": self.method, "n_samples": self.n_samples,
                "n_clusters": self.n_clusters, "cluster_ids": self.cluster_ids.tolist(),
                **{f"se_{k}": self.se(k) for k in KINDS},
                "mean_token_logprob": self.mean_token_logprob,
                "max_sequence_prob": self.max_sequence_prob,
                "mean_perplexity": self.mean_perplexity, "disagreement": self.disagreement,
                "seconds": dict(self.seconds)}
