"""Reading a request off the wire: its key, its body within the size and time limits, and a
watch for the client leaving while its answer is being made."""
from __future__ import annotations

import asyncio
import hmac
import threading
from typing import Optional

from starlette.requests import Request

from confroute.server.errors import ApiError
from confroute.server.schema import Limits


def check_auth(request: Request, key: Optional[bytes]) -> None:
    """ApiError 401 unless the request carries ``Authorization: Bearer <key>`` (or no key is
    set)."""
    if key is None:
        return
    auth = request.headers.get("authorization", "")
    scheme, _, token = auth.partition(" ")
    # compare_digest: the time taken does not depend on how much of the key matched
    if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), key):
        raise ApiError(401, "Incorrect or missing API key: send 'Authorization: Bearer "
                       "<key>'", code="invalid_api_key")


async def read_body(request: Request, limits: Limits) -> bytes:
    limit = limits.max_body_bytes
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
    timeout = limits.body_timeout_s
    try:
        return await asyncio.wait_for(collect(), timeout)
    except asyncio.TimeoutError:
        raise ApiError(408, f"the request body did not arrive within {timeout:g} s",
                       code="body_timeout") from None


class ClientGone(Exception):
    pass


async def until_done_or_gone(request: Request, work, cancel: threading.Event):
    """Awaits ``work`` unless the client disconnects first: then the work is cancelled (jobs
    not yet started are dropped, see limits.WorkQueue) and ClientGone is raised."""
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
        raise ClientGone()
    return task.result()
