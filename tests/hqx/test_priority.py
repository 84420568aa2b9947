"""Forward first, against a real Redis: late joiners' batches yield to running forward batches,
for a bounded time, and never fail because of the priority."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from hqx import priority
from hqx.priority import KEY, ForwardFirst, LaneSettings, prioritised
from hqx.subjects import CONSUMERS_BY_SERVICE

LANES = {
    ("reconnect" if priority.is_reconnect(s) else "requested"): s
    for s in CONSUMERS_BY_SERVICE["mastodon_adapter"]
}


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    r = aioredis.from_url(redis_url)
    await r.delete(KEY)
    yield r
    await r.aclose()


def lanes(redis: aioredis.Redis, log: list[str], gate: asyncio.Event, **kw: float):
    """Both lanes of one adapter around handlers that log when they start and end."""
    settings = LaneSettings(**kw)

    async def forward(message: str, delivery: None) -> str:
        log.append("forward starts")
        await gate.wait()
        log.append("forward ends")
        return message

    async def reconnect(message: str, delivery: None) -> str:
        log.append("reconnect runs")
        return message

    return (
        prioritised(LANES["requested"], settings, lambda: redis, forward),
        prioritised(LANES["reconnect"], settings, lambda: redis, reconnect),
    )


def test_each_adapter_has_one_lane_of_each_kind() -> None:
    for service in ("mastodon_adapter", "bluesky_adapter"):
        kinds = [priority.is_reconnect(s) for s in CONSUMERS_BY_SERVICE[service]]
        assert sorted(kinds) == [False, True], service


async def test_a_late_joiners_batch_waits_until_the_forward_batch_has_ended(
    redis: aioredis.Redis,
) -> None:
    log: list[str] = []
    gate = asyncio.Event()
    forward, reconnect = lanes(redis, log, gate, forward_lease_s=0.2, reconnect_yield_max_s=30)
    running = asyncio.create_task(forward("f", None))
    while "forward starts" not in log or not await redis.exists(KEY):
        await asyncio.sleep(0.01)
    waiting = asyncio.create_task(reconnect("r", None))
    await asyncio.sleep(0.6)  # three leases: the running batch keeps renewing its own
    assert log == ["forward starts"]
    gate.set()
    assert await asyncio.wait_for(asyncio.gather(running, waiting), 10) == ["f", "r"]
    assert log == ["forward starts", "forward ends", "reconnect runs"]


async def test_the_wait_is_bounded_while_forward_batches_keep_running(
    redis: aioredis.Redis,
) -> None:
    log: list[str] = []
    gate = asyncio.Event()
    forward, reconnect = lanes(redis, log, gate, forward_lease_s=0.2, reconnect_yield_max_s=0.3)
    running = asyncio.create_task(forward("f", None))
    while not await redis.exists(KEY):
        await asyncio.sleep(0.01)
    assert await asyncio.wait_for(reconnect("r", None), 10) == "r"
    assert log == ["forward starts", "reconnect runs"]  # the forward batch still runs
    gate.set()
    await running


async def test_with_no_forward_batch_a_late_joiner_goes_at_once(redis: aioredis.Redis) -> None:
    first = ForwardFirst(redis, lease_s=0.5, max_wait_s=30)
    assert await asyncio.wait_for(first.yield_to_forward(), 10) < 1


async def test_a_killed_forward_batch_holds_no_one_past_its_lease(redis: aioredis.Redis) -> None:
    await redis.set(KEY, b"1", px=300)  # what a batch killed mid-run leaves behind
    first = ForwardFirst(redis, lease_s=0.3, max_wait_s=30)
    assert await asyncio.wait_for(first.yield_to_forward(), 10) < 5
    assert not await redis.exists(KEY)


async def test_redis_down_skips_the_priority_and_the_batch_still_runs() -> None:
    dead = aioredis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.2)
    log: list[str] = []
    gate = asyncio.Event()
    gate.set()
    forward, reconnect = lanes(dead, log, gate, reconnect_yield_max_s=30)
    assert await asyncio.wait_for(asyncio.gather(forward("f", None), reconnect("r", None)), 10)
    assert log == ["forward starts", "forward ends", "reconnect runs"]
    await dead.aclose()


def test_zero_turns_the_priority_off(redis: aioredis.Redis) -> None:
    async def handler(message: str, delivery: None) -> str:
        return message

    off = LaneSettings(reconnect_yield_max_s=0)
    for spec in LANES.values():
        assert prioritised(spec, off, lambda: redis, handler) is handler


def test_lane_settings_read_the_adapters_env_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    from services.bluesky_adapter.settings import Settings as Bluesky
    from services.mastodon_adapter.settings import Settings as Mastodon

    monkeypatch.setenv("HQX_MASTODON_ADAPTER_RECONNECT_YIELD_MAX_S", "0.7")
    monkeypatch.setenv("HQX_BLUESKY_ADAPTER_FORWARD_LEASE_S", "0.25")
    assert Mastodon().reconnect_yield_max_s == 0.7
    assert Bluesky().forward_lease_s == 0.25
