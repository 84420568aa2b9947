"""Against the PDS with its real rate limits on: we stop before it does, and honour its 429."""

from __future__ import annotations

import time
from typing import Any

import asyncpg

from hqx import metrics
from hqx.crypto import TokenCipher
from hqx.ratelimit import BLUESKY_WRITE_HOUR, RateLimiter
from hqx.service import Service
from hqx.settings import ServiceSettings
from services.bluesky_adapter import identity
from services.bluesky_adapter.client import AccountClient, RateLimitedError
from services.bluesky_adapter.follows import Create, record_key
from tests.eventually import eventually
from tests.services.bluesky_adapter.conftest import (
    follow_counts,
    ledger_states,
    link,
    repo_follows,
    request_follows,
    targets,
)
from tests.services.bluesky_adapter.test_adapter import SPEC


def rate_limited_responses() -> float:
    return metrics.NETWORK_REQUESTS.labels(
        "bluesky_adapter", "bluesky", "rate_limited"
    )._value.get()


async def person_client(pool: asyncpg.Pool, settings: ServiceSettings, user: str) -> AccountClient:
    """The person's own app, using the same session as the adapter."""
    ident = await identity.load(pool, user)
    assert ident is not None
    return AccountClient(ident.pds_url, ident.session(TokenCipher(settings.token_keys)))


def account(pds: dict[str, Any], name: str) -> dict[str, Any]:
    return next(a for a in pds["accounts"] if a["name"] == name)


async def test_no_429_in_normal_operation_and_headroom_is_left_for_the_person(
    adapter: Service,
    pool: asyncpg.Pool,
    settings: ServiceSettings,
    bsky_pds_limited: dict[str, Any],
) -> None:
    pds = bsky_pds_limited
    user, did = await link(pool, settings, pds, account(pds, "user1"))
    before = rate_limited_responses()
    ts = targets(1600)  # more than an hour's budget (1,666 creates, 1,500 with head-room)
    await request_follows(pool, adapter, user, ts)

    async def budget_spent() -> bool:
        return await ledger_states(pool, user) == {"done": 1500, "planned": 100}

    await eventually(budget_spent, timeout=120, interval=0.1)

    async def deferred() -> bool:
        info = await adapter.js.consumer_info(SPEC.stream.value, SPEC.durable)
        return info.num_pending == 0 and info.num_ack_pending == 1

    await eventually(deferred, timeout=30)
    assert rate_limited_responses() == before
    assert follow_counts(await repo_follows(pds, did), ts) == {1: 1500, 0: 100}
    # The person can still use their account: 480 points of their own fit in the hour.
    person = await person_client(pool, settings, user)
    own = targets(160)
    await person.create_follows(did, [Create(t, record_key(did, t.account)) for t in own])
    await person.close()


async def test_an_injected_429_is_honoured_and_other_accounts_go_on(
    adapter: Service,
    pool: asyncpg.Pool,
    settings: ServiceSettings,
    bsky_pds_limited: dict[str, Any],
) -> None:
    pds = bsky_pds_limited
    user, did = await link(pool, settings, pds, account(pds, "user2"))
    other_user, _ = await link(pool, settings, pds, account(pds, "user3"))
    # The person spends 4,800 of the hour's 5,000 points in their own app: we cannot know.
    person = await person_client(pool, settings, user)
    for _ in range(8):
        own = targets(200)
        await person.create_follows(did, [Create(t, record_key(did, t.account)) for t in own])
    await person.close()
    before = rate_limited_responses()

    ts, other = targets(200), targets(200)
    await request_follows(pool, adapter, user, ts)
    await request_follows(pool, adapter, other_user, other)

    async def throttled_and_other_done() -> bool:
        return rate_limited_responses() == before + 1 and (
            await ledger_states(pool, other_user)
        ) == {"done": 200}

    await eventually(throttled_and_other_done, timeout=60, interval=0.05)
    assert await ledger_states(pool, user) == {"planned": 200}
    # The PDS's reset now rules our budget for this DID: no retry before it (no 429 storm).
    g = await RateLimiter(adapter.redis).acquire(
        [BLUESKY_WRITE_HOUR.per_unit(did, "create")], units=1
    )
    assert not g.ok and g.wait_s > 3000
    info = await adapter.js.consumer_info(SPEC.stream.value, SPEC.durable)
    assert info.num_pending == 0 and info.num_ack_pending == 1
    assert rate_limited_responses() == before + 1
    assert follow_counts(await repo_follows(pds, did), ts) == {0: 200}


async def test_429_carries_the_servers_reset(
    pool: asyncpg.Pool, settings: ServiceSettings, bsky_pds_limited: dict[str, Any]
) -> None:
    """What the adapter relies on: a 429 maps to RateLimitedError with RateLimit-* headers."""
    pds = bsky_pds_limited
    user, did = await link(pool, settings, pds, account(pds, "user4"))
    person = await person_client(pool, settings, user)
    error = None
    try:
        for _ in range(9):
            own = targets(200)
            await person.create_follows(did, [Create(t, record_key(did, t.account)) for t in own])
    except RateLimitedError as e:
        error = e
    finally:
        await person.close()
    assert error is not None
    assert error.headers["ratelimit-policy"] == "5000;w=3600"
    assert time.time() < float(error.headers["ratelimit-reset"]) <= time.time() + 3601
