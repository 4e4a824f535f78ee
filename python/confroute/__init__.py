"""confroute: send each query to an edge or a cloud LLM by the edge model's semantic entropy.

The numerics live in a C++ core (``confroute._core``); this package is a thin layer over it.
Nothing heavy is imported here: model backends, FAISS and the server load on first use.
"""
from confroute._core import build_info
from confroute.confidence.core import (
    ConfidenceBatch,
    cluster_by_similarity,
    confidence_batch,
    semantic_entropy,
    sequence_logprobs,
    token_logprobs,
)
from confroute.confidence.index import VectorIndex

__version__ = "0.1.0"

# The cascade loads on first use: confroute.Controller, .SECascade, .RoutedAnswer.
_LAZY = {"Controller": "confroute.controller", "RoutedAnswer": "confroute.controller",
         "ChainController": "confroute.controller", "Chain": "confroute.decision.chain",
         "SECascade": "confroute.decision.policies",
         "AnswerLogprob": "confroute.decision.policies",
         "Disagreement": "confroute.decision.policies", "Sampling": "confroute.decision.path",
         "ConfidenceScorer": "confroute.confidence.scorer"}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'confroute' has no attribute {name!r}")

__all__ = [
    "AnswerLogprob",
    "Chain",
    "ChainController",
    "ConfidenceBatch",
    "ConfidenceScorer",
    "Controller",
    "Disagreement",
    "RoutedAnswer",
    "SECascade",
    "Sampling",
    "VectorIndex",
    "build_info",
    "cluster_by_similarity",
    "confidence_batch",
    "semantic_entropy",
    "sequence_logprobs",
    "token_logprobs",
]
