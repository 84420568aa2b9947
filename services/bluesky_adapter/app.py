"""Wiring of the Bluesky adapter: the Service, its consumer, the handler's dependencies."""

from __future__ import annotations

from dataclasses import replace

from hqx.consumer import Delivery
from hqx.crypto import TokenCipher
from hqx.follow_events import report_allowed_rate
from hqx.forward_first import ForwardFirst, forward_lanes, is_forward
from hqx.messages import FollowRequested, Message
from hqx.outcomes import Outcome
from hqx.ratelimit import RateLimiter, units_per_minute
from hqx.service import Service
from hqx.subjects import CONSUMERS_BY_SERVICE
from services.bluesky_adapter.handlers import handle_follow_requested
from services.bluesky_adapter.run import Deps
from services.bluesky_adapter.settings import Settings

SERVICE = "bluesky_adapter"


def create(settings: Settings) -> Service:
    svc = Service(SERVICE, settings)
    deps: dict[str, Deps] = {}

    async def publish(subject: str, message: Message, msg_id: str) -> object:
        return await svc.publish(subject, message, msg_id=msg_id)

    def build_deps() -> Deps:
        # NOTE: built on first use: the broker starts consuming before `on_start` hooks run.
        return Deps(
            pool=svc.pool,
            redis=svc.redis,
            limiter=RateLimiter(svc.redis),
            cipher=TokenCipher(settings.token_keys),
            settings=settings,
            publish=publish,
        )

    async def on_follow_requested(message: FollowRequested, delivery: Delivery) -> Outcome:
        if "d" not in deps:
            deps["d"] = build_deps()
        return await handle_follow_requested(message, delivery, deps["d"])

    first = ForwardFirst(lambda: svc.js, forward_lanes())

    async def on_late_joiners(message: FollowRequested, delivery: Delivery) -> Outcome:
        await first.turn(delivery)
        return await on_follow_requested(message, delivery)

    async def close_connections() -> None:
        if "d" in deps:
            await deps["d"].pds.close()

    svc.on_stop(close_connections)
    for spec in CONSUMERS_BY_SERVICE[SERVICE]:
        if settings.ack_wait_s is not None:
            spec = replace(spec, ack_wait_s=settings.ack_wait_s)
        lane = on_follow_requested if is_forward(spec) else on_late_joiners
        svc.consume(spec, (FollowRequested,), lane, concurrency=settings.concurrency)
    svc.background(first.watch)
    rate = units_per_minute(settings.budgets()[:2], "create")
    svc.background(lambda: report_allowed_rate(svc.pool, "bluesky", rate, service=SERVICE))
    svc.deps = deps  # type: ignore[attr-defined]  # tests reach the handler's dependencies
    return svc
