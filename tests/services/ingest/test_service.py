"""The ingest service on real JetStream, object store and PostgreSQL."""

from __future__ import annotations

import hashlib
import random
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta

import asyncpg
import pytest
from prometheus_client import REGISTRY

from hqx import db, erasure, subjects
from hqx.messages import ArchiveRejected, ArchiveUnpacked, ArchiveUploaded, GraphIngested
from hqx.service import Service
from hqx.settings import ServiceSettings
from hqx.subjects import ARCHIVE_BUCKET, Stream
from services.ingest.app import create
from services.ingest.settings import Settings
from tests.eventually import drained, eventually
from tests.factories.archives import (
    HOSTILE_MAX_ENTRIES,
    ArchiveSpec,
    build_archive,
    hostile_corpus,
    random_ids,
)

SPEC = subjects.CONSUMERS_BY_SERVICE["ingest"][0]


@pytest.fixture
async def ingest(settings: ServiceSettings) -> AsyncIterator[Service]:
    svc = create(Settings(**settings.model_dump(), max_entries=HOSTILE_MAX_ENTRIES))
    await svc.start()
    yield svc
    await svc.stop()


async def upload(svc: Service, user_id: str, data: bytes, **kw: object) -> ArchiveUploaded:
    name = f"{user_id}-{uuid.uuid4().hex[:8]}.zip"
    store = await svc.archives()
    await store.put(name, data)
    msg = ArchiveUploaded(user_id=user_id, object_name=name, size=len(data),
                          sha256=hashlib.sha256(data).hexdigest(), **kw)  # type: ignore[arg-type]  # fmt: skip
    await svc.publish(subjects.archive_uploaded(user_id), msg)
    return msg


async def events_of(svc: Service, subject: str) -> list[bytes]:
    info = await svc.js.stream_info(Stream.EVENTS.value, subjects_filter=subject)
    if not info.state.subjects:
        return []
    sub = await svc.js.subscribe(subject, ordered_consumer=True)
    out = []
    for _ in range(sum(info.state.subjects.values())):
        out.append((await sub.next_msg(timeout=5)).data)
    await sub.unsubscribe()
    return out


async def edges(pool: asyncpg.Pool, user_id: str, direction: int) -> list[int]:
    rows = await pool.fetch(
        "select x_account_id from graph_edges where user_id = $1 and direction = $2"
        " order by x_account_id", user_id, direction,
    )  # fmt: skip
    return [r[0] for r in rows]


async def test_archive_becomes_graph_and_events(
    ingest: Service, pool: asyncpg.Pool, user_id: str
) -> None:
    rng = random.Random(3)
    spec = ArchiveSpec(following=random_ids(300, rng), follower=random_ids(500, rng), parts=2,
                       nested="twitter-2024", macosx=True, streamed=True)  # fmt: skip
    data = build_archive(spec)
    read_before, inflated_before = bytes_counted()
    msg = await upload(ingest, user_id, data)
    got = await eventually(lambda: events_of(ingest, subjects.graph_ingested(user_id)))
    event = GraphIngested.model_validate_json(got[0])
    assert (event.owner_x_account_id, event.owner_username) == (spec.owner_id, spec.username)
    assert (event.following_count, event.follower_count, event.graph_version) == (300, 500, 1)
    assert await edges(pool, user_id, 1) == sorted(spec.following)
    assert await edges(pool, user_id, 2) == sorted(spec.follower)
    user = await pool.fetchrow("select x_account_id, x_username from users where id = $1", user_id)
    assert (str(user["x_account_id"]), user["x_username"]) == (spec.owner_id, spec.username)
    unpacked = await eventually(lambda: events_of(ingest, subjects.archive_unpacked(user_id)))
    assert ArchiveUnpacked.model_validate_json(unpacked[0]).object_name == msg.object_name
    objects = await ingest.js.stream_info(f"OBJ_{ARCHIVE_BUCKET}")
    assert objects.state.consumer_count == 0  # the reader's consumer is gone, not left to expire
    read, inflated = bytes_counted()
    assert read - read_before == len(data)  # the dashboards' bytes read and inflated
    assert 800 * 100 < inflated - inflated_before < len(data) * 20


def bytes_counted() -> tuple[float, float]:
    def value(name: str) -> float:
        return REGISTRY.get_sample_value(name, {"service": "ingest"}) or 0.0

    return value("hqx_archive_bytes_read_total"), value("hqx_archive_bytes_inflated_total")


async def test_redelivery_and_reupload_leave_one_consistent_graph(
    ingest: Service, pool: asyncpg.Pool, user_id: str
) -> None:
    first = ArchiveSpec(following=[1, 2, 3], follower=[2**62, 5])
    msg = await upload(ingest, user_id, build_archive(first))
    await drained(ingest.js, SPEC.stream.value, SPEC.durable)
    # The same upload delivered again (e.g. an ack lost): no new version, no second event.
    await ingest.publish(subjects.archive_uploaded(user_id), msg)
    await drained(ingest.js, SPEC.stream.value, SPEC.durable)
    assert await pool.fetchval("select version from graphs where user_id = $1", user_id) == 1
    assert len(await events_of(ingest, subjects.graph_ingested(user_id))) == 1
    assert await edges(pool, user_id, 1) == [1, 2, 3]
    # Redelivered again after the purger deleted the raw archive: still no rejection.
    await (await ingest.archives()).delete(msg.object_name)
    await ingest.publish(subjects.archive_uploaded(user_id), msg)
    await drained(ingest.js, SPEC.stream.value, SPEC.durable)
    assert await events_of(ingest, subjects.archive_rejected(user_id)) == []
    assert len(await events_of(ingest, subjects.graph_ingested(user_id))) == 1
    # A newer upload replaces the graph entirely.
    await upload(ingest, user_id, build_archive(ArchiveSpec(following=[9], follower=[4, 5])))
    await drained(ingest.js, SPEC.stream.value, SPEC.durable)
    assert await pool.fetchval("select version from graphs where user_id = $1", user_id) == 2
    assert (await edges(pool, user_id, 1), await edges(pool, user_id, 2)) == ([9], [4, 5])
    # An older upload processed late never replaces the newer graph.
    late = await upload(ingest, user_id, build_archive(ArchiveSpec(following=[77])),
                        occurred_at=msg.occurred_at - timedelta(hours=1))  # fmt: skip
    await drained(ingest.js, SPEC.stream.value, SPEC.durable)
    assert await edges(pool, user_id, 1) == [9]
    unpacked = [ArchiveUnpacked.model_validate_json(d).object_name
                for d in await events_of(ingest, subjects.archive_unpacked(user_id))]  # fmt: skip
    assert late.object_name in unpacked


async def test_every_hostile_archive_is_rejected_with_no_other_effect(
    ingest: Service, pool: asyncpg.Pool
) -> None:
    corpus = hostile_corpus()
    users = {case: f"h{uuid.uuid4().hex[:12]}" for case in corpus}
    for case, (data, _) in corpus.items():
        await upload(ingest, users[case], data)
    await drained(ingest.js, SPEC.stream.value, SPEC.durable, timeout=120)
    wrong = {}
    for case, (_, code) in corpus.items():
        u = users[case]
        rejected = [ArchiveRejected.model_validate_json(d)
                    for d in await events_of(ingest, subjects.archive_rejected(u))]  # fmt: skip
        got = (
            [r.reason for r in rejected],
            len(await events_of(ingest, subjects.archive_unpacked(u))),
            len(await events_of(ingest, subjects.graph_ingested(u))),
            await pool.fetchval("select count(*) from users where id = $1", u),
            await pool.fetchval("select count(*) from graph_edges where user_id = $1", u),
        )
        if got != ([code.value], 1, 0, 0, 0):
            wrong[case] = got
    assert wrong == {}
    dlq = await ingest.js.stream_info(Stream.DLQ.value)
    assert dlq.state.messages == 0


async def test_owner_mismatch_with_proven_id(
    ingest: Service, pool: asyncpg.Pool, user_id: str
) -> None:
    data = build_archive(ArchiveSpec(following=[1], follower=[2]))
    await upload(ingest, user_id, data, proven_x_account_id="42")
    got = await eventually(lambda: events_of(ingest, subjects.archive_rejected(user_id)))
    assert ArchiveRejected.model_validate_json(got[0]).reason == "owner_mismatch"
    assert await pool.fetchval("select count(*) from graph_edges where user_id = $1", user_id) == 0


async def test_erased_user_is_skipped_and_the_archive_deleted(
    ingest: Service, pool: asyncpg.Pool, user_id: str
) -> None:
    await pool.execute("insert into erased_users (user_hash) values ($1)", db.user_hash(user_id))
    msg = await upload(ingest, user_id, build_archive(ArchiveSpec(following=[1], follower=[2])))
    await drained(ingest.js, SPEC.stream.value, SPEC.durable)
    assert await pool.fetchval("select count(*) from users where id = $1", user_id) == 0
    assert await events_of(ingest, subjects.graph_ingested(user_id)) == []
    # An upload that lands after its owner's erase is not left for the 24 h sweep.
    assert await erasure.purge_archive(ingest.js, msg.object_name) == 0


async def test_owner_mismatch_with_id_proven_earlier(
    ingest: Service, pool: asyncpg.Pool, user_id: str
) -> None:
    await pool.execute(
        "insert into users (id, x_account_id, x_proven) values ($1, 42, true)", user_id
    )
    await upload(ingest, user_id, build_archive(ArchiveSpec(following=[1], follower=[2])))
    got = await eventually(lambda: events_of(ingest, subjects.archive_rejected(user_id)))
    assert ArchiveRejected.model_validate_json(got[0]).reason == "owner_mismatch"
    assert await pool.fetchval("select x_account_id from users where id = $1", user_id) == 42
    assert await pool.fetchval("select count(*) from graphs where user_id = $1", user_id) == 0


async def test_missing_object_is_rejected(ingest: Service, user_id: str) -> None:
    msg = ArchiveUploaded(user_id=user_id, object_name="never-uploaded.zip", size=10)
    await ingest.publish(subjects.archive_uploaded(user_id), msg)
    got = await eventually(lambda: events_of(ingest, subjects.archive_rejected(user_id)))
    assert ArchiveRejected.model_validate_json(got[0]).reason == "archive_missing"
    assert len(await events_of(ingest, subjects.archive_unpacked(user_id))) == 1
