"""The matcher service: one durable over its events, plus the dispatch and stats sweeps."""

from __future__ import annotations

import asyncio
import logging
import time

from hqx import subjects
from hqx.service import Service
from services.matcher import dispatch, due, handlers, plans, stats
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
    """Send settled reverse plans (and any a crash left unsent), publish coalesced stats."""
    backstop_at = 0.0
    while True:
        try:
            send, sent = await due.due(
                svc.pool,
                settings.reverse_settle_s,
                settings.sweep_owners,
                settings.reverse_in_flight_s,
            )
            if (now := time.monotonic()) >= backstop_at:
                backstop_at = now + settings.sweep_backstop_s
                unsent = await dispatch.unsent(
                    svc.pool,
                    settings.reverse_settle_s,
                    settings.sweep_owners,
                    settings.reverse_in_flight_s,
                )
                for network, owners in unsent.items():
                    send.setdefault(network, set()).update(owners)
            if send:
                await handlers.publish_plans(svc, settings, plans.Work(dispatch=send))
            await due.forget(svc.pool, sent)
            # NOTE: bounded per sweep: under an exodus burst, notifications lag behind (stats
            # stay queryable live) instead of taking the database from the matching itself.
            await stats.publish_dirty(
                svc.pool,
                lambda s, m, i: svc.publish(s, m, msg_id=i),
                settings.stats_per_sweep,
                settings.stats_settle_s,
                settings.stats_s_per_edge,
            )
        except Exception:  # a sweep failure is retried at the next tick
            log.exception("matcher sweep failed")
        await asyncio.sleep(settings.sweep_interval_s)
