"""Migration completed: a projection of the follow ledger, emitted once, and what it deletes."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from nats.js.errors import NotFoundError

from hqx import audience, db, subjects
from hqx.messages import FollowDone, FollowResult, UserEraseRequested
from hqx.messages.follow import FollowState
from hqx.service import Service
from hqx.subjects import Network, Stream
from services.purger.completion import LedgerView, completion_msg_id, is_complete
from tests.eventually import eventually
from tests.services.purger import world
from tests.services.purger.conftest import Clock

NOW = datetime(2026, 11, 25, 12, tzinfo=UTC)
OLD, RECENT = NOW - timedelta(hours=2), NOW - timedelta(minutes=5)


def view(**kw) -> LedgerView:
    base = {"graph_version": 1, "has_edges": True, "linked": {"bluesky": OLD}}
    return LedgerView(**(base | kw))


@pytest.mark.parametrize(
    ("v", "complete"),
    [
        (view(planned={"bluesky": 0}, total={"bluesky": 3}), True),
        (view(planned={"bluesky": 1}, total={"bluesky": 3}), False),
        (view(graph_version=None, total={"bluesky": 3}), False),
        (view(has_edges=False, total={"bluesky": 3}), False),  # already purged
        (view(linked={}, total={"bluesky": 3}), False),
        (view(total={}), False),  # nothing planned yet anywhere
        # Mastodon linked recently, not matched yet: wait; linked long ago with no match: done.
        (view(linked={"bluesky": OLD, "mastodon": RECENT}, total={"bluesky": 3}), False),
        (view(linked={"bluesky": OLD, "mastodon": OLD}, total={"bluesky": 3}), True),
    ],
)
def test_is_complete(v: LedgerView, complete: bool) -> None:
    assert is_complete(v, NOW, 3600) is complete


def test_msg_id_is_content_derived() -> None:
    a = view(total={"bluesky": 3, "mastodon": 1})
    assert completion_msg_id("u1", a) == completion_msg_id(
        "u1", view(total={"mastodon": 1, "bluesky": 3})
    )
    assert completion_msg_id("u1", a) != completion_msg_id("u1", view(total={"bluesky": 4}))
    assert completion_msg_id("u1", a) != completion_msg_id("u2", a)


def user() -> str:
    return f"u{uuid.uuid4().hex[:16]}"


async def last_batch_done(svc: Service, user_id: str) -> FollowDone:
    """The adapter's outcome for the one planned row (not yet recorded in the ledger: race)."""
    row = await svc.pool.fetchrow(
        "select target_x_id, target from follow_ledger where user_id = $1 and state = 'planned'",
        user_id,
    )
    return FollowDone(
        user_id=user_id,
        network=Network.BLUESKY,
        results=(
            FollowResult(
                x_account_id=str(row["target_x_id"]), account=row["target"], state=FollowState.DONE
            ),
        ),
    )


async def completions(svc: Service, user_id: str) -> int:
    info = await svc.js.stream_info(
        Stream.EVENTS.value, subjects_filter=subjects.migration_completed(user_id)
    )
    return sum((info.state.subjects or {}).values())


async def test_last_follow_done_completes_and_purges_graph_and_tokens(
    purger: Service, clock: Clock
) -> None:
    me, other = user(), user()
    for u in (me, other):
        await world.seed_postgres(purger.pool, u)
    clock.advance(hours=2)  # Mastodon was linked long ago and matched nobody
    friend = await purger.pool.fetchval(
        "select target_x_id from follow_ledger where user_id = $1 and state = 'done'", me
    )
    await purger.pool.execute(
        "insert into directory (x_account_id, network, account, user_id)"
        " values ($1, 'bluesky', 'did:plc:friend', $2)",
        friend, other,
    )  # fmt: skip
    people = {"bluesky": {"followings_matched": 1, "followers_on_network": 0}}
    assert await audience.measure(purger.pool, me) == people
    done = await last_batch_done(purger, me)
    await purger.publish(subjects.follow_done(Network.BLUESKY, me), done)
    await purger.publish(subjects.follow_done(Network.BLUESKY, me), done)  # redelivered / twice
    await eventually(
        lambda: purger.pool.fetchval("select count(*) = 0 from graph_edges where user_id = $1", me)
    )
    await world.purger_drained(purger.js)
    assert await completions(purger, me) == 1
    tokens = await purger.pool.fetch(
        "select token_cipher, status from identities where user_id = $1", me
    )
    assert [(t["token_cipher"], t["status"]) for t in tokens] == [(None, "revoked")] * 2
    assert (
        await purger.pool.fetchval("select count(*) from graph_edges where user_id = $1", other)
        == 5
    )
    assert (
        await purger.pool.fetchval(
            "select count(*) from identities where user_id = $1 and token_cipher is not null", other
        )
        == 2
    )
    audit = await purger.pool.fetch(
        "select trigger, kind, count from purge_audit where user_hash = $1 order by kind",
        db.user_hash(me),
    )
    assert [tuple(r) for r in audit] == [
        ("migration_completed", "graph_edges", 5),
        ("migration_completed", "tokens", 2),
    ]
    assert await audience.measure(purger.pool, me) == people  # "your people" still reads right


async def test_not_complete_while_a_linked_network_may_still_be_matched(
    purger: Service,
) -> None:
    me = user()
    await world.seed_postgres(purger.pool, me)
    await purger.publish(
        subjects.follow_done(Network.BLUESKY, me), await last_batch_done(purger, me)
    )
    await world.purger_drained(purger.js)
    assert await completions(purger, me) == 0
    assert (
        await purger.pool.fetchval("select count(*) from graph_edges where user_id = $1", me) == 5
    )


async def test_opted_in_user_keeps_graph_and_that_networks_token(
    purger: Service, clock: Clock
) -> None:
    me = user()
    await world.seed_postgres(purger.pool, me, auto_reconnect=("bluesky",))
    clock.advance(hours=2)
    await purger.publish(
        subjects.follow_done(Network.BLUESKY, me), await last_batch_done(purger, me)
    )
    await eventually(lambda: completions(purger, me))
    await world.purger_drained(purger.js)
    assert (
        await purger.pool.fetchval("select count(*) from graph_edges where user_id = $1", me) == 5
    )
    rows = await purger.pool.fetch(
        "select network, token_cipher is not null as held from identities where user_id = $1"
        " order by network",
        me,
    )
    assert [tuple(r) for r in rows] == [("bluesky", True), ("mastodon", False)]


async def test_sweep_catches_a_missed_last_batch(purger: Service, clock: Clock, deps) -> None:
    from services.purger import sweep

    me = user()
    await world.seed_postgres(purger.pool, me)
    await purger.pool.execute(
        "update follow_ledger set state = 'done' where user_id = $1", me
    )  # recorded, but its follow.done never reached the purger
    clock.advance(hours=2)
    await sweep.sweep_once(deps)
    await eventually(
        lambda: purger.pool.fetchval("select count(*) = 0 from graph_edges where user_id = $1", me)
    )
    assert await completions(purger, me) == 1


async def test_late_follow_done_for_erased_user_recreates_nothing(
    purger: Service, clock: Clock
) -> None:
    me = user()
    await world.seed_postgres(purger.pool, me)
    done = await last_batch_done(purger, me)
    await purger.publish(subjects.user_erase(me), UserEraseRequested(user_id=me))
    await eventually(lambda: db.is_erased(purger.pool, me))
    await world.purger_drained(purger.js, timeout=30)
    clock.advance(hours=2)
    await purger.publish(subjects.follow_done(Network.BLUESKY, me), done)
    await world.purger_drained(purger.js)
    assert await completions(purger, me) == 0
    with pytest.raises(NotFoundError):  # the late message itself was purged again
        await purger.js.get_last_msg(Stream.EVENTS.value, subjects.follow_done(Network.BLUESKY, me))
