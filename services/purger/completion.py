"""When is a migration done? A projection of the follow ledger, decided in a pure function.

A user's migration is complete when they have a graph, at least one linked network, nothing
`planned` left on any network, and every linked network has had its follows planned (or was
linked longer than the grace period ago: a network where nothing matched gets no ledger rows).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime

import asyncpg

from hqx.messages import FollowDone
from hqx.messages.follow import FollowState


@dataclass(frozen=True)
class LedgerView:
    """What the projection needs to know about one user, read in one go."""

    graph_version: int | None
    has_edges: bool
    linked: dict[str, datetime]  # network -> linked_at (active or paused identities)
    planned: dict[str, int] = field(default_factory=dict)
    total: dict[str, int] = field(default_factory=dict)


def is_complete(view: LedgerView, now: datetime, grace_s: float) -> bool:
    if view.graph_version is None or not view.has_edges or not view.linked:
        return False
    if any(view.planned.values()) or not any(view.total.values()):
        return False
    return all(
        view.total.get(net) or (now - linked_at).total_seconds() >= grace_s
        for net, linked_at in view.linked.items()
    )


def completion_msg_id(user_id: str, view: LedgerView) -> str:
    """Same graph and same ledger -> same id: JetStream drops a second announcement."""
    h = hashlib.sha256(f"{user_id}|{view.graph_version}".encode())
    for net in sorted(view.total):
        h.update(f"|{net}:{view.total[net]}".encode())
    return f"migration-completed-{h.hexdigest()[:40]}"


async def planned_beyond(conn: asyncpg.Connection | asyncpg.Pool, done: FollowDone) -> bool:
    """Is anything still planned for this user besides what `done` settles? The common answer
    on a busy day is yes, and this stops at the first such row (partial index on `planned`)
    instead of counting the whole ledger."""
    network, settled = _settled(done)
    return bool(
        await conn.fetchval(
            """
            select exists (select 1 from follow_ledger
                            where user_id = $1 and state = 'planned'
                              and not (network = $2 and target_x_id = any($3::bigint[])))
            """,
            done.user_id,
            network,
            settled,
        )
    )


def _settled(done: FollowDone | None) -> tuple[str, list[int]]:
    """The network and X ids a batch's outcomes settle (counted as no longer planned)."""
    if done is None:
        return "", []
    return str(done.network), [
        int(r.x_account_id) for r in done.results if r.state != FollowState.PLANNED
    ]


async def read_view(
    conn: asyncpg.Connection | asyncpg.Pool, user_id: str, done: FollowDone | None = None
) -> LedgerView:
    """The user's ledger; the outcomes in `done` count as recorded even if the ledger writer
    (an adapter) has not committed them yet, so the last batch is not missed by a race."""
    graph = await conn.fetchrow(
        "select g.version, exists (select 1 from graph_edges e where e.user_id = g.user_id)"
        " as has_edges from graphs g where g.user_id = $1",
        user_id,
    )
    linked = await conn.fetch(
        "select network, linked_at from identities where user_id = $1 and status <> 'revoked'",
        user_id,
    )
    network, settled = _settled(done)
    rows = await conn.fetch(
        """
        select network,
               count(*) filter (where state = 'planned'
                                  and not (network = $2 and target_x_id = any($3::bigint[])))
                 as planned,
               count(*) as total
          from follow_ledger where user_id = $1 group by network
        """,
        user_id,
        network,
        settled,
    )
    return LedgerView(
        graph_version=graph["version"] if graph else None,
        has_edges=bool(graph and graph["has_edges"]),
        linked={r["network"]: r["linked_at"] for r in linked},
        planned={r["network"]: int(r["planned"]) for r in rows},
        total={r["network"]: int(r["total"]) for r in rows},
    )


async def candidates(conn: asyncpg.Connection | asyncpg.Pool, limit: int = 1000) -> list[str]:
    """Users the sweep re-checks: a graph with edges and nothing planned (a missed last batch).

    Opted-in users keep their edges on purpose; their completions come from `follow.done` only.
    """
    rows = await conn.fetch(
        """
        select g.user_id from graphs g join users u on u.id = g.user_id
         where cardinality(u.auto_reconnect) = 0
           and exists (select 1 from graph_edges e where e.user_id = g.user_id)
           and not exists (select 1 from follow_ledger l
                            where l.user_id = g.user_id and l.state = 'planned')
         order by g.user_id limit $1
        """,
        limit,
    )
    return [r["user_id"] for r in rows]
