"""The matcher service: one durable over its events, plus the dispatch and stats sweeps."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from hqx import subjects
from hqx.service import Service
from services.matcher import dispatch, handlers, stats
from services.matcher.settings import Settings

log = logging.getLogger(__name__)


def create(settings: Settings) -> Service:
    svc = Service("matcher", settings)
    (spec,) = subjects.CONSUMERS_BY_SERVICE["matcher"]

    async def on_message(message, delivery):  # type: ignore[no-untyped-def]
        return await handlers.handle_event(message, delivery, svc, settings)

    svc.consume(spec, handlers.ACCEPTED, on_message, concurrency=settings.concurrency)
    svc.background(lambda: sweep(svc, settings))
    return svc


async def sweep(svc: Service, settings: Settings) -> None:
    """Publish coalesced `match.found`, and re-dispatch plans a crash left unsent."""
    last_unsent = time.monotonic()
    while True:
        with contextlib.suppress(Exception):
            # NOTE: bounded per sweep: under an exodus burst, notifications lag behind (stats
            # stay queryable live) instead of taking the database from the matching itself.
            await stats.publish_dirty(
                svc.pool,
                lambda s, m, i: svc.publish(s, m, msg_id=i),
                settings.stats_per_sweep,
                settings.stats_settle_s,
            )
            if time.monotonic() - last_unsent >= settings.undispatched_after_s:
                last_unsent = time.monotonic()
                for network, owners in (
                    await dispatch.unsent(svc.pool, settings.undispatched_after_s)
                ).items():
                    await handlers.publish_plans(
                        svc, settings, handlers.plans.Work(dispatch={network: owners})
                    )
        await asyncio.sleep(settings.sweep_interval_s)
