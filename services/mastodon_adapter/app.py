"""Wiring: the Service, its two follow lanes (`follow.{requested,reconnect}.mastodon`), deps."""

from __future__ import annotations

import functools

from hqx.crypto import TokenCipher
from hqx.follow_events import report_allowed_rate
from hqx.forward_first import ForwardFirst, forward_lanes, is_forward
from hqx.messages import FollowRequested
from hqx.ratelimit import RateLimiter, units_per_minute
from hqx.service import Service
from hqx.subjects import CONSUMERS_BY_SERVICE
from services.mastodon_adapter.budgets import Budgets
from services.mastodon_adapter.client import AccountClients
from services.mastodon_adapter.follows import Follower
from services.mastodon_adapter.handlers import Deps, handle_follow_requested
from services.mastodon_adapter.settings import Settings

NAME = "mastodon_adapter"


def create(settings: Settings) -> Service:
    svc = Service(NAME, settings)
    specs = CONSUMERS_BY_SERVICE[NAME]
    # every lane's batches, each with its follows in flight, may be waiting on a call at once
    threads = len(specs) * settings.concurrency * settings.follows_in_flight
    clients = AccountClients(settings.verify, threads=threads)
    deps: dict[str, Deps] = {}
    budgets = Budgets.build(settings.headroom, settings.time_compression, settings.call_in_flight_s)

    async def start() -> None:
        follower = Follower(settings, svc.redis, RateLimiter(svc.redis), budgets)
        deps["d"] = Deps(svc, svc.pool, TokenCipher(settings.token_keys), follower, clients)  # type: ignore[arg-type]

    async def handler(message: FollowRequested, delivery):  # type: ignore[no-untyped-def]
        return await handle_follow_requested(message, delivery, deps["d"])

    first = ForwardFirst(lambda: svc.js, forward_lanes())

    async def late_joiners(message: FollowRequested, delivery):  # type: ignore[no-untyped-def]
        await first.turn(delivery)
        return await handler(message, delivery)

    svc.on_start(start)
    rate = units_per_minute((budgets.follows,), "follow")
    svc.background(lambda: report_allowed_rate(svc.pool, "mastodon", rate, service=NAME))
    svc.on_stop(functools.partial(_close, clients))
    svc.background(first.watch)
    for spec in specs:
        lane = handler if is_forward(spec) else late_joiners
        svc.consume(spec, (FollowRequested,), lane, concurrency=settings.concurrency)
    return svc


async def _close(clients: AccountClients) -> None:
    clients.close()
