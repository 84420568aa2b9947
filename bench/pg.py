"""The PostgreSQL that the query benchmarks measure on, and a database of their own there.

By default the embedded PostgreSQL that `make run` and the exodus bench run on (a plan can
differ between versions: PostgreSQL 17 changed `= any` index scans); `HQX_BENCH_PG` names a
server of your own instead, e.g. postgresql://postgres@127.0.0.1:5432.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg

from hqx import db, embedded


@contextlib.contextmanager
def server() -> Iterator[str]:
    """The URL of the server measured on (embedded: started here, stopped afterwards)."""
    if url := os.environ.get("HQX_BENCH_PG"):
        yield url
        return
    with tempfile.TemporaryDirectory(prefix="hqx-bench-pg-") as tmp:
        pg = embedded.start_postgres(Path(tmp) / "postgres", database="postgres")
        try:
            yield pg.url
        finally:
            pg.stop()


@contextlib.asynccontextmanager
async def database(url: str, name: str) -> AsyncIterator[asyncpg.Pool]:
    """A pool on a new database `name` of that server, migrated; dropped afterwards."""
    admin = await asyncpg.connect(db.with_database(url, "postgres"))
    try:
        await admin.execute(f'drop database if exists "{name}" with (force)')
        await admin.execute(f'create database "{name}"')
        try:
            pool = await db.connect(db.with_database(url, name), max_size=2)
            try:
                await db.migrate(pool)
                yield pool
            finally:
                await pool.close()
        finally:
            await admin.execute(f'drop database if exists "{name}" with (force)')
    finally:
        await admin.close()


async def buffers(pool: asyncpg.Pool, sql: str, *args: object) -> int:
    """Shared buffers one run of `sql` reads (hit or read), from EXPLAIN: exact, unlike time."""
    plan = json.loads(await pool.fetchval(f"explain (analyze, buffers, format json) {sql}", *args))
    top = plan[0]["Plan"]
    return int(top["Shared Hit Blocks"] + top["Shared Read Blocks"])
