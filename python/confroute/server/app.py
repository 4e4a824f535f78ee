"""The HTTP layer: an ASGI app on Starlette, served by uvicorn.

Starlette rather than FastAPI: the request is checked by hand (``schema.py``) so that it can be
forwarded as sent and every error names its field in OpenAI's format; FastAPI's value is its
pydantic models, which would be in the way here. Both Starlette and uvicorn are widely used and
maintained (FastAPI itself is built on them, and llama-cpp-python's server uses both).

Endpoints: ``POST /v1/chat/completions`` (JSON or SSE), ``POST /v1/route`` (the decision
only: which model would serve a chat request, and why), ``GET /v1/models``, ``GET /health``,
``GET /metrics`` (Prometheus text).
"""
from __future__ import annotations

import asyncio
import hmac
import json
import logging
import threading
import time
import uuid
from typing import Any, Dict, Optional

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from confroute.decision.answer import edge_usage
from confroute.server.engine import CloudFailed, Engine, Outcome
from confroute.server.errors import ApiError
from confroute.server.limits import Cancelled, Slot
from confroute.server.schema import parse_chat_request, parse_route_request

log = logging.getLogger("confroute.server")


def error_response(e: ApiError) -> JSONResponse:
    headers = dict(e.headers)
    if e.status == 401:
        headers.setdefault("WWW-Authenticate", "Bearer")
    return JSONResponse(e.body(), status_code=e.status, headers=headers)


def routing_headers(o: Outcome, router: str) -> Dict[str, str]:
    f = o.facts(router)
    h = {"x-confroute-router": router, "x-confroute-routed-to": o.routed_to,
         "x-confroute-model": o.model, "x-confroute-threshold": f"{o.threshold:g}",
         "x-confroute-degraded": "true" if o.degraded else "false"}
    if f["score"] is not None:
        h["x-confroute-score"] = f"{f['score']:.6g}"
    if f["semantic_entropy"] is not None:
        h["x-confroute-semantic-entropy"] = f"{f['semantic_entropy']:.6g}"
    # header values must be latin-1: keep the model name printable
    return {k: v.encode("ascii", "replace").decode() for k, v in h.items()}


def create_app(engine: Engine, api_key: Optional[str] = None) -> Starlette:
    cfg, metrics = engine.cfg, engine.metrics
    key = api_key.encode() if api_key else None
    inflight = [0]   # requests being served; changed on the event loop only

    def check_auth(request: Request) -> None:
        if key is None:
            return
        auth = request.headers.get("authorization", "")
        scheme, _, token = auth.partition(" ")
        # compare_digest: the time taken does not depend on how much of the key matched
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), key):
            raise ApiError(401, "Incorrect or missing API key: send 'Authorization: Bearer "
                           "<key>'", code="invalid_api_key")

    async def read_body(request: Request) -> bytes:
        limit = cfg.limits.max_body_bytes
        length = request.headers.get("content-length")
        if length is not None:
            if not length.isdigit():
                raise ApiError(400, "Content-Length is not a number", code="invalid_header")
            if int(length) > limit:
                raise ApiError(413, f"request body is {length} bytes; the limit is {limit}",
                               code="body_too_large")

        async def collect():
            chunks, size = [], 0
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:   # chunked uploads have no Content-Length: count as we go
                    raise ApiError(413, f"request body exceeds the limit of {limit} bytes",
                                   code="body_too_large")
                chunks.append(chunk)
            return b"".join(chunks)

        # A client that trickles its body (slowloris) must not hold a slot forever.
        timeout = cfg.limits.body_timeout_s
        try:
            return await asyncio.wait_for(collect(), timeout)
        except asyncio.TimeoutError:
            raise ApiError(408, f"the request body did not arrive within {timeout:g} s",
                           code="body_timeout") from None

    def finish(status: int, o: Optional[Outcome], router: str, t0: float) -> None:
        metrics.requests.inc(status=str(status))
        if o is None:
            return
        metrics.routed.inc(route=o.routed_to)
        if o.degraded:
            metrics.degraded.inc()
        for u in o.usage.values():
            metrics.tokens.inc(u.get("prompt_tokens", 0), model=u["model"], kind="prompt")
            metrics.tokens.inc(u.get("completion_tokens", 0), model=u["model"],
                               kind="completion")
        dt = time.perf_counter() - t0
        metrics.latency.observe(dt, route=o.routed_to)
        log.info("%s %s -> %s%s (%.2fs)", status, router, o.routed_to,
                 " degraded" if o.degraded else "", dt)

    async def accept(request: Request, parse):
        """What every POST endpoint does first: the key, the body within its limits, the
        request checked by ``parse``, what the configured models can serve, and a free
        in-flight slot (ApiError otherwise). Returns (request, slot to release)."""
        check_auth(request)
        body = await read_body(request)
        req = parse(body, cfg.limits, cfg.router_names)
        engine.check_supported(req)
        if inflight[0] >= cfg.max_inflight:
            raise ApiError(429, f"the server is serving {inflight[0]} requests, its limit; "
                           "retry later", code="too_many_requests",
                           headers={"Retry-After": "1"})
        inflight[0] += 1
        return req, Slot(lambda: inflight.__setitem__(0, inflight[0] - 1))

    def refused(e: ApiError) -> Response:
        metrics.requests.inc(status=str(e.status))
        metrics.rejected.inc(reason=e.code or str(e.status))
        return error_response(e)

    def gone() -> Response:
        metrics.disconnects.inc()
        metrics.requests.inc(status="499")
        return Response(status_code=499)

    async def handle(request: Request, parse, work) -> Response:
        """Accepts a request into an in-flight slot and runs ``work(req, slot, cancel)``; the
        refusals, cancellations and disconnects of both endpoints become responses here."""
        try:
            try:
                req, slot = await accept(request, parse)
            except ClientDisconnect:
                metrics.disconnects.inc()
                return Response(status_code=400)
            return await work(req, slot, threading.Event())
        except ApiError as e:
            return refused(e)
        except (Cancelled, _ClientGone):
            return gone()

    async def chat_completions(request: Request) -> Response:
        t0 = time.perf_counter()

        async def work(req, slot, cancel):
            if req.stream:
                return await stream_response(request, req, cancel, t0, slot)
            try:
                o = await _until_done_or_gone(request, engine.answer(req, cancel), cancel)
            finally:
                slot()
            finish(200, o, req.model, t0)
            body = {"id": _id(), "object": "chat.completion", "created": int(time.time()),
                    "model": o.model, "choices": o.choices, "usage": o.total_usage(),
                    "confroute": o.facts(req.model)}
            return JSONResponse(body, headers=routing_headers(o, req.model))

        return await handle(request, parse_chat_request, work)

    async def stream_response(request: Request, req, cancel: threading.Event, t0: float,
                              slot: Slot):
        try:
            o, chunks = await _until_done_or_gone(request, engine.stream(req, cancel), cancel)
        except BaseException:
            slot()
            raise
        cid, created = _id(), int(time.time())

        def event(obj) -> str:
            return f"data: {json.dumps(obj)}\n\n"

        def chunk(choices, **more) -> str:
            return event({"id": cid, "object": "chat.completion.chunk", "created": created,
                          "model": o.model, "choices": choices, **more})

        async def sse():
            status = 200
            try:
                yield chunk([{"index": i, "delta": {"role": "assistant", "content": ""},
                              "finish_reason": None} for i in range(req.n)],
                            confroute=o.facts(req.model))
                async for c in chunks:
                    if c.get("choices"):
                        yield chunk(c["choices"])
                final: Dict[str, Any] = {"confroute": o.facts(req.model)}
                if req.include_usage:
                    final["usage"] = o.total_usage()
                yield chunk([], **final)
                yield "data: [DONE]\n\n"
            except CloudFailed as e:
                status = 502
                yield event({"error": {"message": f"the cloud stream broke off: {e}",
                                       "type": "server_error", "param": None,
                                       "code": "cloud_stream_failed"}})
            except asyncio.CancelledError:
                status = 499
                metrics.disconnects.inc()
                raise
            except Exception:  # noqa: BLE001 - headers are sent: tell the client in-stream
                status = 500
                log.exception("stream failed after its first chunk")
                yield event({"error": {"message": "the answer broke off (internal error)",
                                       "type": "server_error", "param": None,
                                       "code": "stream_failed"}})
            finally:
                cancel.set()   # frees any work still running for this request
                slot()
                if status == 200:
                    finish(200, o, req.model, t0)
                else:
                    metrics.requests.inc(status=str(status))

        events = sse()
        # A stream that is never started (client gone before the first byte) still frees
        # its in-flight slot and its work when collected.
        slot.on_collect(events, asyncio.get_running_loop())
        cancel_on_collect = Slot(cancel.set)
        cancel_on_collect.on_collect(events, asyncio.get_running_loop())
        return StreamingResponse(events, media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache",
                                          **routing_headers(o, req.model)})

    async def route(request: Request) -> Response:
        """The decision path alone: no answer is generated and the cloud is not called (an
        SE router samples the edge: that is how it decides)."""
        async def work(req, slot, cancel):
            try:
                d, ev = await _until_done_or_gone(request, engine.decide(req, cancel), cancel)
            finally:
                slot()
            metrics.requests.inc(status="200")
            spent = edge_usage(ev)
            usage = {"edge": spent} if spent else {}
            return JSONResponse({"object": "route", "router": f"router-{req.router}-"
                                 f"{req.threshold:g}", "model": engine.edge_name
                                 if d.route == "edge" else engine.cloud_name, **d.as_dict(),
                                 "usage": usage})

        return await handle(request, parse_route_request, work)

    async def models(request: Request) -> Response:
        try:
            check_auth(request)
        except ApiError as e:
            return error_response(e)
        now = int(time.time())
        return JSONResponse({"object": "list", "data": [
            {"id": m, "object": "model", "created": now, "owned_by": "confroute"}
            for m in cfg.model_ids()]})

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok", "edge": engine.edge_name,
                             "cloud": engine.cloud_name, "breaker": engine.breaker.state,
                             "edge_queue": engine.edge_q.depth})

    async def prometheus(request: Request) -> Response:
        try:
            check_auth(request)
        except ApiError as e:
            return error_response(e)
        metrics.breaker_open.set(1 if engine.breaker.state != "closed" else 0)
        return PlainTextResponse(metrics.render(),
                                 media_type="text/plain; version=0.0.4; charset=utf-8")

    async def http_error(request: Request, exc: HTTPException) -> Response:
        return error_response(ApiError(exc.status_code, f"{request.method} {request.url.path}: "
                                       f"{exc.detail}", code="not_found"
                                       if exc.status_code == 404 else None))

    async def server_error(request: Request, exc: Exception) -> Response:
        # Should not happen; if it does, the client gets OpenAI's format and no traceback.
        log.exception("internal error on %s", request.url.path)
        metrics.requests.inc(status="500")
        return error_response(ApiError(500, "internal server error", code="internal_error"))

    app = Starlette(routes=[
        Route("/v1/chat/completions", chat_completions, methods=["POST"]),
        Route("/v1/route", route, methods=["POST"]),
        Route("/v1/models", models, methods=["GET"]),
        Route("/health", health, methods=["GET"]),
        Route("/metrics", prometheus, methods=["GET"]),
    ], exception_handlers={HTTPException: http_error, Exception: server_error})
    return app


class _ClientGone(Exception):
    pass


async def _until_done_or_gone(request: Request, work, cancel: threading.Event):
    """Awaits ``work`` unless the client disconnects first: then the work is cancelled (jobs
    not yet started are dropped, see limits.WorkQueue) and _ClientGone is raised."""
    task = asyncio.ensure_future(work)

    async def gone():
        while True:
            message = await request.receive()
            if message["type"] == "http.disconnect":
                return

    watcher = asyncio.ensure_future(gone())
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        if not watcher.done():
            watcher.cancel()
    if not task.done():
        cancel.set()
        task.cancel()
        raise _ClientGone()
    return task.result()


def _id() -> str:
    return "chatcmpl-" + uuid.uuid4().hex[:24]
