"""What `confroute serve` runs: read from a JSON (or, on Python 3.11+, TOML) file; every key is
optional and the defaults work out of the box (the registry's edge model in-process, the
registry's local cloud stand-in in-process, the online SE cascade at threshold 0.8).

Example (JSON)::

    {"edge": {"model": "/models/my-edge.gguf"},   # or {"base_url": URL, "model": NAME}
     "cloud": {"base_url": "https://api.example.com/v1", "model": "big-model",
               "api_key_env": "CLOUD_API_KEY", "timeout_s": 30},
     "routers": [{"name": "se", "thresholds": [0.5, 0.8]},
                 {"name": "disagreement", "thresholds": [0.4]},
                 {"name": "sw", "path": "routers/sw", "thresholds": [0.35]},
                 {"name": "answer_logprob-0.2:0.9+disagreement", "thresholds": [0.4]}],
     "sampling": {"n": 5, "temperature": 0.7, "max_tokens": 256},
     "meaning": "auto",
     "limits": {"max_tokens": 1024}, "queue_size": 32,
     "breaker": {"failures": 3, "reset_s": 30}}

Secrets are never in the file: the file names environment variables that hold them.

A staged router (:mod:`confroute.decision.names`) is served under its stages with the last
threshold left out as its name (``answer_logprob-0.2:0.9+disagreement`` above serves
``router-answer_logprob-0.2:0.9+disagreement-0.4``); a request may also name any staged
router whose stages are all configured routers. A stage takes its own entry's settings
(``samples``, ``kind``, a trained router's ``path``); an online stage without an entry the
defaults.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field, fields
from typing import Any, Dict, List, Optional, Tuple

from confroute.decision.path import Sampling
from confroute.server.model_names import stage_names, tier_router
from confroute.server.schema import Limits


@dataclass(frozen=True)
class EdgeConfig:
    # what a chain's tier calls this edge (the main edge is "edge" unless named; an entry of
    # `edges` must be named)
    name: str = "edge"
    model: Optional[str] = None        # registry name or GGUF path; None: the default edge
    # An edge served over HTTP (an OpenAI-compatible endpoint: llama-server, Ollama, vLLM):
    # with base_url, `model` is the server's model name and no GGUF is loaded here
    # (confroute.models.http_edge.HttpEdge); extra_body: request fields beyond the OpenAI API
    # sent with every call (e.g. {"repeat_penalty": 1.0, "top_k": 0, "min_p": 0.0})
    base_url: Optional[str] = None
    api_key_env: Optional[str] = None  # name of the environment variable holding its key
    timeout_s: float = 60.0
    extra_body: Optional[Dict[str, Any]] = None
    n_ctx: int = 1024                  # per sequence (prompt + answer); longer: the cloud
    n_threads: Optional[int] = None
    # Sequences decoded together: the samples of one request, or of several waiting requests
    # batched together. The KV cache holds n_ctx * n_seq_max cells (SmolLM2: 23 KB each).
    n_seq_max: int = 16
    batch: bool = True                 # batch the edge sampling of concurrent requests


@dataclass(frozen=True)
class CloudConfig:
    base_url: Optional[str] = None     # None: the registry's local stand-in, in-process
    model: Optional[str] = None
    api_key_env: Optional[str] = None  # name of the environment variable holding the key
    timeout_s: float = 60.0
    max_retries: int = 0               # the breaker, not retries, handles a failing cloud


@dataclass(frozen=True)
class RouterConfig:
    name: str = "se"
    # None: 0.8 for se; for a trained router the threshold `confroute calibrate` stored with it
    # (calibrated for a target cloud share)
    thresholds: Optional[Tuple[float, ...]] = None
    path: Optional[str] = None          # saved trained router directory
    samples: Optional[int] = None       # edge samples per request; None: sampling.n
    kind: str = "kuhn"                  # SE estimator of router "se"
    # the sampling and the edge model its thresholds were calibrated under (`confroute
    # calibrate --table` prints both): the server warns when it serves them otherwise
    calibrated_sampling: Optional[Dict[str, Any]] = None
    calibrated_edge: Optional[str] = None


@dataclass(frozen=True)
class ChainTierConfig:
    edge: str          # an edge's name: "edge" (the main one) or an entry of `edges`
    router: str        # its policy: a router string with its threshold (router-se-0.8)


@dataclass(frozen=True)
class ChainConfig:
    """A chain served as ``chain-<name>``: its edge tiers in order; the cloud is the last."""

    name: str
    tiers: Tuple[ChainTierConfig, ...]


@dataclass(frozen=True)
class BreakerConfig:
    failures: int = 3
    reset_s: float = 30.0


@dataclass(frozen=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 6060
    # Not CONFROUTE_API_KEY: CloudModel reads that one as the cloud's key.
    api_key_env: str = "CONFROUTE_SERVER_API_KEY"
    edge: EdgeConfig = field(default_factory=EdgeConfig)
    cloud: CloudConfig = field(default_factory=CloudConfig)
    routers: Tuple[RouterConfig, ...] = (RouterConfig(thresholds=(0.8,)),)
    # more edge models, each on its own thread, for chains of tiers
    edges: Tuple[EdgeConfig, ...] = ()
    chains: Tuple[ChainConfig, ...] = ()
    # how the edge answers and samples (the tables' defaults; max_tokens is the answer length
    # when a request names none): confroute.decision.path.Sampling
    sampling: Sampling = field(default_factory=Sampling)
    meaning: str = "auto"              # how samples are judged alike: meaning.MEANINGS
    limits: Limits = field(default_factory=Limits)
    breaker: BreakerConfig = field(default_factory=BreakerConfig)
    queue_size: int = 16               # requests waiting for the edge beyond the one running
    cloud_workers: int = 16            # concurrent cloud calls
    max_inflight: int = 64             # requests being served at once (all routes); 429 beyond

    @property
    def router_names(self) -> Dict[str, RouterConfig]:
        return {r.name: r for r in self.routers}

    @property
    def chain_names(self) -> Dict[str, ChainConfig]:
        return {c.name: c for c in self.chains}

    @property
    def edge_configs(self) -> Dict[str, EdgeConfig]:
        """Every edge by the name a chain's tier calls it: the main one first."""
        return {e.name: e for e in (self.edge, *self.edges)}

    def model_ids(self) -> List[str]:
        from confroute.decision.chain import PREFIX

        return [f"router-{r.name}-{t:g}" for r in self.routers for t in (r.thresholds or ())] \
            + [PREFIX + c.name for c in self.chains]

    def samples(self, router: RouterConfig) -> int:
        return self.sampling.n if router.samples is None else router.samples

    def router_samples(self, name: str) -> int:
        """The samples a request to router ``name`` draws: its entry's; for a staged router
        without one, the most any of its stages draws."""
        if name in self.router_names:
            return self.samples(self.router_names[name])
        return max(self.samples(self.stage_config(n)) for n in stage_names(name))

    def stage_config(self, name: str) -> RouterConfig:
        """A stage's settings: its entry, or the defaults for an online policy."""
        return self.router_names.get(name) or RouterConfig(name=name)


def _build(cls, data: Any, where: str):
    if not isinstance(data, dict):
        raise ValueError(f"{where} must be an object")
    known = {f.name: f for f in fields(cls)}
    for key in data:
        if key not in known:
            raise ValueError(f"{where}.{key} is not a known setting; known: "
                             f"{', '.join(sorted(known))}")
    return data


def from_dict(data: Dict[str, Any]) -> ServerConfig:
    """A checked ServerConfig; ValueError naming the setting otherwise."""
    _build(ServerConfig, data, "config")
    kw = dict(data)
    sub = {"edge": EdgeConfig, "cloud": CloudConfig, "limits": Limits, "breaker": BreakerConfig}
    for key, cls in sub.items():
        if key in kw:
            try:
                kw[key] = cls(**_build(cls, kw[key], key))
            except TypeError as e:
                raise ValueError(f"{key}: {e}") from None
    if "routers" in kw:
        if not isinstance(kw["routers"], list) or not kw["routers"]:
            raise ValueError("routers must be a non-empty list")
        routers = []
        for i, r in enumerate(kw["routers"]):
            r = dict(_build(RouterConfig, r, f"routers[{i}]"))
            if "threshold" in r:
                raise ValueError(f"routers[{i}]: use 'thresholds': [..]")
            if r.get("thresholds") is not None:
                if not isinstance(r["thresholds"], list) or not all(
                        isinstance(t, (int, float)) and not isinstance(t, bool)
                        for t in r["thresholds"]):
                    raise ValueError(f"routers[{i}].thresholds must be a list of numbers")
                r["thresholds"] = tuple(float(t) for t in r["thresholds"])
            elif r.get("name", "se") == "se":
                r["thresholds"] = (0.8,)
            routers.append(RouterConfig(**r))
        kw["routers"] = tuple(routers)
    if "sampling" in kw:
        kw["sampling"] = Sampling.from_dict(kw["sampling"])
    if "edges" in kw:
        if not isinstance(kw["edges"], list):
            raise ValueError("edges must be a list of edge objects, each with a name")
        edges = []
        for i, e in enumerate(kw["edges"]):
            if not isinstance(e, dict) or "name" not in e:
                raise ValueError(f"edges[{i}] needs a 'name' (what a chain's tier calls it)")
            try:
                edges.append(EdgeConfig(**_build(EdgeConfig, e, f"edges[{i}]")))
            except TypeError as err:
                raise ValueError(f"edges[{i}]: {err}") from None
        kw["edges"] = tuple(edges)
    if "chains" in kw:
        kw["chains"] = tuple(_chain(c, i) for i, c in enumerate(_list(kw["chains"], "chains")))
    cfg = ServerConfig(**kw)
    check(cfg)
    return cfg


def _list(v: Any, where: str) -> list:
    if not isinstance(v, list):
        raise ValueError(f"{where} must be a list")
    return v


def _chain(c: Any, i: int) -> ChainConfig:
    where = f"chains[{i}]"
    _build(ChainConfig, c, where)
    tiers = []
    for j, t in enumerate(_list(c.get("tiers"), f"{where}.tiers")):
        _build(ChainTierConfig, t, f"{where}.tiers[{j}]")
        if not isinstance(t.get("edge"), str) or not isinstance(t.get("router"), str):
            raise ValueError(f"{where}.tiers[{j}] needs 'edge' (an edge's name) and 'router' "
                             "(a router string with its threshold)")
        tiers.append(ChainTierConfig(t["edge"], t["router"]))
    return ChainConfig(c.get("name"), tuple(tiers))


def check_chains(cfg: ServerConfig) -> None:
    """Each chain's name, edges and tiers' router strings (their policies served by the
    configured routers or online ones); ValueError naming the chain."""
    from confroute.decision.names import ONLINE

    edges = cfg.edge_configs
    if len(edges) != 1 + len(cfg.edges):
        raise ValueError(f"edges: names repeat (the main edge is {cfg.edge.name!r}): "
                         f"{[e.name for e in cfg.edges]}")
    if len(cfg.chain_names) != len(cfg.chains):
        raise ValueError("chains: a name appears twice")
    for c in cfg.chains:
        if not isinstance(c.name, str) or not c.name.replace("_", "a").replace("-", "a") \
                .isalnum() or c.name != c.name.lower():
            raise ValueError(f"chain name {c.name!r} must be lowercase letters, digits, '_', "
                             "'-'")
        if not c.tiers:
            raise ValueError(f"chain {c.name!r} needs at least one edge tier (the cloud is "
                             "the last)")
        for j, t in enumerate(c.tiers, 1):
            where = f"chain {c.name!r} tier {j}"
            if t.edge not in edges:
                raise ValueError(f"{where}: no edge {t.edge!r}; the edges are "
                                 f"{', '.join(edges)}")
            try:
                name, _ = tier_router(t.router)
            except ValueError as e:
                raise ValueError(f"{where}: {e}") from None
            for n in stage_names(name) or [name]:
                if n not in ONLINE and n not in cfg.router_names:
                    raise ValueError(f"{where}: {n!r} is not an online policy or a "
                                     "configured router")
            need = cfg.router_samples(name) + 1
            if need > edges[t.edge].n_seq_max:
                raise ValueError(f"{where}: edge {t.edge!r} has n_seq_max "
                                 f"{edges[t.edge].n_seq_max}, and its router needs {need}")
    for e in cfg.edges:
        if e.base_url is not None or e.api_key_env is not None or e.extra_body is not None:
            raise ValueError(f"edges: {e.name!r}: a chain's extra edges are in-process "
                             "models (model: a registry name or GGUF path)")
        if not e.model:
            raise ValueError(f"edges: {e.name!r} needs 'model' (a registry name or GGUF)")


def check(cfg: ServerConfig) -> None:
    """Every setting that a field's type does not settle; ValueError naming the setting."""
    from confroute.confidence.meaning import MEANINGS

    if cfg.meaning not in MEANINGS:
        raise ValueError(f"meaning must be one of {MEANINGS}, got {cfg.meaning!r}")
    _check_routers(cfg)
    if not 0 < cfg.port < 65536:
        raise ValueError(f"port must be in 1..65535, got {cfg.port}")
    if cfg.queue_size < 0 or cfg.cloud_workers < 1 or cfg.max_inflight < 1:
        raise ValueError("queue_size >= 0, cloud_workers >= 1, max_inflight >= 1 needed")
    # one sequence per sample and one for the answer (n choices: the answer and n - 1 samples)
    need = max(max(cfg.samples(r) for r in cfg.routers) + 1, cfg.limits.max_n)
    if need > cfg.edge.n_seq_max:
        raise ValueError(f"edge.n_seq_max ({cfg.edge.n_seq_max}) must be at least the most "
                         f"sequences a request can need ({need}: router samples or "
                         "limits.max_n, and the answer)")
    if cfg.sampling.max_tokens > cfg.limits.max_tokens:
        raise ValueError("sampling.max_tokens exceeds limits.max_tokens")
    _check_edge(cfg.edge)
    if cfg.cloud.base_url is not None and not cfg.cloud.model:
        raise ValueError("cloud.model is required when cloud.base_url is set")
    if cfg.cloud.timeout_s <= 0:
        raise ValueError("cloud.timeout_s must be > 0: every cloud call needs a timeout")
    check_chains(cfg)


def _check_routers(cfg: ServerConfig) -> None:
    from confroute.decision.names import ONLINE

    names = [r.name for r in cfg.routers]
    if len(set(names)) != len(names):
        raise ValueError(f"routers: a name appears twice in {names}")
    for r in cfg.routers:
        staged = stage_names(r.name)
        if staged:
            if r.path is not None or r.thresholds is None:
                raise ValueError(f"router {r.name!r}: a staged router takes 'thresholds' (its "
                                 "last stage's) and no 'path' (each trained stage has an "
                                 "entry of its own)")
            for n in staged:
                if n not in ONLINE and n not in names:
                    raise ValueError(f"router {r.name!r}: stage {n!r} is a trained router: "
                                     f"give it an entry with its 'path'")
        elif not r.name.isidentifier() or r.name != r.name.lower():
            raise ValueError(f"router name {r.name!r} must be lowercase letters, digits, '_'")
        if r.thresholds is not None and (not r.thresholds or not all(
                math.isfinite(t) and t >= 0 for t in r.thresholds)):
            raise ValueError(f"router {r.name!r}: thresholds must be finite numbers >= 0")
        if r.thresholds is None and r.name in ONLINE:
            raise ValueError(f"router {r.name!r} needs thresholds ({ONLINE[r.name]})")
        if r.name not in ONLINE and not staged and r.path is None:
            raise ValueError(f"router {r.name!r} needs 'path': a saved trained router folder")
        if r.calibrated_sampling is not None and not isinstance(r.calibrated_sampling, dict):
            raise ValueError(f"router {r.name!r}: calibrated_sampling must be an object")
        if r.calibrated_edge is not None and not isinstance(r.calibrated_edge, str):
            raise ValueError(f"router {r.name!r}: calibrated_edge must be a model name")
        if cfg.samples(r) < 2:
            raise ValueError(f"router {r.name!r}: samples must be >= 2 for semantic entropy")


def _check_edge(e: EdgeConfig) -> None:
    if e.base_url is not None:
        if not isinstance(e.base_url, str) or not e.base_url.startswith(("http://", "https://")):
            raise ValueError(f"edge.base_url must start with http:// or https://, got "
                             f"{e.base_url!r}")
        if not e.model or not isinstance(e.model, str):
            raise ValueError("edge.model is required when edge.base_url is set (the server's "
                             "model name)")
        if not (isinstance(e.timeout_s, (int, float)) and e.timeout_s > 0):
            raise ValueError("edge.timeout_s must be > 0: every edge call needs a timeout")
        if e.extra_body is not None and not isinstance(e.extra_body, dict):
            raise ValueError("edge.extra_body must be an object of request fields")
    elif e.api_key_env is not None or e.extra_body is not None:
        raise ValueError("edge.api_key_env and edge.extra_body apply to an HTTP edge: set "
                         "edge.base_url")


def sampling_warnings(cfg: ServerConfig, edge_name: Optional[str] = None) -> List[str]:
    """One line per router calibrated under other sampling (or meaning) than the server's,
    or on another edge model than ``edge_name`` (the loaded edge's): its thresholds then need
    not give the share they were calibrated for."""
    out = []
    for r in cfg.routers:
        if edge_name is not None and r.calibrated_edge not in (None, edge_name):
            out.append(f"router {r.name!r} was calibrated on edge {r.calibrated_edge!r} and is "
                       f"served on {edge_name!r}: its thresholds may not give the cloud share "
                       "they were set for (name that model in the edge's config)")
        theirs = r.calibrated_sampling or {}
        mine = {**cfg.sampling.as_dict(), "n": cfg.samples(r), "meaning": cfg.meaning}
        diff = {k: (theirs[k], mine[k]) for k in mine
                if k != "seed" and k in theirs and theirs[k] != mine[k]}
        if diff:
            out.append(f"router {r.name!r} was calibrated under other sampling than it is "
                       "served with (" + ", ".join(f"{k}: calibrated {a!r}, served {b!r}"
                                                   for k, (a, b) in sorted(diff.items()))
                       + "): its thresholds may not give the cloud share they were set for")
    return out


def load(path: Optional[str]) -> ServerConfig:
    if path is None:
        return ServerConfig()
    if not os.path.isfile(path):
        raise ValueError(f"config file {path!r} does not exist")
    if path.endswith(".toml"):
        try:
            import tomllib
        except ImportError:
            raise ValueError("TOML configs need Python 3.11+; use JSON") from None
        with open(path, "rb") as f:
            data = tomllib.load(f)
    else:
        with open(path) as f:
            try:
                data = json.load(f)
            except ValueError as e:
                raise ValueError(f"{path}: not valid JSON: {e}") from None
    return from_dict(data)
