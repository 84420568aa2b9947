"""The adapter process SIGKILLed in the middle of its work, restarted: every follow exactly once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import nats
import pytest

from hqx import bus
from hqx.service import Service
from hqx.settings import ServiceSettings
from tests.eventually import drained, eventually
from tests.services.bluesky_adapter.conftest import (
    follow_counts,
    ledger_states,
    link,
    repo_follows,
    request_follows,
    targets,
)
from tests.services.bluesky_adapter.test_adapter import SPEC

ROOT = Path(__file__).resolve().parents[3]


class Adapter:
    """`python -m services.bluesky_adapter` as a child process, killed with SIGKILL."""

    def __init__(self, settings: ServiceSettings, log: Path) -> None:
        self.env = {
            **os.environ,
            "NATS_URL": settings.nats_url,
            "REDIS_URL": settings.redis_url,
            "DATABASE_URL": settings.database_url,
            "HQX_ENV": "test",
            "HQX_HEALTH_HOST": "127.0.0.1",
            "HQX_LOG_JSON": "true",
            "HQX_JETSTREAM_MAX_BYTES": str(settings.jetstream_max_bytes),
            # Redelivery after the kill comes after ack_wait: keep the test short.
            "HQX_BLUESKY_ADAPTER_ACK_WAIT_S": "8",
        }
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "services.bluesky_adapter"],
            cwd=ROOT,
            env=self.env,
            stdout=self.log.open("ab"),
            stderr=subprocess.STDOUT,
        )

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture
def adapter_process(settings: ServiceSettings, tmp_path: Path) -> Iterator[Adapter]:
    a = Adapter(settings, tmp_path / "adapter.log")
    yield a
    a.stop()


class Publisher(Service):
    """Only publishes and reads consumer state (no consumers of its own)."""


async def test_sigkill_mid_run_then_restart_follows_exactly_once(
    adapter_process: Adapter,
    pool: asyncpg.Pool,
    settings: ServiceSettings,
    bsky_pds: dict[str, Any],
) -> None:
    nc = await nats.connect(settings.nats_url)
    js = nc.jetstream()
    await bus.ensure_topology(js, settings)
    pub = Publisher("test", settings, uses_db=False, uses_redis=False)
    pub._js = js  # publish through the test's connection
    try:
        user, did = await link(pool, settings, bsky_pds, bsky_pds["accounts"][8])
        ts = targets(1000)
        adapter_process.start()
        await request_follows(pool, pub, user, ts)

        async def some_done() -> bool:
            return (await ledger_states(pool, user)).get("done", 0) > 0

        await eventually(some_done, timeout=60, interval=0.005)
        adapter_process.kill()
        killed_at = await ledger_states(pool, user)
        assert killed_at.get("planned", 0) > 0, f"killed too late to matter: {killed_at}"

        # The same commands redelivered on top (a replayed batch), then the restart.
        await request_follows(pool, pub, user, ts[:400], again=True)
        adapter_process.start()

        async def all_done() -> bool:
            return (await ledger_states(pool, user)) == {"done": 1000}

        await eventually(all_done, timeout=90, interval=0.1)
        await drained(js, SPEC.stream.value, SPEC.durable, timeout=60)
        assert follow_counts(await repo_follows(bsky_pds, did), ts) == {1: 1000}
    finally:
        await nc.close()
