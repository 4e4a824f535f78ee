"""Which Ray cluster a job runs on, and how much of it: the ``--ray`` options every job that can
run on Ray takes, :class:`RayOptions`, and the session that joins a cluster or starts a local
one.

Ray is imported only here and in :mod:`confroute.runtime.distributed`, and only when a job
runs: it is an optional extra.
"""
from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping, Optional

INSTALL_HINT = 'pip install "confroute[ray]"'


def import_ray():
    try:
        import ray
    except ImportError:
        raise ValueError(f"--ray needs Ray, which is not installed: {INSTALL_HINT}") from None
    return ray


@dataclass(frozen=True)
class RayOptions:
    """``address``: None starts a local Ray instance (all this machine's CPUs, no dashboard);
    otherwise a cluster to join ('auto', 'HOST:PORT', 'ray://HOST:10001'). ``replicas``: None
    fills the cluster's CPUs. ``env``: environment variables for the replicas' processes."""

    address: Optional[str] = None
    replicas: Optional[int] = None
    cpus: float = 1.0  # per replica
    block_size: int = 8
    setup_timeout: float = 600.0  # to place a replica and load its models
    stall_timeout: float = 900.0  # longest time a replica may go without finishing an item
    max_attempts: int = 3  # tries per block before the job stops
    env: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self):
        if self.replicas is not None and self.replicas < 1:
            raise ValueError(f"--replicas must be >= 1, got {self.replicas}")
        if not self.cpus > 0:
            raise ValueError(f"--cpus-per-replica must be > 0, got {self.cpus}")
        if self.block_size < 1:
            raise ValueError(f"--block-size must be >= 1, got {self.block_size}")
        if not (self.setup_timeout > 0 and self.stall_timeout > 0):
            raise ValueError("setup_timeout and stall_timeout must be > 0 seconds")
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {self.max_attempts}")


def add_ray_arguments(parser) -> None:
    """The --ray options, the same for every job that can run on Ray."""
    g = parser.add_argument_group("Ray (pip install \"confroute[ray]\")")
    g.add_argument("--ray", nargs="?", const="local", default=None, metavar="ADDRESS",
                   help="run on Ray: alone, a local Ray instance; with an address ('auto', "
                        "HOST:PORT), join that cluster")
    g.add_argument("--replicas", type=int, default=None,
                   help="Ray actors, each with its own models (default: one per "
                        "--cpus-per-replica CPUs of the cluster)")
    g.add_argument("--cpus-per-replica", type=float, default=1.0,
                   help="CPUs Ray reserves for each replica (default 1)")
    g.add_argument("--block-size", type=int, default=8,
                   help="items per block: the unit that is committed, or redone after a loss")


def ray_options(args, env: Optional[Mapping[str, str]] = None) -> RayOptions:
    return RayOptions(address=None if args.ray == "local" else args.ray,
                      replicas=args.replicas, cpus=args.cpus_per_replica,
                      block_size=args.block_size, env=dict(env or {}))


@contextlib.contextmanager
def ray_session(opts: RayOptions) -> Iterator[Any]:
    """Ray, connected: joins ``opts.address`` or starts a small local instance (stopped at
    the end). A session already open in this process (tests, notebooks) is used as it is."""
    ray = import_ray()
    if ray.is_initialized():
        yield ray
        return
    quiet = dict(logging_level=logging.ERROR, log_to_driver=False)
    if opts.address is None:
        # 'local': a new instance even where `ray start` left one running on this machine
        ray.init(address="local", num_cpus=os.cpu_count() or 1, include_dashboard=False,
                 object_store_memory=256 * 2**20, **quiet)
    else:
        ray.init(address=opts.address, **quiet)
    try:
        yield ray
    finally:
        ray.shutdown()
