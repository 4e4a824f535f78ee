"""Trained routers replayed on the table they learn from, without seeing the prompts they score:
``confroute eval crossfit``.

The prompts are split into ``folds`` (seeded, stratified by the target); each fold is scored by
a router trained on the other folds' rows only. The out-of-fold scores become a signal column,
``signal:cv_<router>_<target>`` (higher = send to the cloud), which ``eval replay`` reads with
intervals like any online signal. So "sep vs full SE vs a MiniLM mlp on the same labels" is one
replay of one table.

Targets, all built from the table's own columns:

- ``accuracy``: the RouteLLM labels (the strong model wins where its quality is higher, ties
  where equal), from the two quality columns;
- ``error``: the edge's answer was wrong (weak quality < 0.5): the cloud wins, else the edge;
- ``se``: the edge's own SE (``se_signal``, e.g. ``se_kuhn`` or ``exec_se_kuhn``) lies above
  the split of the training folds (the paper's best split; see ``routers.sep.best_split``).

``sep`` reads the edge's hidden states: every layer of every prompt in one prefill each, computed
once per table (``hidden``) and sliced per fold.
"""
from __future__ import annotations

import dataclasses
from typing import Dict, List, Optional, Tuple

import numpy as np

from confroute.eval.table import OutcomeTable

TARGETS = ("accuracy", "error", "se")


def signal_name(router: str, target: str) -> str:
    return f"cv_{router}_{target}"


def target_values(table: OutcomeTable, target: str, se_signal: str = "se_kuhn") -> np.ndarray:
    """Per prompt, what the rows are labelled from: 1/0 for ``error``, the SE for ``se``, the
    quality gap strong - weak for ``accuracy``; ValueError naming what the table lacks."""
    if target not in TARGETS:
        raise ValueError(f"target must be one of {', '.join(TARGETS)}; got {target!r}")
    if target == "error":
        return (table.q_weak < 0.5).astype(np.float64)
    if target == "accuracy":
        return table.q_strong - table.q_weak
    se = np.asarray(table.signal(se_signal), np.float64)
    if not np.isfinite(se).all():
        raise ValueError(f"{table.name}: signal {se_signal!r} is missing on "
                         f"{int((~np.isfinite(se)).sum())} prompts; target 'se' needs it on all")
    return se


def label_rows(table: OutcomeTable, idx, target: str, values: np.ndarray,
               split: Optional[float] = None) -> List[dict]:
    """The pair-schema rows of prompts ``idx`` for ``target`` (see the module doc), with
    ``se_weak`` / ``quality_weak`` kept for ``sep``."""
    from confroute.labels import make_row, outcome_rows

    idx = list(idx)
    if target == "accuracy":  # the RouteLLM labels the package already makes
        return outcome_rows([table.prompts[i] for i in idx], table.q_weak[idx],
                            table.q_strong[idx], table.weak, table.strong)
    out = []
    for i in idx:
        v = float(values[i])
        if target == "error":
            winner = "strong" if v > 0.5 else "weak"
        else:
            winner = "strong" if v > split else "weak"
        row = make_row(table.prompts[i], table.weak, table.strong, winner,
                       label_source=target, quality_weak=float(table.q_weak[i]))
        if target == "se":
            row["se_weak"] = v
        out.append(row)
    return out


def folds_of(y: np.ndarray, folds: int, seed: int) -> List[Tuple[np.ndarray, np.ndarray]]:
    """(train, test) index pairs, stratified by the binary ``y``, seeded."""
    from sklearn.model_selection import StratifiedKFold

    if not (isinstance(folds, int) and folds >= 2):
        raise ValueError(f"folds must be an integer >= 2, got {folds!r}")
    counts = np.bincount(y.astype(int), minlength=2)
    if counts.min() < folds:
        raise ValueError(f"{folds} folds need >= {folds} prompts of each class; the target has "
                         f"{counts[0]} negatives and {counts[1]} positives")
    return list(StratifiedKFold(folds, shuffle=True, random_state=seed)
                .split(np.zeros(len(y)), y))


def crossfit(table: OutcomeTable, router: str, target: str = "accuracy", *,
             se_signal: str = "se_kuhn", folds: int = 5, seed: int = 0,
             params: Optional[dict] = None, hidden: Optional[np.ndarray] = None,
             embedder=None) -> Tuple[np.ndarray, Dict[str, object]]:
    """Out-of-fold scores in [0, 1] of ``router`` (a registered name: sw, mf, mlp, knn, sep)
    trained on ``target`` labels; and what was done (folds, per-fold training size, the SE
    splits, sep's layers). ``hidden``: [n, n_layer + 1, d] edge states for ``sep``."""
    from confroute.routers import get_router
    from confroute.routers.sep import best_split

    values = target_values(table, target, se_signal)
    # the strata: the binary target (for se, the split over all rows only balances the folds;
    # each fold's labels use the split of its own training rows)
    strata = {"accuracy": values > 0, "error": values > 0.5}.get(target)
    if strata is None:
        strata = values > best_split(values)
    if router == "sep" and hidden is None:
        raise ValueError("router 'sep' needs the edge's hidden states of the table's prompts")
    if hidden is not None and len(hidden) != len(table):
        raise ValueError(f"hidden has {len(hidden)} rows for {len(table)} prompts")
    scores = np.full(len(table), np.nan)
    info: Dict[str, object] = {"router": router, "target": target, "folds": folds,
                               "seed": seed, "params": dict(params or {}), "fold_info": []}
    if target == "se":
        info["se_signal"] = se_signal
    for tr, te in folds_of(strata, folds, seed):
        split = best_split(values[tr]) if target == "se" else None
        rows = label_rows(table, tr, target, values, split)
        kw = dict(params or {})
        if router == "sep":
            if target == "accuracy":
                raise ValueError("router 'sep' learns the edge's own targets: 'se' or 'error'")
            kw.update(target=target, edge=_Shape(hidden.shape[1] - 1, hidden.shape[2]))
            if target == "se":
                kw["se_split"] = split
        elif embedder is not None:
            kw["embedder"] = embedder
        try:
            r = get_router(router, **kw)
        except TypeError as e:
            raise ValueError(f"bad parameters for router {router!r}: {e}") from None
        if router == "sep":
            r.fit(rows, hidden=hidden[tr])
            scores[te] = r.score_hidden(hidden[te, r.fitted_layer])
            fold = {"n_train": len(tr), "layer": r.fitted_layer}
        else:
            r.fit(rows)
            scores[te] = r.score([table.prompts[i] for i in te])
            fold = {"n_train": len(tr)}
        if split is not None:
            fold["se_split"] = round(float(split), 6)
        info["fold_info"].append(fold)
    return scores, info


class _Shape:
    """What ``SEPRouter.fit`` asks of its edge when the hidden states come precomputed (no
    model is loaded)."""

    def __init__(self, n_layer: int, n_embd: int, name: str = "precomputed"):
        self.n_layer, self.n_embd, self.name = int(n_layer), int(n_embd), name


def with_signal(table: OutcomeTable, name: str, scores, info: Optional[dict] = None
                ) -> OutcomeTable:
    """The table with one more signal column (higher = cloud); refuses to overwrite one."""
    if name in table.signals:
        raise ValueError(f"{table.name}: the table already has a signal {name!r}")
    meta = dict(table.meta)
    meta["signal_higher"] = dict(meta.get("signal_higher") or {}, **{name: "cloud"})
    if info is not None:
        meta["crossfit"] = dict(meta.get("crossfit") or {}, **{name: info})
    return dataclasses.replace(
        table, signals=dict(table.signals, **{name: np.asarray(scores, float)}), meta=meta)


def edge_hidden(table: OutcomeTable, edge, cache: Optional[str] = None) -> np.ndarray:
    """Every layer's hidden state at each prompt's last token ([n, n_layer + 1, d]), one
    prefill per prompt (each prompt as one user message, as ``sep`` serves it). ``cache``: an
    .npz kept beside the run, reused for the prompts it holds from the same edge."""
    import os

    layers = list(range(edge.n_layer + 1))
    have: Dict[str, np.ndarray] = {}
    if cache and os.path.exists(cache):
        with np.load(cache, allow_pickle=False) as z:
            if str(z["model"]) == edge.name and z["states"].shape[1:] == (len(layers),
                                                                          edge.n_embd):
                have = {str(p): s for p, s in zip(z["prompts"], z["states"])}
    out = np.zeros((len(table), len(layers), edge.n_embd), np.float32)
    for i, p in enumerate(table.prompts):
        if p not in have:
            have[p] = edge.hidden_states([{"role": "user", "content": p}], layers)
        out[i] = have[p]
    if cache:
        keys = sorted(have)
        tmp = cache + ".tmp.npz"
        np.savez(tmp, model=np.array(edge.name), prompts=np.array(keys),
                 states=np.stack([have[k] for k in keys]))
        os.replace(tmp, cache)
    return out
