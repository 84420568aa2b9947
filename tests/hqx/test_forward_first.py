"""Forward first, against real JetStream: late joiners wait while migrations are queued."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace

import pytest
from nats.errors import TimeoutError as NatsTimeoutError

from hqx import bus, forward_first
from hqx.consumer import Delivery
from hqx.forward_first import ForwardFirst, forward_lanes
from hqx.messages import FollowRequested, FollowTarget
from hqx.service import Service
from hqx.settings import ServiceSettings
from hqx.subjects import CONSUMERS_BY_SERVICE, Network, Stream, follow_reconnect, follow_requested

MASTO = Network.MASTODON
FORWARD, RECONNECT = CONSUMERS_BY_SERVICE["mastodon_adapter"]


def batch(user_id: str, n: int) -> FollowRequested:
    target = FollowTarget(x_account_id=str(n + 1), account=f"a{n}@example.social")
    return FollowRequested(user_id=user_id, network=MASTO, targets=(target,))


async def take(svc: Service, durable: str) -> Delivery:
    sub = await svc.js.pull_subscribe_bind(durable, Stream.FOLLOWS.value)
    [msg] = await sub.fetch(1, timeout=5)
    meta = msg.metadata
    return Delivery(msg.subject, meta.sequence.stream, meta.num_delivered, {}, msg)


async def test_late_joiners_wait_while_forward_batches_are_queued(
    settings: ServiceSettings, user_id: str
) -> None:
    svc = Service("mastodon_adapter", settings, uses_db=False, uses_redis=False)
    await svc.start()
    first = ForwardFirst(lambda: svc.js, forward_lanes(), poll_s=0.05, max_wait_s=0.6)
    watcher = asyncio.create_task(first.watch())
    try:
        assert {s.durable for s in forward_lanes()} == {
            "mastodon-adapter-follow-requested",
            "bluesky-adapter-follow-requested",
        }
        assert await first.read() == 0
        for n in range(3):
            await svc.publish(follow_requested(MASTO, user_id), batch(user_id, n))
        await svc.publish(follow_reconnect(MASTO, user_id), batch(user_id, 9))
        assert await first.read() == 3  # the late joiner's batch is not counted
        late = await take(svc, RECONNECT.durable)

        # queued all along: the late joiner goes after the longest wait, not for ever
        started = time.monotonic()
        waited = await first.turn(late)
        assert 0.6 <= waited and time.monotonic() - started < 5

        # the forward lane is taken while a late joiner waits: it goes then, not at its limit
        first.max_wait_s = 60.0
        turn = asyncio.create_task(first.turn(late))
        sub = await svc.js.pull_subscribe_bind(FORWARD.durable, Stream.FOLLOWS.value)
        for msg in await sub.fetch(3, timeout=5):
            await msg.ack()
        assert await asyncio.wait_for(turn, 10) < 10
        assert await first.read() == 0
        assert await first.turn(late) == 0.0
        await late.raw.ack()
    finally:
        watcher.cancel()
        await svc.stop()


async def test_a_waiting_late_joiner_keeps_its_message(
    settings: ServiceSettings, user_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A wait longer than the lane's ack wait: the message is not handed to another worker."""
    monkeypatch.setattr(forward_first, "HEARTBEAT_S", 0.3)
    svc = Service("mastodon_adapter", settings, uses_db=False, uses_redis=False)
    await svc.start()
    try:
        await bus.ensure_consumer(svc.js, replace(RECONNECT, ack_wait_s=1.0))
        first = ForwardFirst(lambda: svc.js, forward_lanes(), poll_s=0.05, max_wait_s=2.5)
        await svc.publish(follow_requested(MASTO, user_id), batch(user_id, 1))
        await svc.publish(follow_reconnect(MASTO, user_id), batch(user_id, 2))
        assert await first.read() == 1
        late = await take(svc, RECONNECT.durable)
        assert await first.turn(late) >= 2.5
        sub = await svc.js.pull_subscribe_bind(RECONNECT.durable, Stream.FOLLOWS.value)
        with pytest.raises(NatsTimeoutError):
            await sub.fetch(1, timeout=0.5)  # not redelivered: still this worker's
        await sub.unsubscribe()
        await late.raw.ack()
    finally:
        await svc.stop()
