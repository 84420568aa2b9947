"""The subscriber wrapper against real JetStream: exactly once, DLQ with reasons, retries."""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from hqx import embedded, subjects
from hqx.consumer import Delivery
from hqx.messages import ArchiveUploaded, DeadLetter
from hqx.outcomes import Done, Outcome, RetryLater
from hqx.service import Service
from hqx.settings import ServiceSettings
from hqx.subjects import Stream
from tests.eventually import drained, eventually

SPEC = subjects.CONSUMERS_BY_SERVICE["ingest"][0]


async def dlq_letters(svc: Service) -> list[DeadLetter]:
    info = await svc.js.stream_info(Stream.DLQ.value)
    out = []
    for seq in range(info.state.first_seq, info.state.last_seq + 1):
        if info.state.messages == 0:
            break
        raw = await svc.js.get_msg(Stream.DLQ.value, seq)
        out.append(DeadLetter.model_validate_json(raw.data))
    return out


@pytest.fixture
async def service(settings: ServiceSettings):
    seen: Counter[str] = Counter()
    behaviour: dict[str, str] = {}

    async def handler(msg: ArchiveUploaded, delivery: Delivery) -> Outcome:
        seen[msg.object_name] += 1
        mode = behaviour.get(msg.object_name)
        if mode == "boom":
            raise RuntimeError("unexpected")
        if mode == "later" and seen[msg.object_name] == 1:
            return RetryLater(0.05, "test")
        return Done()

    svc = Service("ingest", settings, uses_db=False, uses_redis=False)
    svc.consume(SPEC, (ArchiveUploaded,), handler)
    await svc.start()
    svc.seen = seen  # type: ignore[attr-defined]
    svc.behaviour = behaviour  # type: ignore[attr-defined]
    yield svc
    await svc.stop()


def uploaded(user_id: str, name: str) -> ArchiveUploaded:
    return ArchiveUploaded(user_id=user_id, object_name=name, size=1)


async def test_valid_message_reaches_handler_exactly_once(service: Service, user_id: str) -> None:
    for i in range(20):
        await service.publish(subjects.archive_uploaded(user_id), uploaded(user_id, f"a{i}"))
    await drained(service.js, SPEC.stream.value, SPEC.durable)
    assert service.seen == {f"a{i}": 1 for i in range(20)}  # type: ignore[attr-defined]
    assert await dlq_letters(service) == []


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"{not json", "bad_json"),
        (
            json.dumps({"schema": "hqx.archive.uploaded/v9", "user_id": "x"}).encode(),
            "unknown_schema",
        ),
        (
            json.dumps({"schema": "hqx.archive.uploaded/v1", "user_id": "USER"}).encode(),
            "schema_invalid",
        ),
    ],
)
async def test_malformed_message_is_dead_lettered_and_consumer_goes_on(
    service: Service, user_id: str, payload: bytes, reason: str
) -> None:
    payload = payload.replace(b"USER", user_id.encode())
    await service.js.publish(subjects.archive_uploaded(user_id), payload)
    await service.publish(subjects.archive_uploaded(user_id), uploaded(user_id, "after"))
    await drained(service.js, SPEC.stream.value, SPEC.durable)
    letters = await dlq_letters(service)
    assert [(d.reason, d.service, d.original_subject) for d in letters] == [
        (reason, "ingest", subjects.archive_uploaded(user_id))
    ]
    assert letters[0].payload_b64  # the original is kept whole
    assert service.seen["after"] == 1  # type: ignore[attr-defined]
    dlq_subject = subjects.dlq("ingest", user_id)
    assert (await service.js.get_last_msg(Stream.DLQ.value, dlq_subject)).subject == dlq_subject


async def test_retry_later_redelivers(service: Service, user_id: str) -> None:
    service.behaviour["x"] = "later"  # type: ignore[attr-defined]
    await service.publish(subjects.archive_uploaded(user_id), uploaded(user_id, "x"))
    await eventually(lambda: service.seen["x"] == 2)  # type: ignore[attr-defined]
    await drained(service.js, SPEC.stream.value, SPEC.durable)
    assert await dlq_letters(service) == []


async def test_unexpected_error_retries_then_dead_letters(
    service: Service, user_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("hqx.consumer.backoff_delay", lambda spec, attempt: 0.01)
    service.behaviour["bad"] = "boom"  # type: ignore[attr-defined]
    await service.publish(subjects.archive_uploaded(user_id), uploaded(user_id, "bad"))
    letters = await eventually(lambda: dlq_letters(service), timeout=20)
    assert letters[0].reason == "retries_exhausted"
    assert letters[0].error_class == "RuntimeError"
    assert service.seen["bad"] == SPEC.max_deliver  # type: ignore[attr-defined]


async def test_a_store_restart_is_waited_out_in_place_not_naked(
    settings: ServiceSettings, user_id: str, tmp_path: Path
) -> None:
    """Redis is down when the message comes and back a few seconds later: the handler runs
    again in place and the message is done on its first delivery (no nak to lose)."""
    store = embedded.start_redis(tmp_path / "before")
    port = int(store.url.rsplit(":", 1)[1].split("/")[0])
    r = aioredis.from_url(store.url)
    deliveries: list[int] = []

    async def handler(msg: ArchiveUploaded, delivery: Delivery) -> Outcome:
        deliveries.append(delivery.num_delivered)
        await r.incr(f"seen:{msg.object_name}")
        return Done()

    svc = Service("ingest", settings, uses_db=False, uses_redis=False)
    svc.consume(SPEC, (ArchiveUploaded,), handler)
    await svc.start()
    try:
        store.stop()
        await svc.publish(subjects.archive_uploaded(user_id), uploaded(user_id, "x"))
        await eventually(lambda: len(deliveries) >= 3, timeout=10)  # failed, paused, again
        store = embedded.start_redis(tmp_path / "after", port=port)
        await drained(svc.js, SPEC.stream.value, SPEC.durable, timeout=30)
        assert await r.get("seen:x") == b"1"
        assert set(deliveries) == {1}  # never redelivered by JetStream
        assert await dlq_letters(svc) == []
    finally:
        await svc.stop()
        await r.aclose()
        store.stop()


async def test_a_lane_without_max_deliver_counts_failures_not_window_waits(
    settings: ServiceSettings,
) -> None:
    """A follow lane naks a batch back for every limit window it waits (max_deliver=-1), so
    `num_delivered` is no failure count there: the service counts each message's own failures
    in Redis, by stream sequence (a redelivery may land on another replica)."""
    lane = subjects.CONSUMERS_BY_SERVICE["mastodon_adapter"][0]
    assert lane.max_deliver == -1
    seq = random.randrange(1, 2**40)

    def delivery(sequence: int, num_delivered: int) -> Delivery:
        return Delivery("follow.requested.mastodon.u1", sequence, num_delivered, {}, None)

    svc, other = (Service("mastodon_adapter", settings, uses_db=False) for _ in range(2))
    await svc.start()
    await other.start()
    try:
        # Failing after 9 window waits, then again: failures 1 and 2, not deliveries 10, 11.
        first = await svc._failures(lane, delivery(seq, 10))
        second = await other._failures(lane, delivery(seq, 11))  # the other replica
        another = await svc._failures(lane, delivery(seq + 1, 7))
        bounded = await svc._failures(SPEC, delivery(seq, 4))  # max_deliver > 0: JetStream's
    finally:
        await svc.stop()
        await other.stop()
    assert (first, second, another, bounded) == (1, 2, 1, 4)
