"""Schemathesis against the OpenAPI spec, on a real gateway with a signed-in session: no 5xx."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator

import pytest
import requests
import schemathesis
import uvicorn
from hypothesis import HealthCheck, settings

from hqx.settings import ServiceSettings
from services.gateway.app import create
from services.gateway.settings import Settings
from tests.services.gateway.conftest import gateway_settings

schemathesis.serializer.alias("application/offset+octet-stream", "application/octet-stream")
schema = schemathesis.openapi.from_dict(create(Settings()).openapi()).exclude(
    path="/api/me/progress/stream"  # an endless stream: covered by test_progress
)


@pytest.fixture
def live_gateway(settings: ServiceSettings) -> Iterator[tuple[str, requests.Session]]:
    """A gateway in a thread of its own (schemathesis calls are blocking)."""
    # NOTE: no test reaches the internet: the default PDS is a closed local port.
    gw_settings = gateway_settings(settings, default_pds_url="https://127.0.0.1:9")
    server = uvicorn.Server(
        uvicorn.Config(
            create(gw_settings), host="127.0.0.1", port=gw_settings.port, log_level="error"
        )
    )
    thread = threading.Thread(target=lambda: asyncio.run(server.serve()), daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "gateway did not start"
        time.sleep(0.02)
    url = f"http://127.0.0.1:{gw_settings.port}"
    session = requests.Session()
    session.get(url + "/")
    session.headers["X-CSRF-Token"] = session.cookies["hqx_csrf"]
    assert session.post(url + "/api/session").status_code == 201
    try:
        yield url, session
    finally:
        server.should_exit = True
        thread.join(15)


@schema.parametrize()
@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_no_server_error(case, live_gateway: tuple[str, requests.Session]) -> None:
    url, session = live_gateway
    response = case.call(base_url=url, session=session, timeout=20)
    assert response.status_code < 500, (case.method, case.path, response.text[:500])
    content_type = str(response.headers.get("content-type", ""))
    if response.status_code >= 400 and "application/json" in content_type:
        body = response.json()
        assert set(body) == {"error"} and {"code", "message"} <= set(body["error"]), body
