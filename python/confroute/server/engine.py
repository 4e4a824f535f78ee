"""A request's way through the server: the decision comes from the one decision path
(:mod:`confroute.decision.path`, the same as ``Controller.decide``), run on the edge's thread
(:mod:`~confroute.server.edge_worker`) unless the edge has no say in it; then the answer, whole
or streamed, from the cloud (:mod:`~confroute.server.cloud_calls`) or from the edge, and the
edge's answer, marked degraded, when the cloud cannot give one.
"""
from __future__ import annotations

import dataclasses
import math
import threading
from typing import Any, AsyncIterator, Dict, Optional, Tuple

from confroute.decision import path as routing
from confroute.decision.answer import edge_usage
from confroute.decision.path import Decision, Evidence
from confroute.server.answers import Outcome, text_chunks
from confroute.server.cloud_calls import CloudCalls, CloudFailed
from confroute.server.config import ServerConfig
from confroute.server.edge_worker import EdgeWorker
from confroute.server.errors import ApiError
from confroute.server.metrics import ServerMetrics
from confroute.server.schema import ChatRequest


class Engine:
    def __init__(self, cfg: ServerConfig, edge, cloud, scorer, metrics: ServerMetrics,
                 routers: Optional[Dict[str, Any]] = None,
                 edges: Optional[Dict[str, Any]] = None):
        from confroute.server.chains import Chains

        self.cfg, self.metrics = cfg, metrics
        self.routers = routers or {}            # name -> loaded trained Router
        self.edge = EdgeWorker(cfg, edge, scorer, metrics)
        # every edge by name, for chains: the main one, and `edges` (name -> model)
        self.edges = {cfg.edge.name: self.edge}
        for e in cfg.edges:
            self.edges[e.name] = EdgeWorker(cfg, (edges or {})[e.name], scorer, metrics, e)
        self.cloud = CloudCalls(cfg, cloud, metrics)
        self.chains = Chains(self)
        self._policies: Dict[Tuple[str, float], Any] = {}

    def close(self) -> None:
        for worker in self.edges.values():
            worker.close()
        self.cloud.close()

    def policy(self, name: str, threshold: float):
        key = (name, threshold)
        if key not in self._policies:
            from confroute.decision.names import STAGES, make_policy, staged_policy

            def build(name, threshold):
                rc = self.cfg.stage_config(name)
                return make_policy(name, threshold, self.routers.get(name), kind=rc.kind,
                                   samples=self.cfg.samples(rc))

            try:
                self._policies[key] = (staged_policy(name, threshold, build) if STAGES in name
                                       else build(name, threshold))
            except ValueError as e:
                raise ApiError(400, f"model router-{name}-{threshold:g}: {e}", param="model",
                               code="invalid_threshold") from None
        return self._policies[key]

    def query(self, req: ChatRequest, router: Optional[str] = None) -> routing.Query:
        """The request as the decision path sees it (checked already by schema.py): the
        configured sampling, with the request's length and seed; a request's temperature is
        its answer's (omitted: the configured answer temperature, greedy by default).
        ``router``: whose samples it draws (default the request's; a chain's tier's)."""
        base = self.cfg.sampling
        # n: the router's samples, and enough for the choices asked for beyond the answer
        sampling = dataclasses.replace(
            base, n=max(self.cfg.router_samples(router or req.router), req.n - 1),
            max_tokens=req.max_tokens or base.max_tokens, seed=req.seed,
            answer_temperature=base.answer_temperature if req.temperature is None
            else req.temperature)
        return routing.make_query(req.messages, sampling, req.cloud_only, req.edge_messages)

    async def decide(self, req: ChatRequest, cancel: threading.Event
                     ) -> Tuple[Decision, Evidence]:
        """The decision path for one request, run on the edge thread (unless the edge has no
        say in it); requests that need samples may share a batch."""
        d, ev, _ = await self._decide(req, cancel)
        return d, ev

    async def _decide(self, req: ChatRequest, cancel):
        policy = self.policy(req.router, req.threshold)
        self.cloud.check_supported(req)
        q = self.query(req)
        d = routing.immediate(policy, q)
        if d is not None:
            return d, Evidence(), q
        d, ev = await self.edge.decide(policy, q, cancel)
        self.observe(d, req.router)
        return d, ev, q

    def observe(self, d: Decision, router: str) -> None:
        self.metrics.samples.observe(d.n_samples, router=router)
        if d.semantic_entropy is not None:
            self.metrics.se.observe(d.semantic_entropy, router=router)
        elif math.isfinite(d.score):
            self.metrics.score.observe(d.score, router=router)

    def _outcome(self, req: ChatRequest, decision: Decision, ev: Evidence,
                 worker: Optional[EdgeWorker] = None) -> Outcome:
        """The routing facts, before the answer: the edge's, until the cloud gives one."""
        o = Outcome(routed_to="edge", model=(worker or self.edge).name, choices=[],
                    threshold=decision.threshold, score=decision.score,
                    semantic_entropy=decision.semantic_entropy, reason=decision.reason,
                    n_samples=decision.n_samples, meaning=decision.meaning)
        if ev.samples is not None or ev.answer is not None:
            o.usage["edge"] = edge_usage(ev)
        if not self.cloud.http:
            o.ignored = sorted(req.passthrough)
        return o

    async def answer(self, req: ChatRequest, cancel: threading.Event) -> Outcome:
        """A complete (non-streaming) answer with its routing facts."""
        if req.chain:
            return await self.chains.answer(req, cancel)
        decision, ev, q = await self._decide(req, cancel)
        return await self._complete(self._outcome(req, decision, ev), req, q, decision, ev,
                                    cancel)

    async def _complete(self, o: Outcome, req, q, decision, ev, cancel, worker=None,
                        key: str = "edge") -> Outcome:
        """The answer once the route is decided: the cloud's, or the edge's (``worker``'s,
        default the main edge; its usage under ``key``)."""
        if decision.route == "cloud":
            try:
                r = await self.cloud.chat(req, q, cancel)
            except CloudFailed as e:
                o.error, o.degraded = str(e), True
            else:
                o.routed_to, o.model = "cloud", r.model or self.cloud.name
                o.usage["cloud"] = {"model": o.model, **r.usage}
                o.choices = self.cloud.choices(r, req)
                return o
        await self._edge_answer(o, req, q, ev, cancel, worker, key)
        return o

    async def _edge_answer(self, o: Outcome, req, q, ev, cancel, worker=None,
                           key: str = "edge") -> None:
        o.choices, usage = await (worker or self.edge).answer(req, q, ev, cancel)
        if usage:
            o.usage[key] = usage

    async def stream(self, req: ChatRequest, cancel: threading.Event
                     ) -> Tuple[Outcome, AsyncIterator[Dict[str, Any]]]:
        """(routing facts, async iterator of OpenAI chunk 'choices' deltas). The facts are
        final before the first chunk: the cloud's first chunk is awaited here, so a cloud that
        fails before answering still leads to the edge answer, marked degraded."""
        if req.chain:
            return await self.chains.stream(req, cancel)
        decision, ev, q = await self._decide(req, cancel)
        return await self.stream_decided(self._outcome(req, decision, ev), req, q, decision,
                                         ev, cancel)

    async def stream_decided(self, o: Outcome, req, q, decision, ev, cancel, worker=None,
                             key: str = "edge"):
        """:meth:`stream` once the route is decided (``worker``, ``key`` as in
        :meth:`_complete`)."""
        worker = worker or self.edge
        if decision.route == "cloud" and not self.cloud.http and req.n > 1:
            # The in-process stand-in streams one answer only: answer whole, send in chunks.
            o = await self._complete(o, req, q, decision, ev, cancel, worker, key)
            return o, text_chunks(o.choices)
        if decision.route == "cloud":
            try:
                first, rest = await self.cloud.stream(req, q, cancel, o.usage)
            except CloudFailed as e:
                o.error, o.degraded = str(e), True
            else:
                o.routed_to, o.model = "cloud", first.get("model") or self.cloud.name
                return o, self.cloud.chunks(o, first, rest)
        if ev.answer is None and req.n == 1:
            # No answer drawn (a trained router decided): stream its tokens as they come.
            return o, worker.token_chunks(req, q, o.usage, cancel, key)
        await self._edge_answer(o, req, q, ev, cancel, worker, key)
        return o, text_chunks(o.choices)
