"""The pool's connections come back clean without asyncpg's per-release reset query."""

from __future__ import annotations

import asyncpg

from hqx import db


async def test_a_connection_returned_mid_transaction_comes_back_clean(database_url: str) -> None:
    pool = await db.connect(database_url, max_size=1)
    other = await asyncpg.connect(database_url)
    try:
        conn = await pool.acquire()
        tx = conn.transaction()
        await tx.start()  # never committed: a handler that died mid-transaction
        await conn.execute("create temp table if not exists leak (x int)")
        await conn.execute("insert into leak values (1)")
        await conn.execute("select pg_advisory_xact_lock(4851)")
        pid = await conn.fetchval("select pg_backend_pid()")
        await pool.release(conn)

        async with pool.acquire() as again:
            assert await again.fetchval("select pg_backend_pid()") == pid  # the same session
            assert not again.is_in_transaction()
            assert await again.fetchval("select to_regclass('pg_temp.leak')") is None
        # The transaction's lock went with its rollback.
        assert await other.fetchval("select pg_try_advisory_xact_lock(4851)")
    finally:
        await other.close()
        await pool.close()
