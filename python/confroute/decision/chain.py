"""More than two models: a chain of tiers. Each tier but the last is an edge model with its
own policy (a router string, any the grammar of :mod:`confroute.decision.names` reads); a
query climbs to the next tier while its tier's policy sends it up ("cloud"), and the last
tier (the cloud) answers whatever reaches it.

The chain is decided with the one decision path, once per tier: each tier's policy on its
own edge supplier (:func:`confroute.decision.path.decide`). :func:`decide_chain` runs the
tiers in turn where they share a thread (the Controller); the server awaits each tier on
its own edge thread and settles the same way (:func:`settle`). A query only the cloud can
serve (tools, images) climbs every tier without edge work, since each tier's path says so.

In a request's ``model`` a configured chain is ``chain-<name>`` (``confroute serve``'s
``chains`` entries).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

from confroute.decision.path import Decision, Evidence, Query, decide

PREFIX = "chain-"


@dataclass(frozen=True)
class Tier:
    """One tier: ``model`` its model's name, ``policy`` the router string that decides
    whether it keeps a query (``router-answer_logprob-0.5``); None for the last tier."""

    model: str
    policy: Optional[str] = None


@dataclass(frozen=True)
class Chain:
    """Tiers, cheapest first; the last is the one every query that climbs reaches (the
    cloud). ValueError for fewer than two tiers, a non-final tier without a router string,
    or a final tier with one."""

    tiers: Tuple[Tier, ...]
    name: str = "chain"

    def __post_init__(self):
        tiers = tuple(t if isinstance(t, Tier) else Tier(*t) for t in self.tiers)
        object.__setattr__(self, "tiers", tiers)
        if len(tiers) < 2:
            raise ValueError(f"chain {self.name!r}: a chain needs at least two tiers (an edge "
                             f"and the model queries climb to), got {len(tiers)}")
        for i, t in enumerate(tiers, 1):
            if not isinstance(t.model, str) or not t.model:
                raise ValueError(f"chain {self.name!r}: tier {i} has no model name")
            last = i == len(tiers)
            if last and t.policy is not None:
                raise ValueError(f"chain {self.name!r}: the last tier ({t.model}) answers "
                                 f"every query that reaches it; it takes no policy")
            if not last and not (isinstance(t.policy, str) and t.policy.startswith("router-")):
                raise ValueError(f"chain {self.name!r}: tier {i} ({t.model}) needs a router "
                                 f"string as its policy (e.g. router-answer_logprob-0.5), got "
                                 f"{t.policy!r}")

    @classmethod
    def of(cls, *tiers, name: str = "chain") -> "Chain":
        """``Chain.of(("smollm2", "router-se-0.8"), ("qwen-0.5b", "router-se-0.5"), "gpt")``:
        (model, policy) pairs, then the last tier's model name."""
        return cls(tuple(Tier(t) if isinstance(t, str) else Tier(*t) for t in tiers), name)

    @property
    def climbing(self) -> Tuple[Tier, ...]:
        """The tiers with a policy: every tier but the last."""
        return self.tiers[:-1]

    def policies(self, build=None) -> List[Any]:
        """Each climbing tier's policy from its router string (default
        :func:`confroute.decision.names.policy_from_string`)."""
        if build is None:
            from confroute.decision.names import policy_from_string as build
        out = []
        for i, t in enumerate(self.climbing, 1):
            try:
                out.append(build(t.policy))
            except ValueError as e:
                raise ValueError(f"chain {self.name!r}: tier {i} ({t.model}): {e}") from None
        return out


@dataclass(frozen=True)
class Attempt:
    """One tier's try at a query: its decision and what it cost (samples drawn, the edge's
    tokens and the seconds of its draws)."""

    tier: int                  # 1-based
    model: str
    decision: Decision
    samples: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0

    def as_dict(self) -> Dict[str, Any]:
        return {"tier": self.tier, "model": self.model, **self.decision.as_dict(),
                "usage": {"prompt_tokens": self.prompt_tokens,
                          "completion_tokens": self.completion_tokens,
                          "seconds": round(self.seconds, 4)}}


@dataclass(frozen=True)
class ChainDecision:
    """Which tier answers (``tier``, 1-based; the last tier when every attempt sent the
    query up), each attempted tier's :class:`Attempt`, and the evidence each drew (the
    answering edge tier's answer is in its evidence when its policy needed it)."""

    chain: Chain
    tier: int
    attempts: Tuple[Attempt, ...]
    evidence: Tuple[Evidence, ...] = dataclasses.field(default=(), compare=False, repr=False)

    @property
    def model(self) -> str:
        return self.chain.tiers[self.tier - 1].model

    @property
    def route(self) -> str:
        """'edge' when an edge tier keeps the query, 'cloud' when it reaches the last tier."""
        return "cloud" if self.tier == len(self.chain.tiers) else "edge"

    @property
    def decision(self) -> Decision:
        """The last attempt's decision: the tier that kept the query, or the last that sent
        it up."""
        return self.attempts[-1].decision

    @property
    def reason(self) -> str:
        steps = [f"tier {a.tier} ({a.model}): {a.decision.reason or a.decision.route}"
                 for a in self.attempts]
        return "; ".join(steps) + f"; tier {self.tier} ({self.model}) answers"

    def as_dict(self) -> Dict[str, Any]:
        return {"chain": self.chain.name, "tier": self.tier, "model": self.model,
                "route": self.route, "reason": self.reason,
                "tiers": [a.as_dict() for a in self.attempts]}


def settle(chain: Chain, steps: Sequence[Tuple[Decision, Evidence]]) -> ChainDecision:
    """The chain's decision from the tiers' (decision, evidence), in order: the first that
    keeps the query answers it; if none does, and every climbing tier was asked, the last
    tier. ValueError when the steps do not fit the chain."""
    if not steps or len(steps) > len(chain.climbing):
        raise ValueError(f"chain {chain.name!r}: {len(steps)} tier decisions for "
                         f"{len(chain.climbing)} climbing tiers")
    for d, _ in steps[:-1]:
        if d.route == "edge":
            raise ValueError(f"chain {chain.name!r}: a tier kept the query, yet a later tier "
                             "was asked")
    kept = steps[-1][0].route == "edge"
    if not kept and len(steps) < len(chain.climbing):
        raise ValueError(f"chain {chain.name!r}: the query climbed past tier {len(steps)}, "
                         "and the next tier was not asked")
    attempts = tuple(_attempt(i, chain.tiers[i - 1].model, d, ev)
                     for i, (d, ev) in enumerate(steps, 1))
    return ChainDecision(chain, len(steps) if kept else len(chain.tiers), attempts,
                         tuple(ev for _, ev in steps))


def _attempt(i: int, model: str, d: Decision, ev: Evidence) -> Attempt:
    parts = [s for s in (ev.samples, ev.answer) if s is not None]
    return Attempt(i, model, d, ev.n_samples, sum(s.prompt_tokens for s in parts),
                   sum(s.completion_tokens for s in parts), float(ev.seconds))


def decide_chain(chain: Chain, policies: Sequence[Any], queries, suppliers: Sequence[Any]
                 ) -> ChainDecision:
    """The chain on one query: tier by tier through the decision path, until a tier keeps
    it. ``policies`` and ``suppliers`` (:class:`confroute.decision.edge.EdgeSupplier`): one
    per climbing tier; ``queries``: one :class:`Query`, or one per climbing tier (a tier may
    sample another number of times)."""
    k = len(chain.climbing)
    if isinstance(queries, Query):
        queries = [queries] * k
    if not len(policies) == len(suppliers) == len(queries) == k:
        raise ValueError(f"chain {chain.name!r}: {k} climbing tiers need {k} policies, "
                         f"suppliers and queries, got {len(policies)}, {len(suppliers)}, "
                         f"{len(queries)}")
    steps: List[Tuple[Decision, Evidence]] = []
    for policy, query, supplier in zip(policies, queries, suppliers):
        steps.append(decide(policy, query, supplier))
        if steps[-1][0].route == "edge":
            break
    return settle(chain, steps)
