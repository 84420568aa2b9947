"""PostgreSQL access: one asyncpg pool per process and versioned SQL migrations.

Migrations are plain SQL files `hqx/migrations/NNNN_name.sql`, applied in order, once, under an
advisory lock, so several replicas starting at once cannot race.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from pathlib import Path

import asyncpg

log = logging.getLogger(__name__)
MIGRATIONS_DIR = Path(__file__).with_name("migrations")
_LOCK_ID = 0x4851_5800  # "HQX\0"


async def connect(database_url: str, *, min_size: int = 1, max_size: int = 10) -> asyncpg.Pool:
    pool = await asyncpg.create_pool(
        database_url,
        min_size=min_size,
        max_size=max_size,
        command_timeout=300,
        reset=_keep_session,
        # NOTE: the services' statements are short and many; a parallel plan forks worker
        # processes for each run, which at an exodus peak took CPU from everything else (seen
        # on a full day: the dispatch sweep forked 2 workers every second in each matcher).
        server_settings={"max_parallel_workers_per_gather": "0"},
    )
    assert pool is not None
    return pool


async def _keep_session(conn: asyncpg.Connection) -> None:
    """What a connection returned to the pool needs beyond asyncpg's own rollback: nothing.

    NOTE: nothing here leaves session state behind (advisory locks are transaction-scoped, no
    LISTEN, no SET, no held cursor). asyncpg's default reset query (unlock all, close all,
    unlisten, reset all) was a second round trip, and PostgreSQL work, for every one-query pool
    call: the most frequent kind on exodus day (issue 11). An open transaction is still rolled
    back by asyncpg before this runs.
    """


def migration_files() -> Sequence[Path]:
    return sorted(MIGRATIONS_DIR.glob("[0-9][0-9][0-9][0-9]_*.sql"))


async def migrate(pool: asyncpg.Pool) -> list[str]:
    """Apply pending migrations; returns the names applied. Safe to run concurrently."""
    applied: list[str] = []
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("select pg_advisory_xact_lock($1)", _LOCK_ID)
        await conn.execute(
            "create table if not exists schema_migrations ("
            " name text primary key, sha256 text not null,"
            " applied_at timestamptz not null default now())"
        )
        done = {r["name"]: r["sha256"] for r in await conn.fetch("select * from schema_migrations")}
        for path in migration_files():
            sql = path.read_text()
            digest = hashlib.sha256(sql.encode()).hexdigest()
            if path.name in done:
                if done[path.name] != digest:
                    log.warning("migration changed after it was applied", extra={"file": path.name})
                continue
            await conn.execute(sql)
            await conn.execute(
                "insert into schema_migrations (name, sha256) values ($1, $2)", path.name, digest
            )
            applied.append(path.name)
    if applied:
        log.info("migrations applied", extra={"count": len(applied), "last": applied[-1]})
    return applied


def with_database(database_url: str, name: str) -> str:
    """The URL with its database replaced (a server's URL may end in `?host=/socket`)."""
    from urllib.parse import urlsplit, urlunsplit

    return urlunsplit(urlsplit(database_url)._replace(path=f"/{name}"))


async def ensure_database(database_url: str) -> None:
    """Create the database named in the URL if it does not exist (for embedded and tests)."""
    from urllib.parse import urlsplit

    name = urlsplit(database_url).path.lstrip("/") or "postgres"
    conn = await asyncpg.connect(with_database(database_url, "postgres"))
    try:
        exists = await conn.fetchval("select 1 from pg_database where datname = $1", name)
        if not exists:
            await conn.execute(f'create database "{name}"')
    finally:
        await conn.close()


async def is_erased(conn: asyncpg.Connection | asyncpg.Pool, user_id: str) -> bool:
    """True once a user was erased: late messages must not recreate anything of theirs."""
    return bool(
        await conn.fetchval("select 1 from erased_users where user_hash = $1", user_hash(user_id))
    )


async def lock_graph(conn: asyncpg.Connection, user_id: str) -> None:
    """Serialize writers and erasers of one person's graph for the current transaction.

    graph_edges has no foreign key to users (checking it row by row tripled the COPY of a large
    graph, 0009): ingest takes this lock before writing edges and erasure before deleting
    them, so an erase waits for an ingest in flight and then deletes what it wrote.
    """
    await conn.execute(
        "select pg_advisory_xact_lock(hashtextextended('hqx-graph|' || $1, 0))", user_id
    )


def user_hash(user_id: str) -> str:
    """A one-way tag for an erased user id: lets us refuse late messages without keeping it."""
    return hashlib.sha256(f"hqx-erased|{user_id}".encode()).hexdigest()
