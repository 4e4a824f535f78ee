"""An answer in OpenAI's shapes: :class:`Outcome` (the choices and the routing facts, as JSON
and as ``x-confroute-*`` headers), one choice, one streamed delta, a finished answer sent as a
stream, the stop-string cut, and a local model's text stream with its tokens counted."""
from __future__ import annotations

import math
import uuid
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Dict, List, Optional, Tuple


@dataclass
class Outcome:
    """One answered request: the OpenAI choices plus the routing facts."""

    routed_to: str
    model: str
    choices: List[Dict[str, Any]]
    threshold: float
    score: Optional[float] = None
    semantic_entropy: Optional[float] = None
    degraded: bool = False
    reason: str = ""
    error: Optional[str] = None
    n_samples: int = 0
    meaning: str = ""
    usage: Dict[str, Dict[str, Any]] = field(default_factory=dict)
    ignored: List[str] = field(default_factory=list)
    # a chain's: the tier that answered (1-based) and each attempted tier's facts
    tier: Optional[int] = None
    tiers: Optional[List[Dict[str, Any]]] = None

    def facts(self, router: str) -> Dict[str, Any]:
        out = {"router": router, "routed_to": self.routed_to, "model": self.model,
               "semantic_entropy": _finite(self.semantic_entropy), "score": _finite(self.score),
               "threshold": _finite(self.threshold), "degraded": self.degraded,
               "reason": self.reason, "error": self.error, "n_samples": self.n_samples,
               "meaning": self.meaning, "usage": self.usage, "ignored_params": self.ignored}
        if self.tier is not None:
            out.update(tier=self.tier, tiers=self.tiers)
        return out

    def headers(self, router: str) -> Dict[str, str]:
        """The facts as ``x-confroute-*`` response headers."""
        h = {"x-confroute-router": router, "x-confroute-routed-to": self.routed_to,
             "x-confroute-model": self.model, "x-confroute-threshold": f"{self.threshold:g}",
             "x-confroute-degraded": "true" if self.degraded else "false"}
        score, se = _finite(self.score), _finite(self.semantic_entropy)
        if score is not None:
            h["x-confroute-score"] = f"{score:.6g}"
        if se is not None:
            h["x-confroute-semantic-entropy"] = f"{se:.6g}"
        if self.tier is not None:   # a chain: which tier answered, each tier's route and score
            h["x-confroute-tier"] = str(self.tier)
            h["x-confroute-tier-routes"] = ",".join(t["route"] for t in self.tiers)
            h["x-confroute-tier-scores"] = ",".join(
                "nan" if t["score"] is None else f"{t['score']:.6g}" for t in self.tiers)
        # header values must be latin-1: keep the model name printable
        return {k: v.encode("ascii", "replace").decode() for k, v in h.items()}

    def total_usage(self) -> Dict[str, int]:
        p = sum(u.get("prompt_tokens", 0) for u in self.usage.values())
        c = sum(u.get("completion_tokens", 0) for u in self.usage.values())
        return {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}


def _finite(x: Optional[float]) -> Optional[float]:
    return x if x is not None and math.isfinite(x) else None


def completion_id() -> str:
    return "chatcmpl-" + uuid.uuid4().hex[:24]


def truncate_at_stop(text: str, stop: Optional[Tuple[str, ...]]) -> Tuple[str, bool]:
    """OpenAI semantics for local answers: cut before the first stop string (not included)."""
    if not stop:
        return text, False
    cut = min((i for i in (text.find(s) for s in stop) if i >= 0), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)


def choice(index: int, text: str, finish: str, stop) -> Dict[str, Any]:
    """A local model's answer as one OpenAI choice, cut at the first stop string."""
    text, cut = truncate_at_stop(text, stop)
    return {"index": index, "message": {"role": "assistant", "content": text},
            "logprobs": None, "finish_reason": "stop" if cut else (finish or "stop")}


def delta(content: Optional[str], index: int = 0, finish: Optional[str] = None
          ) -> Dict[str, Any]:
    """One stream chunk's choices: text for choice ``index``, or (None) its end."""
    return {"choices": [{"index": index, "delta": {} if content is None else
                         {"content": content}, "finish_reason": finish}]}


def text_chunks(choices) -> AsyncIterator[Dict[str, Any]]:
    """A finished answer sent as a stream: a few words per chunk, choice after choice."""
    async def gen():
        for c in choices:
            text = c["message"]["content"] or ""
            words = text.split(" ")
            for j in range(0, len(words), 4):
                piece = " ".join(words[j:j + 4]) + (" " if j + 4 < len(words) else "")
                yield delta(piece, c["index"])
            yield delta(None, c["index"], c["finish_reason"])
    return gen()


def counted(model, messages, pieces, usage: Dict[str, Any], key: str):
    """Passes a local model's text pieces through, then records its token usage under
    ``usage[key]`` — on the model's own thread, where its tokenizer may be used."""
    text = ""
    try:
        for piece in pieces:
            text += piece
            yield piece
        if hasattr(model, "tokenize"):
            usage[key] = {"model": model.name,
                          "prompt_tokens": len(model.prompt_tokens(messages)),
                          "completion_tokens": len(model.tokenize(text))}
        else:   # an HTTP edge's stream: no tokenizer here, the counts are unknown
            usage[key] = {"model": model.name}
    finally:
        pieces.close()   # a stream stopped early releases the model at once
