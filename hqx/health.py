"""The health port of every service: liveness, readiness (bus and stores reachable), metrics."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterator

import uvicorn
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from hqx import metrics

log = logging.getLogger(__name__)
Check = Callable[[], Awaitable[bool]]


def health_app(service: str, checks: dict[str, Check]) -> Starlette:
    async def live(_: Request) -> Response:
        return JSONResponse({"status": "ok", "service": service})

    async def ready(_: Request) -> Response:
        results: dict[str, bool] = {}
        for name, check in checks.items():
            try:
                results[name] = await asyncio.wait_for(check(), timeout=2.0)
            except Exception:
                results[name] = False
            metrics.DEPENDENCY_UP.labels(service, name).set(1 if results[name] else 0)
        ok = all(results.values())
        return JSONResponse(
            {"status": "ready" if ok else "unready", "service": service, "checks": results},
            status_code=200 if ok else 503,
        )

    async def prom(_: Request) -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return Starlette(
        routes=[
            Route("/healthz", live),
            Route("/readyz", ready),
            Route("/metrics", prom),
        ]
    )


class _Server(uvicorn.Server):
    """uvicorn without its signal handlers: the service owns SIGTERM/SIGINT (drain, then stop)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class HealthServer:
    """uvicorn on the service's health port, in the service's own event loop."""

    def __init__(self, app: Starlette, host: str, port: int) -> None:
        config = uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="off")
        self.server = _Server(config)
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> int:
        self._task = asyncio.create_task(self.server.serve())
        while not self.server.started:
            if self._task.done():
                self._task.result()
            await asyncio.sleep(0.01)
        sock = self.server.servers[0].sockets[0]
        return int(sock.getsockname()[1])

    async def stop(self) -> None:
        self.server.should_exit = True
        if self._task:
            await self._task
