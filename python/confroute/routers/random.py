"""``random``: a seeded uniform score per prompt. The score depends only on (seed, prompt), so
it does not change with batching or order. Its expected replay curve is the straight line from
the weak to the strong model (APGR 0.5). A router string may name it (``router-random-0.5``).
"""
from __future__ import annotations

import hashlib
import json
import os
from typing import Sequence

import numpy as np

from confroute.routers.base import Router, register


@register("random")
class RandomRouter(Router):
    def __init__(self, seed: int = 0):
        self.seed = int(seed)

    def score(self, prompts: Sequence[str]) -> np.ndarray:
        out = np.empty(len(prompts))
        for i, p in enumerate(prompts):
            h = hashlib.blake2b(f"{self.seed}\0{p}".encode("utf-8"), digest_size=8).digest()
            out[i] = int.from_bytes(h, "little") / 2.0**64
        return out

    def save(self, directory) -> None:
        _save(directory, {"name": self.name, "seed": self.seed})

    @classmethod
    def load(cls, directory) -> "RandomRouter":
        return cls(seed=_read(directory).get("seed", 0))


def _save(directory, config: dict) -> None:
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, "router.json"), "w") as f:
        json.dump(config, f)


def _read(directory) -> dict:
    with open(os.path.join(os.fspath(directory), "router.json")) as f:
        return json.load(f)
