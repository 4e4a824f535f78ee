"""`confroute serve`: an OpenAI-compatible HTTP server that routes each request to the edge or
the cloud model. ``build(cfg)`` loads the models and returns the ASGI app; ``serve`` runs it."""
from __future__ import annotations

import logging
import os
from typing import Optional

log = logging.getLogger("confroute.server")


def load_models(cfg):
    """(edge, cloud, scorer, trained routers) as the config names them."""
    from confroute.models import CloudModel, EdgeModel, default_cloud, default_edge, store
    from confroute.scorer import ConfidenceScorer

    from confroute.routers.policy import ONLINE, load_router

    routers = {r.name: load_router(r.path) for r in cfg.routers if r.name not in ONLINE}
    e = cfg.edge
    kw = dict(n_ctx=e.n_ctx, n_threads=e.n_threads, n_seq_max=e.n_seq_max)
    # a probe on the edge's hidden state (router sep) needs llama.cpp's eval callback
    if any(getattr(getattr(r, "needs", None), "hidden", False) for r in routers.values()):
        kw["hidden_states"] = True
    if e.model is None:
        edge = default_edge(**kw)
    elif os.path.isfile(e.model):
        edge = EdgeModel(e.model, **kw)
    else:
        edge = EdgeModel(store.model_path(e.model), name=e.model, **kw)
    c = cfg.cloud
    if c.base_url is None:
        cloud = default_cloud(n_ctx=e.n_ctx, n_threads=e.n_threads)
    else:
        key = os.environ.get(c.api_key_env) if c.api_key_env else None
        if c.api_key_env and not key:
            log.warning("cloud.api_key_env names %s, which is not set", c.api_key_env)
        cloud = CloudModel(c.base_url, c.model, api_key=key, timeout=c.timeout_s,
                           max_retries=c.max_retries)
    scorer = ConfidenceScorer(meaning=cfg.meaning)
    scorer.embedder.embed(["warm up"])   # load it now, not on the first request
    return edge, cloud, scorer, routers



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


def build(cfg, api_key: Optional[str] = None, models=None):
    """(ASGI app, the config with thresholds resolved) for ``cfg``; the models are loaded
    unless given as (edge, cloud, scorer, routers)."""
    from confroute.server.app import create_app
    from confroute.server.engine import Engine
    from confroute.server.metrics import ServerMetrics

    from confroute.server.config import sampling_warnings

    edge, cloud, scorer, routers = models or load_models(cfg)
    cfg = resolve_thresholds(cfg, routers)
    for line in sampling_warnings(cfg):
        log.warning(line)
    engine = Engine(cfg, edge, cloud, scorer, ServerMetrics(), routers)
    return create_app(engine, api_key), cfg
