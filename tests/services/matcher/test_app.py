"""The running matcher on real NATS JetStream and PostgreSQL: events in, follow batches out."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import asyncpg
import pytest

from hqx import db, ledger, subjects
from hqx.messages import (
    ConsentChanged,
    FollowDone,
    FollowRequested,
    FollowResult,
    FollowState,
    GraphIngested,
    IdentityLinked,
    IdentityProven,
    MatchFound,
    UserEraseRequested,
)
from hqx.service import Service
from hqx.settings import ServiceSettings
from hqx.subjects import Network, Stream
from services.matcher.app import create
from services.matcher.settings import Settings
from tests.eventually import drained, eventually
from tests.services.matcher.population import (
    account,
    add_user,
    link,
    new_user_id,
    prove,
    store_graph,
    x_base,
)

SPEC = subjects.CONSUMERS_BY_SERVICE["matcher"][0]
BSKY = Network.BLUESKY
Lane = Callable[[Network, str], str]
LANES: tuple[Lane, ...] = (subjects.follow_requested, subjects.follow_reconnect)


def fast(settings: ServiceSettings, **kw: float) -> Settings:
    return Settings(
        **settings.model_dump(by_alias=True),
        sweep_interval_s=0.05,
        stats_settle_s=0.0,
        reverse_settle_s=0.2,
        # the backstop is tested on its own: the rest go through `dispatch_due`
        **{"reverse_in_flight_s": 0.0, "sweep_backstop_s": 3600.0, **kw},
    )


@pytest.fixture
async def matcher(settings: ServiceSettings):
    svc = create(fast(settings))
    await svc.start()
    yield svc
    await svc.stop()


async def messages(svc: Service, stream: Stream, *subject: str) -> list[bytes]:
    """Every message on these subjects, in stream order."""
    info = await svc.js.stream_info(stream.value)
    out = []
    if info.state.messages:
        for seq in range(info.state.first_seq, info.state.last_seq + 1):
            raw = await svc.js.get_msg(stream.value, seq)
            if raw.subject in subject:
                out.append(raw.data)
    return out


async def follow_batches(
    svc: Service, network: Network, user: str, lanes: tuple[Lane, ...] = LANES
) -> list[FollowRequested]:
    """The user's follow commands on these lanes (both: forward and late joiners), in order."""
    data = await messages(svc, Stream.FOLLOWS, *(lane(network, user) for lane in lanes))
    return [FollowRequested.model_validate_json(d) for d in data]


async def join(svc: Service, pool: asyncpg.Pool, x: int, network: Network = BSKY) -> str:
    """A user signs in with X and links a network, as the gateway would announce it."""
    u = new_user_id()
    await add_user(pool, u, x)
    await svc.publish(subjects.identity_proven(u), IdentityProven(user_id=u, x_account_id=str(x)))
    await link(pool, u, network, account(network, x, u))
    acct = account(network, x, u)
    await svc.publish(
        subjects.identity_linked(u), IdentityLinked(user_id=u, network=network, account=acct)
    )
    return u


async def upload(svc: Service, pool: asyncpg.Pool, u: str, x: int, followings: list[int]) -> None:
    version = await store_graph(pool, u, x, followings)
    msg = GraphIngested(
        user_id=u,
        owner_x_account_id=str(x),
        following_count=len(followings),
        follower_count=0,
        graph_version=version,
    )
    await svc.publish(subjects.graph_ingested(u), msg)


async def test_forward_and_reverse_end_to_end(matcher: Service, pool: asyncpg.Pool) -> None:
    b = x_base()
    bob = await join(matcher, pool, b + 2)
    alice = await join(matcher, pool, b + 1)
    await matcher.publish(
        subjects.consent_changed(alice),
        ConsentChanged(user_id=alice, auto_reconnect={BSKY: True}),
    )
    # NOTE: opted in before her upload: a consent catch-up after it would plan her graph too
    await drained(matcher.js, SPEC.stream.value, SPEC.durable)
    await upload(matcher, pool, alice, b + 1, [b + 2, b + 3])
    batches = await eventually(lambda: follow_batches(matcher, BSKY, alice))
    assert [[t.x_account_id for t in m.targets] for m in batches] == [[str(b + 2)]]
    assert batches[0].targets[0].account == account(BSKY, b + 2, bob)

    carol = await join(matcher, pool, b + 3)  # a late joiner: alice opted in
    await eventually(lambda: _at_least(follow_batches(matcher, BSKY, alice), 2))
    await drained(matcher.js, SPEC.stream.value, SPEC.durable)
    batches = await follow_batches(matcher, BSKY, alice)
    assert [t.account for t in batches[1].targets] == [account(BSKY, b + 3, carol)]
    # each on its lane: her migration, then the late joiner behind no one's migration
    lanes = [await follow_batches(matcher, BSKY, alice, (lane,)) for lane in LANES]
    assert lanes == [batches[:1], batches[1:]]
    found = await eventually(lambda: messages(matcher, Stream.EVENTS, subjects.match_found(alice)))
    last = MatchFound.model_validate_json(found[-1])
    assert last.user_id == alice

    # re-delivered / re-published events send nothing new
    await upload(matcher, pool, alice, b + 1, [b + 2, b + 3])
    await matcher.publish(
        subjects.identity_linked(carol),
        IdentityLinked(user_id=carol, network=BSKY, account=account(BSKY, b + 3, carol)),
    )
    await drained(matcher.js, SPEC.stream.value, SPEC.durable)
    assert len(await follow_batches(matcher, BSKY, alice)) == 2
    rows = await pool.fetch("select batch_id from follow_ledger where user_id = $1", alice)
    assert {r[0] for r in rows} == {m.msg_id() for m in batches}


@pytest.mark.parametrize(
    ("network", "sizes"), [(BSKY, [200, 200, 50]), (Network.MASTODON, [40] * 11 + [10])]
)
async def test_batches_respect_network_limits(
    matcher: Service, pool: asyncpg.Pool, network: Network, sizes: list[int]
) -> None:
    b = x_base()
    others = [new_user_id() for _ in range(450)]
    await pool.executemany(
        "insert into users (id, x_account_id, x_proven) values ($1, $2, true)",
        [(u, b + 10 + i) for i, u in enumerate(others)],
    )
    await pool.executemany(
        "insert into directory (x_account_id, network, account, user_id) values ($1, $2, $3, $4)",
        [(b + 10 + i, network.value, account(network, 0, u), u) for i, u in enumerate(others)],
    )
    alice = new_user_id()
    await add_user(pool, alice, b + 1)
    await prove(pool, alice, b + 1)
    await link(pool, alice, network, account(network, b + 1, alice))
    await upload(matcher, pool, alice, b + 1, [b + 10 + i for i in range(450)])
    await drained(matcher.js, SPEC.stream.value, SPEC.durable)
    batches = await follow_batches(matcher, network, alice)
    assert sorted((len(m.targets) for m in batches), reverse=True) == sizes
    assert len({t.x_account_id for m in batches for t in m.targets}) == 450


async def test_erase_cancels_pending_follows_and_late_events_are_dropped(
    matcher: Service, pool: asyncpg.Pool
) -> None:
    b = x_base()
    bob = await join(matcher, pool, b + 2)
    alice = await join(matcher, pool, b + 1)
    await upload(matcher, pool, alice, b + 1, [b + 2])
    await eventually(lambda: follow_batches(matcher, BSKY, alice))
    await matcher.publish(subjects.user_erase(bob), UserEraseRequested(user_id=bob))
    await drained(matcher.js, SPEC.stream.value, SPEC.durable)
    assert await pool.fetchval("select count(*) from follow_ledger where user_id = $1", alice) == 0
    assert await pool.fetchval("select count(*) from directory where user_id = $1", bob) == 0
    # the purger tombstones bob; a late link of bob recreates nothing
    await pool.execute("insert into erased_users (user_hash) values ($1)", db.user_hash(bob))
    await matcher.publish(
        subjects.identity_linked(bob),
        IdentityLinked(user_id=bob, network=BSKY, account=account(BSKY, b + 2, bob)),
    )
    await drained(matcher.js, SPEC.stream.value, SPEC.durable)
    assert await pool.fetchval("select count(*) from directory where user_id = $1", bob) == 0


async def test_sweep_sends_plans_a_crash_left_unsent(
    settings: ServiceSettings, pool: asyncpg.Pool
) -> None:
    """A planned row no event made due (a crash between planning and dispatch): the backstop."""
    matcher = create(fast(settings, sweep_backstop_s=0.2))
    await matcher.start()
    try:
        b = x_base()
        alice = new_user_id()
        await add_user(pool, alice, b + 1)
        await pool.execute(
            "insert into follow_ledger (user_id, network, target_x_id, target, state, planned_at)"
            " values ($1, 'bluesky', $2, 'did:plc:someone', 'planned',"
            " now() - interval '1 minute')",
            alice,
            b + 2,
        )
        batches = await eventually(lambda: follow_batches(matcher, BSKY, alice), timeout=15)
        assert [t.account for t in batches[0].targets] == ["did:plc:someone"]
    finally:
        await matcher.stop()


async def test_late_joiners_wait_for_the_batch_in_flight(
    settings: ServiceSettings, pool: asyncpg.Pool
) -> None:
    """While alice's batch is still planned (the adapter lags), two late joiners go out as one
    batch once it is through; an in-flight batch older than the bound holds nothing back."""
    matcher = create(fast(settings, reverse_in_flight_s=30.0))
    await matcher.start()
    try:
        b = x_base()
        await join(matcher, pool, b + 2)
        alice = await join(matcher, pool, b + 1)
        await matcher.publish(
            subjects.consent_changed(alice),
            ConsentChanged(user_id=alice, auto_reconnect={BSKY: True}),
        )
        await drained(matcher.js, SPEC.stream.value, SPEC.durable)  # opted in before uploading
        await upload(matcher, pool, alice, b + 1, [b + 2, b + 3, b + 4, b + 5])
        (first,) = await eventually(lambda: follow_batches(matcher, BSKY, alice))
        carol = await join(matcher, pool, b + 3)
        dave = await join(matcher, pool, b + 4)
        await drained(matcher.js, SPEC.stream.value, SPEC.durable)
        await eventually(lambda: _planned(pool, alice, 2))
        await asyncio.sleep(1.0)  # 5 settles, 20 sweeps
        assert len(await follow_batches(matcher, BSKY, alice)) == 1

        # The adapter acts on the first batch and says so: the late joiners follow as one batch.
        done = tuple(
            FollowResult(x_account_id=t.x_account_id, account=t.account, state=FollowState.DONE)
            for t in first.targets
        )
        await ledger.record(pool, alice, BSKY, done)
        await matcher.publish(
            subjects.follow_done(BSKY, alice), FollowDone(user_id=alice, network=BSKY, results=done)
        )
        batches = await eventually(lambda: _at_least(follow_batches(matcher, BSKY, alice), 2))
        assert [t.account for t in batches[1].targets] == [
            account(BSKY, b + 3, carol),
            account(BSKY, b + 4, dave),
        ]

        # Its batch is stuck past the bound (a paused account): the next joiner goes anyway.
        await pool.execute(
            "update follow_ledger set updated_at = now() - interval '1 minute'"
            " where user_id = $1 and state = 'planned'",
            alice,
        )
        await join(matcher, pool, b + 5)
        await eventually(lambda: _at_least(follow_batches(matcher, BSKY, alice), 3))
    finally:
        await matcher.stop()


async def _planned(pool: asyncpg.Pool, user: str, n: int) -> bool:
    q = "select count(*) from follow_ledger where user_id = $1 and batch_id is null"
    return await pool.fetchval(q, user) >= n


async def _at_least(coro, n: int):  # type: ignore[no-untyped-def]
    got = await coro
    return got if len(got) >= n else None


async def test_a_link_handled_after_the_upload_sends_nothing_twice(
    matcher: Service, pool: asyncpg.Pool
) -> None:
    """Exodus day's order: alice links, then uploads, and her link event is handled after her
    graph's (a backlog, another replica). Her batch is in flight under that very link: sending
    it again would run it twice at once, so the late event re-sends nothing."""
    b = x_base()
    await join(matcher, pool, b + 2)
    alice = new_user_id()
    await add_user(pool, alice, b + 1)
    await prove(pool, alice, b + 1)
    acct = account(BSKY, b + 1, alice)
    await link(pool, alice, BSKY, acct)
    late = IdentityLinked(user_id=alice, network=BSKY, account=acct)  # occurred now, sent later
    await upload(matcher, pool, alice, b + 1, [b + 2])
    (first,) = await eventually(lambda: follow_batches(matcher, BSKY, alice))
    await matcher.publish(subjects.identity_linked(alice), late)
    await drained(matcher.js, SPEC.stream.value, SPEC.durable)
    assert await follow_batches(matcher, BSKY, alice) == [first]
    rows = await pool.fetch("select batch_id from follow_ledger where user_id = $1", alice)
    assert [r[0] for r in rows] == [first.msg_id()]


async def test_a_relink_resends_what_the_paused_account_skipped(
    matcher: Service, pool: asyncpg.Pool
) -> None:
    """The adapter skipped alice's batch (account paused): her rows stay planned and sent.
    When she links again they go out again, under a new msg id."""
    b = x_base()
    await join(matcher, pool, b + 2)
    alice = await join(matcher, pool, b + 1)
    await upload(matcher, pool, alice, b + 1, [b + 2])
    (first,) = await eventually(lambda: follow_batches(matcher, BSKY, alice))
    await drained(matcher.js, SPEC.stream.value, SPEC.durable)
    acct = account(BSKY, b + 1, alice)
    await matcher.publish(
        subjects.identity_linked(alice), IdentityLinked(user_id=alice, network=BSKY, account=acct)
    )
    batches = await eventually(lambda: _at_least(follow_batches(matcher, BSKY, alice), 2))
    assert [t.x_account_id for t in batches[1].targets] == [str(b + 2)]
    assert batches[1].msg_id() != first.msg_id()
    rows = await pool.fetch("select batch_id from follow_ledger where user_id = $1", alice)
    assert [r[0] for r in rows] == [batches[1].msg_id()]
