"""The periodic sweep: whatever outlived its limit goes, whichever path failed to delete it.

Raw archives older than `archive_max_age_s` (ingest crashed, dead-lettered, never ran),
deleted-object metas, chunks of abandoned uploads, rows past any `expires_at` column (sessions,
OAuth states), and migrations whose last `follow.done` was missed. Safe in several replicas at
once (each deletion is idempotent); a short Redis lease keeps them from doing it all twice.
"""

from __future__ import annotations

import asyncio
import secrets
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import datetime

import asyncpg

from hqx import erasure
from hqx.db import user_hash
from hqx.subjects import USER_ID_RE, Stream, user_id_of
from services.purger import archives, audit, completion, events
from services.purger.handlers import Deps, announce_if_complete

LEASE_KEY = "hqx:purger:sweep-lease"

_EXPIRING_TABLES_SQL = """
select c.table_schema, c.table_name
  from information_schema.columns c
  join information_schema.tables t
    on t.table_schema = c.table_schema and t.table_name = c.table_name
 where c.column_name = 'expires_at' and t.table_type = 'BASE TABLE'
   and c.data_type in ('timestamp with time zone', 'timestamp without time zone')
   and c.table_schema not in ('pg_catalog', 'information_schema')
 order by 1, 2
"""


async def sweep_once(deps: Deps) -> dict[str, int]:
    """One full sweep at `deps.clock()`; returns counts per kind deleted.

    Each step stands alone: one that fails is logged and the others still run (all are
    idempotent, and the next sweep tries the failed one again). A single failure used to end
    the sweep, and a step failing every time would have stopped every other for good.
    """
    now = deps.clock()
    by_owner: dict[str | None, Counter[str]] = {}

    def add(owner: str | None, kind: str, n: int = 1) -> None:
        by_owner.setdefault(owner, Counter())[kind] += n

    async def raw_archives() -> None:
        objects = await erasure.list_objects(deps.js, archives.STREAM)
        expired = archives.expired_objects(objects, now, deps.settings.archive_max_age_s)
        for obj in expired:
            await erasure.purge_object(deps.js, obj)
            add(archives.owner_of(obj.name), "archive_meta" if obj.deleted else "raw_archive")
        kept = [o.mtime for o in objects if not o.deleted and o.mtime and o not in expired]
        events.oldest_archive(max(((now - t).total_seconds() for t in kept), default=0.0))
        # NOTE: here, not a step of its own: whether chunks are abandoned needs the live objects
        chunks = await archives.list_chunks(deps.js)
        limit_s = deps.settings.abandoned_upload_s
        for c in archives.abandoned_chunks(chunks, objects, now, limit_s):
            await deps.js.purge_stream(archives.STREAM, subject=c.subject)
            add(None, "abandoned_upload")

    async def expired_rows() -> None:
        for kind, n in (await delete_expired_rows(deps.pool, now)).items():
            add(None, kind, n)

    async def late_messages() -> None:
        if late := await purge_late_messages(deps):
            add(None, "late_messages", late)

    for step in (raw_archives, expired_rows, late_messages):
        await _alone(step)
    total: Counter[str] = Counter()
    for owner, kinds in by_owner.items():
        total.update(await audit.write(deps.pool, audit.tag_of(owner), audit.Trigger.SWEEP, kinds))

    async def missed_completions() -> None:
        for user_id in await completion.candidates(deps.pool):
            await announce_if_complete(deps, user_id)

    await _alone(missed_completions)
    return dict(total)


async def _alone(step: Callable[[], Awaitable[None]]) -> None:
    try:
        await step()
    except Exception as e:  # logged with its step; the next sweep tries it again
        events.sweep_failed(e, step.__name__)


async def delete_expired_rows(pool: asyncpg.Pool, now: datetime) -> dict[str, int]:
    """Rows of any table with an `expires_at` column, once expired (discovered, not listed)."""
    out: dict[str, int] = {}
    for schema, table in await pool.fetch(_EXPIRING_TABLES_SQL):
        name = f"{erasure.ident(schema)}.{erasure.ident(table)}"
        status = await pool.execute(
            f"delete from {name} where expires_at < $1::timestamptz",  # noqa: S608 - catalog
            now,
        )
        if n := int(status.split()[-1]):
            out[table] = n
    return out


# Streams whose subjects stay few (work queues drain, dead letters are rare): the sweep checks
# every user token there against the tombstones. EVENTS is covered by the erase passes.
_LATE_STREAMS = (Stream.DLQ, Stream.FOLLOWS, Stream.ARCHIVES)


async def purge_late_messages(deps: Deps) -> int:
    """Messages published for an erased user after their erase finished (an adapter's dead
    letter, a replayed command): found by the user token of their subject, deleted."""
    by_tag: dict[str, list[tuple[str, str]]] = {}
    for stream in _LATE_STREAMS:
        for subject in await erasure.subject_counts(deps.js, stream.value, ">"):
            token = user_id_of(subject)
            if USER_ID_RE.fullmatch(token):
                by_tag.setdefault(user_hash(token), []).append((stream.value, subject))
    if not by_tag:
        return 0
    erased = await deps.pool.fetch(
        "select user_hash from erased_users where user_hash = any($1::text[])", list(by_tag)
    )
    purged = 0
    for row in erased:
        for stream_name, subject in by_tag[row["user_hash"]]:
            purged += await erasure.delete_subject(deps.js, stream_name, subject)
    return purged


async def run(deps: Deps) -> None:
    """Sweep every `sweep_interval_s` (one replica at a time); never dies on a failure."""
    interval = deps.settings.sweep_interval_s
    token = secrets.token_hex(8)
    while True:
        await asyncio.sleep(interval)
        try:
            if await deps.redis.set(LEASE_KEY, token, nx=True, px=int(interval * 900)):
                await sweep_once(deps)
        except Exception as e:  # logged and counted; the next sweep retries
            events.sweep_failed(e, "sweep")
