"""How two answers are judged to mean the same, and what follows from the clusters.

:func:`meaning_keys` chooses the meaning for one prompt's samples (execution, the final answer,
or embedding similarity); :func:`one_hot` turns answer keys into rows that the core's cosine
clustering groups exactly by equality; the disagreement helpers compare the samples with the
edge's own answer; :func:`best_index_of` picks the answer to give from the clusters.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from confroute.confidence.answers import (extract_letter, extract_number, format_number,
                                         has_marked_number)
from confroute.models.types import Samples

# How two answers are judged to mean the same (ConfidenceScorer's ``meaning``): ``auto`` picks
# per prompt: execution where the prompt shows example calls of the function the samples
# define, the final number where the answers mark one, embedding similarity otherwise.
MEANINGS = ("auto", "embedding", "exact", "execution")
NO_ANSWER = "(no answer)"   # what the embedder reads for an empty reply


def meaning_keys(meaning: str, s: Samples, prompt: Optional[str], answer: Optional[str],
                 prefix: str) -> Tuple[str, Optional[List[Optional[str]]]]:
    """(meaning label, one key per sample and then the answer's, or None: by embedding)."""
    texts = [prefix + t for t in s.texts] + ([prefix + answer] if answer is not None
                                             else [])
    fell = ""
    if meaning in ("auto", "execution") and texts:
        from confroute.confidence.execution import behaviour_keys

        keys, why = behaviour_keys(texts, prompt)
        if keys is not None:
            return "execution", keys
        if meaning == "execution" or why != "not code":
            fell = f" ({why})"   # a code prompt the sandbox cannot judge: say so
        meaning = "auto" if meaning == "auto" else "embedding"
    if meaning == "exact" or (meaning == "auto" and marks_numbers(texts, answer)):
        return "exact" + fell, [exact_answer(t, "number", "") for t in texts]
    return "embedding" + fell, None


def exact_answer(text: str, extract: str, letters: str) -> Optional[str]:
    """The clustering key of a reply: the canonical number or the option letter, or None."""
    if extract == "option":
        return extract_letter(text, letters)
    x = extract_number(text)
    return None if x is None else format_number(x)


def visible(text: str) -> str:
    return text if text.strip() else NO_ANSWER


def marks_numbers(texts: Sequence[str], answer: Optional[str]) -> bool:
    """The answer marks a final number, or (no answer) most texts do."""
    if answer is not None:
        return has_marked_number(texts[-1])
    return 2 * sum(map(has_marked_number, texts)) > len(texts)


def key_disagreement(sample_keys, answer_keys) -> float:
    """Share of samples whose key differs from the answer's (a missing key differs from
    everything); NaN without an answer."""
    if not answer_keys or not sample_keys:
        return float("nan")
    mine = answer_keys[0]
    return float(np.mean([k is None or mine is None or k != mine for k in sample_keys]))


def embedding_disagreement(sample_emb: np.ndarray, answer_emb: np.ndarray,
                            similarity: float) -> float:
    """Share of samples whose cosine similarity to the answer is below ``similarity``."""
    if len(sample_emb) == 0:
        return float("nan")
    a = np.asarray(answer_emb, np.float64)
    e = np.asarray(sample_emb, np.float64)
    cos = e @ a / np.maximum(np.linalg.norm(e, axis=1) * np.linalg.norm(a), 1e-12)
    return float(np.mean(cos < similarity))


def block_one_hot(key_lists) -> np.ndarray:
    """One-hot rows of several sets' keys side by side (each set in its own columns)."""
    blocks = [one_hot(k) for k in key_lists]
    out = np.zeros((sum(b.shape[0] for b in blocks), sum(b.shape[1] for b in blocks)),
                   np.float32)
    r = c = 0
    for b in blocks:
        out[r:r + b.shape[0], c:c + b.shape[1]] = b
        r, c = r + b.shape[0], c + b.shape[1]
    return out


def one_hot(answers: Sequence[Optional[str]]) -> np.ndarray:
    """Rows that are equal for equal answers and orthogonal otherwise; a missing answer gets a
    column of its own. Cosine clustering at 0.5 then reproduces answer equality exactly."""
    cols: Dict[object, int] = {}
    for i, a in enumerate(answers):
        cols.setdefault(a if a is not None else ("none", i), len(cols))
    emb = np.zeros((len(answers), max(1, len(cols))), np.float32)
    for i, a in enumerate(answers):
        emb[i, cols[a if a is not None else ("none", i)]] = 1.0
    return emb


def best_index_of(cluster_ids: np.ndarray, seq_mean: Optional[np.ndarray],
                texts: Optional[Sequence[str]] = None) -> int:
    """The most likely member of the largest cluster (ties between clusters: the one holding
    the most likely sample). Without logprobs: the first member of the largest cluster. An
    empty answer (nothing but whitespace) is never chosen while a non-empty one exists: the
    clusters are then sized and searched by their non-empty members only."""
    if cluster_ids.size == 0:
        return 0
    idx = np.arange(cluster_ids.size)
    if texts is not None:
        filled = np.flatnonzero([bool(t.strip()) for t in texts])
        idx = filled if filled.size else idx
    ids = cluster_ids[idx]
    score = seq_mean[idx] if seq_mean is not None else -idx.astype(float)
    counts = np.bincount(ids)
    biggest = np.flatnonzero(counts == counts.max())
    best_of = {c: np.flatnonzero(ids == c)[np.argmax(score[ids == c])] for c in biggest}
    return int(idx[max(best_of.values(), key=lambda i: score[i])])
