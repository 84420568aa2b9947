"""Wiring: the purger's two durables (one dispatcher by message type) and its sweep."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from hqx.consumer import Delivery
from hqx.messages import (
    ArchiveRejected,
    ArchiveUnpacked,
    FollowDone,
    Message,
    MigrationCompleted,
    UserEraseRequested,
)
from hqx.outcomes import Outcome
from hqx.service import Service
from hqx.subjects import CONSUMERS_BY_SERVICE
from services.purger import handlers, sweep
from services.purger.settings import Settings

ACCEPTED: tuple[type[Message], ...] = (
    ArchiveUnpacked,
    ArchiveRejected,
    FollowDone,
    MigrationCompleted,
    UserEraseRequested,
)


def now_utc() -> datetime:
    return datetime.now(UTC)


def create(settings: Settings, *, clock: Callable[[], datetime] = now_utc) -> Service:
    """The purger service; `clock` is injectable so tests can compress time."""
    svc = Service("purger", settings)
    deps_box: list[handlers.Deps] = []

    def deps() -> handlers.Deps:
        if not deps_box:
            deps_box.append(
                handlers.Deps(svc.pool, svc.redis, svc.js, svc.publish, settings, clock)
            )
        return deps_box[0]

    async def dispatch(message: Message, delivery: Delivery) -> Outcome:
        match message:
            case ArchiveUnpacked() | ArchiveRejected():
                return await handlers.handle_archive_done(message, delivery, deps())
            case FollowDone():
                return await handlers.handle_follow_done(message, delivery, deps())
            case MigrationCompleted():
                return await handlers.handle_migration_completed(message, delivery, deps())
            case UserEraseRequested():
                return await handlers.handle_user_erase(message, delivery, deps())
        raise TypeError(f"unexpected message {type(message).__name__}")

    for spec in CONSUMERS_BY_SERVICE["purger"]:
        svc.consume(spec, ACCEPTED, dispatch)
    svc.background(lambda: sweep.run(deps()))
    return svc
