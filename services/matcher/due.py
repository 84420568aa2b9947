"""Owners the dispatch sweep must look at: late joiners settling, or held behind a batch.

A follower's late joiners wait for the settle and for the follower's batch still in flight
(`Settings.reverse_in_flight_s`). At an exodus peak thousands of followers wait that way, and
finding them by scanning every unsent row each second (`dispatch.UNSENT`) cost each matcher
replica a third of a core on a full exodus day. Here an owner is looked at when something
happened to them instead: rows planned for them (`later`), one of their batches acted on
(`wake`), or the end of the longest their batch in flight may hold them. `dispatch.UNSENT`
stays as a rare backstop for rows no event made due (a crash, a re-link's resend).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Literal

import asyncpg

from hqx.ledger import Conn
from hqx.subjects import Network

# Owners due ($1 settle s, $2 limit, $3 in-flight s): have they rows unsent, and when did a
# batch of theirs still in flight go out (any one: the hold is looked at again when that one's
# ends)? NOTE: scalar subqueries with `limit 1`, so each stops at its first row; an `exists`
# here became a hashed subplan that read every unsent row of every owner, as the scan it
# replaces did.
DUE = """
select d.network, d.user_id, d.touched_at,
       coalesce((select true from follow_ledger u
                  where u.network = d.network and u.user_id = d.user_id
                    and u.state = 'planned' and u.batch_id is null
                  limit 1), false) as unsent,
       (select s.updated_at from follow_ledger s
         where s.user_id = d.user_id and s.network = d.network
           and s.state = 'planned' and s.batch_id is not null
           and s.updated_at > now() - make_interval(secs => $3)
         limit 1) as in_flight_at
  from dispatch_due d
 where d.due_at < now() - make_interval(secs => $1)
 order by d.due_at
 limit $2
"""

# (user id, network, touched_at as read): a due row the sweep may forget or postpone, unless
# someone touched it since.
Seen = tuple[str, str, datetime]


async def later(conn: Conn, network: Network, owners: Iterable[str]) -> None:
    """These owners have new planned rows for the sweep: due once they settle, or sooner if
    they were due already. Idempotent."""
    ids = sorted(set(owners))
    if ids:
        await conn.execute(
            """
            insert into dispatch_due (user_id, network, due_at)
            select u, $1, clock_timestamp() from unnest($2::text[]) u
             where exists (select 1 from users where id = u)
            on conflict (user_id, network) do update
               set due_at = least(dispatch_due.due_at, excluded.due_at),
                   touched_at = clock_timestamp()
            """,
            network.value,
            ids,
        )


async def wake(conn: Conn, user_id: str, network: Network) -> None:
    """One of the owner's batches was acted on: rows held behind it may go (after the settle)."""
    await conn.execute(
        "update dispatch_due set due_at = least(due_at, now()), touched_at = clock_timestamp()"
        " where user_id = $1 and network = $2",
        user_id,
        network.value,
    )


def verdict(row: asyncpg.Record) -> Literal["idle", "held", "send"]:
    """What the sweep does with an owner read by `DUE`: forget (nothing unsent), postpone (a
    batch in flight holds them) or send."""
    if not row["unsent"]:
        return "idle"
    return "held" if row["in_flight_at"] is not None else "send"


async def due(
    pool: asyncpg.Pool, settle_s: float, limit: int, in_flight_s: float
) -> tuple[dict[Network, set[str]], list[Seen]]:
    """Owners to dispatch now, and the due rows to `forget` once they are sent.

    Of the owners due: those with nothing left unsent are forgotten here; those held by a batch
    in flight are postponed to the end of the hold (`wake` brings them back sooner).
    """
    rows = await pool.fetch(DUE, settle_s, limit, in_flight_s)
    send: dict[Network, set[str]] = {}
    sent: list[Seen] = []
    idle: list[Seen] = []
    held: list[tuple[Seen, datetime]] = []
    for r in rows:
        seen = (r["user_id"], r["network"], r["touched_at"])
        match verdict(r):
            case "idle":
                idle.append(seen)
            case "held":
                held.append((seen, r["in_flight_at"] + timedelta(seconds=in_flight_s)))
            case "send":
                send.setdefault(Network(r["network"]), set()).add(r["user_id"])
                sent.append(seen)
    await forget(pool, idle)
    await postpone(pool, held)
    return send, sent


async def postpone(pool: asyncpg.Pool, held: list[tuple[Seen, datetime]]) -> None:
    """Make these owners due at the end of their hold, unless touched since they were read (a
    batch acted on: `wake`)."""
    if held:
        await pool.execute(
            """
            update dispatch_due d set due_at = h.until
              from unnest($1::text[], $2::text[], $3::timestamptz[], $4::timestamptz[])
                   as h(user_id, network, touched_at, until)
             where d.user_id = h.user_id and d.network = h.network
               and d.touched_at = h.touched_at
            """,
            [u for (u, _, _), _ in held],
            [n for (_, n, _), _ in held],
            [t for (_, _, t), _ in held],
            [until for _, until in held],
        )


async def forget(pool: asyncpg.Pool, seen: list[Seen]) -> None:
    """Delete these due rows, unless touched since they were read (new rows were planned)."""
    if seen:
        await pool.execute(
            """
            delete from dispatch_due d
             using unnest($1::text[], $2::text[], $3::timestamptz[]) as s(user_id, network, t)
             where d.user_id = s.user_id and d.network = s.network and d.touched_at = s.t
            """,
            [u for u, _, _ in seen],
            [n for _, n, _ in seen],
            [t for _, _, t in seen],
        )
