"""Live progress by Server-Sent Events: the progress document, re-sent when it changes."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from hqx import metrics
from services.gateway import progress
from services.gateway.deps import CurrentUser, SvcDep

router = APIRouter(prefix="/api/me", tags=["me"])
KEEPALIVE_S = 15.0
# Re-read progress now and then even without an event (a missed event costs at most this).
REREAD_EVERY = 4


@router.get(
    "/progress/stream",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def progress_stream(request: Request, user: CurrentUser, svc: SvcDep) -> StreamingResponse:
    """`event: progress` with the progress document, on connect and after each change."""
    hub = request.app.state.hub

    async def events() -> AsyncIterator[str]:
        wake = hub.listen(user)
        metrics.SSE_STREAMS_OPEN.inc()
        last = None
        quiet = 0
        try:
            yield "retry: 3000\n\n"
            while True:
                if last is None or wake.is_set() or quiet >= REREAD_EVERY:
                    wake.clear()
                    quiet = 0
                    doc = json.dumps(await progress.snapshot(svc.pool, user), default=str)
                    if doc != last:
                        last = doc
                        yield f"event: progress\ndata: {doc}\n\n"
                        continue
                yield ": keep-alive\n\n"
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wake.wait(), KEEPALIVE_S)
                quiet = 0 if wake.is_set() else quiet + 1
        finally:
            hub.forget(user, wake)
            metrics.SSE_STREAMS_OPEN.dec()

    return StreamingResponse(
        events(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )
