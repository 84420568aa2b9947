"""The follow ledger against real PostgreSQL: idempotent plans and outcomes, cancellation."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest
from prometheus_client import REGISTRY

from hqx import db, ledger, ratelimit
from hqx.follow_events import report_allowed_rate
from hqx.messages import FollowResult, FollowState, FollowTarget
from tests.eventually import eventually


def target(x: int) -> FollowTarget:
    return FollowTarget(x_account_id=str(x), account=f"did:plc:t{x}")


async def make_user(pool: asyncpg.Pool, user_id: str) -> None:
    await pool.execute("insert into users (id) values ($1)", user_id)


async def test_plan_is_idempotent_and_never_replans_final_rows(
    pool: asyncpg.Pool, user_id: str
) -> None:
    await make_user(pool, user_id)
    assert await ledger.plan(pool, user_id, "bluesky", [target(1), target(2)]) == 2
    assert await ledger.plan(pool, user_id, "bluesky", [target(1), target(2)]) == 0
    done = FollowResult(x_account_id="1", account="did:plc:t1", state=FollowState.DONE)
    assert await ledger.record(pool, user_id, "bluesky", [done]) == 1
    assert await ledger.record(pool, user_id, "bluesky", [done]) == 0  # redelivery
    late_fail = FollowResult(
        x_account_id="1", account="did:plc:t1", state=FollowState.FAILED, reason="x"
    )
    assert await ledger.record(pool, user_id, "bluesky", [late_fail]) == 0  # done is final
    assert await ledger.plan(pool, user_id, "bluesky", [target(1), target(3)]) == 1
    assert await ledger.counts(pool, user_id) == {"bluesky": {"done": 1, "planned": 2}}
    assert [t.x_account_id for t in await ledger.pending(pool, user_id, "bluesky")] == ["2", "3"]
    kept = await ledger.still_planned(pool, user_id, "bluesky", [target(1), target(2)])
    assert kept == [target(2)]


async def test_record_never_creates_rows(pool: asyncpg.Pool, user_id: str) -> None:
    await make_user(pool, user_id)
    r = FollowResult(x_account_id="9", account="did:plc:t9", state=FollowState.DONE)
    assert await ledger.record(pool, user_id, "bluesky", [r]) == 0
    assert await ledger.counts(pool, user_id) == {}


async def test_known_network_follows_are_recorded_as_already_following(
    pool: asyncpg.Pool, user_id: str
) -> None:
    await make_user(pool, user_id)
    await ledger.plan(pool, user_id, "mastodon", [target(1)])
    assert await ledger.note_network_follows(pool, user_id, "mastodon", ["did:plc:t1"]) == 1
    await ledger.note_network_follows(pool, user_id, "mastodon", ["did:plc:t2"])
    await ledger.plan(pool, user_id, "mastodon", [target(2), target(3)])
    rows = await pool.fetch(
        "select target_x_id, state, reason from follow_ledger where user_id = $1"
        " order by target_x_id",
        user_id,
    )
    assert [tuple(r) for r in rows] == [
        (1, "done", "already_following"),
        (2, "done", "already_following"),
        (3, "planned", None),
    ]


async def test_cancel_planned_by_origin(pool: asyncpg.Pool, user_id: str) -> None:
    await make_user(pool, user_id)
    await ledger.plan(pool, user_id, "bluesky", [target(1)])
    await ledger.plan(pool, user_id, "bluesky", [target(2)], origin="reverse")
    await ledger.plan(pool, user_id, "mastodon", [target(2)], origin="reverse")
    assert await ledger.cancel_planned(pool, user_id, "bluesky", origin="reverse") == 1
    assert await ledger.counts(pool, user_id) == {
        "bluesky": {"planned": 1},
        "mastodon": {"planned": 1},
    }
    assert await ledger.cancel_planned(pool, user_id) == 2


async def test_allowed_rate_counts_active_accounts_with_planned_follows(
    fresh_database_url: str, user_id: str
) -> None:
    """Counts over the whole table: a database of its own, whatever ran before."""
    pool = await db.connect(fresh_database_url)
    try:
        await _allowed_rate_counts(pool, user_id)
    finally:
        await pool.close()


async def _allowed_rate_counts(pool: asyncpg.Pool, user_id: str) -> None:
    users = [f"{user_id}-{i}" for i in range(4)]
    for i, u in enumerate(users):
        await make_user(pool, u)
        status = "paused" if i == 3 else "active"
        await pool.execute(
            "insert into identities (user_id, network, account, auth_kind, status)"
            " values ($1, 'bluesky', $2, 'app_password', $3)",
            u, f"did:plc:owner{i}", status,
        )  # fmt: skip
    await ledger.plan(pool, users[0], "bluesky", [target(1), target(2)])
    await ledger.plan(pool, users[1], "bluesky", [target(1)])
    await ledger.plan(pool, users[3], "bluesky", [target(1)])  # paused: its work waits
    done = FollowResult(x_account_id="1", account="did:plc:t1", state=FollowState.DONE)
    await ledger.record(pool, users[1], "bluesky", [done])  # nothing left to do
    assert await ledger.accounts_with_pending(pool, "bluesky") == 1
    assert await ledger.accounts_with_pending(pool, "mastodon") == 0

    job = asyncio.create_task(report_allowed_rate(pool, "bluesky", 8.5, 0.05, service="t"))
    try:
        await ledger.plan(pool, users[2], "bluesky", [target(7)])
        await eventually(lambda: allowed("t") == 2 * 8.5)
    finally:
        job.cancel()


def allowed(service: str) -> float | None:
    labels = {"service": service, "network": "bluesky"}
    return REGISTRY.get_sample_value("hqx_follows_allowed_per_minute", labels)


def test_sustained_rate_is_the_tightest_budget() -> None:
    hour, day = ratelimit.BLUESKY_WRITE_HOUR, ratelimit.BLUESKY_WRITE_DAY
    per_min = ratelimit.units_per_minute((hour, day), "create")
    assert per_min == pytest.approx(day.cap / 3 / 1440)  # the day cap binds, not the hour's
    assert ratelimit.units_per_minute((hour.scaled(60),), "create") == pytest.approx(hour.cap / 3)


async def test_a_target_who_asked_for_erasure_is_not_followed(
    pool: asyncpg.Pool, user_id: str
) -> None:
    """From the tombstone on, before the matcher removes the target from the directory."""
    target_user = f"{user_id}t"
    await make_user(pool, user_id)
    await make_user(pool, target_user)
    await pool.execute(
        "insert into directory (x_account_id, network, account, user_id)"
        " values (7, 'bluesky', 'did:plc:t7', $1)",
        target_user,
    )
    await ledger.plan(pool, user_id, "bluesky", [target(7), target(8)])
    tag = db.user_hash(user_id)
    assert await ledger.may_follow(pool, user_id, tag, "bluesky", target(7)) is None
    await pool.execute(
        "insert into erased_users (user_hash) values ($1)", db.user_hash(target_user)
    )
    kept = await ledger.still_planned(pool, user_id, "bluesky", [target(7), target(8)])
    assert [t.x_account_id for t in kept] == ["8"]
    assert await ledger.may_follow(pool, user_id, tag, "bluesky", target(7)) == "not_planned"
    assert await ledger.may_follow(pool, user_id, tag, "bluesky", target(8)) is None
    await pool.execute("insert into erased_users (user_hash) values ($1)", tag)
    assert await ledger.may_follow(pool, user_id, tag, "bluesky", target(8)) == "user_erased"
