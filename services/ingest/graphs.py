"""The graph store: one transaction replaces a user's graph with the archive's (COPY)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import datetime

import asyncpg

from hqx import db
from hqx.errors import ArchiveRejectedError, Reason
from services.ingest.archive import ParsedArchive

FOLLOWING, FOLLOWER = 1, 2  # graph_edges.direction


@dataclass(frozen=True)
class Stored:
    """What the transaction did: `stored`, `redelivered`, `superseded` or `erased`."""

    status: str
    version: int = 0
    following_count: int = 0
    follower_count: int = 0
    owner_x_id: int = 0
    owner_username: str | None = None


def _edges(user_id: str, parsed: ParsedArchive) -> Iterator[tuple[str, int, int]]:
    for direction, graph in ((FOLLOWING, parsed.following), (FOLLOWER, parsed.follower)):
        for x in graph.ids:
            yield (user_id, direction, x)


async def current(
    conn: asyncpg.Pool | asyncpg.Connection, user_id: str, object_name: str
) -> Stored | None:
    row = await conn.fetchrow(
        "select version, following_count, follower_count, owner_x_id, owner_username"
        " from graphs where user_id = $1 and object_name = $2",
        user_id,
        object_name,
    )
    if row is None:
        return None
    return Stored("current", row["version"], row["following_count"],
                  row["follower_count"], row["owner_x_id"], row["owner_username"])  # fmt: skip


async def stored_from(pool: asyncpg.Pool, user_id: str, object_name: str) -> Stored | None:
    """The current graph if this very upload produced it (a redelivery), else None."""
    found = await current(pool, user_id, object_name)
    return replace(found, status="redelivered") if found else None


async def store(
    pool: asyncpg.Pool,
    user_id: str,
    object_name: str,
    uploaded_at: datetime,
    sha256: str | None,
    parsed: ParsedArchive,
) -> Stored:
    """Replace the user's graph with this archive's, idempotently.

    The same upload delivered again finds its own graph and changes nothing; an upload older
    than the stored one changes nothing either (the newer wins whatever the processing order).
    A user who proved another X id gets `owner_mismatch` (nothing written).
    """
    owner = int(parsed.owner.account_id)
    async with pool.acquire() as conn, conn.transaction():
        await db.lock_graph(conn, user_id)
        if await db.is_erased(conn, user_id):
            return Stored("erased")
        row = await conn.fetchrow(
            "select version, object_name, uploaded_at from graphs where user_id = $1", user_id
        )
        if row is not None and row["object_name"] == object_name:
            found = await current(conn, user_id, object_name)
            assert found is not None
            return replace(found, status="redelivered")
        if row is not None and row["uploaded_at"] is not None and row["uploaded_at"] > uploaded_at:
            return Stored("superseded")
        proven = await conn.fetchrow(
            "select x_account_id from users where id = $1 and x_proven", user_id
        )
        if proven is not None and proven["x_account_id"] != owner:
            raise ArchiveRejectedError(
                Reason.OWNER_MISMATCH, "this archive belongs to another X account than yours"
            )
        await conn.execute(
            "insert into users (id, x_account_id, x_username) values ($1, $2, $3)"
            " on conflict (id) do update set x_username = excluded.x_username,"
            " x_account_id = case when users.x_proven then users.x_account_id"
            " else excluded.x_account_id end",
            user_id, owner, parsed.owner.username,
        )  # fmt: skip
        await conn.execute("delete from graph_edges where user_id = $1", user_id)
        await conn.copy_records_to_table(
            "graph_edges",
            records=_edges(user_id, parsed),
            columns=["user_id", "direction", "x_account_id"],
        )
        version = (row["version"] if row else 0) + 1
        following, follower = len(parsed.following), len(parsed.follower)
        await conn.execute(
            "insert into graphs (user_id, owner_x_id, owner_username, following_count,"
            " follower_count, version, archive_sha256, object_name, uploaded_at, ingested_at)"
            " values ($1, $2, $3, $4, $5, $6, $7, $8, $9, now())"
            " on conflict (user_id) do update set owner_x_id = excluded.owner_x_id,"
            " owner_username = excluded.owner_username,"
            " following_count = excluded.following_count,"
            " follower_count = excluded.follower_count, version = excluded.version,"
            " archive_sha256 = excluded.archive_sha256, object_name = excluded.object_name,"
            " uploaded_at = excluded.uploaded_at, ingested_at = now(), audience = null",
            user_id, owner, parsed.owner.username, following, follower, version, sha256,
            object_name, uploaded_at,
        )  # fmt: skip
        return Stored("stored", version, following, follower, owner, parsed.owner.username)
