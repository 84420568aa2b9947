"""Builders for matcher tests: users, proofs, links and graphs written as the other services do.

The gateway writes users and identities, ingest writes graphs and edges; these helpers write the
same rows so the matcher can be driven without those services running.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable

import asyncpg

from hqx.subjects import Network


def new_user_id() -> str:
    return f"m{uuid.uuid4().hex[:16]}"


def x_base() -> int:
    """A private range of X ids for one test (the directory is shared by the session DB).

    From uuid4, not `random`: hypothesis seeds `random`, which would repeat ranges.
    """
    return (uuid.uuid4().int % (9 * 10**11) + 10**11) * 10**6


def account(network: Network, x: int, user_id: str) -> str:
    if network is Network.BLUESKY:
        return f"did:plc:{user_id}"
    return f"{user_id}@mastodon.example"


async def add_user(pool: asyncpg.Pool, user_id: str, x: int | None = None) -> None:
    """A signed-up user; `x` is the X id they claim (from their archive), unproven."""
    await pool.execute(
        "insert into users (id, x_account_id) values ($1, $2) on conflict do nothing", user_id, x
    )


async def prove(pool: asyncpg.Pool, user_id: str, x: int) -> None:
    """What the gateway does at X sign-in (the matcher also does it on identity.proven)."""
    await pool.execute(
        "update users set x_proven = true, x_account_id = $2 where id = $1", user_id, x
    )


async def link(pool: asyncpg.Pool, user_id: str, network: Network, acct: str) -> None:
    await pool.execute(
        """
        insert into identities (user_id, network, account, handle, auth_kind)
        values ($1, $2, $3, $3, 'oauth')
        on conflict (user_id, network) do update
           set account = excluded.account, linked_at = now(), status = 'active'
        """,
        user_id,
        network.value,
        acct,
    )


async def unlink(pool: asyncpg.Pool, user_id: str, network: Network) -> None:
    await pool.execute(
        "delete from identities where user_id = $1 and network = $2", user_id, network.value
    )


async def store_graph(
    pool: asyncpg.Pool,
    user_id: str,
    owner_x: int,
    followings: Iterable[int],
    followers: Iterable[int] = (),
) -> int:
    """Replace the user's graph as ingest does (newest wins); returns the graph version."""
    async with pool.acquire() as conn, conn.transaction():
        version = await conn.fetchval(
            """
            insert into graphs (user_id, owner_x_id, following_count, follower_count, version)
            values ($1, $2, 0, 0, 1)
            on conflict (user_id) do update
               set owner_x_id = excluded.owner_x_id, version = graphs.version + 1
            returning version
            """,
            user_id,
            owner_x,
        )
        await conn.execute("delete from graph_edges where user_id = $1", user_id)
        rows = [(user_id, 1, x) for x in set(followings)]
        rows += [(user_id, 2, x) for x in set(followers)]
        await conn.copy_records_to_table(
            "graph_edges", records=rows, columns=["user_id", "direction", "x_account_id"]
        )
    return int(version)


async def ledger_rows(pool: asyncpg.Pool, user_ids: Iterable[str]) -> set[tuple[str, str, int]]:
    rows = await pool.fetch(
        "select user_id, network, target_x_id from follow_ledger where user_id = any($1::text[])",
        list(user_ids),
    )
    return {(r[0], r[1], r[2]) for r in rows}
