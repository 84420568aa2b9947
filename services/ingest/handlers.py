"""Handle `archive.uploaded`: stream, parse, store the graph, publish what happened."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from hqx import db, erasure, subjects
from hqx.consumer import Delivery
from hqx.errors import ArchiveRejectedError, Reason
from hqx.messages import ArchiveRejected, ArchiveUnpacked, ArchiveUploaded, GraphIngested, Message
from hqx.outcomes import Done, Outcome, Skipped
from hqx.service import Service
from services.ingest import events, graphs
from services.ingest.archive import ParsedArchive, parse_archive
from services.ingest.objects import ObjectChunks, sync_chunks
from services.ingest.settings import Settings

HEARTBEAT_TASK = "ingest-heartbeat"  # named, so that a test can see none is left running


@dataclass(frozen=True)
class Deps:
    svc: Service
    settings: Settings


def msg_id(msg: ArchiveUploaded, what: str) -> str:
    """Content-derived: a redelivered upload publishes nothing twice (dedup window)."""
    key = f"{msg.user_id}|{msg.object_name}|{msg.sha256 or ''}|{what}"
    return "ingest-" + hashlib.sha256(key.encode()).hexdigest()[:40]


async def handle_archive_uploaded(msg: ArchiveUploaded, delivery: Delivery, deps: Deps) -> Outcome:
    """Erased user: the archive is deleted, nothing read. Redelivery: the same events again
    (deduplicated), no new graph."""
    if await db.is_erased(deps.svc.pool, msg.user_id):
        # An upload that finished as its owner was erased: nothing else would delete it before
        # the 24 h sweep (no `archive.unpacked` follows for an erased person).
        await erasure.purge_archive(deps.svc.js, msg.object_name)
        events.upload_skipped(msg.user_id, "user_erased")
        return Skipped("user_erased")
    started = time.perf_counter()
    # NOTE: a redelivery after success must not read the object: the purger may have deleted it.
    stored = await graphs.stored_from(deps.svc.pool, msg.user_id, msg.object_name)
    try:
        if stored is None:
            async with _heartbeat(delivery, deps.settings.heartbeat_s):
                parsed = await _parse(msg, deps)
                events.archive_parsed(parsed.read_bytes, parsed.inflated_bytes)
                if msg.proven_x_account_id not in (None, parsed.owner.account_id):
                    raise ArchiveRejectedError(
                        Reason.OWNER_MISMATCH, "this archive belongs to another X account"
                    )
                stored = await graphs.store(deps.svc.pool, msg.user_id, msg.object_name,
                                            msg.occurred_at, msg.sha256, parsed)  # fmt: skip
    except ArchiveRejectedError as e:
        events.archive_rejected(msg.user_id, e.code.value)
        rejected = ArchiveRejected(user_id=msg.user_id, object_name=msg.object_name,
                                   reason=e.code.value, message=e.message)  # fmt: skip
        await _publish(deps, subjects.archive_rejected, rejected, msg, "rejected")
        await _unpacked(deps, msg)
        return Done(e.code.value)
    if stored.status in ("erased", "superseded"):
        events.upload_skipped(msg.user_id, stored.status)
        await _unpacked(deps, msg)
        return Skipped(stored.status)
    ingested = GraphIngested(
        user_id=msg.user_id, owner_x_account_id=str(stored.owner_x_id),
        owner_username=stored.owner_username, following_count=stored.following_count,
        follower_count=stored.follower_count, graph_version=stored.version,
    )  # fmt: skip
    await _publish(deps, subjects.graph_ingested, ingested, msg, "ingested")
    await _unpacked(deps, msg)
    if stored.status == "stored":
        events.graph_stored(msg.user_id, stored.version, stored.following_count,
                            stored.follower_count, time.perf_counter() - started)  # fmt: skip
    return Done(stored.status)


async def _parse(msg: ArchiveUploaded, deps: Deps) -> ParsedArchive:
    chunks = await ObjectChunks.open(deps.svc.js, msg.object_name, deps.settings.fetch_chunks)
    loop = asyncio.get_running_loop()
    try:
        return await asyncio.to_thread(
            parse_archive, sync_chunks(loop, chunks), deps.settings.limits()
        )
    finally:
        await chunks.close()


@contextlib.asynccontextmanager
async def _heartbeat(delivery: Delivery, every_s: float) -> AsyncIterator[None]:
    """`in_progress` on a timer while a big archive streams and its rows are copied.

    NOTE: the beat ends on `stop`, not only on a cancel: nats-py can swallow a cancel that lands
    inside its call (`hqx.service._cancel`), and a beat that missed it would go on forever. It
    is not awaited either: a handler must not hang on a call that lost its cancel.
    """
    stop = asyncio.Event()

    async def beat() -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), every_s)
                return  # stopped (also right after a beat that swallowed its cancel)
            with contextlib.suppress(Exception):
                await delivery.in_progress()

    task = asyncio.create_task(beat(), name=HEARTBEAT_TASK)
    try:
        yield
    finally:
        stop.set()
        task.cancel()


async def _publish(deps: Deps, subject: Callable[[str], str], message: Message,
                   msg: ArchiveUploaded, what: str) -> None:  # fmt: skip
    await deps.svc.publish(subject(msg.user_id), message, msg_id=msg_id(msg, what))


async def _unpacked(deps: Deps, msg: ArchiveUploaded) -> None:
    unpacked = ArchiveUnpacked(user_id=msg.user_id, object_name=msg.object_name)
    await _publish(deps, subjects.archive_unpacked, unpacked, msg, "unpacked")
