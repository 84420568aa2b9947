"""Service lifecycle on real servers: stop ends every background job, even a stubborn one."""

from __future__ import annotations

import asyncio

from hqx.service import Service
from hqx.settings import ServiceSettings
from tests.eventually import eventually


async def test_stop_ends_a_background_job_that_swallowed_its_cancellation(
    settings: ServiceSettings,
) -> None:
    """nats-py's flush path catches CancelledError: a sweep cancelled there keeps looping."""
    ticks = 0
    swallowed = asyncio.Event()

    async def sweep() -> None:
        nonlocal ticks
        while True:
            try:
                await asyncio.sleep(0.01)
            except asyncio.CancelledError:
                if swallowed.is_set():
                    raise
                swallowed.set()  # as `Client._flush_pending` does: carry on as if not cancelled
            ticks += 1

    svc = Service("purger", settings, uses_db=False, uses_redis=False)
    svc.background(sweep)
    await svc.start()
    await eventually(lambda: ticks > 0)  # the job is running
    stop = asyncio.create_task(svc.stop())
    done, _ = await asyncio.wait({stop}, timeout=30)
    if not done:  # NOTE: wait_for would cancel stop(), which awaits the job: never returns
        for t in asyncio.all_tasks():
            if t.get_name() == "purger-background":
                t.cancel()
                t.cancel()
        await stop
    assert done, "stop() never returned: the background job outlived it"
    assert swallowed.is_set()
    after = ticks
    await asyncio.sleep(0.05)
    assert ticks == after  # the job is over, not left running on the shared event loop
