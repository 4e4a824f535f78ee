"""The server's side of routing: the decision comes from the one decision path
(:mod:`confroute.decision.path`, the same as ``Controller.decide``); this module runs it where it
may run and answers it:

- edge work (the path: sampling, embedding, trained-router scoring; answers drawn fresh) on
  the edge model's one thread, behind a bounded queue (``limits.WorkQueue``); waiting SE
  requests go through the path together, their samples in shared llama.cpp batches;
- cloud calls on a thread pool (HTTP cloud) or on the in-process stand-in's own queue, so that a
  slow cloud never blocks the edge;
- a circuit breaker in front of the cloud, and the edge's answer when the cloud fails.
"""
from __future__ import annotations

import asyncio
import math
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Dict, List, Optional, Tuple

from confroute.decision import path as routing
from confroute.decision.answer import cloud_messages, edge_answer, edge_usage
from confroute.decision.edge import EdgeSupplier
from confroute.decision.path import Decision, Evidence, Need
from confroute.server.breaker import CircuitBreaker
from confroute.server.config import ServerConfig
from confroute.server.errors import ApiError
from confroute.server.limits import Cancelled, WorkQueue, threaded_stream
from confroute.server.metrics import ServerMetrics
from confroute.server.schema import ChatRequest

# Cloud HTTP statuses that mean "your request is wrong", not "the cloud is down": these go back
# to the client as 400 and do not count against the breaker.
CLIENT_ERROR_STATUSES = {400, 413, 415, 422}


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

    def facts(self, router: str) -> Dict[str, Any]:
        return {"router": router, "routed_to": self.routed_to, "model": self.model,
                "semantic_entropy": _finite(self.semantic_entropy), "score": _finite(self.score),
                "threshold": self.threshold, "degraded": self.degraded, "reason": self.reason,
                "error": self.error, "n_samples": self.n_samples, "meaning": self.meaning,
                "usage": self.usage,
                "ignored_params": self.ignored}

    def total_usage(self) -> Dict[str, int]:
        p = sum(u.get("prompt_tokens", 0) for u in self.usage.values())
        c = sum(u.get("completion_tokens", 0) for u in self.usage.values())
        return {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}


def _finite(x: Optional[float]) -> Optional[float]:
    return x if x is not None and math.isfinite(x) else None


def truncate_at_stop(text: str, stop: Optional[Tuple[str, ...]]) -> Tuple[str, bool]:
    """OpenAI semantics for local answers: cut before the first stop string (not included)."""
    if not stop:
        return text, False
    cut = min((i for i in (text.find(s) for s in stop) if i >= 0), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)


class CloudFailed(Exception):
    """The cloud could not give an answer (outage, timeout, 5xx, breaker open)."""


class CloudStreamBroken(RuntimeError):
    """The cloud's stream ended early."""


def _finished(chunk: Dict[str, Any]) -> bool:
    return any(c.get("finish_reason") for c in chunk.get("choices") or ())


class Engine:
    def __init__(self, cfg: ServerConfig, edge, cloud, scorer, metrics: ServerMetrics,
                 routers: Optional[Dict[str, Any]] = None):
        self.cfg, self.edge, self.cloud = cfg, edge, cloud
        self.scorer, self.metrics = scorer, metrics
        self.routers = routers or {}            # name -> loaded trained Router
        from confroute.server import batching

        # Concurrent SE requests share llama.cpp batches (see batching.py) when the edge
        # model offers what that needs.
        self.batching = cfg.edge.batch and batching.supported(edge)
        self.supplier = EdgeSupplier(edge, scorer, batch=self.batching,
                                     on_batch=metrics.batch_size.observe)
        self.edge_q = WorkQueue("edge", cfg.queue_size,
                                on_depth=lambda d: metrics.queue_depth.set(d, model="edge"),
                                on_drop=lambda: metrics.dropped.inc(model="edge"),
                                on_stop=lambda: metrics.stopped.inc(model="edge"),
                                batch_fn=self._decide_batch if self.batching else None,
                                batch_fits=self._batch_fits)
        # An in-process cloud stand-in is a llama.cpp model too: one thread, its own queue.
        self.cloud_http = hasattr(cloud, "base_url")
        if self.cloud_http:
            self.cloud_pool = ThreadPoolExecutor(cfg.cloud_workers,
                                                 thread_name_prefix="confroute-cloud")
            self.cloud_q = None
        else:
            self.cloud_pool = None
            self.cloud_q = WorkQueue("cloud", cfg.queue_size,
                                     on_depth=lambda d: metrics.queue_depth.set(d, model="cloud"),
                                     on_drop=lambda: metrics.dropped.inc(model="cloud"),
                                     on_stop=lambda: metrics.stopped.inc(model="cloud"))
        self.breaker = CircuitBreaker(cfg.breaker.failures, cfg.breaker.reset_s)
        self._policies: Dict[Tuple[str, float], Any] = {}
        self.edge_name = getattr(edge, "name", "edge")
        self.cloud_name = getattr(cloud, "name", "cloud")

    def close(self) -> None:
        self.edge_q.shutdown()
        if self.cloud_q:
            self.cloud_q.shutdown()
        if self.cloud_pool:
            self.cloud_pool.shutdown(wait=False, cancel_futures=True)

    # --- policies ---------------------------------------------------------------------------
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

    def check_supported(self, req: ChatRequest) -> None:
        """Refuse up front what no configured model can do (instead of dropping it silently)."""
        if self.cloud_http or not req.cloud_only:
            return
        if req.tools and req.tool_choice != "none":
            raise ApiError(400, f"tools need a cloud model that can call them; the configured "
                           f"cloud ({self.cloud_name}) runs in-process and cannot: set "
                           "cloud.base_url in the server config", param="tools",
                           code="tools_unsupported")
        # Tool history or image/audio/file parts: a local model would see a mangled request.
        raise ApiError(400, f"this request needs a cloud model ({req.cloud_only}); the configured "
                       f"cloud ({self.cloud_name}) runs in-process and cannot serve it: set "
                       "cloud.base_url in the server config", param="messages",
                       code="unsupported_content")

    # --- the edge side --------------------------------------------------------------------
    def _answer_tokens(self, req: ChatRequest) -> int:
        return req.max_tokens or self.cfg.sampling.max_tokens

    def query(self, req: ChatRequest) -> routing.Query:
        """The request as the decision path sees it (checked already by schema.py): the
        configured sampling, with the request's length and seed; a request's temperature is
        its answer's (omitted: the configured answer temperature, greedy by default)."""
        import dataclasses

        base = self.cfg.sampling
        # n: the router's samples, and enough for the choices asked for beyond the answer
        sampling = dataclasses.replace(
            base, n=max(self.cfg.router_samples(req.router), req.n - 1),
            max_tokens=self._answer_tokens(req),
            seed=req.seed, answer_temperature=base.answer_temperature if req.temperature is None
            else req.temperature)
        return routing.make_query(req.messages, sampling, req.cloud_only, req.edge_messages)

    def _batch_fits(self, payloads) -> bool:
        need = 0
        for policy, q in payloads:
            n = routing.needs_now(policy, q)
            need += n.samples + n.answer
        return need <= self.edge.n_seq_max

    def _decide_batch(self, payloads):
        """On the edge thread: the decision path for several waiting requests at once."""
        return routing.decide_many(payloads, self.supplier)

    def _edge_choices(self, req: ChatRequest, ev: Evidence) -> List[Dict[str, Any]]:
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
        return [self._choice(k, t, f, req.stop) for k, (t, f) in enumerate(out[:req.n])]

    @staticmethod
    def _choice(index: int, text: str, finish: str, stop) -> Dict[str, Any]:
        text, cut = truncate_at_stop(text, stop)
        return {"index": index, "message": {"role": "assistant", "content": text},
                "logprobs": None, "finish_reason": "stop" if cut else (finish or "stop")}

    def _edge_answer_job(self, req: ChatRequest, ev: Evidence) -> Evidence:
        """On the edge thread: the answer (and the samples n > 1 choices need) of a request
        decided without them, drawn as a policy that asks for them draws them."""
        return edge_answer(self.supplier, self.query(req), ev, req.n)

    async def _edge_fallback(self, req: ChatRequest, ev: Evidence, cancel
                             ) -> Tuple[list, dict]:
        """The edge's answer when the edge keeps the request or the cloud cannot give one:
        the answer the policy judged, or, if it judged none, the same draw made now."""
        usage = {}
        if not ev.covers(Need(samples=req.n - 1 if req.n > 1 else 0, answer=True)):
            try:
                ev = await self.edge_q.run(lambda: self._edge_answer_job(req, ev), cancel)
            except (ApiError, Cancelled):
                raise
            except Exception as e:  # noqa: BLE001 - too long for its context, a template
                # that cannot render tool messages...: the client is told, the server goes on
                raise ApiError(503, f"the cloud is unavailable and the edge model cannot "
                               f"answer: {type(e).__name__}: {e}", code="cloud_unavailable"
                               ) from None
            usage = edge_usage(ev)
        return self._edge_choices(req, ev), usage

    # --- the cloud side ---------------------------------------------------------------------
    def _cloud_kwargs(self, req: ChatRequest, stream: bool) -> Dict[str, Any]:
        kw = dict(n=req.n, max_tokens=self._answer_tokens(req), temperature=_temp(req))
        if self.cloud_http:
            kw.update(req.cloud_extra())
            if stream and req.include_usage:
                kw["stream_options"] = {"include_usage": True}
        elif req.seed is not None:
            kw["seed"] = req.seed
        return kw

    def _cloud_messages(self, req: ChatRequest):
        return cloud_messages(self.query(req), self.cloud)

    def _record_cloud_error(self, e: BaseException) -> str:
        status = getattr(e, "status", None)
        kind = f"http_{status}" if status else type(e).__name__
        self.metrics.cloud_errors.inc(kind=kind)
        self.breaker.record_failure()
        self.metrics.breaker_open.set(1 if self.breaker.state != "closed" else 0)
        return f"{type(e).__name__}: {e}"

    def _client_error(self, e: BaseException) -> Optional[ApiError]:
        status = getattr(e, "status", None)
        if isinstance(e, ValueError) or status in CLIENT_ERROR_STATUSES:
            self.breaker.record_success()  # the cloud answered; the request was the problem
            return ApiError(400, f"the cloud model rejected the request: {e}",
                            code="cloud_rejected")
        return None

    async def _cloud_chat(self, req: ChatRequest, cancel: threading.Event):
        fn = lambda: self.cloud.chat(self._cloud_messages(req),  # noqa: E731
                                     **self._cloud_kwargs(req, False))
        try:
            if self.cloud_http:
                loop = asyncio.get_running_loop()
                r = await loop.run_in_executor(self.cloud_pool, fn)
            else:
                r = await self.cloud_q.run(fn, cancel)
        except (asyncio.CancelledError, ApiError):
            self.breaker.release_probe()
            raise
        except Exception as e:  # noqa: BLE001 - any failure of the cloud means: degrade
            bad = self._client_error(e)
            if bad:
                raise bad from None
            raise CloudFailed(self._record_cloud_error(e)) from None
        self.breaker.record_success()
        self.metrics.breaker_open.set(0)
        return r

    # --- the whole route ------------------------------------------------------------------------
    async def decide(self, req: ChatRequest, cancel: threading.Event
                     ) -> Tuple[Decision, Evidence]:
        """The decision path for one request, run on the edge thread (unless the edge has no
        say in it); requests that need samples may share a batch."""
        policy = self.policy(req.router, req.threshold)
        self.check_supported(req)
        q = self.query(req)
        d = routing.immediate(policy, q)
        if d is not None:
            return d, Evidence()
        batch = (policy, q) if routing.needs_now(policy, q).samples else None
        d, ev = await self.edge_q.run(lambda: routing.decide(policy, q, self.supplier), cancel,
                                      batch=batch)
        self.metrics.samples.observe(d.n_samples, router=req.router)
        if d.semantic_entropy is not None:
            self.metrics.se.observe(d.semantic_entropy, router=req.router)
        elif math.isfinite(d.score):
            self.metrics.score.observe(d.score, router=req.router)
        return d, ev

    def _base(self, req, decision: Decision, ev: Evidence) -> Outcome:
        o = Outcome(routed_to="edge", model=self.edge_name, choices=[],
                    threshold=decision.threshold, score=decision.score,
                    semantic_entropy=decision.semantic_entropy, reason=decision.reason,
                    n_samples=decision.n_samples, meaning=decision.meaning)
        if ev.samples is not None or ev.answer is not None:
            o.usage["edge"] = edge_usage(ev)
        if not self.cloud_http:
            o.ignored = sorted(req.passthrough)
        return o

    async def answer(self, req: ChatRequest, cancel: threading.Event) -> Outcome:
        """A complete (non-streaming) answer with its routing facts."""
        decision, ev = await self.decide(req, cancel)
        o = self._base(req, decision, ev)
        return await self._complete(o, req, decision, ev, cancel)

    async def _complete(self, o: Outcome, req: ChatRequest, decision, ev, cancel) -> Outcome:
        """The answer once the route is decided: the cloud's, or the edge's."""
        if decision.route == "cloud":
            if self.breaker.allow():
                try:
                    r = await self._cloud_chat(req, cancel)
                except CloudFailed as e:
                    o.error = str(e)
                else:
                    o.routed_to, o.model = "cloud", r.model or self.cloud_name
                    o.usage["cloud"] = {"model": o.model, **r.usage}
                    if self.cloud_http and r.raw and r.raw.get("choices"):
                        o.choices = r.raw["choices"]     # as the cloud sent them (tool_calls..)
                    else:
                        o.choices = [self._choice(i, t, f, req.stop) for i, (t, f) in enumerate(
                            zip(r.texts, r.finish_reasons or (r.finish_reason,)))]
                    return o
            else:
                o.error = "the cloud's circuit breaker is open after repeated failures"
            o.degraded = True
        choices, usage = await self._edge_fallback(req, ev, cancel)
        o.choices = choices
        if usage:
            o.usage["edge"] = usage
        return o

    async def stream(self, req: ChatRequest, cancel: threading.Event
                     ) -> Tuple[Outcome, AsyncIterator[Dict[str, Any]]]:
        """(routing facts, async iterator of OpenAI chunk 'choices' deltas). The facts are
        final before the first chunk: the cloud's first chunk is awaited here, so a cloud that
        fails before answering still leads to the edge answer, marked degraded."""
        decision, ev = await self.decide(req, cancel)
        o = self._base(req, decision, ev)
        if decision.route == "cloud" and not self.cloud_http and req.n > 1:
            # The in-process stand-in streams one answer only: answer whole, send in chunks.
            o = await self._complete(o, req, decision, ev, cancel)
            return o, _text_chunks(o.choices)
        if decision.route == "cloud":
            if self.breaker.allow():
                try:
                    first, rest = await self._cloud_stream(req, cancel, o.usage)
                except CloudFailed as e:
                    o.error = str(e)
                else:
                    o.routed_to, o.model = "cloud", first.get("model") or self.cloud_name
                    return o, self._cloud_chunks(o, req, first, rest)
            else:
                o.error = "the cloud's circuit breaker is open after repeated failures"
            o.degraded = True
        if ev.answer is None and req.n == 1:
            # No answer drawn (a trained router decided): stream its tokens as they come.
            return o, self._edge_token_chunks(o, req, cancel)
        choices, usage = await self._edge_fallback(req, ev, cancel)
        if usage:
            o.usage["edge"] = usage
        return o, _text_chunks(choices)

    async def _cloud_stream(self, req: ChatRequest, cancel, usage: Dict[str, Any]):
        kw = self._cloud_kwargs(req, True)
        if self.cloud_http:
            make = lambda: self.cloud.chat(self._cloud_messages(req), stream=True,  # noqa: E731
                                           **(kw if req.n != 1 else
                                              {k: v for k, v in kw.items() if k != "n"}))
        else:   # text pieces, n == 1 (see stream); usage counted on the model's thread
            kw.pop("n")
            make = lambda: _counted(self.cloud, req.edge_messages, self.cloud.chat(  # noqa: E731
                req.edge_messages, stream=True, **kw), usage, "cloud")
        it = (threaded_stream(self.cloud_pool, make, cancel,
                              on_stop=lambda: self.metrics.stopped.inc(model="cloud"))
              if self.cloud_http
              else self.cloud_q.stream(make, cancel))
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
            bad = self._client_error(e)
            if bad:
                raise bad from None
            raise CloudFailed(self._record_cloud_error(e)) from None
        if first is None and self.cloud_http:
            raise CloudFailed(self._record_cloud_error(
                CloudStreamBroken("the cloud's stream ended before its first chunk")))
        self.breaker.record_success()
        self.metrics.breaker_open.set(0)
        if isinstance(first, str) or first is None:   # in-process stand-in: text pieces
            first = {"model": self.cloud_name, "choices": [{"index": 0, "delta": {
                "content": first or ""}, "finish_reason": None}]}
        return first, it

    async def _cloud_chunks(self, o: Outcome, req: ChatRequest, first, rest
                            ) -> AsyncIterator[Dict[str, Any]]:
        yield first
        finished = _finished(first)
        try:
            async for item in rest:
                if isinstance(item, str):
                    yield {"choices": [{"index": 0, "delta": {"content": item},
                                        "finish_reason": None}]}
                else:
                    if item.get("usage"):
                        o.usage["cloud"] = {"model": o.model,
                                            "prompt_tokens": item["usage"].get("prompt_tokens", 0),
                                            "completion_tokens":
                                                item["usage"].get("completion_tokens", 0)}
                    finished = finished or _finished(item)
                    yield item
            if self.cloud_http and not finished:
                # A connection closed early can look like a clean end of the body: without a
                # finish_reason the answer is incomplete, and the client must be told.
                raise CloudStreamBroken("the cloud's stream ended before the answer was "
                                        "complete (no finish_reason)")
        except Exception as e:  # noqa: BLE001 - broke off mid-answer: the client must know
            o.error = self._record_cloud_error(e)
            raise CloudFailed(o.error) from None
        finally:
            await rest.aclose()
        if not self.cloud_http:
            # The in-process stand-in sends bare text: close the choice (its usage was counted
            # by _counted on its own thread).
            yield {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}

    def _edge_token_chunks(self, o: Outcome, req: ChatRequest, cancel):
        # Admitted now, not at the first chunk: a full queue is a 429 before any byte is sent.
        # The same draw as the answer a policy would have judged (the query's sampling).
        s = self.query(req).sampling
        pieces = self.edge_q.stream(lambda: _counted(self.edge, req.edge_messages, self.edge.chat(
            req.edge_messages, n=1, max_tokens=s.max_tokens, temperature=s.answer_temperature,
            seed=s.seed, stream=True), o.usage, "edge"), cancel)
        return self._edge_token_gen(req, pieces)

    async def _edge_token_gen(self, req: ChatRequest, pieces):
        sent = ""
        try:
            async for piece in pieces:
                text, cut = truncate_at_stop(sent + piece, req.stop)
                if len(text) > len(sent):
                    yield {"choices": [{"index": 0, "delta": {"content": text[len(sent):]},
                                        "finish_reason": None}]}
                    sent = text
                if cut:
                    break
        finally:
            await pieces.aclose()
        yield {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}


def _counted(model, messages, pieces, usage: Dict[str, Any], key: str):
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


def _text_chunks(choices) -> AsyncIterator[Dict[str, Any]]:
    """A finished answer sent as a stream: a few words per chunk, choice after choice."""
    async def gen():
        for c in choices:
            text = c["message"]["content"] or ""
            words = text.split(" ")
            for j in range(0, len(words), 4):
                piece = " ".join(words[j:j + 4]) + (" " if j + 4 < len(words) else "")
                yield {"choices": [{"index": c["index"], "delta": {"content": piece},
                                    "finish_reason": None}]}
            yield {"choices": [{"index": c["index"], "delta": {},
                                "finish_reason": c["finish_reason"]}]}
    return gen()


def _temp(req: ChatRequest) -> float:
    return 1.0 if req.temperature is None else req.temperature   # OpenAI's default
