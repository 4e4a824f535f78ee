"""What ``Controller.chat`` and the server share once a route is decided: what the cloud is
sent, the edge's answer (the one the policy judged, or the same draw made now), and what the
edge spent. The server adds HTTP, queues, the breaker and streaming around these; the
Controller calls them directly."""
from __future__ import annotations

from typing import Any, Dict, List, Optional

from confroute.decision.path import Evidence, Need, Query


def cloud_messages(query: Query, cloud) -> List[Dict[str, Any]]:
    """A remote API gets the messages as sent (they may carry images; text-only lists are
    joined by the client, for servers that take strings only); a local model their text."""
    return query.messages if hasattr(cloud, "base_url") else query.edge_messages


def edge_answer(supplier, query: Query, evidence: Evidence, choices: int = 1) -> Evidence:
    """The evidence with the edge's answer in it (and, for ``choices`` > 1, samples for the
    other choices): what the policy judged, else the same seeded draw made now. ValueError
    when the edge cannot answer (its context, a refusal)."""
    need = Need(samples=choices - 1 if choices > 1 else 0, answer=True)
    if evidence.covers(need):
        return evidence
    out = supplier.supply([(query, need, evidence)])[0]
    if out.refused:
        raise ValueError(out.refused)
    return out


def edge_usage(evidence: Evidence) -> Optional[Dict[str, Any]]:
    """The edge's tokens for one request, its samples' and its answer's, and the seconds its
    draws took (None: it drew nothing)."""
    parts = [s for s in (evidence.samples, evidence.answer) if s is not None]
    if not parts:
        return None
    return {"model": parts[0].model, "prompt_tokens": sum(s.prompt_tokens for s in parts),
            "completion_tokens": sum(s.completion_tokens for s in parts),
            "seconds": round(evidence.seconds, 4)}
