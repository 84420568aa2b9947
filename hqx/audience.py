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


# NOTE: the directory is read in one index scan for all the graph's ids (`= any`: sorted keys,
# each index page read once), then hash-joined to the edges. It was a lookup per edge (a
# LATERAL subquery rescanned per edge): on an exodus day, with a directory smaller than the
# big graphs, that was 13 to 29 % of PostgreSQL's active backends (`python -m bench.audience`
# compares both). Materialized, the CTEs can be neither flattened into a hash join over the
# whole directory nor looped over per edge.
MEASURE = """
with e as materialized (
       select x_account_id, direction from graph_edges where user_id = $1),
     d as materialized (
       select x_account_id, network from directory
        where x_account_id = any (array(select x_account_id from e)) and user_id <> $1)
select d.network,
       count(*) filter (where e.direction = 1) as matched,
       count(*) filter (where e.direction = 2) as followers
  from e join d using (x_account_id)
 group by d.network
"""


async def measure(conn: Conn, user_id: str) -> Audience:
    """From the graph and the directory; the snapshot once the graph is gone."""
    rows = await conn.fetch(MEASURE, user_id)
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
