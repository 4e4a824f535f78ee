"""`confroute serve`: an OpenAI-compatible HTTP server that routes each request to the edge or
the cloud model. ``build(cfg)`` loads the models and returns the ASGI app; ``serve`` runs it."""
from __future__ import annotations

import logging
import os
from typing import Optional

log = logging.getLogger("confroute.server")


def load_models(cfg):
    """(edge, cloud, scorer, trained routers) as the config names them."""
    from confroute.models import CloudModel, default_cloud
    from confroute.confidence.scorer import ConfidenceScorer

    from confroute.decision.names import ONLINE, load_router

    from confroute.server.model_names import stage_names

    routers = {r.name: load_router(r.path) for r in cfg.routers
               if r.name not in ONLINE and not stage_names(r.name)}
    e = cfg.edge
    edge = _http_edge(e, routers) if e.base_url is not None else load_edge(e, routers)
    c = cfg.cloud
    if c.base_url is None:
        cloud = default_cloud(n_ctx=e.n_ctx, n_threads=e.n_threads)
    else:
        cloud = CloudModel(c.base_url, c.model, api_key=_key(c.api_key_env, "cloud"),
                           timeout=c.timeout_s, max_retries=c.max_retries)
    scorer = ConfidenceScorer(meaning=cfg.meaning)
    scorer.embedder.embed(["warm up"])   # load it now, not on the first request
    return edge, cloud, scorer, routers


def load_edge(e, routers=None):
    """The in-process edge model an edge config names (a registry name or GGUF path; None:
    the default edge)."""
    from confroute.models import local_model, store

    kw = dict(n_ctx=e.n_ctx, n_threads=e.n_threads, n_seq_max=e.n_seq_max)
    # a probe on the edge's hidden state (router sep) needs llama.cpp's eval callback
    if any(getattr(r, "needs_hidden", False) for r in (routers or {}).values()):
        kw["hidden_states"] = True
    return local_model(e.model or store.DEFAULT_EDGE, **kw)


def _http_edge(e, routers):
    """The edge behind ``edge.base_url``: an :class:`~confroute.models.http_edge.HttpEdge`.
    ValueError when a configured trained router reads the edge's hidden state (in-process
    only)."""
    from confroute.models.http_edge import HttpEdge

    edge = HttpEdge(e.base_url, e.model, api_key=_key(e.api_key_env, "edge"),
                    timeout=e.timeout_s, max_retries=0, extra_body=e.extra_body)
    for name, r in routers.items():
        if getattr(r, "needs_hidden", False):
            raise ValueError(f"router {name!r} reads the edge's hidden state, which is "
                             f"in-process only: {edge.describe()} has none; set edge.model "
                             "to a GGUF (without edge.base_url) to serve it")
    return edge


def _key(env: Optional[str], what: str) -> Optional[str]:
    key = os.environ.get(env) if env else None
    if env and not key:
        log.warning("%s.api_key_env names %s, which is not set", what, env)
    return key


def check_edge(cfg, engine) -> None:
    """ValueError when the edge cannot serve a configured router (an HTTP edge without token
    logprobs and a likelihood-based policy), or a chain's edge its tier's: said at startup,
    not per request."""
    for r in cfg.routers:
        engine.edge.supplier.check_policy(engine.policy(r.name, r.thresholds[0]))
    engine.chains.check()


def resolve_thresholds(cfg, routers):
    """cfg with each trained router's missing thresholds set to its calibrated one."""
    import dataclasses

    out = []
    for r in cfg.routers:
        if r.thresholds is None:
            t = routers[r.name].threshold
            if t is None:
                raise ValueError(f"router {r.name!r} ({r.path}) has no calibrated threshold: "
                                 "run `confroute calibrate` or give thresholds in the config")
            r = dataclasses.replace(r, thresholds=(float(t),))
        out.append(r)
    return dataclasses.replace(cfg, routers=tuple(out))


def build(cfg, api_key: Optional[str] = None, models=None, edges=None):
    """(ASGI app, the config with thresholds resolved) for ``cfg``; the models are loaded
    unless given as (edge, cloud, scorer, routers), and a chain's other edges unless given
    as ``edges`` (name -> model)."""
    from confroute.server.app import create_app
    from confroute.server.engine import Engine
    from confroute.server.metrics import ServerMetrics

    from confroute.server.config import sampling_warnings

    edge, cloud, scorer, routers = models or load_models(cfg)
    cfg = resolve_thresholds(cfg, routers)
    for line in sampling_warnings(cfg, getattr(edge, "name", None)):
        log.warning(line)
    if edges is None:
        edges = {e.name: load_edge(e) for e in cfg.edges}
    engine = Engine(cfg, edge, cloud, scorer, ServerMetrics(), routers, edges)
    try:
        check_edge(cfg, engine)
    except Exception:
        engine.close()
        raise
    return create_app(engine, api_key), cfg
