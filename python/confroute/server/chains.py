"""A request whose ``model`` names a configured chain (``chain-<name>``): each tier decides on
its own edge's thread through the one decision path (the engine's ``EdgeWorker.decide``),
until a tier keeps the request or it reaches the cloud; the chain's decision is settled as
:func:`confroute.decision.chain.settle` does for the Controller. The answer is then the
keeping tier's, or the cloud's (whole or streamed), as for a two-model router; a cloud that
fails leaves the last edge tier's answer, marked degraded.

The routing facts add ``tier`` (the tier that answered, 1-based) and ``tiers`` (each attempted
tier's model, decision and cost); ``usage`` has ``tier1``, ``tier2``, ... and ``cloud``.
"""
from __future__ import annotations

import threading
from typing import Any, Dict, List, Tuple

from confroute.decision import path as routing
from confroute.decision.answer import edge_usage
from confroute.decision.chain import PREFIX, Chain, ChainDecision, Tier, settle
from confroute.decision.path import Evidence
from confroute.server.answers import Outcome
from confroute.server.model_names import tier_router
from confroute.server.schema import ChatRequest


class Chains:
    """The configured chains of one engine: each tier's worker and policy, built once."""

    def __init__(self, engine):
        self.engine = engine
        self._built: Dict[str, Tuple[Chain, List[Any], List[Any], List[str]]] = {}

    def built(self, name: str):
        """(Chain, the tiers' policies, their edge workers, their router names)."""
        if name not in self._built:
            e, cc = self.engine, self.engine.cfg.chain_names[name]
            workers = [e.edges[t.edge] for t in cc.tiers]
            routers = [tier_router(t.router) for t in cc.tiers]
            chain = Chain(tuple(Tier(w.name, t.router) for w, t in zip(workers, cc.tiers))
                          + (Tier(e.cloud.name),), name)
            self._built[name] = (chain, [e.policy(n, t) for n, t in routers], workers,
                                 [n for n, _ in routers])
        return self._built[name]

    def check(self) -> None:
        """ValueError when a tier's edge cannot serve its policy (said at startup)."""
        for name in self.engine.cfg.chain_names:
            _, policies, workers, _ = self.built(name)
            for i, (p, w) in enumerate(zip(policies, workers), 1):
                try:
                    w.supplier.check_policy(p)
                except ValueError as err:
                    raise ValueError(f"chain {name!r} tier {i}: {err}") from None

    async def decide(self, req: ChatRequest, cancel: threading.Event):
        """(ChainDecision, each attempted tier's query): tier by tier on the tiers' edge
        threads."""
        e = self.engine
        e.cloud.check_supported(req)
        chain, policies, workers, routers = self.built(req.chain)
        steps, queries = [], []
        for policy, worker, router in zip(policies, workers, routers):
            q = e.query(req, router)
            d, ev = routing.immediate(policy, q), Evidence()   # only the cloud can serve it
            if d is None:
                d, ev = await worker.decide(policy, q, cancel)
            e.observe(d, req.router)
            steps.append((d, ev))
            queries.append(q)
            if d.route == "edge":
                break
        return settle(chain, steps), queries

    def _outcome(self, req: ChatRequest, cd: ChainDecision):
        """The routing facts (the last attempt's decision, the chain's reason), and what
        answers if the edge does: the last attempted tier's worker and usage key."""
        e = self.engine
        i = len(cd.attempts) - 1
        worker = self.built(req.chain)[2][i]
        o = e._outcome(req, cd.decision, cd.evidence[i], worker)
        o.usage = {f"tier{k}": u for k, ev in enumerate(cd.evidence, 1) if (u := edge_usage(ev))}
        o.reason, o.tier, o.tiers = cd.reason, cd.tier, [a.as_dict() for a in cd.attempts]
        return o, worker, f"tier{i + 1}"

    async def answer(self, req: ChatRequest, cancel: threading.Event) -> Outcome:
        cd, qs = await self.decide(req, cancel)
        o, worker, key = self._outcome(req, cd)
        o = await self.engine._complete(o, req, qs[-1], cd.decision, cd.evidence[-1], cancel,
                                        worker, key)
        if o.degraded:
            o.tier = len(cd.attempts)   # the last edge tier answered in the cloud's stead
        return o

    async def stream(self, req: ChatRequest, cancel: threading.Event):
        cd, qs = await self.decide(req, cancel)
        o, worker, key = self._outcome(req, cd)
        o, chunks = await self.engine.stream_decided(o, req, qs[-1], cd.decision,
                                                     cd.evidence[-1], cancel, worker, key)
        if o.degraded:
            o.tier = len(cd.attempts)
        return o, chunks

    def route_body(self, req: ChatRequest, cd: ChainDecision) -> Dict[str, Any]:
        """``POST /v1/route``'s answer for a chain: the last attempt's decision fields, the
        tier that would answer, each attempted tier's facts, the edges' usage per tier."""
        usage = {f"tier{k}": u for k, ev in enumerate(cd.evidence, 1) if (u := edge_usage(ev))}
        return {"object": "route", "router": PREFIX + req.chain, **cd.decision.as_dict(),
                "route": cd.route, "model": cd.model, "tier": cd.tier, "reason": cd.reason,
                "tiers": [a.as_dict() for a in cd.attempts], "usage": usage}

