"""Purger fixtures: a purger on real NATS, Redis and PostgreSQL, with a clock tests can move."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from hqx.service import Service
from hqx.settings import ServiceSettings
from services.purger.app import create
from services.purger.handlers import Deps
from services.purger.settings import Settings


@dataclass
class Clock:
    """Real time plus an offset: `clock.advance(hours=25)` compresses a day into a call."""

    offset: timedelta = timedelta()

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def advance(self, **kw: float) -> None:
        self.offset += timedelta(**kw)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def purger_settings(settings: ServiceSettings, fresh_database_url: str) -> Settings:
    """The shared test settings on a database of the test's own (scans read whole tables)."""
    base = settings.model_dump(exclude={"database_url", "jetstream_max_bytes"})
    return Settings(
        **base,
        database_url=fresh_database_url,
        jetstream_max_bytes=256 * 1024**2,
        sweep_interval_s=3600.0,  # tests call sweep_once, or shorten it themselves
        erase_settle_s=0.5,
        abandoned_upload_s=3600.0,
        completion_grace_s=3600.0,
    )


@pytest.fixture
async def purger(purger_settings: Settings, clock: Clock) -> AsyncIterator[Service]:
    svc = create(purger_settings, clock=clock)
    await svc.start()
    yield svc
    await svc.stop()


@pytest.fixture
def deps(purger: Service, purger_settings: Settings, clock: Clock) -> Deps:
    return Deps(purger.pool, purger.redis, purger.js, purger.publish, purger_settings, clock)
