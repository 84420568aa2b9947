"""The ingest heartbeat ends with its archive, even when its cancel is swallowed.

nats-py can swallow a cancel that lands inside one of its calls (`hqx.service._cancel`); the
stand-in below does exactly that, which the real client does only when the timing is unlucky.
"""

from __future__ import annotations

import asyncio

from hqx.consumer import Delivery
from services.ingest.handlers import HEARTBEAT_TASK, _heartbeat
from tests.eventually import eventually


class SwallowsCancel:
    """A message whose `in_progress` catches CancelledError and returns, as nats-py can."""

    def __init__(self) -> None:
        self.beats = 0
        self.swallow = True
        self.inside = asyncio.Event()

    async def in_progress(self) -> None:
        self.beats += 1
        self.inside.set()
        try:
            await asyncio.sleep(0.2)
        except asyncio.CancelledError:
            if not self.swallow:
                raise


def beats_left() -> list[asyncio.Task]:
    return [t for t in asyncio.all_tasks() if t.get_name() == HEARTBEAT_TASK]


async def test_a_beat_whose_cancel_is_swallowed_still_ends_with_its_archive() -> None:
    raw = SwallowsCancel()
    delivery = Delivery("hqx.archive.uploaded.u1", 1, 1, {}, raw)  # type: ignore[arg-type]
    try:
        async with _heartbeat(delivery, every_s=0.01):
            await eventually(lambda: raw.beats >= 2)  # it beats while the archive is worked on
            raw.inside.clear()
            await raw.inside.wait()  # leave while the beat is in the call: the cancel lands there
        await eventually(lambda: not beats_left(), timeout=5)  # before the fix: it beat forever
    finally:
        raw.swallow = False  # a beat left over must not outlive the test
        for t in beats_left():
            t.cancel()
