"""Audience stats per user x network and platform-wide; `match.found` carries them, coalesced.

`user_stats` and `global_stats` are what the gateway calls. Stats are computed from the graph, the
directory and the ledger (never cached), so they are right whatever the order of events; a user
whose stats changed is marked dirty, and the sweep publishes one `match.found` per dirty user.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeAlias

import asyncpg

from hqx import audience, subjects
from hqx.errors import Reason
from hqx.messages import MatchFound, Message, NetworkStats
from hqx.subjects import Network

Conn: TypeAlias = asyncpg.Connection | asyncpg.Pool
Publish = Callable[[str, Message, str | None], Awaitable[object]]
_STATS_LOCK = 0x4851_5853  # "HQXS"


async def user_stats(pool: Conn, user_id: str) -> list[NetworkStats]:
    """One `NetworkStats` per network, linked or not (the audience already there counts too)."""
    seen = await audience.measure(pool, user_id)
    ledger_rows = await pool.fetch(
        """
        select network, state, coalesce(reason = $2, false) as already, count(*) as n
          from follow_ledger where user_id = $1 group by 1, 2, 3
        """,
        user_id,
        Reason.ALREADY_FOLLOWING.value,
    )
    acc: dict[str, dict[str, int]] = {n.value: {} for n in Network}
    for network, counts in seen.items():
        acc[network].update(counts)
    for r in ledger_rows:
        state = "already_followed" if r["already"] else r["state"]
        state = "done" if state == "requested" else state  # awaiting approval: we did our part
        d = acc[r["network"]]
        d[state] = d.get(state, 0) + int(r["n"])
    return [NetworkStats(network=Network(n), **v) for n, v in acc.items()]


async def global_stats(pool: Conn) -> dict[str, Any]:
    """Platform-wide counts: users, links, directory size, plans by state (cheap queries)."""
    users = await pool.fetchrow(
        "select count(*) as users, count(*) filter (where x_proven) as proven from users"
    )
    links = await pool.fetch("select network, count(*) as n from identities group by network")
    entries = await pool.fetch("select network, count(*) as n from directory group by network")
    opted = await pool.fetch(
        "select unnest(auto_reconnect) as network, count(*) as n from users group by 1"
    )
    plans = await pool.fetch(
        "select network, state, count(*) as n from follow_ledger group by network, state"
    )
    quarantined = await pool.fetchval("select count(*) from directory_quarantine")
    matches: dict[str, dict[str, int]] = {n.value: {} for n in Network}
    for r in plans:
        matches.setdefault(r["network"], {})[r["state"]] = int(r["n"])
    return {
        "users": int(users["users"]),
        "proven_users": int(users["proven"]),
        "links": {n.value: 0 for n in Network} | {r["network"]: int(r["n"]) for r in links},
        "directory": {n.value: 0 for n in Network} | {r["network"]: int(r["n"]) for r in entries},
        "auto_reconnect": {n.value: 0 for n in Network}
        | {r["network"]: int(r["n"]) for r in opted},
        "matches": matches,
        "quarantined_claims": int(quarantined),
    }


async def mark_dirty(pool: Conn, user_ids: Iterable[str]) -> None:
    ids = sorted(set(user_ids))
    if ids:
        await pool.execute(
            "insert into match_stats_dirty (user_id)"
            " select u from unnest($1::text[]) u where exists (select 1 from users where id = u)"
            " on conflict do nothing",
            ids,
        )


async def publish_dirty(
    pool: asyncpg.Pool,
    publish: Publish,
    limit: int = 200,
    settle_s: float = 0.0,
    s_per_edge: float = 0.0,
) -> int:
    """Publish `match.found` for up to `limit` dirty users; returns how many were published.

    Only users dirty for `settle_s`, plus `s_per_edge` per edge of their graph: a burst of
    changes becomes one notification, and a big graph, whose every edge is read to measure it,
    dirtied again by every friend who joins, is measured that much less often. The dirty rows
    are deleted in the same transaction: a failed publish leaves them dirty.
    """
    async with pool.acquire() as conn, conn.transaction():
        # NOTE: one replica at a time: the notification budget is global, so adding replicas
        # adds matching capacity, not stats load on the database.
        if not await conn.fetchval("select pg_try_advisory_xact_lock($1)", _STATS_LOCK):
            return 0
        ids = [
            r[0]
            for r in await conn.fetch(
                """
                select d.user_id from match_stats_dirty d left join graphs g using (user_id)
                 where d.since <= now() - make_interval(secs => $2::float8
                         + $3::float8 * coalesce(g.following_count + g.follower_count, 0))
                 order by d.since limit $1 for update of d skip locked
                """,
                limit,
                settle_s,
                s_per_edge,
            )
        ]
        if not ids:
            return 0
        found = [MatchFound(user_id=u, stats=tuple(await user_stats(conn, u))) for u in ids]
        await asyncio.gather(*(publish(subjects.match_found(m.user_id), m, None) for m in found))
        await conn.execute("delete from match_stats_dirty where user_id = any($1::text[])", ids)
    return len(ids)
