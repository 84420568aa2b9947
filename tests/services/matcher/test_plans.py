"""Directory, forward and reverse matches, consent and erase, on real PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg

from hqx import ledger
from hqx.messages import FollowResult, FollowState, Message
from hqx.subjects import Network
from services.matcher import plans, stats
from tests.services.matcher.population import (
    account,
    add_user,
    ledger_rows,
    link,
    new_user_id,
    prove,
    store_graph,
    unlink,
    x_base,
)

BSKY = Network.BLUESKY
MASTO = Network.MASTODON


async def joined(pool: asyncpg.Pool, x: int, *networks: Network, optin: bool = False) -> str:
    """A proven user with X id `x`, linked on `networks` (and the events processed)."""
    u = new_user_id()
    await add_user(pool, u, x)
    await prove(pool, u, x)
    if optin:
        await pool.execute(
            "update users set auto_reconnect = $2 where id = $1", u, [n.value for n in networks]
        )
    async with pool.acquire() as conn:
        for n in networks:
            await link(pool, u, n, account(n, x, u))
            await plans.on_linked(conn, u, n, datetime.now(UTC))
    return u


async def test_forward_match_plans_followings_in_directory_not_self(pool: asyncpg.Pool) -> None:
    b = x_base()
    bob = await joined(pool, b + 2, BSKY, MASTO)
    await joined(pool, b + 3, MASTO)  # carol: not on bluesky
    alice = new_user_id()
    await add_user(pool, alice, b + 1)
    await prove(pool, alice, b + 1)
    await store_graph(pool, alice, b + 1, [b + 1, b + 2, b + 3, b + 4])
    async with pool.acquire() as conn:
        await plans.on_graph(conn, alice)
        assert await ledger_rows(pool, [alice]) == set()  # nothing linked yet
        await link(pool, alice, BSKY, account(BSKY, b + 1, alice))
        linked_at = datetime.now(UTC)
        work = await plans.on_linked(conn, alice, BSKY, linked_at)
        assert work.dispatch == {BSKY: {alice}}
        await plans.on_linked(conn, alice, BSKY, linked_at)  # redelivery
    assert await ledger_rows(pool, [alice]) == {(alice, "bluesky", b + 2)}
    [t] = await ledger.pending(pool, alice, BSKY)
    assert t.account == account(BSKY, b + 2, bob)


async def test_reverse_match_only_for_opted_in_followers(pool: asyncpg.Pool) -> None:
    b = x_base()
    fans = {}
    for i, optin in enumerate((True, False)):
        u = new_user_id()
        await add_user(pool, u, b + 10 + i)
        await prove(pool, u, b + 10 + i)
        await store_graph(pool, u, b + 10 + i, [b + 1])
        if optin:
            await pool.execute("update users set auto_reconnect = '{bluesky}' where id = $1", u)
        await link(pool, u, BSKY, account(BSKY, 0, u))
        async with pool.acquire() as conn:
            await plans.on_linked(conn, u, BSKY, datetime.now(UTC))
        fans[optin] = u
    late = await joined(pool, b + 1, BSKY)  # the late joiner
    assert await ledger_rows(pool, fans.values()) == {(fans[True], "bluesky", b + 1)}
    origin = await pool.fetchval("select origin from follow_ledger where user_id = $1", fans[True])
    assert origin == "reverse"
    # withdrawing cancels pending reconnections; opting in again catches up
    now = datetime.now(UTC)
    async with pool.acquire() as conn:
        await plans.on_consent(conn, fans[True], {BSKY: False}, now)
        assert await ledger_rows(pool, [fans[True]]) == set()
        await plans.on_consent(conn, fans[True], {BSKY: True}, now - timedelta(seconds=1))
        assert await ledger_rows(pool, [fans[True]]) == set()  # an older choice is ignored
        await plans.on_consent(conn, fans[False], {BSKY: True}, now)
    assert await ledger_rows(pool, fans.values()) == {(fans[False], "bluesky", b + 1)}
    assert late


async def test_conflicting_claim_is_quarantined_and_changes_nothing(pool: asyncpg.Pool) -> None:
    b = x_base()
    victim = await joined(pool, b + 1, BSKY)
    fan = new_user_id()
    await add_user(pool, fan, b + 2)
    await prove(pool, fan, b + 2)
    await pool.execute("update users set auto_reconnect = '{bluesky}' where id = $1", fan)
    await store_graph(pool, fan, b + 2, [b + 1])
    await link(pool, fan, BSKY, account(BSKY, 0, fan))
    async with pool.acquire() as conn:
        await plans.on_linked(conn, fan, BSKY, datetime.now(UTC))
    before = await pool.fetch("select * from follow_ledger where user_id = $1", fan)
    # a forger with an unproven claim on the victim's X id, and a forged archive
    forger = new_user_id()
    await add_user(pool, forger, b + 1)
    await store_graph(pool, forger, b + 1, [b + 2], followers=[b + 2])
    await link(pool, forger, BSKY, "did:plc:forger")
    async with pool.acquire() as conn:
        await plans.on_linked(conn, forger, BSKY, datetime.now(UTC))
        await plans.on_graph(conn, forger)
        # even a second *proven* owner of that X id (two sign-ins) never overwrites the entry
        await prove(pool, forger, b + 1)
        await plans.on_proven(conn, forger, str(b + 1), None)
        await plans.on_proven(conn, forger, str(b + 1), None)  # redelivery: one audit row
    entry = await pool.fetchrow(
        "select user_id, account from directory where x_account_id = $1", b + 1
    )
    assert (entry["user_id"], entry["account"]) == (victim, account(BSKY, 0, victim))
    assert await pool.fetch("select * from follow_ledger where user_id = $1", fan) == before
    q = await pool.fetch(
        "select user_id, reason from directory_quarantine where x_account_id = $1", b + 1
    )
    assert [tuple(r) for r in q] == [(forger, "directory_conflict")]


async def test_forged_archive_of_a_proven_user_plans_nothing(pool: asyncpg.Pool) -> None:
    b = x_base()
    await joined(pool, b + 2, BSKY)
    forger = await joined(pool, b + 9, BSKY)
    await store_graph(pool, forger, b + 1, [b + 2])  # archive of someone else
    async with pool.acquire() as conn:
        work = await plans.on_graph(conn, forger)
    assert work.skipped == "owner_mismatch"
    assert await ledger_rows(pool, [forger]) == set()


async def test_leaving_cancels_everyones_pending_follows_of_them(pool: asyncpg.Pool) -> None:
    b = x_base()
    bob = await joined(pool, b + 2, BSKY)
    carol = await joined(pool, b + 3, BSKY)
    alice = await joined(pool, b + 1, BSKY)
    await store_graph(pool, alice, b + 1, [b + 2, b + 3])
    async with pool.acquire() as conn:
        await plans.on_graph(conn, alice)
        done = FollowResult(x_account_id=str(b + 3), account="x", state=FollowState.DONE)
        await ledger.record(pool, alice, BSKY, [done])
        await plans.on_erase(conn, bob)
        await plans.on_erase(conn, carol)
    rows = await pool.fetch(
        "select target_x_id, state from follow_ledger where user_id = $1", alice
    )
    assert [tuple(r) for r in rows] == [(b + 3, "done")]  # done is a fact; pending is gone
    assert (
        await pool.fetchval("select count(*) from directory where user_id = any($1)", [bob, carol])
        == 0
    )


async def test_unlink_and_reupload(pool: asyncpg.Pool) -> None:
    b = x_base()
    await joined(pool, b + 2, BSKY)
    await joined(pool, b + 3, BSKY)
    alice = await joined(pool, b + 1, BSKY)
    await store_graph(pool, alice, b + 1, [b + 2, b + 3])
    async with pool.acquire() as conn:
        await plans.on_graph(conn, alice)
        assert len(await ledger_rows(pool, [alice])) == 2
        await store_graph(pool, alice, b + 1, [b + 3])  # re-upload: no longer follows b+2
        await plans.on_graph(conn, alice, version=2)
        assert await ledger_rows(pool, [alice]) == {(alice, "bluesky", b + 3)}
        stale = await plans.on_graph(conn, alice, version=1)
        assert stale.skipped == "stale_event"
        await unlink(pool, alice, BSKY)
        await plans.on_unlinked(conn, alice, BSKY, datetime.now(UTC))
        assert await ledger_rows(pool, [alice]) == set()
        assert await pool.fetchval("select count(*) from directory where user_id = $1", alice) == 0


async def test_user_stats(pool: asyncpg.Pool) -> None:
    b = x_base()
    await joined(pool, b + 2, BSKY, MASTO)
    await joined(pool, b + 3, BSKY)
    alice = await joined(pool, b + 1, BSKY)
    await store_graph(pool, alice, b + 1, [b + 2, b + 3, b + 4], followers=[b + 2, b + 5])
    async with pool.acquire() as conn:
        await plans.on_graph(conn, alice)
    await ledger.note_network_follows(pool, alice, BSKY, [account(BSKY, 0, "x")])
    [r] = await ledger.pending(pool, alice, BSKY, limit=1)
    await ledger.record(
        pool,
        alice,
        BSKY,
        [
            FollowResult(
                x_account_id=r.x_account_id,
                account=r.account,
                state=FollowState.SKIPPED,
                reason="blocked",
            )
        ],
    )
    by = {s.network: s for s in await stats.user_stats(pool, alice)}
    assert by[BSKY].model_dump() == {
        "network": BSKY,
        "followings_matched": 2,
        "already_followed": 0,
        "planned": 1,
        "done": 0,
        "skipped": 1,
        "failed": 0,
        "followers_on_network": 1,
    }
    assert (by[MASTO].followings_matched, by[MASTO].followers_on_network, by[MASTO].planned) == (
        1,
        1,
        0,
    )
    g = await stats.global_stats(pool)
    assert g["directory"]["bluesky"] >= 3 and g["proven_users"] >= 3


async def test_consent_written_by_the_gateway_first_is_still_honoured(
    pool: asyncpg.Pool,
) -> None:
    """The gateway updates users.auto_reconnect, then publishes consent.changed."""
    b = x_base()
    fan = await joined(pool, b + 1, BSKY)
    await store_graph(pool, fan, b + 1, [b + 2, b + 3])
    async with pool.acquire() as conn:
        await plans.on_graph(conn, fan)
    await joined(pool, b + 2, BSKY)  # joins while fan has not opted in: nothing planned
    assert await ledger_rows(pool, [fan]) == set()
    now = datetime.now(UTC)
    await pool.execute("update users set auto_reconnect = '{bluesky}' where id = $1", fan)
    async with pool.acquire() as conn:
        await plans.on_consent(conn, fan, {BSKY: True}, now)  # catches up at once
        assert await ledger_rows(pool, [fan]) == {(fan, "bluesky", b + 2)}
        await joined(pool, b + 3, BSKY)  # reverse match: planned
        assert len(await ledger_rows(pool, [fan])) == 2
        await pool.execute("update users set auto_reconnect = '{}' where id = $1", fan)
        await plans.on_consent(conn, fan, {BSKY: False}, now + timedelta(seconds=1))
    assert await ledger_rows(pool, [fan]) == set()  # pending reconnections withdrawn


async def test_a_catch_up_before_the_graph_event_stays_the_persons_own_migration(
    pool: asyncpg.Pool,
) -> None:
    """Opting in between the graph stored and its event handled: the catch-up plans the whole
    graph as reconnections; the graph's forward match takes those rows back, so they go on the
    migration's lane and a later opt-out does not cancel them."""
    b = x_base()
    await joined(pool, b + 2, BSKY)
    fan = await joined(pool, b + 1, BSKY)
    await store_graph(pool, fan, b + 1, [b + 2])
    now = datetime.now(UTC)
    await pool.execute("update users set auto_reconnect = '{bluesky}' where id = $1", fan)
    origin = "select origin from follow_ledger where user_id = $1"
    async with pool.acquire() as conn:
        await plans.on_consent(conn, fan, {BSKY: True}, now)  # the graph event not yet handled
        assert await pool.fetchval(origin, fan) == "reverse"
        work = await plans.on_graph(conn, fan)
        assert work.dispatch == {BSKY: {fan}}
        assert await pool.fetchval(origin, fan) == "forward"
        await pool.execute("update users set auto_reconnect = '{}' where id = $1", fan)
        await plans.on_consent(conn, fan, {BSKY: False}, now + timedelta(seconds=1))
    assert await ledger_rows(pool, [fan]) == {(fan, "bluesky", b + 2)}


async def test_a_reconnection_already_sent_keeps_its_lane(pool: asyncpg.Pool) -> None:
    b = x_base()
    await joined(pool, b + 2, BSKY)
    fan = await joined(pool, b + 1, BSKY, optin=True)
    await store_graph(pool, fan, b + 1, [b + 2])
    async with pool.acquire() as conn:
        await plans.on_consent(conn, fan, {BSKY: True}, datetime.now(UTC))
        await pool.execute("update follow_ledger set batch_id = 'sent' where user_id = $1", fan)
        await plans.on_graph(conn, fan)
    row = await pool.fetchrow("select origin, batch_id from follow_ledger where user_id = $1", fan)
    assert (row["origin"], row["batch_id"]) == ("reverse", "sent")


async def test_a_friend_linked_first_but_entered_late_is_the_persons_own_migration(
    pool: asyncpg.Pool,
) -> None:
    """Bob links before Alice, but the matcher handles Alice's link first (it lags at a peak):
    her forward match cannot see him yet. His entry still reaches her, opted in or not, as her
    own migration, sent at once. Carol and Dave, who link after Alice began, are late joiners:
    nothing for Alice while she has not opted in, a reconnection left to the sweep once she has.
    """
    b = x_base()
    bob = new_user_id()
    await add_user(pool, bob, b + 2)
    await prove(pool, bob, b + 2)
    await link(pool, bob, BSKY, account(BSKY, b + 2, bob))  # linked, event not handled yet
    alice = new_user_id()
    await add_user(pool, alice, b + 1)
    await prove(pool, alice, b + 1)
    await store_graph(pool, alice, b + 1, [b + 2, b + 3, b + 4])
    await link(pool, alice, BSKY, account(BSKY, b + 1, alice))
    origins = "select target_x_id, origin from follow_ledger where user_id = $1"
    async with pool.acquire() as conn:
        await plans.on_linked(conn, alice, BSKY, datetime.now(UTC))
        assert await ledger_rows(pool, [alice]) == set()  # bob is not in the directory yet
        work = await plans.on_linked(conn, bob, BSKY, datetime.now(UTC))
        assert work.dispatch == {BSKY: {alice}}
        assert dict(await pool.fetch(origins, alice)) == {b + 2: "forward"}
        await joined(pool, b + 3, BSKY)  # carol
        assert dict(await pool.fetch(origins, alice)) == {b + 2: "forward"}
        await pool.execute("update users set auto_reconnect = '{bluesky}' where id = $1", alice)
        dave = new_user_id()
        await add_user(pool, dave, b + 4)
        await prove(pool, dave, b + 4)
        await link(pool, dave, BSKY, account(BSKY, b + 4, dave))
        work = await plans.on_linked(conn, dave, BSKY, datetime.now(UTC))
    assert alice not in work.dispatch.get(BSKY, set())
    assert dict(await pool.fetch(origins, alice)) == {b + 2: "forward", b + 4: "reverse"}


async def test_a_big_graphs_stats_are_published_less_often(pool: asyncpg.Pool) -> None:
    """Stats are measured with an index probe per edge of the graph: after a change a small
    graph waits the settle only, one with millions of followers waits its edges' share."""
    b = x_base()
    small, big = await joined(pool, b + 1, BSKY), await joined(pool, b + 2, BSKY)
    await store_graph(pool, small, b + 1, [b + 2])
    await store_graph(pool, big, b + 2, [b + 1])
    await pool.execute("update graphs set follower_count = 2000000 where user_id = $1", big)
    await stats.mark_dirty(pool, [small, big])
    dirty_since = "update match_stats_dirty set since = now() - make_interval(secs => $2)"
    await pool.execute(dirty_since + " where user_id = any($1::text[])", [small, big], 5.0)
    sent: list[str] = []

    async def publish(subject: str, message: Message, msg_id: str | None) -> None:
        sent.append(message.user_id)

    await stats.publish_dirty(pool, publish, 10_000, settle_s=1.0, s_per_edge=15e-6)
    assert small in sent and big not in sent  # 2 M edges x 15 us: 30 s
    await pool.execute(dirty_since + " where user_id = any($1::text[])", [big], 31.0)
    await stats.publish_dirty(pool, publish, 10_000, settle_s=1.0, s_per_edge=15e-6)
    assert sent.count(small) == 1 and big in sent
