"""A deterministic stand-in for the label job's sampling (test_labels), importable from the
child process that test kills mid-write."""
from __future__ import annotations

import numpy as np

from confroute.eval.label_job import JobConfig


def fake_se(role, prompt, seed):
    """A deterministic stand-in for sampling a model: SE from (role, prompt, seed)."""
    rng = np.random.default_rng([seed, len(prompt), role == "strong"])
    return float(rng.choice([0.0, 0.5, 1.0, 1.5])), f"{role} says {seed}"


PROMPTS = [f"question number {i}?" for i in range(12)]
CONFIG = JobConfig(weak="edge", strong="cloud", n=4, max_tokens=8, seed=7)
