"""Forward first: a late joiner's batch waits while people's own migrations are queued.

At an exodus peak the platform is short of CPU (a full day on 2 cores: load average 18, and
people who started then made their first follow 64 to 314 s later, their batches queued in
the forward lane). Late joiners' batches (the `reconnect` lanes) are half the day's follows and
most of its messages; nothing promises them a time, so while any adapter's forward lane holds
batches no worker has taken yet, a reconnect worker waits before taking its turn, at most
`max_wait_s`, then goes anyway: the late joiners' lag stays bounded.

NOTE: two earlier attempts failed on full days (BENCHMARKS.md): fewer reconnect workers slowed
people's own follows that rode the late joiners' lane (the matcher now plans those `forward`,
`services.matcher.match.reverse`), and a Redis lease per forward batch stalled whole lanes
when a cancelled keeper kept renewing it. Here nothing is held or cancelled: one reader polls
the forward durables' undelivered counts, and a waiting worker only sleeps.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence

from nats.js import JetStreamContext

from hqx.consumer import Delivery
from hqx.subjects import CONSUMERS, ConsumerSpec

# Below the shortest ack wait of a follow lane (15 s in `make bench`, 120 s by default).
HEARTBEAT_S = 5.0


def is_forward(spec: ConsumerSpec) -> bool:
    """An adapter's durable of people's own migrations (`follow.requested.*`)."""
    return spec.durable.endswith("-follow-requested")


def forward_lanes() -> tuple[ConsumerSpec, ...]:
    return tuple(s for s in CONSUMERS if is_forward(s))


class ForwardFirst:
    def __init__(
        self,
        js: Callable[[], JetStreamContext],
        lanes: Sequence[ConsumerSpec],
        *,
        poll_s: float = 1.0,
        max_wait_s: float = 20.0,
    ) -> None:
        self.js = js
        self.lanes = tuple(lanes)
        self.poll_s = poll_s
        self.max_wait_s = max_wait_s
        self.queued = 0  # forward batches no worker has taken, at the last reading

    async def read(self) -> int:
        """Undelivered batches in the forward lanes now (a lane that cannot be read counts 0)."""
        total = 0
        for spec in self.lanes:
            with contextlib.suppress(Exception):
                info = await self.js().consumer_info(spec.stream.value, spec.durable)
                total += info.num_pending or 0
        self.queued = total
        return total

    async def watch(self) -> None:
        """The one reader (a background task): refresh `queued` every `poll_s`."""
        while True:
            await self.read()
            await asyncio.sleep(self.poll_s)

    async def turn(self, delivery: Delivery) -> float:
        """Wait while forward batches are queued, at most `max_wait_s`; returns the wait (s).

        The message is marked in progress every `HEARTBEAT_S` while it waits (an ack wait can be
        shorter than the longest wait) and once more at the end, so the handler keeps its whole
        ack wait and no other replica is handed the message meanwhile.
        """
        if self.queued <= 0:
            return 0.0
        started = beat = time.monotonic()
        while self.queued > 0 and (now := time.monotonic()) - started < self.max_wait_s:
            if now - beat >= HEARTBEAT_S:
                beat = now
                with contextlib.suppress(Exception):
                    await delivery.in_progress()
            await asyncio.sleep(self.poll_s)
        with contextlib.suppress(Exception):
            await delivery.in_progress()
        return time.monotonic() - started
