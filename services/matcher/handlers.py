"""Matcher handlers: one durable, one dispatch by message type; no broker imports."""

from __future__ import annotations

from typing import Any, Protocol

import asyncpg

from hqx import db
from hqx.consumer import Delivery
from hqx.errors import Reason
from hqx.messages import (
    ConsentChanged,
    FollowDone,
    GraphIngested,
    IdentityLinked,
    IdentityProven,
    IdentityUnlinked,
    Message,
    UserEraseRequested,
)
from hqx.outcomes import Done, Outcome, Skipped
from hqx.subjects import Network
from services.matcher import dispatch, due, events, plans, stats
from services.matcher.settings import Settings

ACCEPTED: tuple[type[Message], ...] = (
    GraphIngested,
    IdentityLinked,
    IdentityUnlinked,
    IdentityProven,
    ConsentChanged,
    FollowDone,
    UserEraseRequested,
)


class Deps(Protocol):
    """What handlers use (a started `hqx.service.Service` provides it)."""

    settings: Any

    @property
    def pool(self) -> asyncpg.Pool: ...

    async def publish(
        self, subject: str, message: Message, *, msg_id: str | None = None
    ) -> Any: ...


def batch_size(settings: Settings, network: Network) -> int:
    return settings.bluesky_batch if network is Network.BLUESKY else settings.mastodon_batch


async def publish_plans(deps: Deps, settings: Settings, work: plans.Work) -> None:
    """Send the follow batches an event left to send, and mark changed stats."""
    for network, owners in sorted(work.dispatch.items()):
        sent = await dispatch.dispatch(
            deps.pool,
            lambda s, m, i: deps.publish(s, m, msg_id=i),
            network,
            owners,
            batch_size(settings, network),
        )
        events.batches_published(network.value, sent)
    await stats.mark_dirty(deps.pool, work.dirty)


async def handle_event(
    message: Message, delivery: Delivery, deps: Deps, settings: Settings
) -> Outcome:
    """Every matcher event; idempotent (a redelivery re-plans nothing and re-sends nothing new)."""
    user = message.user_id
    if not isinstance(message, UserEraseRequested) and await db.is_erased(deps.pool, user):
        return Skipped(Reason.USER_ERASED)
    if isinstance(message, FollowDone):
        # One commit for both: at a peak follow.done is the matcher's most frequent event, and
        # its commits' WAL flushes were most of what the sweep's wake cost PostgreSQL.
        async with deps.pool.acquire() as conn, conn.transaction():
            await stats.mark_dirty(conn, [user])
            await due.wake(conn, user, message.network)  # late joiners held behind it may go
        return Done()
    async with deps.pool.acquire() as conn:
        match message:
            case GraphIngested():
                work = await plans.on_graph(conn, user, message.graph_version)
            case IdentityLinked():
                work = await plans.on_linked(conn, user, message.network, message.occurred_at)
            case IdentityProven():
                work = await plans.on_proven(conn, user, message.x_account_id, message.x_username)
            case IdentityUnlinked():
                work = await plans.on_unlinked(conn, user, message.network, message.occurred_at)
            case ConsentChanged():
                work = await plans.on_consent(
                    conn, user, message.auto_reconnect, message.occurred_at
                )
            case UserEraseRequested():
                work = await plans.on_erase(conn, user)
            case _:
                raise TypeError(f"matcher got {type(message).__name__}")
    await publish_plans(deps, settings, work)
    if work.skipped and not work.dispatch:
        events.event_skipped(user, type(message).__name__, work.skipped)
        return Skipped(work.skipped)
    return Done()
