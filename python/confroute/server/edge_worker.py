"""The edge model's side of the server: its one thread behind a bounded queue
(``limits.WorkQueue``), where the decision path samples, embeds and scores, and where the
edge's answer is drawn or streamed.

Waiting requests that need samples go through the path together, their samples in shared
llama.cpp batches (``EdgeModel.sample_many``: one ``llama_decode`` per step for every live
sequence of every request). Decode of a small model on a CPU is compute-bound per step, so one
step for 15 sequences costs far less than three steps of 5 (measured here: 5 samples 1.65 s, 15
samples 3.67 s). The queue groups the waiting requests, and falls back to one at a time when a
batch fails.
"""
from __future__ import annotations

import math
import threading
from typing import Any, Dict, List, Tuple

from confroute.decision import path as routing
from confroute.decision.answer import edge_answer, edge_usage
from confroute.decision.edge import EdgeSupplier
from confroute.decision.path import Evidence, Need, Query
from confroute.server.answers import choice, counted, delta, truncate_at_stop
from confroute.server.errors import ApiError
from confroute.server.limits import Cancelled, WorkQueue
from confroute.server.schema import ChatRequest

# The public members of the edge model that batched sampling uses.
_BATCH_USES = ("sample_many", "prompt_tokens", "n_seq_max", "n_ctx")


def batching_supported(edge) -> bool:
    """Whether the edge model can draw several requests' samples in one batch."""
    return all(hasattr(edge, a) for a in _BATCH_USES)


class EdgeWorker:
    """One edge model's thread and queue. ``edge``: its config (default the main edge's;
    a chain's other edges have their own, and their queue is labelled by their name)."""

    def __init__(self, cfg, model, scorer, metrics, edge=None):
        e = edge or cfg.edge
        self.model = model
        self.name = getattr(model, "name", "edge")
        self.batching = e.batch and batching_supported(model)
        self.supplier = EdgeSupplier(model, scorer, batch=self.batching,
                                     on_batch=metrics.batch_size.observe)
        label = "edge" if edge is None else e.name
        self.queue = WorkQueue(label, cfg.queue_size, **metrics.queue_hooks(label),
                               batch_fn=self._decide_batch if self.batching else None,
                               batch_fits=self._batch_fits)

    def close(self) -> None:
        self.queue.shutdown()

    async def decide(self, policy, q: Query, cancel: threading.Event):
        """(decision, evidence) from the path, run on the edge thread; a request that needs
        samples may share a batch with others waiting."""
        batch = (policy, q) if routing.needs_now(policy, q).samples else None
        return await self.queue.run(lambda: routing.decide(policy, q, self.supplier), cancel,
                                    batch=batch)

    def _batch_fits(self, payloads) -> bool:
        need = 0
        for policy, q in payloads:
            n = routing.needs_now(policy, q)
            need += n.samples + n.answer
        return need <= self.model.n_seq_max

    def _decide_batch(self, payloads):
        """On the edge thread: the decision path for several waiting requests at once."""
        return routing.decide_many(payloads, self.supplier)

    async def answer(self, req: ChatRequest, q: Query, ev: Evidence, cancel
                     ) -> Tuple[List[Dict[str, Any]], dict]:
        """(choices, usage of any new draw): the answer the policy judged, or, if it judged
        none, the same draw made now (when the edge keeps the request or the cloud cannot
        give an answer)."""
        usage = {}
        if not ev.covers(Need(samples=req.n - 1 if req.n > 1 else 0, answer=True)):
            # the samples n > 1 choices need come with it, drawn as a policy draws them
            job = lambda: edge_answer(self.supplier, q, ev, req.n)  # noqa: E731
            try:
                ev = await self.queue.run(job, cancel)
            except (ApiError, Cancelled):
                raise
            except Exception as e:  # noqa: BLE001 - too long for its context, a template
                # that cannot render tool messages...: the client is told, the server goes on
                raise ApiError(503, f"the cloud is unavailable and the edge model cannot "
                               f"answer: {type(e).__name__}: {e}", code="cloud_unavailable"
                               ) from None
            usage = edge_usage(ev)
        return self._choices(req, ev), usage

    @staticmethod
    def _choices(req: ChatRequest, ev: Evidence) -> List[Dict[str, Any]]:
        """The edge's answer (the one the policy judged), then, for n > 1, the samples in
        order of likelihood."""
        a = ev.answer
        out = [(a.texts[0], a.finish_reasons[0])]
        conf = ev.confidence
        if req.n > 1 and conf is not None:
            s = conf.samples
            order = sorted(range(s.n), key=lambda i: -float(conf.seq_logprob_mean[i])
                           if math.isfinite(conf.seq_logprob_mean[i]) else 0.0)
            out += [(s.texts[i], s.finish_reasons[i]) for i in order]
        return [choice(k, t, f, req.stop) for k, (t, f) in enumerate(out[:req.n])]

    def token_chunks(self, req: ChatRequest, q: Query, usage: Dict[str, Any], cancel,
                     key: str = "edge"):
        """The edge's answer streamed token by token (its usage recorded in ``usage``)."""
        # Admitted now, not at the first chunk: a full queue is a 429 before any byte is sent.
        # The same draw as the answer a policy would have judged (the query's sampling).
        s, m, msgs = q.sampling, self.model, req.edge_messages
        pieces = self.queue.stream(lambda: counted(m, msgs, m.chat(
            msgs, n=1, max_tokens=s.max_tokens, temperature=s.answer_temperature, seed=s.seed,
            stream=True), usage, key), cancel)
        return _cut_at_stop(pieces, req.stop)


async def _cut_at_stop(pieces, stop):
    sent = ""
    try:
        async for piece in pieces:
            text, cut = truncate_at_stop(sent + piece, stop)
            if len(text) > len(sent):
                yield delta(text[len(sent):])
                sent = text
            if cut:
                break
    finally:
        await pieces.aclose()
    yield delta(None, finish="stop")
