"""A trained router as the Controller's routing policy, and router strings such as
``router-sw-0.35`` (router ``sw``, threshold 0.35).

The policy needs no edge samples (``needs_samples = False``): the router scores the prompt
text alone and the query goes to the cloud where score > threshold. In a router string the
middle part is a saved-router folder, or a name: ``random`` (built as is) or a trained router
saved under ``$CONFROUTE_ROUTERS/<name>`` (default ``<confroute home>/routers/<name>``, where
``confroute train`` writes when no --out is given). The threshold may be left out
(``router-sw``): the calibrated one stored with the router is used.
"""
from __future__ import annotations

import os
from typing import Optional, Tuple

from confroute.routers.base import REGISTRY, Router, _load_builtin_routers, get_router

PREFIX = "router-"


def routers_home() -> str:
    if os.environ.get("CONFROUTE_ROUTERS"):
        return os.path.expanduser(os.environ["CONFROUTE_ROUTERS"])
    from confroute.models.store import home

    return os.path.join(str(home()), "routers")


def parse_router_string(spec: str) -> Tuple[str, Optional[float]]:
    """'router-sw-0.35' -> ('sw', 0.35); 'router-sw' -> ('sw', None)."""
    if not isinstance(spec, str) or not spec.startswith(PREFIX) or len(spec) == len(PREFIX):
        raise ValueError(f"a router string looks like 'router-sw-0.35' (name, threshold); "
                         f"got {spec!r}")
    body = spec[len(PREFIX):]
    name, dash, last = body.rpartition("-")
    if dash:
        try:
            t = float(last)
        except ValueError:
            return body, None  # a dash inside the name or path, no threshold
        if not 0.0 <= t <= 1.0:
            raise ValueError(f"{spec}: threshold {t} is outside [0, 1]")
        if not name:
            raise ValueError(f"{spec}: no router name before the threshold")
        return name, t
    return body, None


def load_router(name: str, embedder=None) -> Router:
    """A router from a saved-router folder or a name (see the module doc)."""
    if os.path.isdir(name):
        return Router.load(name, **({"embedder": embedder} if embedder is not None else {}))
    _load_builtin_routers()
    saved = os.path.join(routers_home(), name)
    if os.path.exists(os.path.join(saved, "router.json")):
        return Router.load(saved, **({"embedder": embedder} if embedder is not None else {}))
    from confroute.routers.trained import TRAINED

    if name in TRAINED:
        raise ValueError(f"no trained {name!r} router in {saved}: run `confroute train --router "
                         f"{name} --labels LABELS.jsonl` (or name a saved-router folder)")
    if name not in REGISTRY:
        raise ValueError(f"unknown router {name!r}; known: {', '.join(sorted(REGISTRY))}, or a "
                         f"saved-router folder")
    return get_router(name)


def _prompt_text(prompt) -> str:
    """The text a router scores: the string, or the last user message's text content."""
    if isinstance(prompt, str):
        return prompt
    for m in reversed(list(prompt)):
        if isinstance(m, dict) and m.get("role") == "user":
            c = m.get("content")
            if isinstance(c, list):  # list-form content: join the text parts
                c = "\n".join(p.get("text", "") for p in c if isinstance(p, dict))
            if isinstance(c, str):
                return c
    raise ValueError("the messages hold no user message with text to route on")


class RouterPolicy:
    """Controller policy: cloud where router.score(prompt) > threshold."""

    needs_samples = False

    def __init__(self, router: Router, threshold: Optional[float] = None):
        t = router.threshold if threshold is None else threshold
        if t is None:
            raise ValueError(f"router {router.name!r} has no threshold: calibrate it "
                             f"(confroute calibrate) or give one (router-{router.name}-0.3)")
        if not 0.0 <= float(t) <= 1.0:
            raise ValueError(f"threshold must lie in [0, 1], got {t}")
        self.router, self.threshold = router, float(t)

    @classmethod
    def from_string(cls, spec: str, embedder=None) -> "RouterPolicy":
        name, t = parse_router_string(spec)
        return cls(load_router(name, embedder), t)

    def score(self, prompt) -> float:
        return float(self.router.score([_prompt_text(prompt)])[0])

    def decide(self, prompt, confidence=None):
        from confroute.controller import Decision  # issue 3's Controller types

        s = self.score(prompt)
        return Decision(route="cloud" if s > self.threshold else "edge", score=s,
                        threshold=self.threshold)

    def __repr__(self):
        return f"RouterPolicy({self.router.name!r}, threshold={self.threshold:g})"
