"""How many of a person's followings and followers are on each network, and the snapshot of it
kept when their graph is deleted (migration done), so "your people" still reads right after.

Counts only, in the person's `graphs` row: erased with them, replaced by the next upload.
"""

from __future__ import annotations

import json
from typing import TypeAlias

import asyncpg

Conn: TypeAlias = asyncpg.Connection | asyncpg.Pool
# network -> {"followings_matched": n, "followers_on_network": n}
Audience: TypeAlias = dict[str, dict[str, int]]


async def measure(conn: Conn, user_id: str) -> Audience:
    """From the graph and the directory; the snapshot once the graph is gone."""
    rows = await conn.fetch(
        """
        select d.network,
               count(*) filter (where e.direction = 1) as matched,
               count(*) filter (where e.direction = 2) as followers
          from graph_edges e
         cross join lateral (
               select network, user_id from directory where x_account_id = e.x_account_id
               offset 0) d  -- NOTE: not flattened: an index lookup per edge, never a seq scan
         where e.user_id = $1 and d.user_id <> $1
         group by d.network
        """,
        user_id,
    )
    if rows:
        return {
            r["network"]: {
                "followings_matched": r["matched"],
                "followers_on_network": r["followers"],
            }
            for r in rows
        }
    has_graph = await conn.fetchval(
        "select exists (select 1 from graph_edges where user_id = $1)", user_id
    )
    return {} if has_graph else await last(conn, user_id)


async def last(conn: Conn, user_id: str) -> Audience:
    kept = await conn.fetchval("select audience from graphs where user_id = $1", user_id)
    return json.loads(kept) if kept else {}


async def keep(conn: Conn, user_id: str) -> Audience:
    """Store the current audience in the graphs row (call before deleting the edges)."""
    now = await measure(conn, user_id)
    await conn.execute(
        "update graphs set audience = $2::jsonb where user_id = $1", user_id, json.dumps(now)
    )
    return now
