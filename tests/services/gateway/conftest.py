"""A real gateway (uvicorn on a free port) over the test NATS, Redis and PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from hqx.embedded import free_port
from hqx.settings import ServiceSettings
from services.gateway.app import create
from services.gateway.settings import Settings
from tests.peers.x_oauth import XProvider, x_provider  # noqa: F401  (fixture)


@dataclass
class Gateway:
    url: str
    app: FastAPI
    settings: Settings

    @property
    def svc(self):
        return self.app.state.svc

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.url, timeout=30.0, follow_redirects=False)

    @asynccontextmanager
    async def browser(self, signed_in: bool = False) -> AsyncIterator[httpx.AsyncClient]:
        """A browser-like client (cookies, CSRF header), optionally with an anonymous account."""
        async with self.client() as c:
            await c.get("/")
            c.headers["X-CSRF-Token"] = c.cookies["hqx_csrf"]
            if signed_in:
                r = await c.post("/api/session")
                assert r.status_code == 201, r.text
            yield c


def gateway_settings(base: ServiceSettings, x: XProvider | None = None, **extra) -> Settings:
    port = free_port()
    values = {
        "NATS_URL": base.nats_url,
        "REDIS_URL": base.redis_url,
        "DATABASE_URL": base.database_url,
        "HQX_ENV": "test",
        "HQX_HEALTH_HOST": "127.0.0.1",
        "HQX_LOG_JSON": False,
        "HQX_JETSTREAM_MAX_BYTES": base.jetstream_max_bytes,
        "port": port,
        "public_url": f"http://127.0.0.1:{port}",
    }
    if x is not None:
        values |= {
            "x_client_id": x.client_id,
            "x_client_secret": x.client_secret,
            "x_authorize_url": f"{x.url}/i/oauth2/authorize",
            "x_token_url": f"{x.url}/2/oauth2/token",
            "x_api_url": x.url,
        }
    return Settings(**(values | extra))


async def _serve(server: uvicorn.Server) -> None:
    try:
        await server.serve()
    except SystemExit as e:
        # uvicorn exits the process when it cannot start; a SystemExit escaping a fixture
        # would also break pytest-asyncio's loop for every test after this one.
        raise RuntimeError(f"the gateway did not start (uvicorn exit {e.code})") from None


async def serve(settings: Settings) -> AsyncIterator[Gateway]:
    app = create(settings)
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=settings.port, log_level="warning")
    )
    task = asyncio.create_task(_serve(server))
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    try:
        yield Gateway(f"http://127.0.0.1:{settings.port}", app, settings)
    finally:
        server.should_exit = True
        await task


@pytest.fixture
async def gateway(settings: ServiceSettings, x_provider: XProvider) -> AsyncIterator[Gateway]:  # noqa: F811
    async for gw in serve(gateway_settings(settings, x_provider)):
        yield gw
