"""The adapter against the real PDS, NATS, Redis and PostgreSQL: follows land exactly once."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import asyncpg

from hqx import db, ledger
from hqx.crypto import TokenCipher
from hqx.messages import AccountPaused, FollowDone
from hqx.ratelimit import BLUESKY_WRITE_HOUR, RateLimiter
from hqx.service import Service
from hqx.settings import ServiceSettings
from hqx.subjects import CONSUMERS_BY_SERVICE, Network, Stream, follow_reconnect
from services.bluesky_adapter import identity
from services.bluesky_adapter.client import AccountClient, PdsConnections
from services.bluesky_adapter.follows import Create, record_key
from tests.eventually import drained, eventually
from tests.services.bluesky_adapter.conftest import (
    follow_counts,
    ledger_states,
    link,
    repo_follows,
    request_follows,
    targets,
)
from tests.services.bluesky_adapter.sessions import age_access_token, app_password

SPEC, RECONNECT = CONSUMERS_BY_SERVICE["bluesky_adapter"]


async def events_of(svc: Service, model: type, subject: str) -> list[Any]:
    info = await svc.js.stream_info(Stream.EVENTS.value)
    out = []
    for seq in range(info.state.first_seq, info.state.last_seq + 1):
        if info.state.messages == 0:
            break
        raw = await svc.js.get_msg(Stream.EVENTS.value, seq)
        if raw.subject == subject:
            out.append(model.model_validate_json(raw.data))
    return out


async def test_1000_follows_land_exactly_once_even_when_redelivered(
    adapter: Service, pool: asyncpg.Pool, settings: ServiceSettings, bsky_pds: dict[str, Any]
) -> None:
    user, did = await link(pool, settings, bsky_pds, bsky_pds["accounts"][0])
    ts = targets(1000)
    await request_follows(pool, adapter, user, ts)
    await drained(adapter.js, SPEC.stream.value, SPEC.durable, timeout=120)
    records = await repo_follows(bsky_pds, did)
    assert follow_counts(records, ts) == {1: 1000}
    assert {rk for _, rk in records} >= {record_key(did, t.account) for t in ts}
    assert await ledger_states(pool, user) == {"done": 1000}
    done = await events_of(adapter, FollowDone, f"hqx.follow.done.bluesky.{user}")
    assert sorted(r.x_account_id for e in done for r in e.results) == sorted(
        t.x_account_id for t in ts
    )

    # The same commands again (past the dedup window): nothing new on the PDS.
    await request_follows(pool, adapter, user, ts, again=True)
    await drained(adapter.js, SPEC.stream.value, SPEC.durable, timeout=60)
    assert follow_counts(await repo_follows(bsky_pds, did), ts) == {1: 1000}


async def test_a_retried_create_of_an_existing_key_counts_as_done(
    adapter: Service, pool: asyncpg.Pool, settings: ServiceSettings, bsky_pds: dict[str, Any]
) -> None:
    """A previous attempt died after the PDS committed: the keys exist, the ledger says planned.

    The PDS answers 500 to the colliding create; the adapter lists the repo, keeps what landed,
    and makes the rest.
    """
    user, did = await link(pool, settings, bsky_pds, bsky_pds["accounts"][1])
    ts = targets(150)
    cipher = TokenCipher(settings.token_keys)
    ident = await identity.load(pool, user)
    assert ident is not None
    c = AccountClient(ident.pds_url, ident.session(cipher))
    await c.create_follows(did, [Create(t, record_key(did, t.account)) for t in ts[:60]])
    await c.close()
    # The adapter's cache claims an empty repo (listed before that attempt).
    await adapter.redis.hset(f"hqx:bluesky:follows:{did}", mapping={"__listed__": "1"})
    await request_follows(pool, adapter, user, ts)

    # NOTE: the colliding batch ends in a retry-later (nak with a delay), during which the
    # consumer can look drained: wait for the ledger instead.
    async def all_done() -> bool:
        return await ledger_states(pool, user) == {"done": 150}

    await eventually(all_done, timeout=60)
    await drained(adapter.js, SPEC.stream.value, SPEC.durable, timeout=60)
    assert follow_counts(await repo_follows(bsky_pds, did), ts) == {1: 150}


async def test_existing_follows_handles_and_cancelled_targets(
    adapter: Service, pool: asyncpg.Pool, settings: ServiceSettings, bsky_pds: dict[str, Any]
) -> None:
    user, did = await link(pool, settings, bsky_pds, bsky_pds["accounts"][2])
    ts = targets(6)
    # The person already follows ts[0] (a record with another key, made in the app).
    ident = await identity.load(pool, user)
    assert ident is not None
    c = AccountClient(ident.pds_url, ident.session(TokenCipher(settings.token_keys)))
    await c.create_follows(did, [Create(ts[0], "3kaaaaaaaaaa2")])
    await c.close()
    bad = [
        ts[1].model_copy(update={"account": "bob.test"}),  # a handle, not a DID
        ts[2].model_copy(update={"account": did}),  # oneself
    ]
    await request_follows(pool, adapter, user, [ts[0], *bad, ts[3], ts[4]])
    # ts[5]: sent, but its ledger row was cancelled (consent withdrawn) before the adapter ran.
    await request_follows(pool, adapter, user, ts[5:], plan=False)
    await drained(adapter.js, SPEC.stream.value, SPEC.durable, timeout=60)
    rows = {
        r["target_x_id"]: (r["state"], r["reason"])
        for r in await pool.fetch("select * from follow_ledger where user_id = $1", user)
    }
    assert rows[int(ts[0].x_account_id)] == ("done", "already_following")
    assert rows[int(ts[1].x_account_id)] == ("skipped", "invalid_target")
    assert rows[int(ts[2].x_account_id)] == ("skipped", "invalid_target")
    assert rows[int(ts[3].x_account_id)] == ("done", None)
    records = await repo_follows(bsky_pds, did)
    assert follow_counts(records, [ts[0], ts[3], ts[4]]) == {1: 3}
    assert follow_counts(records, [ts[5]]) == {0: 1}  # cancelled: never followed


async def test_throttled_account_does_not_delay_another(
    adapter: Service, pool: asyncpg.Pool, settings: ServiceSettings, bsky_pds: dict[str, Any]
) -> None:
    slow_user, slow_did = await link(pool, settings, bsky_pds, bsky_pds["accounts"][3])
    fast_user, _ = await link(pool, settings, bsky_pds, bsky_pds["accounts"][4])
    limiter = RateLimiter(adapter.redis)
    assert (await limiter.acquire([BLUESKY_WRITE_HOUR.per_unit(slow_did, "create")], 1500)).ok
    slow, fast = targets(400), targets(400)
    await request_follows(pool, adapter, slow_user, slow)  # queued first
    await request_follows(pool, adapter, fast_user, fast)

    async def fast_done() -> bool:
        return (await ledger_states(pool, fast_user)).get("done") == 400

    await eventually(fast_done, timeout=30)
    assert await ledger_states(pool, slow_user) == {"planned": 400}

    async def only_the_slow_batches_wait() -> bool:
        # NOTE: the fast batch's rows are recorded just before its ack reaches the server.
        info = await adapter.js.consumer_info(SPEC.stream.value, SPEC.durable)
        return info.num_ack_pending == 2 and info.num_pending == 0  # both naked with a delay

    await eventually(only_the_slow_batches_wait, timeout=10)
    assert follow_counts(await repo_follows(bsky_pds, slow_did), slow) == {0: 400}


async def test_a_burst_of_late_joiners_does_not_delay_a_migration(
    adapter: Service,
    pool: asyncpg.Pool,
    settings: ServiceSettings,
    bsky_pds: dict[str, Any],
    bsky_accounts: Callable[[], dict[str, Any]],
) -> None:
    """A well-followed person joins: one reconnect batch per follower floods that lane. Someone
    who uploads just after gets their follows on their own lane, not behind the flood."""
    follower, _ = await link(pool, settings, bsky_pds, bsky_accounts())
    newcomer, _ = await link(pool, settings, bsky_pds, bsky_accounts())
    flood = targets(300)
    await request_follows(pool, adapter, follower, flood, size=1, lane=follow_reconnect)
    await request_follows(pool, adapter, newcomer, targets(5))

    async def newcomer_done() -> bool:
        return (await ledger_states(pool, newcomer)).get("done") == 5

    await eventually(newcomer_done, timeout=60)
    # one lane would have served the flood first (FIFO): most of it would be done by now
    assert (await ledger_states(pool, follower)).get("done", 0) < len(flood) // 2
    await drained(adapter.js, RECONNECT.stream.value, RECONNECT.durable, timeout=120)
    assert await ledger_states(pool, follower) == {"done": 300}


async def test_revoked_session_pauses_the_account_and_tells_the_person(
    adapter: Service, pool: asyncpg.Pool, settings: ServiceSettings, bsky_pds: dict[str, Any]
) -> None:
    account = bsky_pds["accounts"][5]
    async with app_password(bsky_pds, account) as (password, revoke):
        user, did = await link(pool, settings, bsky_pds, {**account, "appPassword": password})
        await revoke()
    await age_access_token(pool, settings, user)  # the SDK must refresh: the refresh is refused
    ts = targets(10)
    await request_follows(pool, adapter, user, ts)
    await drained(adapter.js, SPEC.stream.value, SPEC.durable, timeout=30)
    ident = await identity.load(pool, user)
    assert ident is not None and ident.status == "paused"
    paused = await events_of(adapter, AccountPaused, f"hqx.account.paused.bluesky.{user}")
    assert [p.reason for p in paused] == ["session_revoked"]
    assert await ledger_states(pool, user) == {"planned": 10}  # kept for a re-link
    assert follow_counts(await repo_follows(bsky_pds, did), ts) == {0: 10}


async def test_expired_access_token_is_refreshed_and_stored(
    adapter: Service, pool: asyncpg.Pool, settings: ServiceSettings, bsky_pds: dict[str, Any]
) -> None:
    user, _ = await link(pool, settings, bsky_pds, bsky_pds["accounts"][6])
    before = await age_access_token(pool, settings, user)
    ts = targets(5)
    await request_follows(pool, adapter, user, ts)
    await drained(adapter.js, SPEC.stream.value, SPEC.durable, timeout=30)
    assert await ledger_states(pool, user) == {"done": 5}
    ident = await identity.load(pool, user)
    assert ident is not None
    after = ident.session(TokenCipher(settings.token_keys)).get_secret_value()
    assert after.split(":::")[3] != before.split(":::")[3]  # a new refresh JWT was stored


async def test_erased_user_gets_nothing(
    adapter: Service, pool: asyncpg.Pool, settings: ServiceSettings, bsky_pds: dict[str, Any]
) -> None:
    user, did = await link(pool, settings, bsky_pds, bsky_pds["accounts"][7])
    ts = targets(20)
    await ledger.plan(pool, user, Network.BLUESKY, ts)
    await pool.execute("insert into erased_users (user_hash) values ($1)", db.user_hash(user))
    await request_follows(pool, adapter, user, ts)
    await drained(adapter.js, SPEC.stream.value, SPEC.durable, timeout=30)
    assert follow_counts(await repo_follows(bsky_pds, did), ts) == {0: 20}


async def test_accounts_on_one_pds_share_connections_not_credentials(
    pool: asyncpg.Pool,
    settings: ServiceSettings,
    bsky_pds: dict[str, Any],
    bsky_accounts: Callable[[], dict[str, Any]],
) -> None:
    """Two accounts' batches interleaved over one PDS's pool: each lands in its own repo only
    (each request carries its own account's token), and the pool keeps no cookie."""
    cipher = TokenCipher(settings.token_keys)
    pools = PdsConnections()
    linked = [await link(pool, settings, bsky_pds, bsky_accounts()) for _ in range(2)]
    ts = {did: targets(30) for _, did in linked}
    try:
        clients = []
        for user, did in linked:
            ident = await identity.load(pool, user)
            assert ident is not None
            clients.append((did, AccountClient(ident.pds_url, ident.session(cipher), pools=pools)))
        for i in range(0, 30, 10):
            await asyncio.gather(
                *(
                    c.create_follows(
                        did, [Create(t, record_key(did, t.account)) for t in ts[did][i : i + 10]]
                    )
                    for did, c in clients
                )
            )
        for _, c in clients:
            await c.close()  # the account's run ends; the PDS's pool stays open
        (http,) = pools._pools.values()
        assert not http.is_closed and not http.cookies
        for _, did in linked:
            records = await repo_follows(bsky_pds, did)
            assert {s for s, _ in records} == {t.account for t in ts[did]}
    finally:
        await pools.close()
    assert http.is_closed
