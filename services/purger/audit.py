"""The purge audit: *that* some kinds of data were deleted, when and why; never content.

Rows carry the one-way user tag (`hqx.db.user_hash`), never the user id, so the audit outlives
an erase without keeping personal data.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import asyncpg
from nats.js.api import PubAck

from hqx import subjects
from hqx.db import user_hash
from hqx.messages import DataPurged, Message
from services.purger import events

Publish = Callable[..., Awaitable[PubAck]]


class Trigger:
    ARCHIVE_UNPACKED = "archive_unpacked"
    ARCHIVE_REJECTED = "archive_rejected"
    MIGRATION_COMPLETED = "migration_completed"
    USER_ERASE = "user_erase"
    SWEEP = "sweep"


# The tag of audit rows whose owner is unknown (abandoned upload chunks, expired sessions).
UNKNOWN_OWNER = "-"


def tag_of(user_id: str | None) -> str:
    return user_hash(user_id) if user_id else UNKNOWN_OWNER


async def write(
    conn: asyncpg.Connection | asyncpg.Pool, tag: str, trigger: str, kinds: dict[str, int]
) -> dict[str, int]:
    """One audit row per kind actually deleted (zero counts are not recorded); `tag` is
    `tag_of(user_id)`."""
    done = {k: n for k, n in kinds.items() if n}
    if done:
        await conn.executemany(
            "insert into purge_audit (user_hash, trigger, kind, count) values ($1, $2, $3, $4)",
            [(tag, trigger, k, n) for k, n in sorted(done.items())],
        )
        events.data_purged(trigger, done)
    return done


async def announce(
    publish: Publish, user_id: str, trigger: str, kinds: dict[str, int], msg_id: str
) -> None:
    """`data.purged.<user>` on the bus, once per `msg_id` (content-derived by the caller)."""
    msg: Message = DataPurged(user_id=user_id, kinds=kinds, trigger=trigger)
    await publish(subjects.data_purged(user_id), msg, msg_id=msg_id)


async def totals(conn: asyncpg.Connection | asyncpg.Pool, tag: str, trigger: str) -> dict[str, int]:
    rows = await conn.fetch(
        "select kind, sum(count)::bigint as n from purge_audit"
        " where user_hash = $1 and trigger = $2 group by kind order by kind",
        tag,
        trigger,
    )
    return {r["kind"]: int(r["n"]) for r in rows}
