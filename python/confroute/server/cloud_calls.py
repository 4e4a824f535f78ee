"""The cloud's side of the server: calls on a thread pool (an HTTP cloud) or on the in-process
stand-in's own queue (a llama.cpp model too: one thread), so that a slow cloud never blocks
the edge; a circuit breaker in front, and every failure either the client's (400) or the
cloud's (:class:`CloudFailed`: the engine then answers from the edge)."""
from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, AsyncIterator, Dict, List

from confroute.decision.answer import cloud_messages
from confroute.decision.path import Query
from confroute.server.answers import Outcome, choice, counted, delta
from confroute.server.breaker import CircuitBreaker
from confroute.server.errors import ApiError
from confroute.server.limits import WorkQueue, threaded_stream
from confroute.server.schema import ChatRequest

# Cloud HTTP statuses that mean "your request is wrong", not "the cloud is down": these go back
# to the client as 400 and do not count against the breaker.
CLIENT_ERROR_STATUSES = {400, 413, 415, 422}


class CloudFailed(Exception):
    """The cloud could not give an answer (outage, timeout, 5xx, breaker open)."""


class CloudStreamBroken(RuntimeError):
    """The cloud's stream ended early."""


def _finished(chunk: Dict[str, Any]) -> bool:
    return any(c.get("finish_reason") for c in chunk.get("choices") or ())


class CloudCalls:
    def __init__(self, cfg, model, metrics):
        self.model, self.metrics = model, metrics
        self.name = getattr(model, "name", "cloud")
        self.http = hasattr(model, "base_url")
        self.pool = (ThreadPoolExecutor(cfg.cloud_workers, thread_name_prefix="confroute-cloud")
                     if self.http else None)
        self.queue = (None if self.http else
                      WorkQueue("cloud", cfg.queue_size, **metrics.queue_hooks("cloud")))
        self.breaker = CircuitBreaker(cfg.breaker.failures, cfg.breaker.reset_s)

    def close(self) -> None:
        if self.queue:
            self.queue.shutdown()
        if self.pool:
            self.pool.shutdown(wait=False, cancel_futures=True)

    def check_supported(self, req: ChatRequest) -> None:
        """Refuse up front what no configured model can do (instead of dropping it silently)."""
        if self.http or not req.cloud_only:
            return
        if req.tools and req.tool_choice != "none":
            raise ApiError(400, f"tools need a cloud model that can call them; the configured "
                           f"cloud ({self.name}) runs in-process and cannot: set "
                           "cloud.base_url in the server config", param="tools",
                           code="tools_unsupported")
        # Tool history or image/audio/file parts: a local model would see a mangled request.
        raise ApiError(400, f"this request needs a cloud model ({req.cloud_only}); the configured "
                       f"cloud ({self.name}) runs in-process and cannot serve it: set "
                       "cloud.base_url in the server config", param="messages",
                       code="unsupported_content")

    def _kwargs(self, req: ChatRequest, q: Query, stream: bool) -> Dict[str, Any]:
        temperature = 1.0 if req.temperature is None else req.temperature   # OpenAI's default
        kw = dict(n=req.n, max_tokens=q.sampling.max_tokens, temperature=temperature)
        if self.http:
            kw.update(req.cloud_extra())
            if stream and req.include_usage:
                kw["stream_options"] = {"include_usage": True}
        elif req.seed is not None:
            kw["seed"] = req.seed
        return kw

    # --- the breaker's bookkeeping --------------------------------------------------------
    def _allow(self) -> None:
        if not self.breaker.allow():
            raise CloudFailed("the cloud's circuit breaker is open after repeated failures")

    def _succeeded(self) -> None:
        self.breaker.record_success()
        self.metrics.breaker_open.set(0)

    def _record_error(self, e: BaseException) -> str:
        status = getattr(e, "status", None)
        kind = f"http_{status}" if status else type(e).__name__
        self.metrics.cloud_errors.inc(kind=kind)
        self.breaker.record_failure()
        self.metrics.breaker_open.set(1 if self.breaker.state != "closed" else 0)
        return f"{type(e).__name__}: {e}"

    def _failure(self, e: BaseException) -> Exception:
        """What a failed call raises: 400 when the cloud rejected the request (the cloud
        answered; the request was the problem), else CloudFailed, counted against it."""
        if isinstance(e, ValueError) or getattr(e, "status", None) in CLIENT_ERROR_STATUSES:
            self.breaker.record_success()
            return ApiError(400, f"the cloud model rejected the request: {e}",
                            code="cloud_rejected")
        return CloudFailed(self._record_error(e))

    # --- the calls ------------------------------------------------------------------------
    def choices(self, r, req: ChatRequest) -> List[Dict[str, Any]]:
        """The whole answer ``r`` as OpenAI choices: as an HTTP cloud sent them (tool_calls..),
        else built from its texts and cut at the stop strings."""
        if self.http and r.raw and r.raw.get("choices"):
            return r.raw["choices"]
        return [choice(i, t, f, req.stop) for i, (t, f) in enumerate(
            zip(r.texts, r.finish_reasons or (r.finish_reason,)))]

    async def chat(self, req: ChatRequest, q: Query, cancel: threading.Event):
        """The cloud's whole answer (its model's response object)."""
        self._allow()
        fn = lambda: self.model.chat(cloud_messages(q, self.model),  # noqa: E731
                                     **self._kwargs(req, q, False))
        try:
            if self.http:
                r = await asyncio.get_running_loop().run_in_executor(self.pool, fn)
            else:
                r = await self.queue.run(fn, cancel)
        except (asyncio.CancelledError, ApiError):
            self.breaker.release_probe()
            raise
        except Exception as e:  # noqa: BLE001 - any failure of the cloud means: degrade
            raise self._failure(e) from None
        self._succeeded()
        return r

    async def stream(self, req: ChatRequest, q: Query, cancel, usage: Dict[str, Any]):
        """(first chunk, the rest): the first is awaited here, so that a cloud that fails
        before answering raises CloudFailed before anything is sent. The in-process stand-in
        streams one answer (n == 1) as text pieces, its usage counted into ``usage``."""
        self._allow()
        kw = self._kwargs(req, q, True)
        if self.http:
            if req.n == 1:
                kw.pop("n")
            make = lambda: self.model.chat(cloud_messages(q, self.model),  # noqa: E731
                                           stream=True, **kw)
            it = threaded_stream(self.pool, make, cancel,
                                 on_stop=lambda: self.metrics.stopped.inc(model="cloud"))
        else:
            kw.pop("n")
            msgs = req.edge_messages
            it = self.queue.stream(lambda: counted(self.model, msgs, self.model.chat(
                msgs, stream=True, **kw), usage, "cloud"), cancel)
        try:
            first = await it.__anext__()
        except StopAsyncIteration:
            first = None
        except (asyncio.CancelledError, ApiError):
            self.breaker.release_probe()
            await it.aclose()
            raise
        except Exception as e:  # noqa: BLE001
            await it.aclose()
            raise self._failure(e) from None
        if first is None and self.http:
            raise CloudFailed(self._record_error(
                CloudStreamBroken("the cloud's stream ended before its first chunk")))
        self._succeeded()
        if isinstance(first, str) or first is None:   # in-process stand-in: text pieces
            first = {"model": self.name, **delta(first or "")}
        return first, it

    async def chunks(self, o: Outcome, first, rest) -> AsyncIterator[Dict[str, Any]]:
        """The stream's chunks, ``first`` included; the cloud's usage into ``o.usage``.
        CloudFailed when it breaks off mid-answer (the client must know)."""
        yield first
        finished = _finished(first)
        try:
            async for item in rest:
                if isinstance(item, str):
                    yield delta(item)
                    continue
                if item.get("usage"):
                    u = item["usage"]
                    o.usage["cloud"] = {"model": o.model,
                                        "prompt_tokens": u.get("prompt_tokens", 0),
                                        "completion_tokens": u.get("completion_tokens", 0)}
                finished = finished or _finished(item)
                yield item
            if self.http and not finished:
                # A connection closed early can look like a clean end of the body: without a
                # finish_reason the answer is incomplete, and the client must be told.
                raise CloudStreamBroken("the cloud's stream ended before the answer was "
                                        "complete (no finish_reason)")
        except Exception as e:  # noqa: BLE001 - broke off mid-answer
            o.error = self._record_error(e)
            raise CloudFailed(o.error) from None
        finally:
            await rest.aclose()
        if not self.http:
            # The in-process stand-in sends bare text: close the choice (its usage was counted
            # by `counted` on its own thread).
            yield delta(None, finish="stop")

