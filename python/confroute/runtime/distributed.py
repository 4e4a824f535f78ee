"""Running a job's items on Ray: replicas that hold their own models, blocks committed once.

The jobs (``confroute label --ray``, ``confroute eval build --ray``) give this module a
*factory*: a picklable zero-argument callable that each replica runs once to load its models,
returning ``(work, info)``. ``work(key, payload)`` is the job's own per-item function (the one
the single-process job calls) and returns a JSON-able result; ``info`` is a JSON-able dict
(e.g. the model names) that must be the same on every replica.

The driver splits the items into blocks and gives each idle replica one block at a time. A
finished block is committed once to a :class:`~confroute.runtime.blocks.BlockStore`. A rerun
with the same store skips the committed keys, so a killed driver resumes. A replica that dies
mid-block (its process or node lost) has that block redone by another replica and is
replaced. Every wait is bounded: a replica that cannot be placed or cannot load its models
within ``setup_timeout``, or that makes no progress within ``stall_timeout``, is an error that
names it (or, for a stall, is killed and its block redone).

Which cluster, how many replicas and the ``--ray`` options: :mod:`confroute.runtime.ray_cluster`.
"""
from __future__ import annotations

import contextlib
import os
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from confroute.runtime.blocks import BlockStore
from confroute.runtime.ray_cluster import RayOptions, ray_session

Factory = Callable[[], Tuple[Callable[[int, Any], Any], dict]]


class _Replica:
    """One Ray actor: loads its models once (``setup``), then runs blocks. Two threads, so
    the driver can read its progress while a block runs."""

    def __init__(self, factory: Factory):
        self._factory = factory
        self._work = None
        self._progress = (-1, 0)  # (block number, items done in it)

    def setup(self) -> Tuple[dict, dict]:
        import socket

        import ray

        where = {"pid": os.getpid(), "host": socket.gethostname(),
                 "ip": ray.util.get_node_ip_address(),
                 "node": ray.get_runtime_context().get_node_id()[:8]}
        try:
            self._work, info = self._factory()
        except Exception as e:  # noqa: BLE001 -- reported to the driver with where it happened
            return where, {"error": f"{type(e).__name__}: {e}"}
        return where, {"info": info}

    def run(self, block: int, keys: Sequence[int], payloads: Sequence[Any]) -> List[Any]:
        out = []
        self._progress = (block, 0)
        for k, p in zip(keys, payloads):
            out.append(self._work(k, p))
            self._progress = (block, len(out))
        return out

    def progress(self) -> Tuple[int, int]:
        return self._progress


@dataclass
class _Block:
    number: int
    keys: List[int]
    payloads: List[Any]
    attempts: int = 0
    lost_on: List[str] = field(default_factory=list)


@dataclass
class _Slot:
    """A replica as the driver sees it."""
    number: int
    actor: Any
    name: str = ""
    block: Optional[_Block] = None
    ref: Any = None  # the running block's result
    poll: Any = None  # an unanswered progress() call
    done_in_block: int = 0
    last_change: float = 0.0


class RayJob:
    """Replicas of one factory on Ray, and the driver that feeds them blocks.

        with RayJob(factory, opts) as job:
            info = job.info               # the replicas' models, the same on each
            results = job.run(tasks, BlockStore(folder))
    """

    def __init__(self, factory: Factory, opts: RayOptions, poll_seconds: float = 0.5,
                 on_event: Optional[Callable[[str, dict], None]] = None):
        self.factory, self.opts, self.poll_seconds = factory, opts, poll_seconds
        self.on_event = on_event or (lambda kind, data: None)
        self.info: Optional[dict] = None
        self.deaths: List[str] = []  # replicas lost while the job ran
        self.resumed = 0
        self._stack = contextlib.ExitStack()
        self._slots: List[_Slot] = []
        self._starting: Dict[Any, Tuple[_Slot, float]] = {}  # setup ref -> (slot, started)
        self._count = 0

    # --- lifetime
    def __enter__(self) -> "RayJob":
        try:
            self.ray = self._stack.enter_context(ray_session(self.opts))
            self._actor_class = self.ray.remote(max_concurrency=2, max_restarts=0)(_Replica)
            n = self._replica_count()
            for _ in range(n):
                self._start_replica()
            while self._starting:
                self._wait_setups(timeout=self.opts.setup_timeout)
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        ray = getattr(self, "ray", None)
        for slot in self._slots + [s for s, _ in self._starting.values()]:
            with contextlib.suppress(Exception):
                ray.kill(slot.actor, no_restart=True)
        self._slots, self._starting = [], {}
        self._stack.close()

    def _replica_count(self) -> int:
        cpus = float(self.ray.cluster_resources().get("CPU", 0))
        if self.opts.replicas is None:
            n = int(cpus // self.opts.cpus)
            if n < 1:
                raise ValueError(f"the Ray cluster has {cpus:g} CPUs, fewer than the "
                                 f"{self.opts.cpus:g} one replica needs")
            return n
        if self.opts.address is None and self.opts.replicas * self.opts.cpus > cpus:
            raise ValueError(f"{self.opts.replicas} replicas x {self.opts.cpus:g} CPUs need "
                             f"{self.opts.replicas * self.opts.cpus:g} CPUs; the local Ray "
                             f"instance has {cpus:g}")
        return self.opts.replicas

    def _start_replica(self) -> None:
        self._count += 1
        opts = {"num_cpus": self.opts.cpus}
        if self.opts.env:
            opts["runtime_env"] = {"env_vars": dict(self.opts.env)}
        actor = self._actor_class.options(**opts).remote(self.factory)
        slot = _Slot(self._count, actor, name=f"replica {self._count}")
        self._starting[actor.setup.remote()] = (slot, time.monotonic())

    def _wait_setups(self, timeout: float) -> None:
        """Waits up to ``timeout`` for a replica's setup; a replica that failed to load, or
        is not up within setup_timeout, is an error that names it."""
        ray = self.ray
        ready, _ = ray.wait(list(self._starting), num_returns=1, timeout=timeout)
        now = time.monotonic()
        for ref in ready:
            slot, _ = self._starting.pop(ref)
            try:
                where, result = ray.get(ref)
            except self._lost_errors() as e:  # e.g. confroute is not installed on its node
                last = [x for x in str(e).splitlines() if x.strip()][-1:] or [type(e).__name__]
                raise ValueError(f"{slot.name} could not start (is confroute installed on "
                                 f"every node?): {last[0].strip()}") from None
            slot.name = (f"replica {slot.number} (pid {where['pid']} on {where['host']}, "
                         f"{where['ip']}, node {where['node']})")
            if "error" in result:
                raise ValueError(f"{slot.name} could not load its models: {result['error']}")
            if self.info is None:
                self.info = result["info"]
            elif result["info"] != self.info:
                raise ValueError(f"{slot.name} loaded other models ({result['info']}) than "
                                 f"the first replica ({self.info}): give every node the "
                                 f"same model files")
            slot.last_change = now
            self._slots.append(slot)
            self.on_event("ready", {"replica": slot.name, "pid": where["pid"]})
        for ref, (slot, started) in list(self._starting.items()):
            if now - started >= self.opts.setup_timeout:
                res = self.ray.cluster_resources()
                raise RuntimeError(f"{slot.name} was not placed and ready within "
                                   f"{self.opts.setup_timeout:g} s (it asks for "
                                   f"{self.opts.cpus:g} CPUs; the cluster has {res.get('CPU', 0):g}"
                                   f" CPUs in all)")

    def _lost_errors(self):
        ex = self.ray.exceptions
        return tuple(getattr(ex, n) for n in ("RayActorError", "WorkerCrashedError",
                                              "ActorUnavailableError") if hasattr(ex, n))

    # --- the driver loop
    def run(self, tasks: Sequence[Tuple[int, Any]], store: BlockStore, progress: bool = True,
            desc: str = "items", unit: str = "item", initial: int = 0) -> Dict[int, Any]:
        """Results of every ``(key, payload)`` task by key: those already committed in
        ``store``, and the rest computed in blocks and committed there. ``initial`` counts
        items done before (shown on the progress bar)."""
        ray = self.ray
        keys = [k for k, _ in tasks]
        if len(set(keys)) != len(keys):
            raise ValueError("task keys repeat")
        done = {k: r for k, r in store.committed().items() if k in set(keys)}
        self.resumed = len(done)  # committed by an earlier run
        todo = [(k, p) for k, p in tasks if k not in done]
        b = self.opts.block_size
        queue = deque(_Block(n, [k for k, _ in todo[i:i + b]], [p for _, p in todo[i:i + b]])
                      for n, i in enumerate(range(0, len(todo), b)))
        bar = None
        if progress:
            from tqdm import tqdm  # one bar over all replicas: rate and ETA per item

            bar = tqdm(total=initial + len(tasks), initial=initial + len(done), unit=unit,
                       desc=desc, smoothing=0.1)
        self.on_event("start", {"blocks": len(queue), "committed": len(done)})
        try:
            while queue or any(s.block for s in self._slots):
                for slot in self._slots:
                    if slot.block is None and queue:
                        self._dispatch(slot, queue.popleft())
                if not self._slots and not self._starting:
                    raise RuntimeError("no replica is left to run the remaining blocks")
                for slot in self._slots:  # ask for progress; read after the wait
                    if slot.block is not None and slot.poll is None:
                        slot.poll = slot.actor.progress.remote()
                # wake on the first finished block or replica, or after poll_seconds
                refs = [s.ref for s in self._slots if s.block] + list(self._starting)
                ray.wait(refs, num_returns=1, timeout=self.poll_seconds)
                if self._starting:
                    self._wait_setups(timeout=0)
                for slot in list(self._slots):
                    self._collect(slot, queue, done, store)
                if bar is not None:
                    n = initial + len(done) + sum(s.done_in_block for s in self._slots if s.block)
                    if n != bar.n:
                        bar.update(n - bar.n)
        finally:
            if bar is not None:
                bar.close()
        return {k: done[k] for k in keys}

    def _dispatch(self, slot: _Slot, block: _Block) -> None:
        block.attempts += 1
        slot.block, slot.done_in_block, slot.last_change = block, 0, time.monotonic()
        slot.ref = slot.actor.run.remote(block.number, block.keys, block.payloads)
        self.on_event("dispatch", {"replica": slot.name, "block": block.number,
                                   "keys": list(block.keys), "attempt": block.attempts})

    def _collect(self, slot: _Slot, queue, done: Dict[int, Any], store: BlockStore) -> None:
        """Commits a finished block, requeues a lost one, reads progress, kills a stall."""
        ray = self.ray
        if slot.block is None:
            return
        block = slot.block
        ready, _ = ray.wait([slot.ref], timeout=0)
        if ready:
            try:
                results = ray.get(slot.ref)
            except self._lost_errors() as e:
                self._lose(slot, queue, f"{type(e).__name__}")
                return
            except ray.exceptions.RayTaskError as e:
                cause = getattr(e, "cause", None)
                what = (f"{slot.name} failed on keys {block.keys[0]}..{block.keys[-1]}: "
                        f"{type(cause).__name__ if cause else 'error'}: {cause or e}")
                raise (ValueError if isinstance(cause, ValueError) else RuntimeError)(what) \
                    from None
            if len(results) != len(block.keys):
                raise RuntimeError(f"{slot.name} returned {len(results)} results for "
                                   f"{len(block.keys)} items")
            if not any(k in done for k in block.keys):  # a block is committed once
                store.commit(block.keys, results)
                done.update(zip(block.keys, results))
            self.on_event("commit", {"replica": slot.name, "block": block.number,
                                     "keys": list(block.keys)})
            slot.block = slot.ref = slot.poll = None
            slot.done_in_block = 0
            slot.last_change = time.monotonic()
            return
        # still running: its progress, and a stall check
        ready, _ = ray.wait([slot.poll], timeout=0) if slot.poll is not None else ([], [])
        if ready:
            try:
                number, n = ray.get(slot.poll)
            except self._lost_errors():
                number, n = -1, 0  # the block's own result will say it was lost
            slot.poll = None
            if number == block.number and n != slot.done_in_block:
                slot.done_in_block, slot.last_change = n, time.monotonic()
                self.on_event("item", {"replica": slot.name, "block": block.number,
                                       "done": n, "of": len(block.keys)})
        if time.monotonic() - slot.last_change > self.opts.stall_timeout:
            ray.kill(slot.actor, no_restart=True)
            self._lose(slot, queue, f"no progress in {self.opts.stall_timeout:g} s (killed)")

    def _lose(self, slot: _Slot, queue, why: str) -> None:
        """A replica is gone mid-block: the block goes back to the front of the queue for
        another replica, and a new replica takes the lost one's place."""
        block = slot.block
        block.lost_on.append(f"{slot.name}: {why}")
        self.deaths.append(f"{slot.name}: {why}")
        self._slots.remove(slot)
        self.on_event("lost", {"replica": slot.name, "block": block.number, "why": why})
        if block.attempts >= self.opts.max_attempts:
            raise RuntimeError(f"block of keys {block.keys[0]}..{block.keys[-1]} was lost "
                               f"{block.attempts} times: " + "; ".join(block.lost_on))
        queue.appendleft(block)
        self._start_replica()
