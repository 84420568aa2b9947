"""Each purger handler across its outcomes (done, redelivered, skipped, retry later), called
directly with real stores; the delivery is a plain value (only its timestamp is read)."""

from __future__ import annotations

import uuid
from datetime import timedelta
from types import SimpleNamespace

from hqx import db
from hqx.consumer import Delivery
from hqx.erasure import tombstone
from hqx.errors import Reason
from hqx.messages import (
    ArchiveUnpacked,
    FollowDone,
    FollowResult,
    MigrationCompleted,
    UserEraseRequested,
)
from hqx.messages.follow import FollowState
from hqx.outcomes import Done, RetryLater, Skipped
from hqx.subjects import ARCHIVE_BUCKET, Network
from services.purger import handlers
from services.purger.handlers import Deps
from tests.services.purger import world
from tests.services.purger.conftest import Clock


def user() -> str:
    return f"u{uuid.uuid4().hex[:16]}"


def delivery(clock: Clock, age_s: float = 0.0, seq: int = 1) -> Delivery:
    raw = SimpleNamespace(metadata=SimpleNamespace(timestamp=clock() - timedelta(seconds=age_s)))
    return Delivery("subject", seq, 1, {}, raw)  # type: ignore[arg-type]


async def audit_rows(deps: Deps, user_id: str) -> int:
    return await deps.pool.fetchval(
        "select count(*) from purge_audit where user_hash = $1", db.user_hash(user_id)
    )


async def test_archive_done_outcomes(deps: Deps, clock: Clock) -> None:
    me, gone = user(), user()
    store = await deps.js.object_store(ARCHIVE_BUCKET)
    for u in (me, gone):
        await store.put(f"{u}/a.zip", b"PK")
    msg = ArchiveUnpacked(user_id=me, object_name=f"{me}/a.zip")
    assert await handlers.handle_archive_done(msg, delivery(clock), deps) == Done()
    assert await handlers.handle_archive_done(msg, delivery(clock), deps) == Done("already_deleted")
    assert await audit_rows(deps, me) == 1
    await tombstone(deps.pool, gone)
    late = ArchiveUnpacked(user_id=gone, object_name=f"{gone}/a.zip")
    assert await handlers.handle_archive_done(late, delivery(clock), deps) == Skipped(
        Reason.USER_ERASED
    )
    assert await world_objects(deps) == []  # deleted all the same


async def world_objects(deps: Deps) -> list[str]:
    store = await deps.js.object_store(ARCHIVE_BUCKET)
    try:
        return [o.name for o in await store.list(ignore_deletes=True)]
    except Exception:
        return []


async def test_migration_completed_outcomes(deps: Deps, clock: Clock) -> None:
    me, gone = user(), user()
    for u in (me, gone):
        await world.seed_postgres(deps.pool, u)
    msg = MigrationCompleted(user_id=me)
    assert await handlers.handle_migration_completed(msg, delivery(clock), deps) == Done()
    rows = await audit_rows(deps, me)
    assert await handlers.handle_migration_completed(msg, delivery(clock), deps) == Done()
    assert await audit_rows(deps, me) == rows  # a redelivery deletes and records nothing more
    unknown = MigrationCompleted(user_id=user())
    assert await handlers.handle_migration_completed(unknown, delivery(clock), deps) == Skipped(
        Reason.NOT_FOUND
    )
    await tombstone(deps.pool, gone)
    late = MigrationCompleted(user_id=gone)
    assert await handlers.handle_migration_completed(late, delivery(clock), deps) == Skipped(
        Reason.USER_ERASED
    )
    assert (
        await deps.pool.fetchval("select count(*) from graph_edges where user_id = $1", gone) == 5
    )  # refused: the erase, not this late message, deletes their data


async def test_follow_done_outcomes(deps: Deps, clock: Clock) -> None:
    me = user()
    await world.seed_postgres(deps.pool, me)
    row = await deps.pool.fetchrow(
        "select target_x_id, target from follow_ledger where user_id = $1 and state = 'planned'",
        me,
    )
    result = FollowResult(
        x_account_id=str(row["target_x_id"]), account=row["target"], state=FollowState.DONE
    )
    done = FollowDone(user_id=me, network=Network.BLUESKY, results=(result,))
    empty = FollowDone(user_id=me, network=Network.BLUESKY, results=())
    assert await handlers.handle_follow_done(empty, delivery(clock), deps) == Skipped(
        Reason.MIGRATION_IN_PROGRESS
    )
    assert await handlers.handle_follow_done(done, delivery(clock), deps) == Skipped(
        Reason.MIGRATION_IN_PROGRESS
    )  # Mastodon linked minutes ago may still be matched
    clock.advance(hours=2)
    assert await handlers.handle_follow_done(done, delivery(clock), deps) == Done()
    await tombstone(deps.pool, me)
    assert await handlers.handle_follow_done(done, delivery(clock), deps) == Skipped(
        Reason.USER_ERASED
    )


async def test_user_erase_outcomes(deps: Deps, clock: Clock) -> None:
    me = user()
    await world.seed_postgres(deps.pool, me)
    msg = UserEraseRequested(user_id=me)
    # Even a request handled an hour late gets its settle pass: the window starts at the tombstone.
    first = await handlers.handle_user_erase(msg, delivery(clock, age_s=3600), deps)
    assert isinstance(first, RetryLater) and first.reason == Reason.ERASE_SETTLING
    assert 0 < first.delay_s <= deps.settings.erase_settle_s
    assert await db.is_erased(deps.pool, me)
    clock.advance(seconds=deps.settings.erase_settle_s + 1)
    assert await handlers.handle_user_erase(msg, delivery(clock, age_s=60), deps) == Done()
    assert await handlers.handle_user_erase(msg, delivery(clock, age_s=90), deps) == Done()
