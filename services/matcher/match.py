"""Forward and reverse matches: X follow graph x directory -> planned rows in the follow ledger.

- Forward: the user's own followings (graph_edges direction 1) found in the directory are planned
  on each network the user linked. No opt-in needed: the person asked for it by linking.
- Reverse (automatic reconnection): a new directory entry is planned for every user who followed
  that X id, linked the same network and opted in (users.auto_reconnect); and, opted in or not,
  for a user who started after the entry was linked, whose forward match ran before the entry
  was in the directory (the matcher handles events in parallel and lags at a peak).

A graph drives follows only for a user whose X id is proven and whose graph is their own
(graphs.owner_x_id = users.x_account_id): a forged archive plans nothing.
NOTE: callers commit the state change (directory entry, proof, consent) *before* matching, so
of two concurrent events (a late joiner entering, a follower proving / consenting) at least one
sees the other's commit, and the pair is planned whatever the order.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeAlias

import asyncpg

from hqx import ledger
from hqx.errors import Reason
from hqx.ledger import Origin
from hqx.messages import FollowTarget
from hqx.subjects import Network
from services.matcher.directory import Entry

Conn: TypeAlias = asyncpg.Connection | asyncpg.Pool


async def ineligible(conn: Conn, user_id: str) -> Reason | None:
    """Why the user's graph may not drive follows (None: it may)."""
    row = await conn.fetchrow(
        """
        select u.x_proven, u.x_account_id, g.owner_x_id
          from users u left join graphs g on g.user_id = u.id
         where u.id = $1
        """,
        user_id,
    )
    if row is None:
        return Reason.UNKNOWN_USER
    if not row["x_proven"]:
        return Reason.X_NOT_PROVEN
    if row["owner_x_id"] is None:
        return Reason.GRAPH_MISSING
    if row["owner_x_id"] != row["x_account_id"]:
        return Reason.OWNER_MISMATCH
    return None


async def matched_followings(conn: Conn, user_id: str, network: Network) -> list[FollowTarget]:
    """The user's X followings present in the directory on `network` (never themselves).

    NOTE: LATERAL ... OFFSET 0 (never flattened) keeps one index lookup per following; the
    planner otherwise picks a hash join over the whole directory for a mid-sized graph.
    The entries are locked (key share) until the caller's transaction ends, as a foreign key
    would: an erase or unlink deleting one waits, then its trigger cancels what was planned
    here, and an entry deleted first is not returned. Without it a plan could outlive it.
    """
    rows = await conn.fetch(
        """
        select d.x_account_id, d.account
          from graph_edges e
         cross join lateral (
               select x_account_id, account, user_id from directory
                where x_account_id = e.x_account_id and network = $2 offset 0 for key share) d
         where e.user_id = $1 and e.direction = 1 and d.user_id <> $1
         order by d.x_account_id
        """,
        user_id,
        network.value,
    )
    return [FollowTarget(x_account_id=str(r[0]), account=r[1]) for r in rows]


async def prune(conn: Conn, user_id: str, network: Network) -> int:
    """Cancel pending follows of accounts the newest graph no longer follows (re-upload wins)."""
    status = await conn.execute(
        """
        delete from follow_ledger f
         where f.user_id = $1 and f.network = $2 and f.state = 'planned'
           and not exists (select 1 from graph_edges e where e.user_id = $1
                              and e.direction = 1 and e.x_account_id = f.target_x_id)
        """,
        user_id,
        network.value,
    )
    return int(status.rsplit(" ", 1)[-1])


async def forward(
    conn: asyncpg.Connection,
    user_id: str,
    networks: Sequence[Network],
    *,
    origin: Origin = "forward",
    prune_stale: bool = False,
) -> dict[Network, int]:
    """Plan the user's matched followings on each network; returns rows created per network.

    Call only after `ineligible` returned None.
    """
    planned: dict[Network, int] = {}
    for network in networks:
        async with conn.transaction():  # holds matched_followings' locks until planned
            if prune_stale:
                await prune(conn, user_id, network)
            targets = await matched_followings(conn, user_id, network)
            planned[network] = await ledger.plan(conn, user_id, network, targets, origin=origin)
    return planned


async def reverse(conn: Conn, entry: Entry) -> tuple[list[str], list[str], dict[Origin, int]]:
    """Plan a directory entry for every opted-in user who followed it on X, and for every
    one, opted in or not, whose own migration it belongs to (see the note).

    Returns every such user (for dispatch: a redelivery re-sends what a crash left unsent), those
    of them for whom the entry is part of their own migration, and the rows created per origin.

    NOTE: an entry linked and proven no later than a follower's own start (their link on that
    network, or their graph stored) was there when they began: it belongs to their migration
    (`forward`), and only reaches them here because this event was handled after theirs (the
    matcher lags at an exodus peak). Planned as a late joiner, it waited for the settle and for
    their batches in flight, on the late joiners' lane, while the person watched their own
    migration; and a person who had not opted in to reconnections never had it planned.
    """
    rows = await conn.fetch(
        """
        select user_id, own from (
               select e.user_id, u.auto_reconnect,
                      coalesce(greatest(i.linked_at, g.ingested_at) >= (
                          select greatest(j.linked_at, ju.x_proven_at)
                            from identities j join users ju on ju.id = j.user_id
                           where j.user_id = $3 and j.network = $2), false) as own
                 from graph_edges e
                 join users u on u.id = e.user_id
                 join graphs g on g.user_id = e.user_id and g.owner_x_id = u.x_account_id
                 join identities i on i.user_id = e.user_id and i.network = $2
                                  and i.status <> 'revoked'
                where e.x_account_id = $1 and e.direction = 1 and e.user_id <> $3
                  and u.x_proven) m
         where own or $2 = any(auto_reconnect)
        """,
        entry.x_account_id,
        entry.network.value,
        entry.user_id,
    )
    owners = [r[0] for r in rows]
    target = FollowTarget(x_account_id=str(entry.x_account_id), account=entry.account)
    own = [r[0] for r in rows if r[1]]
    lanes: tuple[tuple[Origin, list[str]], ...] = (
        ("forward", own),
        ("reverse", [r[0] for r in rows if not r[1]]),
    )
    created = {
        o: await ledger.plan_pairs(conn, entry.network, who, [target] * len(who), origin=o)
        for o, who in lanes
    }
    return owners, own, created


async def followed_by(conn: Conn, x_account_id: int, limit: int = 100_000) -> list[str]:
    """Users with this X id among their X followers (their audience stats change)."""
    rows = await conn.fetch(
        "select user_id from graph_edges where x_account_id = $1 and direction = 2 limit $2",
        x_account_id,
        limit,
    )
    return [r[0] for r in rows]
