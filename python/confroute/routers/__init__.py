"""Routers: each scores a prompt with P(the strong/cloud model is needed) in [0, 1].

`base.Router` is the one interface; `get_router(name, **kw)` builds a registered one.
"""
from confroute.routers.base import REGISTRY, Router, get_router, register

__all__ = ["REGISTRY", "Router", "get_router", "register"]
