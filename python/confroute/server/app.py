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

import logging
import threading
import time
from typing import Optional

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from confroute.decision.answer import edge_usage
from confroute.server.answers import Outcome, completion_id
from confroute.server.engine import Engine
from confroute.server.errors import ApiError
from confroute.server.intake import ClientGone, check_auth, read_body, until_done_or_gone
from confroute.server.limits import Cancelled, Slot
from confroute.server.schema import parse_chat_request, parse_route_request
from confroute.server.sse import stream_response

log = logging.getLogger("confroute.server")


def error_response(e: ApiError) -> JSONResponse:
    headers = dict(e.headers)
    if e.status == 401:
        headers.setdefault("WWW-Authenticate", "Bearer")
    return JSONResponse(e.body(), status_code=e.status, headers=headers)


class Api:
    """The endpoints over one engine, and what they share: the key and the count of requests
    in flight (changed on the event loop only)."""

    def __init__(self, engine: Engine, api_key: Optional[str] = None):
        self.engine, self.cfg, self.metrics = engine, engine.cfg, engine.metrics
        self.key = api_key.encode() if api_key else None
        self.inflight = 0

    # --- what every POST endpoint shares ----------------------------------------------------
    async def accept(self, request: Request, parse):
        """What every POST endpoint does first: the key, the body within its limits, the
        request checked by ``parse``, what the configured models can serve, and a free
        in-flight slot (ApiError otherwise). Returns (request, slot to release)."""
        check_auth(request, self.key)
        body = await read_body(request, self.cfg.limits)
        req = parse(body, self.cfg.limits, self.cfg.router_names, self.cfg.chain_names)
        self.engine.cloud.check_supported(req)
        if self.inflight >= self.cfg.max_inflight:
            raise ApiError(429, f"the server is serving {self.inflight} requests, its limit; "
                           "retry later", code="too_many_requests",
                           headers={"Retry-After": "1"})
        self.inflight += 1
        return req, Slot(self._release)

    def _release(self) -> None:
        self.inflight -= 1

    async def handle(self, request: Request, parse, work) -> Response:
        """Accepts a request into an in-flight slot and runs ``work(req, slot, cancel)``; the
        refusals, cancellations and disconnects of both endpoints become responses here."""
        try:
            try:
                req, slot = await self.accept(request, parse)
            except ClientDisconnect:
                self.metrics.disconnects.inc()
                return Response(status_code=400)
            return await work(req, slot, threading.Event())
        except ApiError as e:
            self.metrics.requests.inc(status=str(e.status))
            self.metrics.rejected.inc(reason=e.code or str(e.status))
            return error_response(e)
        except (Cancelled, ClientGone):
            self.metrics.disconnects.inc()
            self.metrics.requests.inc(status="499")
            return Response(status_code=499)

    def finish(self, status: int, o: Optional[Outcome], router: str, t0: float) -> None:
        """Counts an answered request: its route, tokens and latency."""
        m = self.metrics
        m.requests.inc(status=str(status))
        if o is None:
            return
        m.routed.inc(route=o.routed_to)
        if o.degraded:
            m.degraded.inc()
        for u in o.usage.values():
            m.tokens.inc(u.get("prompt_tokens", 0), model=u["model"], kind="prompt")
            m.tokens.inc(u.get("completion_tokens", 0), model=u["model"], kind="completion")
        dt = time.perf_counter() - t0
        m.latency.observe(dt, route=o.routed_to)
        log.info("%s %s -> %s%s (%.2fs)", status, router, o.routed_to,
                 " degraded" if o.degraded else "", dt)

    # --- the endpoints ----------------------------------------------------------------------
    async def chat_completions(self, request: Request) -> Response:
        t0 = time.perf_counter()

        async def work(req, slot, cancel):
            if req.stream:
                return await stream_response(self, request, req, cancel, t0, slot)
            try:
                o = await until_done_or_gone(request, self.engine.answer(req, cancel), cancel)
            finally:
                slot()
            self.finish(200, o, req.model, t0)
            body = {"id": completion_id(), "object": "chat.completion",
                    "created": int(time.time()), "model": o.model, "choices": o.choices,
                    "usage": o.total_usage(), "confroute": o.facts(req.model)}
            return JSONResponse(body, headers=o.headers(req.model))

        return await self.handle(request, parse_chat_request, work)

    async def route(self, request: Request) -> Response:
        """The decision path alone: no answer is generated and the cloud is not called (an
        SE router samples the edge: that is how it decides)."""
        engine = self.engine

        async def work(req, slot, cancel):
            if req.chain:
                return await self._route_chain(request, req, slot, cancel)
            try:
                d, ev = await until_done_or_gone(request, engine.decide(req, cancel), cancel)
            finally:
                slot()
            self.metrics.requests.inc(status="200")
            spent = edge_usage(ev)
            return JSONResponse({
                "object": "route", "router": f"router-{req.router}-{req.threshold:g}",
                "model": engine.edge.name if d.route == "edge" else engine.cloud.name,
                **d.as_dict(), "usage": {"edge": spent} if spent else {}})

        return await self.handle(request, parse_route_request, work)

    async def _route_chain(self, request: Request, req, slot, cancel) -> Response:
        chains = self.engine.chains
        try:
            cd, _ = await until_done_or_gone(request, chains.decide(req, cancel), cancel)
        finally:
            slot()
        self.metrics.requests.inc(status="200")
        return JSONResponse(chains.route_body(req, cd))

    async def models(self, request: Request) -> Response:
        try:
            check_auth(request, self.key)
        except ApiError as e:
            return error_response(e)
        now = int(time.time())
        return JSONResponse({"object": "list", "data": [
            {"id": m, "object": "model", "created": now, "owned_by": "confroute"}
            for m in self.cfg.model_ids()]})

    async def health(self, request: Request) -> Response:
        e = self.engine
        return JSONResponse({"status": "ok", "edge": e.edge.name, "cloud": e.cloud.name,
                             "breaker": e.cloud.breaker.state, "edge_queue": e.edge.queue.depth})

    async def prometheus(self, request: Request) -> Response:
        try:
            check_auth(request, self.key)
        except ApiError as e:
            return error_response(e)
        self.metrics.breaker_open.set(1 if self.engine.cloud.breaker.state != "closed" else 0)
        return PlainTextResponse(self.metrics.render(),
                                 media_type="text/plain; version=0.0.4; charset=utf-8")

    async def server_error(self, request: Request, exc: Exception) -> Response:
        # Should not happen; if it does, the client gets OpenAI's format and no traceback.
        log.exception("internal error on %s", request.url.path)
        self.metrics.requests.inc(status="500")
        return error_response(ApiError(500, "internal server error", code="internal_error"))


async def http_error(request: Request, exc: HTTPException) -> Response:
    return error_response(ApiError(exc.status_code, f"{request.method} {request.url.path}: "
                                   f"{exc.detail}", code="not_found"
                                   if exc.status_code == 404 else None))


def create_app(engine: Engine, api_key: Optional[str] = None) -> Starlette:
    api = Api(engine, api_key)
    return Starlette(routes=[
        Route("/v1/chat/completions", api.chat_completions, methods=["POST"]),
        Route("/v1/route", api.route, methods=["POST"]),
        Route("/v1/models", api.models, methods=["GET"]),
        Route("/health", api.health, methods=["GET"]),
        Route("/metrics", api.prometheus, methods=["GET"]),
    ], exception_handlers={HTTPException: http_error, Exception: api.server_error})
