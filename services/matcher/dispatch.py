"""Planned ledger rows -> follow batches on the owner's lane, each row sent once.

A row's origin picks the lane: `follow.requested` for the owner's own migration (forward
matches), `follow.reconnect` for late joiners (reverse matches, a consent catch-up).

Rows are claimed (`batch_id` set to the batch's content-derived msg id) and published in the same
transaction: a crash before the commit leaves them unclaimed for the next dispatch or the sweep,
and a crash after the publish but before the commit re-sends the same content, which JetStream's
duplicate window drops (same Nats-Msg-Id).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Sequence
from itertools import groupby

import asyncpg

from hqx import ledger, subjects
from hqx.messages import FollowRequested, FollowTarget, Message
from hqx.subjects import Network

Publish = Callable[[str, Message, str], Awaitable[object]]

# The lane of a ledger row's origin: late joiners never queue ahead of a migration.
LANES: dict[ledger.Origin, Callable[[Network, str], str]] = {
    "forward": subjects.follow_requested,
    "reverse": subjects.follow_reconnect,
}

# Owners claimed per transaction, and publishes in flight at once.
OWNERS_PER_TX = 500
IN_FLIGHT = 256

# Owners with settled unsent rows and no batch in flight (`unsent`, the sweep's backstop):
# $1 settle s, $2 limit, $3 in-flight s.
UNSENT = """
select o.network, o.user_id
  from (select distinct network, user_id from follow_ledger
         where state = 'planned' and batch_id is null
           and planned_at < now() - make_interval(secs => $1)) o
 where not exists (
       select 1 from follow_ledger s
        where s.user_id = o.user_id and s.network = o.network
          and s.state = 'planned' and s.batch_id is not null
          and s.updated_at > now() - make_interval(secs => $3))
 limit $2
"""


def batches(targets: Sequence[FollowTarget], size: int) -> list[tuple[FollowTarget, ...]]:
    """Split one owner's targets (in a stable order) into batches of at most `size`."""
    if size < 1:
        raise ValueError("batch size must be positive")
    return [tuple(targets[i : i + size]) for i in range(0, len(targets), size)]


def requests(
    user_id: str,
    network: Network,
    targets: Sequence[FollowTarget],
    size: int,
    plan: str | None = None,
) -> list[FollowRequested]:
    """One owner's follow commands; `plan` (the rows' plan generation) enters the msg id."""
    return [
        FollowRequested(user_id=user_id, network=network, targets=b, plan=plan)
        for b in batches(targets, min(size, 200))
    ]


async def dispatch(
    pool: asyncpg.Pool,
    publish: Publish,
    network: Network,
    owners: Iterable[str],
    size: int,
) -> int:
    """Publish every unsent planned row of these owners on `network`; returns messages sent."""
    todo = sorted(set(owners))
    sent = 0
    for i in range(0, len(todo), OWNERS_PER_TX):
        sent += await _dispatch_some(pool, publish, network, todo[i : i + OWNERS_PER_TX], size)
    return sent


async def _dispatch_some(
    pool: asyncpg.Pool, publish: Publish, network: Network, owners: list[str], size: int
) -> int:
    async with pool.acquire() as conn, conn.transaction():
        rows = await conn.fetch(
            """
            select user_id, origin, target_x_id, target, planned_at from follow_ledger
             where network = $1 and user_id = any($2::text[])
               and state = 'planned' and batch_id is null
             order by user_id, origin, target_x_id
               for update skip locked
            """,
            network.value,
            owners,
        )
        if not rows:
            return 0
        msgs: list[tuple[str, FollowRequested]] = []  # (subject, command)
        for (owner, origin), group in groupby(rows, key=lambda r: (r["user_id"], r["origin"])):
            rs = list(group)
            targets = [
                FollowTarget(x_account_id=str(r["target_x_id"]), account=r["target"]) for r in rs
            ]
            # NOTE: rows re-planned after a cancellation have a newer planned_at: a new plan
            # generation, so JetStream does not drop their batch as a duplicate of the old one.
            plan = str(int(max(r["planned_at"] for r in rs).timestamp() * 1_000_000))
            subject = LANES[origin](network, owner)
            msgs.extend((subject, m) for m in requests(owner, network, targets, size, plan))
        claim_owner, claim_x, claim_id = [], [], []
        for _, m in msgs:
            mid = m.msg_id()
            for t in m.targets:
                claim_owner.append(m.user_id)
                claim_x.append(int(t.x_account_id))
                claim_id.append(mid)
        await conn.execute(
            """
            update follow_ledger f set batch_id = c.id, updated_at = now()
              from unnest($2::text[], $3::bigint[], $4::text[]) as c(owner, x, id)
             where f.user_id = c.owner and f.network = $1 and f.target_x_id = c.x
            """,
            network.value,
            claim_owner,
            claim_x,
            claim_id,
        )
        for j in range(0, len(msgs), IN_FLIGHT):
            await asyncio.gather(
                *(publish(subject, m, m.msg_id()) for subject, m in msgs[j : j + IN_FLIGHT])
            )
    return len(msgs)


async def unsent(
    pool: asyncpg.Pool, older_than_s: float, limit: int = 1000, in_flight_s: float = 0.0
) -> dict[Network, set[str]]:
    """Owners with planned rows not sent for `older_than_s`, except owners with a batch sent
    less than `in_flight_s` ago that is still planned: their new rows join the next batch.

    The sweep's backstop (`Settings.sweep_backstop_s`) for rows that no event made due
    (`services/matcher/due.py`): a crash between planning and dispatch, a re-link's resend.

    NOTE: owners first, then the in-flight check once per owner. At an exodus peak thousands of
    followers are held, each with several rows, and both replicas run this every second:
    checking per row read 6.5 times the buffers on a full exodus day's ledger (4.7 times in
    `bench/sweep.py`).
    """
    rows = await pool.fetch(UNSENT, older_than_s, limit, in_flight_s)
    out: dict[Network, set[str]] = {}
    for r in rows:
        out.setdefault(Network(r["network"]), set()).add(r["user_id"])
    return out
