"""A streamed chat completion as server-sent events: a first chunk with the routing facts, the
answer's chunks, a last chunk with the facts (and usage, if asked), then ``[DONE]``. Once the
headers are sent, a failure is told in-stream as an OpenAI error object."""
from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from typing import Any, Dict

from starlette.requests import Request
from starlette.responses import StreamingResponse

from confroute.server.answers import completion_id
from confroute.server.cloud_calls import CloudFailed
from confroute.server.intake import until_done_or_gone
from confroute.server.limits import Slot

log = logging.getLogger("confroute.server")


def _event(obj) -> str:
    return f"data: {json.dumps(obj)}\n\n"


def _error(message: str, code: str) -> str:
    return _event({"error": {"message": message, "type": "server_error", "param": None,
                             "code": code}})


async def stream_response(api, request: Request, req, cancel: threading.Event, t0: float,
                          slot: Slot) -> StreamingResponse:
    """The SSE response for ``req`` on ``api`` (the app's :class:`~confroute.server.app.Api`);
    ``slot`` is released when the stream ends, however it ends."""
    try:
        o, chunks = await until_done_or_gone(request, api.engine.stream(req, cancel), cancel)
    except BaseException:
        slot()
        raise
    head = {"id": completion_id(), "object": "chat.completion.chunk",
            "created": int(time.time()), "model": o.model}
    events = _events(api, head, o, chunks, req, cancel, slot, t0)
    # A stream that is never started (client gone before the first byte) still frees
    # its in-flight slot and its work when collected.
    loop = asyncio.get_running_loop()
    slot.on_collect(events, loop)
    Slot(cancel.set).on_collect(events, loop)
    return StreamingResponse(events, media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", **o.headers(req.model)})


async def _events(api, head, o, chunks, req, cancel: threading.Event, slot: Slot, t0: float):
    def chunk(choices, **more) -> str:
        return _event({**head, "choices": choices, **more})

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
        yield _error(f"the cloud stream broke off: {e}", "cloud_stream_failed")
    except asyncio.CancelledError:
        status = 499
        api.metrics.disconnects.inc()
        raise
    except Exception:  # noqa: BLE001 - headers are sent: tell the client in-stream
        status = 500
        log.exception("stream failed after its first chunk")
        yield _error("the answer broke off (internal error)", "stream_failed")
    finally:
        cancel.set()   # frees any work still running for this request
        slot()
        if status == 200:
            api.finish(200, o, req.model, t0)
        else:
            api.metrics.requests.inc(status=str(status))
