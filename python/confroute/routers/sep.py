"""`sep`: a semantic-entropy probe (Kossen et al. 2024) — logistic regression on the edge
model's hidden state at the prompt's last token, read in one prefill (no sampling).

Two targets, as in the paper, both from the label job's rows (``confroute label``):

- ``target="se"``: the edge's own SE is high — ``se_weak`` above a split, by default the
  paper's best split (the one that minimizes the two groups' summed squared deviation from
  their means), else ``"median"`` or a number of nats;
- ``target="error"``: the edge's answer was wrong (``quality_weak`` < 0.5; rows graded
  against gold answers).

The score is P(target) in [0, 1], so higher means "send to the cloud", as for every router.
Logistic regression, not a deeper probe: with a few hundred labelled prompts against 576
(SmolLM2) to 896 (Qwen) features, a linear model on standardized features with L2 is what the
data can fit; ``C`` is the inverse L2 strength. ``layer="auto"`` picks the layer with the best
5-fold cross-validated AUROC on the training rows (all layers come from the same prefill).

The router holds an edge model made with ``hidden_states=True`` (default: the registry's
SmolLM2, or ``edge_model``, a registry name or GGUF path); it refuses a model of another name
or width than it was trained on. Saved like the embedding routers: ``router.json`` +
``arrays.npz`` (the weights and the standardization), no pickle.
"""
from __future__ import annotations

import json
import os
from typing import Optional, Sequence, Union

import numpy as np

from confroute.routers.base import FORMAT_VERSION, Router, prompt_list, read_config, register

TARGETS = ("se", "error")


def best_split(values) -> float:
    """The threshold t splitting ``values`` into (<= t, > t) with the least summed squared
    deviation from the two groups' means (1-D two-means, exact over all cut points)."""
    v = np.sort(np.asarray(values, dtype=np.float64))
    if v.size < 2 or v[0] == v[-1]:
        raise ValueError("a split needs at least two distinct SE values")
    cuts = np.flatnonzero(np.diff(v) > 0)  # cut after index i
    c1, c2 = np.cumsum(v), np.cumsum(v ** 2)
    n = np.arange(1, v.size + 1)
    left = c2[cuts] - c1[cuts] ** 2 / n[cuts]
    rn = v.size - n[cuts]
    right = (c2[-1] - c2[cuts]) - (c1[-1] - c1[cuts]) ** 2 / rn
    i = cuts[int(np.argmin(left + right))]
    return float(v[i])


def binary_targets(rows, target: str, se_split: Union[str, float]):
    """(y in {0, 1}, split used or None) from label rows; ValueError naming what is missing."""
    if target not in TARGETS:
        raise ValueError(f"target must be one of {TARGETS}, got {target!r}")
    key = "se_weak" if target == "se" else "quality_weak"
    vals = []
    for i, r in enumerate(rows):
        x = r.get(key) if isinstance(r, dict) else None
        if not isinstance(x, (int, float)) or isinstance(x, bool) or not np.isfinite(x):
            raise ValueError(f"label row {i} has no finite {key!r} (target {target!r} needs it"
                             + ("; grade the job against gold answers" if target == "error"
                                else "") + ")")
        vals.append(float(x))
    v = np.asarray(vals)
    if target == "error":
        return (v < 0.5).astype(int), None
    if isinstance(se_split, str):
        if se_split == "best":
            split = best_split(v)
        elif se_split == "median":
            split = float(np.median(v))
        else:
            raise ValueError(f"se_split is 'best', 'median' or a number, got {se_split!r}")
    else:
        split = float(se_split)
    return (v > split).astype(int), split


def _auroc(y, s) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, s))


class _Probe:
    """Standardize, then L2 logistic regression; NumPy scoring from the saved arrays."""

    def __init__(self, C: float, seed: int = 0):
        self.C, self.seed = C, seed

    def fit(self, X, y):
        from sklearn.linear_model import LogisticRegression

        self.mean = X.mean(axis=0)
        self.scale = X.std(axis=0) + 1e-6
        clf = LogisticRegression(C=self.C, max_iter=2000, random_state=self.seed)
        clf.fit((X - self.mean) / self.scale, y)
        self.coef, self.intercept = clf.coef_[0].astype(np.float64), float(clf.intercept_[0])
        return self

    def score(self, X):
        z = ((np.asarray(X, np.float64) - self.mean) / self.scale) @ self.coef + self.intercept
        return 1.0 / (1.0 + np.exp(-z))


def layer_cv_auroc(H, y, C: float, folds: int = 5, seed: int = 0) -> np.ndarray:
    """Cross-validated AUROC of the probe per layer: H is [n, layers, d]."""
    from sklearn.model_selection import StratifiedKFold

    y = np.asarray(y)
    k = int(min(folds, np.bincount(y).min()))
    if k < 2:
        raise ValueError("cross-validation needs at least two examples of each class")
    split = list(StratifiedKFold(k, shuffle=True, random_state=seed).split(H[:, 0], y))
    out = []
    for li in range(H.shape[1]):
        pred = np.zeros(len(y))
        for tr, te in split:
            pred[te] = _Probe(C, seed).fit(H[tr, li], y[tr]).score(H[te, li])
        out.append(_auroc(y, pred))
    return np.asarray(out)


@register("sep")
class SEPRouter(Router):
    needs_hidden = True   # the decision path supplies the prompt's hidden state (one prefill)

    def __init__(self, edge=None, target: str = "se", layer: Union[int, str] = "auto",
                 C: float = 0.05, se_split: Union[str, float] = "best", seed: int = 0,
                 edge_model: Optional[str] = None, threads: Optional[int] = None,
                 threshold: Optional[float] = None, embedder=None):
        if target not in TARGETS:
            raise ValueError(f"target must be one of {TARGETS}, got {target!r}")
        if not (layer == "auto" or (isinstance(layer, int) and not isinstance(layer, bool))):
            raise ValueError(f"layer is an integer or 'auto', got {layer!r}")
        if not (isinstance(C, (int, float)) and C > 0):
            raise ValueError(f"C must be > 0, got {C!r}")
        self._edge = edge
        self.target, self.layer, self.C, self.se_split = target, layer, float(C), se_split
        self.seed, self.edge_model, self.threads = int(seed), edge_model, threads
        self.threshold = threshold
        self.edge_name: Optional[str] = None
        self.n_embd: Optional[int] = None
        self.split: Optional[float] = None
        self.info: dict = {}
        self._probe: Optional[_Probe] = None
        self.weak = self.strong = None   # the label rows' models (facts; the probe needs the edge)

    # -- the edge model ------------------------------------------------------------------------
    @property
    def edge(self):
        if self._edge is None:
            from confroute.models import local_model, store

            name = self.edge_model or store.DEFAULT_EDGE
            self._edge = local_model(name, name=os.path.basename(name), hidden_states=True,
                                     **({} if self.threads is None else
                                        {"n_threads": self.threads}))
        if self.edge_name is not None:
            self._check_edge(self._edge)
        return self._edge

    def _check_edge(self, edge) -> None:
        if edge.name != self.edge_name or edge.n_embd != self.n_embd:
            raise ValueError(f"router 'sep' was trained on {self.edge_name!r} "
                             f"({self.n_embd}-wide hidden states); got {edge.name!r} "
                             f"({edge.n_embd}-wide)")

    def hidden(self, prompts: Sequence[str], layers: Sequence[int]) -> np.ndarray:
        """float32 [n, len(layers), n_embd]: each prompt as one user message, one prefill."""
        prompts = prompt_list(prompts)
        edge = self.edge
        out = np.zeros((len(prompts), len(layers), edge.n_embd), np.float32)
        for i, p in enumerate(prompts):
            out[i] = edge.hidden_states([{"role": "user", "content": p}], layers)
        return out

    # -- training --------------------------------------------------------------------------------
    def fit(self, labels, strong=None, weak=None, hidden=None) -> "SEPRouter":
        """Trains on the label job's rows (a list of dicts or a JSONL path): their prompts'
        hidden states from the edge model (or ``hidden`` [n, n_layer + 1, d], all layers,
        precomputed) and the target of ``target``. ``strong``/``weak`` are accepted for the
        train command's sake; the probe concerns the edge model alone."""
        from confroute.labels import read_labels

        rows = read_labels(labels) if isinstance(labels, (str, os.PathLike)) else list(labels)
        if not rows:
            raise ValueError("no label rows")
        y, self.split = binary_targets(rows, self.target, self.se_split)
        if len(np.unique(y)) < 2:
            raise ValueError(f"the {self.target!r} targets hold one class only: a probe needs "
                             "both")
        edge = self.edge
        n_all = edge.n_layer + 1
        if hidden is None:
            hidden = self.hidden([r["prompt"] for r in rows], list(range(n_all)))
        hidden = np.asarray(hidden, np.float32)
        if hidden.shape != (len(rows), n_all, edge.n_embd):
            raise ValueError(f"hidden must be [{len(rows)}, {n_all}, {edge.n_embd}], got "
                             f"{hidden.shape}")
        if self.layer == "auto":
            cv = layer_cv_auroc(hidden, y, self.C, seed=self.seed)
            layer = int(np.argmax(cv))
            self.info["cv_auroc_by_layer"] = [round(float(a), 4) for a in cv]
        else:
            from confroute.models.llama.hidden import check_layers

            layer = check_layers([self.layer], edge.n_layer)[0]
        self._probe = _Probe(self.C, self.seed).fit(hidden[:, layer], y)
        self.fitted_layer = layer
        self.edge_name, self.n_embd = edge.name, int(edge.n_embd)
        self.weak, self.strong = rows[0].get("model_a"), rows[0].get("model_b")
        self.info.update(n_train=len(rows), n_positive=int(y.sum()), layer=layer,
                         se_split=self.split)
        return self

    # -- scoring ---------------------------------------------------------------------------------
    def _require_fitted(self):
        if self._probe is None:
            raise ValueError("router 'sep' is not trained: call fit or load one")

    @property
    def layers(self):
        """The layers this router reads (for a caller that reads the prefill itself)."""
        self._require_fitted()
        return [self.fitted_layer]

    def score_hidden(self, hidden) -> np.ndarray:
        """Scores of hidden states [n, n_embd] (or [n, 1, n_embd]) at ``layers``."""
        self._require_fitted()
        H = np.asarray(hidden, np.float64)
        if H.ndim == 3 and H.shape[1] == 1:
            H = H[:, 0]
        if H.ndim != 2 or H.shape[1] != self.n_embd:
            raise ValueError(f"hidden states must be [n, {self.n_embd}], got {H.shape}")
        return np.clip(self._probe.score(H), 0.0, 1.0)

    def score_evidence(self, prompts: Sequence[str], evidences) -> np.ndarray:
        """Scores from the path's evidence: ``hidden`` as ``EdgeModel.hidden_state`` gives it
        (every layer, [n_layer + 1, n_embd]), of the edge model this probe was trained on."""
        self._require_fitted()
        rows = []
        for ev in evidences:
            h = getattr(ev, "hidden", None)
            if h is None:
                raise ValueError("router 'sep' needs the edge's hidden state in the evidence")
            h = np.asarray(h)
            if h.ndim != 2 or h.shape[1] != self.n_embd or h.shape[0] <= self.fitted_layer:
                raise ValueError(f"hidden state of shape {h.shape}: router 'sep' reads layer "
                                 f"{self.fitted_layer} of {self.n_embd}-wide states "
                                 f"({self.edge_name})")
            rows.append(h[self.fitted_layer])
        return self.score_hidden(np.stack(rows)) if rows else np.zeros(0)

    def score(self, prompts: Sequence[str]) -> np.ndarray:
        self._require_fitted()
        H = self.hidden(prompts, self.layers)
        return self.score_hidden(H) if len(H) else np.zeros(0)

    # -- persistence -----------------------------------------------------------------------------
    def _params(self) -> dict:
        return {"target": self.target, "layer": self.layer, "C": self.C,
                "se_split": self.se_split, "seed": self.seed, "edge_model": self.edge_model}

    def save(self, directory) -> None:
        self._require_fitted()
        directory = os.fspath(directory)
        os.makedirs(directory, exist_ok=True)
        p = self._probe
        np.savez(os.path.join(directory, "arrays.npz"), coef=p.coef,
                 intercept=np.array([p.intercept]), mean=p.mean, scale=p.scale)
        config = {"name": self.name, "format_version": FORMAT_VERSION,
                  "edge": {"name": self.edge_name, "n_embd": self.n_embd,
                           "layer": self.fitted_layer},
                  "weak": self.weak, "strong": self.strong,
                  "split": self.split, "threshold": self.threshold, "params": self._params(),
                  "info": self.info}
        with open(os.path.join(directory, "router.json"), "w") as f:  # last: marks it whole
            json.dump(config, f, indent=1)

    @classmethod
    def load(cls, directory, edge=None, embedder=None, threads=None) -> "SEPRouter":
        """``embedder`` is accepted (the router strings pass one) and not used."""
        directory = os.fspath(directory)
        config = read_config(directory, cls.name)
        obj = cls(edge=edge, threshold=config.get("threshold"), threads=threads,
                  **config["params"])
        obj.edge_name, obj.n_embd = config["edge"]["name"], int(config["edge"]["n_embd"])
        obj.fitted_layer = int(config["edge"]["layer"])
        obj.split, obj.info = config.get("split"), config.get("info", {})
        obj.weak, obj.strong = config.get("weak"), config.get("strong")
        probe = _Probe(obj.C, obj.seed)
        with np.load(os.path.join(directory, "arrays.npz")) as z:
            probe.coef, probe.mean, probe.scale = z["coef"], z["mean"], z["scale"]
            probe.intercept = float(z["intercept"][0])
        if probe.coef.shape != (obj.n_embd,) or probe.mean.shape != (obj.n_embd,):
            raise ValueError(f"{directory}: weights do not match the {obj.n_embd}-wide state")
        obj._probe = probe
        if edge is not None:
            obj._check_edge(edge)
        return obj
