"""Back-pressure and the one-thread rule for in-process models.

A llama.cpp context must not be used from two threads at once, so each in-process model gets a
:class:`WorkQueue`: one worker thread and a bounded line of waiting jobs. When the line is full
the request is refused at once with 429 and a ``Retry-After`` estimated from recent job times,
instead of piling up memory and latency. A job whose client has left (its ``cancel`` event is
set) is dropped before it starts; a streaming job stops between tokens.
"""
from __future__ import annotations

import asyncio
import collections
import logging
import math
import threading
import time
import weakref
from concurrent.futures import Future
from typing import Any, AsyncIterator, Callable, Iterator, List, Optional

from confroute.server.errors import ApiError


class Cancelled(Exception):
    """The client left before its job ran to the end."""


class Slot:
    """A release that runs once, however many paths reach it (end of stream, cancellation,
    garbage collection of a stream that was never started)."""

    def __init__(self, release: Callable[[], None]):
        self._release, self._lock = release, threading.Lock()

    def __call__(self) -> None:
        with self._lock:
            release, self._release = self._release, None
        if release is not None:
            release()

    def on_collect(self, obj, loop) -> None:
        """Release on ``loop`` when ``obj`` is garbage collected (if nothing did before)."""
        def later():
            try:
                loop.call_soon_threadsafe(self)
            except RuntimeError:   # the loop is closed: the server is shutting down
                pass
        weakref.finalize(obj, later)


log = logging.getLogger("confroute.server")


class _Worker:
    """One thread that runs jobs in order. Jobs submitted with a batch payload that are waiting
    together are run as one call of ``batch_fn`` (as many as ``batch_fits`` allows); if that
    call fails, each runs on its own."""

    def __init__(self, name: str, batch_fn=None, batch_fits=None, on_drop=lambda: None):
        self.batch_fn, self.batch_fits, self._on_drop = batch_fn, batch_fits, on_drop
        self._jobs: collections.deque = collections.deque()
        self._cv = threading.Condition()
        self._closed = False
        self.avg_s = 1.0                   # moving average of seconds per job
        self._thread = threading.Thread(target=self._loop, name=f"confroute-{name}",
                                        daemon=True)
        self._thread.start()

    def submit(self, fn: Callable[[], Any], payload=None,
               cancel: Optional[threading.Event] = None) -> Future:
        f: Future = Future()
        with self._cv:
            if self._closed:
                raise RuntimeError("the worker is shut down")
            self._jobs.append((f, fn, payload, cancel))
            self._cv.notify()
        return f

    def shutdown(self) -> None:
        with self._cv:
            self._closed = True
            for f, *_ in self._jobs:
                f.cancel()
            self._jobs.clear()
            self._cv.notify()

    def _take(self) -> Optional[List[tuple]]:
        with self._cv:
            while not self._jobs and not self._closed:
                self._cv.wait()
            if self._closed:
                return None
            group = [self._jobs.popleft()]
            if group[0][2] is not None and self.batch_fn is not None:
                keep = collections.deque()
                for job in self._jobs:
                    if job[2] is not None and self.batch_fits([g[2] for g in group] + [job[2]]):
                        group.append(job)
                    else:
                        keep.append(job)
                self._jobs = keep
            return group

    def _loop(self) -> None:
        while True:
            group = self._take()
            if group is None:
                return
            live = []
            for job in group:
                f, _, _, cancel = job
                if not f.set_running_or_notify_cancel():
                    continue             # cancelled while waiting (counted by the caller)
                if cancel is not None and cancel.is_set():
                    self._on_drop()
                    f.set_exception(Cancelled())
                    continue
                live.append(job)
            if not live:
                continue
            t0 = time.perf_counter()
            results = None
            if len(live) > 1:
                try:
                    results = self.batch_fn([job[2] for job in live])
                except Exception:  # noqa: BLE001 - fall back to one by one, and say so
                    log.exception("batched %d jobs failed; running them one by one", len(live))
            for i, (f, fn, _, _) in enumerate(live):
                if results is not None:
                    f.set_result(results[i])
                    continue
                try:
                    f.set_result(fn())
                except BaseException as e:  # noqa: BLE001 - handed to the awaiting request
                    f.set_exception(e)
            self.avg_s = 0.8 * self.avg_s + 0.2 * (time.perf_counter() - t0) / len(live)


class WorkQueue:
    def __init__(self, name: str, capacity: int, on_depth: Optional[Callable[[int], None]] = None,
                 on_drop: Optional[Callable[[], None]] = None, batch_fn=None, batch_fits=None,
                 on_stop: Optional[Callable[[], None]] = None):
        if capacity < 0:
            raise ValueError("capacity must be >= 0")
        self.name = name
        self.capacity = capacity           # jobs that may wait behind the running one
        self._pool = _Worker(name, batch_fn, batch_fits, on_drop or (lambda: None))
        self._admitted = 0                 # waiting + running; changed on the event loop only
        self._on_depth = on_depth or (lambda d: None)
        self._on_drop = on_drop or (lambda: None)
        self._on_stop = on_stop or (lambda: None)

    @property
    def depth(self) -> int:
        return self._admitted

    def retry_after(self) -> int:
        return max(1, math.ceil(self._pool.avg_s * max(1, self._admitted)))

    def _admit(self) -> None:
        if self._admitted > self.capacity:
            raise ApiError(429, f"the {self.name} model is busy ({self._admitted} requests "
                           "queued or running); retry later", code="queue_full",
                           headers={"Retry-After": str(self.retry_after())})
        self._admitted += 1
        self._on_depth(self._admitted)

    def _release(self) -> None:
        self._admitted -= 1
        self._on_depth(self._admitted)

    async def run(self, fn: Callable[[], Any], cancel: threading.Event, batch=None) -> Any:
        """fn() on the worker thread; 429 if the line is full. If the caller is cancelled
        before the job starts, the job is dropped; the slot is freed when the job really ends.
        With ``batch`` (a payload for the queue's batch_fn) it may run together with other
        waiting jobs."""
        loop = asyncio.get_running_loop()
        self._admit()
        try:
            cf = self._pool.submit(fn, batch, cancel)
        except BaseException:
            self._release()
            raise
        cf.add_done_callback(lambda _: loop.call_soon_threadsafe(self._release))
        try:
            return await asyncio.wrap_future(cf)
        except asyncio.CancelledError:
            if cf.cancel():       # still waiting in line: it will never run
                self._on_drop()
            raise

    def stream(self, make_iter: Callable[[], Iterator[Any]], cancel: threading.Event
               ) -> AsyncIterator[Any]:
        """The items of make_iter(), produced on the worker thread; 429 if the line is full
        (raised here, before anything is sent)."""
        self._admit()
        slot = Slot(self._release)
        agen = _thread_stream(self._pool, make_iter, cancel, slot, self._on_drop,
                              self._on_stop)
        slot.on_collect(agen, asyncio.get_running_loop())
        return agen

    def shutdown(self) -> None:
        self._pool.shutdown()


_END = object()


async def _thread_stream(pool, make_iter, cancel: threading.Event, release,
                         on_drop=lambda: None, on_stop=lambda: None) -> AsyncIterator[Any]:
    loop = asyncio.get_running_loop()
    q: asyncio.Queue = asyncio.Queue()
    done = threading.Event()   # this stream's own stop flag; `cancel` is the request's

    def stopped():
        return cancel.is_set() or done.is_set()

    def put(item):
        loop.call_soon_threadsafe(q.put_nowait, item)

    def produce():
        try:
            if stopped():
                on_drop()
                raise Cancelled()
            it = make_iter()
            try:
                for item in it:
                    if stopped():   # client gone: stop generating now
                        on_stop()
                        break
                    put(item)
            finally:
                close = getattr(it, "close", None)
                if close:
                    close()              # frees the model's lock / the upstream connection
            put(_END)
        except BaseException as e:       # handed to the consumer, raised there
            put(e)

    cf = pool.submit(produce)
    cf.add_done_callback(lambda _: loop.call_soon_threadsafe(release))
    try:
        while True:
            item = await q.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        done.set()   # the consumer stopped (finished, failed or was cancelled)
        cf.cancel()


def threaded_stream(pool, make_iter: Callable[[], Iterator[Any]], cancel: threading.Event,
                    on_stop: Callable[[], None] = lambda: None) -> AsyncIterator[Any]:
    """Like WorkQueue.stream on a shared pool without admission control (the cloud calls)."""
    return _thread_stream(pool, make_iter, cancel, lambda: None, on_stop=on_stop)
