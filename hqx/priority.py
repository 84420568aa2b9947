"""Forward first: a person's own migration outranks late joiners' follows when the bus is busy.

Both adapters have two lanes (`hqx.subjects._follow_lanes`): `requested`, the follows of someone
who just uploaded and watches the progress page, and `reconnect`, the follows that greet a late
joiner, which nobody waits for. On exodus day the two peak together, and the late joiners' lane
alone can keep every process, PostgreSQL and NATS busy (one message per follower). So a forward
batch holds a short lease in Redis while it runs, and a reconnect batch waits while any lease is
held, at most `reconnect_yield_max_s`: the late joiners' lane slows at the peak, never stops, and
runs at full speed as soon as no one is migrating.

The lease is shared by every adapter and replica: they share the machines' CPU and the stores.
Priority is an optimisation only: a Redis error skips it, it never fails a batch.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import redis.asyncio as aioredis
from pydantic import BaseModel
from redis.exceptions import RedisError

from hqx.subjects import ConsumerSpec

KEY = "hqx:priority:forward-busy"
log = logging.getLogger(__name__)
M = TypeVar("M")
D = TypeVar("D")
R = TypeVar("R")


class LaneSettings(BaseModel):
    """Mixed into each adapter's Settings (so read with its env prefix)."""

    # A forward batch re-marks the bus busy this often; the mark outlives it by one period.
    forward_lease_s: float = 0.5
    # Longest a late joiner's batch waits for forward batches (0: no priority).
    reconnect_yield_max_s: float = 2.0


@dataclass(frozen=True)
class ForwardFirst:
    redis: aioredis.Redis
    lease_s: float = 0.5
    max_wait_s: float = 2.0

    @contextlib.asynccontextmanager
    async def forward(self) -> AsyncIterator[None]:
        """Hold the lease for the batch's whole run (re-marked every half lease)."""
        keeper = asyncio.create_task(self._keep_marked())
        try:
            yield
        finally:
            keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keeper

    async def _keep_marked(self) -> None:
        while True:
            try:
                await self.redis.set(KEY, b"1", px=max(int(self.lease_s * 1000), 1))
            except RedisError:
                log.debug("forward lease not set", exc_info=True)
            await asyncio.sleep(self.lease_s / 2)

    async def yield_to_forward(self) -> float:
        """Wait while a forward batch holds the lease, at most `max_wait_s`; the wait in s."""
        started = time.monotonic()
        while (left := self.max_wait_s - (time.monotonic() - started)) > 0:
            try:
                ttl_ms = await self.redis.pttl(KEY)
            except RedisError:
                log.debug("forward lease not read", exc_info=True)
                break
            if ttl_ms <= 0:  # -2: no lease (-1 cannot happen: it is always set with a TTL)
                break
            await asyncio.sleep(min(ttl_ms / 1000, left))
        return time.monotonic() - started


def is_reconnect(spec: ConsumerSpec) -> bool:
    return spec.durable.endswith("-follow-reconnect")


def prioritised(
    spec: ConsumerSpec,
    settings: LaneSettings,
    redis: Callable[[], aioredis.Redis],
    handler: Callable[[M, D], Awaitable[R]],
) -> Callable[[M, D], Awaitable[R]]:
    """`handler` for one of an adapter's lanes: forward batches hold the lease, late joiners'
    batches yield to it first. `redis` is asked per message (the service's, once it runs)."""
    if settings.reconnect_yield_max_s <= 0:
        return handler

    def first() -> ForwardFirst:
        return ForwardFirst(redis(), settings.forward_lease_s, settings.reconnect_yield_max_s)

    if is_reconnect(spec):

        async def yielding(message: M, delivery: D) -> R:
            await first().yield_to_forward()
            return await handler(message, delivery)

        return yielding

    async def leading(message: M, delivery: D) -> R:
        async with first().forward():
            return await handler(message, delivery)

    return leading
