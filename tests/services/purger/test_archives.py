"""The raw archive is gone within seconds of ingest finishing, and within 24 h in every failure
path (time compressed): never unpacked, rejected, abandoned mid-upload, deleted with a trace."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from nats.js.errors import NotFoundError

from hqx import db, erasure, subjects
from hqx.erasure import StoredObject
from hqx.messages import ArchiveRejected, ArchiveUnpacked, DataPurged
from hqx.service import Service
from hqx.subjects import ARCHIVE_BUCKET, DAY, Stream
from services.purger import archives, sweep
from services.purger.app import create
from services.purger.handlers import Deps
from services.purger.settings import Settings
from tests.eventually import eventually
from tests.scan import scan_objects, scan_streams
from tests.services.purger.conftest import Clock

NOW = datetime(2026, 11, 25, 12, tzinfo=UTC)


def obj(name: str, age_h: float, *, deleted: bool = False, nuid: str = "n") -> StoredObject:
    return StoredObject(
        ARCHIVE_BUCKET, name, nuid, f"m.{name}", deleted, NOW - timedelta(hours=age_h)
    )


@pytest.mark.parametrize(
    ("age_h", "deleted", "expired"),
    [
        (1, False, False),
        (23.9, False, False),
        (24, False, True),
        (30, False, True),
        (0, True, True),
    ],
)
def test_expired_objects(age_h: float, deleted: bool, expired: bool) -> None:
    o = obj("u1/a.zip", age_h, deleted=deleted)
    assert archives.expired_objects([o], NOW, DAY) == ([o] if expired else [])


def test_abandoned_chunks_spare_live_objects_and_recent_uploads() -> None:
    live = obj("u1/a.zip", 2, nuid="live")
    chunks = [
        archives.Chunks("live", "c.live", NOW - timedelta(hours=2)),
        archives.Chunks("old", "c.old", NOW - timedelta(hours=2)),
        archives.Chunks("busy", "c.busy", NOW - timedelta(minutes=5)),
    ]
    assert [c.nuid for c in archives.abandoned_chunks(chunks, [live], NOW, 3600)] == ["old"]


@pytest.mark.parametrize(
    ("name", "owner"), [("u1/a.zip", "u1"), ("u_1-x/y/z", "u_1-x"), ("../a", None), ("a b/c", None)]
)
def test_owner_of(name: str, owner: str | None) -> None:
    assert archives.owner_of(name) == owner


def user() -> str:
    return f"u{uuid.uuid4().hex[:16]}"


async def put(svc: Service, name: str, data: bytes = b"PK\x03\x04 archive") -> None:
    await (await svc.archives()).put(name, data)


async def gone(svc: Service, name: str) -> bool:
    try:
        await (await svc.archives()).get_info(name)
    except NotFoundError:
        return True
    return False


@pytest.mark.parametrize("event", [ArchiveUnpacked, ArchiveRejected])
async def test_archive_deleted_as_soon_as_ingest_is_done(purger: Service, event: type) -> None:
    me, other = user(), user()
    await put(purger, f"{me}/a.zip")
    await put(purger, f"{other}/a.zip")
    extra = {"reason": "zip_bomb", "message": "no"} if event is ArchiveRejected else {}
    subject = (
        subjects.archive_unpacked if event is ArchiveUnpacked else subjects.archive_rejected
    )(me)
    await purger.publish(subject, event(user_id=me, object_name=f"{me}/a.zip", **extra))
    await eventually(lambda: gone(purger, f"{me}/a.zip"), timeout=10)
    # No trace in the bucket (no deleted-object meta naming it), the other archive intact.
    assert await scan_objects(purger.js, me) == []
    assert [s for s in await scan_streams(purger.js, me) if "OBJ_" in s] == []
    assert not await gone(purger, f"{other}/a.zip")
    audit = await eventually(
        lambda: purger.pool.fetch(
            "select trigger, kind, count from purge_audit where user_hash = $1", db.user_hash(me)
        )
    )
    trigger = "archive_unpacked" if event is ArchiveUnpacked else "archive_rejected"
    assert [tuple(r) for r in audit] == [(trigger, "raw_archive", 1)]
    msg = await eventually(lambda: _last(purger, subjects.data_purged(me)))
    assert DataPurged.model_validate_json(msg.data).kinds == {"raw_archive": 1}


async def _last(svc: Service, subject: str):
    try:
        return await svc.js.get_last_msg(Stream.EVENTS.value, subject)
    except NotFoundError:
        return None


async def test_never_unpacked_archive_goes_after_24h(deps: Deps, clock: Clock) -> None:
    """Ingest crashed, dead-lettered the upload, or never ran: the sweep deletes it at 24 h."""
    me = user()
    svc_put = deps.js
    store = await svc_put.object_store(ARCHIVE_BUCKET)
    await store.put(f"{me}/a.zip", b"PK raw")
    clock.advance(hours=23, minutes=59)
    assert await sweep.sweep_once(deps) == {}
    assert (await store.get_info(f"{me}/a.zip")).name
    clock.advance(minutes=2)
    assert await sweep.sweep_once(deps) == {"raw_archive": 1}
    assert await scan_objects(deps.js, me) == []
    rows = await deps.pool.fetch(
        "select trigger, kind from purge_audit where user_hash = $1", db.user_hash(me)
    )
    assert [tuple(r) for r in rows] == [("sweep", "raw_archive")]


async def test_abandoned_upload_chunks_go_in_progress_ones_stay(deps: Deps, clock: Clock) -> None:
    stream = archives.STREAM
    await deps.js.object_store(ARCHIVE_BUCKET)
    for i in range(3):  # an upload that stopped before its meta was written
        await deps.js.publish(f"$O.{ARCHIVE_BUCKET}.C.abandoned1", f"chunk {i}".encode())
    store = await deps.js.object_store(ARCHIVE_BUCKET)
    await store.put(f"{user()}/kept.zip", b"PK complete")
    clock.advance(minutes=30)
    assert await sweep.sweep_once(deps) == {}
    clock.advance(minutes=31)
    assert await sweep.sweep_once(deps) == {"abandoned_upload": 1}
    left = await deps.js.stream_info(stream, subjects_filter=f"$O.{ARCHIVE_BUCKET}.C.>")
    assert len(left.state.subjects or {}) == 1  # the complete object's chunks
    assert len(await store.list()) == 1


async def test_an_archive_purged_while_the_sweep_lists_chunks_does_not_fail_it(
    deps: Deps, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ingest deletes each archive it unpacked, any time: one gone between the sweep's listing
    of chunk subjects and its read of their last message is skipped, the sweep goes on."""
    await deps.js.object_store(ARCHIVE_BUCKET)
    for nuid in ("unpacked", "abandoned"):
        await deps.js.publish(f"$O.{ARCHIVE_BUCKET}.C.{nuid}", b"chunk")
    listed = erasure.subject_counts

    async def listed_then_one_purged(js: Any, stream: str, flt: str) -> dict[str, int]:
        out = await listed(js, stream, flt)
        if ".C." in flt:
            await js.purge_stream(stream, subject=f"$O.{ARCHIVE_BUCKET}.C.unpacked")
        return out

    monkeypatch.setattr(erasure, "subject_counts", listed_then_one_purged)
    clock.advance(minutes=61)
    assert await sweep.sweep_once(deps) == {"abandoned_upload": 1}


async def test_deleted_object_meta_is_swept(deps: Deps) -> None:
    me = user()
    store = await deps.js.object_store(ARCHIVE_BUCKET)
    await store.put(f"{me}/x.zip", b"PK")
    await store.delete(f"{me}/x.zip")  # the store's own delete leaves a meta naming it
    assert await scan_streams(deps.js, me) != []
    assert await sweep.sweep_once(deps) == {"archive_meta": 1}
    assert await scan_streams(deps.js, me) == []


async def test_bucket_itself_expires_archives_at_24h(purger: Service) -> None:
    """A second guarantee, without any purger running: the bucket's own max age."""
    info = await purger.js.stream_info(archives.STREAM)
    assert info.config.max_age == purger.settings.archive_max_age_s == DAY


async def test_background_sweep_runs_on_its_interval(purger_settings: Settings) -> None:
    clock = Clock(offset=timedelta(hours=25))
    settings = purger_settings.model_copy(update={"sweep_interval_s": 0.2})
    svc = create(settings, clock=clock)
    me = user()
    await svc.start()
    try:
        await put(svc, f"{me}/a.zip")
        await eventually(lambda: gone(svc, f"{me}/a.zip"), timeout=10)
    finally:
        await svc.stop()
