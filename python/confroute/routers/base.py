"""The router interface shared by the replay evaluator, the trained routers and the server.

A router sees only prompts. ``score`` returns one number per prompt in [0, 1]: higher means
"send to the strong (cloud) model". A stored ``threshold`` (from calibration) turns scores
into decisions: the strong model where score > threshold (:meth:`Router.route`).
"""
from __future__ import annotations

import abc
import json
import os
from typing import Callable, Dict, Optional, Sequence, Type

import numpy as np

REGISTRY: Dict[str, Type["Router"]] = {}


def register(name: str) -> Callable[[Type["Router"]], Type["Router"]]:
    """Class decorator: makes a router buildable by name (``get_router(name)``)."""

    def wrap(cls):
        if name in REGISTRY and REGISTRY[name] is not cls:
            raise ValueError(f"router name {name!r} is registered twice")
        cls.name = name
        REGISTRY[name] = cls
        return cls

    return wrap


FORMAT_VERSION = 1   # of a saved router's router.json


def read_config(directory, name: str) -> dict:
    """A saved router's ``router.json``, checked to hold a ``name`` router of this format."""
    import json
    import os

    path = os.path.join(os.fspath(directory), "router.json")
    if not os.path.exists(path):
        raise ValueError(f"{os.fspath(directory)} holds no saved router (no router.json)")
    with open(path) as f:
        config = json.load(f)
    if config.get("name") != name:
        raise ValueError(f"{path} holds a {config.get('name')!r} router, not {name!r}")
    if config.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{path}: format version {config.get('format_version')!r}, this "
                         f"confroute reads {FORMAT_VERSION}")
    return config


def prompt_list(prompts) -> list:
    """The prompts a router scores, checked: a list of strings (one string is refused)."""
    if isinstance(prompts, str):
        raise ValueError("prompts must be a list of strings, not one string")
    prompts = list(prompts)
    if not all(isinstance(p, str) for p in prompts):
        raise ValueError("every prompt must be a string")
    return prompts


def router_class(name: str):
    """The registered router class ``name``; ValueError naming the known ones otherwise."""
    load_builtin_routers()
    if name not in REGISTRY:
        raise ValueError(f"unknown router {name!r}; known: {', '.join(sorted(REGISTRY))}")
    return REGISTRY[name]


def get_router(name: str, **kwargs) -> "Router":
    """Builds the registered router ``name``."""
    return router_class(name)(**kwargs)


def load_builtin_routers() -> None:
    # Importing a router module registers it; modules that are not there yet are skipped.
    import importlib

    for module in ("random", "trained"):
        try:
            importlib.import_module(f"confroute.routers.{module}")
        except ModuleNotFoundError as e:
            if e.name != f"confroute.routers.{module}":
                raise


class Router(abc.ABC):
    """One abstract method: ``score``. Trained routers also override ``fit``, ``save`` and
    ``load``. ``threshold`` is None until calibrated or set. A router that reads the edge's
    hidden state (the ``sep`` probe) sets ``needs_hidden`` and scores the decision path's
    evidence with ``score_evidence(prompts, evidences)``."""

    name: str = "router"
    threshold: Optional[float] = None
    needs_hidden: bool = False

    @abc.abstractmethod
    def score(self, prompts: Sequence[str]) -> np.ndarray:
        """float64 [len(prompts)] in [0, 1]; higher = the strong model is needed."""

    def route(self, prompts: Sequence[str], threshold: Optional[float] = None) -> np.ndarray:
        """True where the prompt goes to the strong model: score > threshold."""
        t = self.threshold if threshold is None else threshold
        if t is None:
            raise ValueError(f"router {self.name!r} has no threshold: calibrate it or pass one")
        return self.score(prompts) > t

    def fit(self, *args, **kwargs) -> "Router":
        return self

    def save(self, directory) -> None:
        raise NotImplementedError(f"router {self.name!r} cannot be saved")

    @classmethod
    def load(cls, directory, **kwargs) -> "Router":
        """Loads any saved router: reads ``router.json`` and dispatches on its ``name``;
        keyword arguments (e.g. ``embedder=``) go to that router's ``load``."""
        path = os.path.join(os.fspath(directory), "router.json")
        if not os.path.exists(path):
            raise ValueError(f"{directory} holds no saved router (no router.json)")
        with open(path) as f:
            config = json.load(f)
        load_builtin_routers()
        name = config.get("name")
        if name not in REGISTRY:
            raise ValueError(f"{path}: unknown router {name!r}")
        target = REGISTRY[name]
        if target.load.__func__ is Router.load.__func__:
            raise ValueError(f"{path}: router {name!r} cannot be loaded")
        return target.load(directory, **kwargs)
