"""Purger handlers: one per event, no broker imports; each is idempotent under redelivery."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import asyncpg
import redis.asyncio as aioredis
from nats.js import JetStreamContext

from hqx import audience, erasure, subjects
from hqx.consumer import Delivery
from hqx.db import is_erased, user_hash
from hqx.errors import Reason
from hqx.messages import (
    ArchiveRejected,
    ArchiveUnpacked,
    FollowDone,
    MigrationCompleted,
    UserEraseRequested,
)
from hqx.outcomes import Done, Outcome, RetryLater, Skipped
from services.purger import audit, completion, events
from services.purger.settings import Settings


@dataclass
class Deps:
    pool: asyncpg.Pool
    redis: aioredis.Redis
    js: JetStreamContext
    publish: audit.Publish
    settings: Settings
    clock: Callable[[], datetime]


async def handle_archive_done(
    message: ArchiveUnpacked | ArchiveRejected, delivery: Delivery, deps: Deps
) -> Outcome:
    """Ingest is done with the raw archive (graph stored, or archive refused): delete it now."""
    n = await erasure.purge_archive(deps.js, message.object_name)
    if await is_erased(deps.pool, message.user_id):
        return await _late_for_erased(deps, message.user_id)
    if not n:
        return Done("already_deleted")
    trigger = (
        audit.Trigger.ARCHIVE_UNPACKED
        if isinstance(message, ArchiveUnpacked)
        else audit.Trigger.ARCHIVE_REJECTED
    )
    kinds = await audit.write(deps.pool, user_hash(message.user_id), trigger, {"raw_archive": n})
    msg_id = f"purged-{trigger}-{delivery.stream_sequence}"
    await audit.announce(deps.publish, message.user_id, trigger, kinds, msg_id)
    return Done()


async def handle_migration_completed(
    message: MigrationCompleted, delivery: Delivery, deps: Deps
) -> Outcome:
    """Delete graph edges and tokens, except what automatic reconnection needs (consent)."""
    user = message.user_id
    if await is_erased(deps.pool, user):
        return await _late_for_erased(deps, user)
    async with deps.pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow("select auto_reconnect from users where id = $1 for update", user)
        if row is None:
            return Skipped(Reason.NOT_FOUND)
        keep = list(row["auto_reconnect"])
        kinds: dict[str, int] = {}
        if not keep:
            await audience.keep(conn, user)  # "your people" still reads right afterwards
            status = await conn.execute("delete from graph_edges where user_id = $1", user)
            kinds["graph_edges"] = int(status.split()[-1])
        status = await conn.execute(
            """
            update identities set token_cipher = null, status = 'revoked',
                   status_reason = 'migration_completed', updated_at = now()
             where user_id = $1 and token_cipher is not null and not (network = any($2::text[]))
            """,
            user,
            keep,
        )
        kinds["tokens"] = int(status.split()[-1])
        kinds = await audit.write(conn, user_hash(user), audit.Trigger.MIGRATION_COMPLETED, kinds)
    if kinds:
        msg_id = f"purged-migration-{delivery.stream_sequence}"
        await audit.announce(deps.publish, user, audit.Trigger.MIGRATION_COMPLETED, kinds, msg_id)
    return Done()


async def handle_follow_done(message: FollowDone, delivery: Delivery, deps: Deps) -> Outcome:
    """Project the follow ledger: this batch may have been the last one planned."""
    if await is_erased(deps.pool, message.user_id):
        return await _late_for_erased(deps, message.user_id)
    if await completion.planned_beyond(deps.pool, message):
        return Skipped(Reason.MIGRATION_IN_PROGRESS)
    if not await announce_if_complete(deps, message.user_id, message):
        return Skipped(Reason.MIGRATION_IN_PROGRESS)
    return Done()


async def _late_for_erased(deps: Deps, user_id: str) -> Outcome:
    """A message about an erased user (an adapter finishing in-flight work): it recreates
    nothing, and the purger removes it and any sibling from the streams again (sparing a
    pending erase request, whose final pass must still run)."""
    await erasure.erase_streams(deps.js, user_id, keep_erase=True)
    return Skipped(Reason.USER_ERASED)


async def announce_if_complete(deps: Deps, user_id: str, done: FollowDone | None = None) -> bool:
    """Publish `migration.completed` once per graph and ledger state (content-derived id)."""
    view = await completion.read_view(deps.pool, user_id, done)
    if not completion.is_complete(view, deps.clock(), deps.settings.completion_grace_s):
        return False
    await deps.publish(
        subjects.migration_completed(user_id),
        MigrationCompleted(user_id=user_id),
        msg_id=completion.completion_msg_id(user_id, view),
    )
    events.migration_completed(user_id)
    return True


async def handle_user_erase(message: UserEraseRequested, delivery: Delivery, deps: Deps) -> Outcome:
    """Erase everything, twice: at once, and again once in-flight work has settled.

    The tombstone goes first, so every late message is refused (`hqx.db.is_erased`) and the
    users row cannot come back (0006 trigger). The first pass spares the request itself so
    other consumers still get it; the second pass, `erase_settle_s` after the request, removes
    what a handler already past its `is_erased` check wrote meanwhile, and the request too.
    """
    user = message.user_id
    await erasure.tombstone(deps.pool, user)
    # Settle from the tombstone (the first erase of this user), not from this request: a
    # request handled late, or a second request, must not skip the window.
    erased_at = await deps.pool.fetchval(
        "select erased_at from erased_users where user_hash = $1", user_hash(user)
    )
    age = (deps.clock() - max(delivery.raw.metadata.timestamp, erased_at)).total_seconds()
    final = age >= deps.settings.erase_settle_s
    await erase_everything(deps, user, final=final)
    if not final:
        delay = deps.settings.erase_settle_s - age
        events.erase_settling(user, delay)
        return RetryLater(delay, Reason.ERASE_SETTLING)
    tag = user_hash(user)
    totals = await audit.totals(deps.pool, tag, audit.Trigger.USER_ERASE)
    # NOTE: announced under the user's tag, not their id: nothing naming them is left behind.
    await audit.announce(deps.publish, tag, audit.Trigger.USER_ERASE, totals, f"erased-{tag}")
    return Done()


def _text(v: bytes | str) -> str:
    return v.decode() if isinstance(v, bytes) else v


def _erasing_key(user_id: str) -> str:
    """The user's network accounts, kept only between the two erase passes (rows are gone by
    the second): an adapter finishing in-flight work may still write keys named by them."""
    return f"hqx:purger:erasing:{user_id}"


async def erase_everything(deps: Deps, user_id: str, *, final: bool) -> dict[str, int]:
    await erasure.tombstone(deps.pool, user_id)
    accounts = set(await erasure.linked_accounts(deps.pool, user_id))
    accounts |= {_text(a) for a in await deps.redis.smembers(_erasing_key(user_id))}
    kinds = await erasure.delete_rows(deps.pool, user_id)
    kinds["redis_keys"] = await erasure.erase_redis(deps.redis, user_id, accounts)
    if accounts and not final:
        ttl = int(deps.settings.erase_settle_s * 4 + 600)
        async with deps.redis.pipeline(transaction=True) as p:
            p.sadd(_erasing_key(user_id), *sorted(accounts))
            p.expire(_erasing_key(user_id), ttl)
            await p.execute()
    kinds |= await erasure.erase_streams(deps.js, user_id, keep_erase=not final)
    return await audit.write(deps.pool, user_hash(user_id), audit.Trigger.USER_ERASE, kinds)
