"""The handler called directly (real PDS, PostgreSQL, Redis): each outcome of the table."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import pytest
import redis.asyncio as aioredis
from pydantic import SecretStr

from hqx import db, ledger
from hqx.crypto import TokenCipher
from hqx.embedded import free_port
from hqx.messages import FollowRequested, Message
from hqx.outcomes import Done, RetryLater, Skipped
from hqx.ratelimit import RateLimiter
from hqx.settings import ServiceSettings
from hqx.subjects import Network
from services.bluesky_adapter import identity
from services.bluesky_adapter.handlers import handle_follow_requested
from services.bluesky_adapter.run import Deps
from tests.services.bluesky_adapter.conftest import (
    adapter_settings,
    follow_counts,
    ledger_states,
    link,
    new_user,
    repo_follows,
    targets,
)


@dataclass
class FakeDelivery:
    """Only what the handler reads of a JetStream delivery (a new message unless told)."""

    num_delivered: int = 1
    stream_sequence: int = field(default_factory=lambda: secrets.randbelow(2**62))


@pytest.fixture
async def deps(
    pool: asyncpg.Pool, redis_url: str, settings: ServiceSettings
) -> AsyncIterator[Deps]:
    r = aioredis.from_url(redis_url)
    published: list[Message] = []

    async def publish(subject: str, message: Message, msg_id: str) -> None:
        published.append(message)

    d = Deps(
        pool,
        r,
        RateLimiter(r),
        TokenCipher(settings.token_keys),
        adapter_settings(settings),
        publish,
    )
    d.published = published  # type: ignore[attr-defined]
    yield d
    await r.aclose()


def batch(user: str, ts: list) -> FollowRequested:  # type: ignore[type-arg]
    return FollowRequested(user_id=user, network=Network.BLUESKY, targets=tuple(ts))


async def test_erase_during_a_run_stops_the_follows(
    deps: Deps, pool: asyncpg.Pool, settings: ServiceSettings, bsky_pds: dict[str, Any]
) -> None:
    user, did = await link(pool, settings, bsky_pds, bsky_pds["accounts"][9])
    deps.settings = deps.settings.model_copy(update={"batch_size": 50})
    ts = targets(200)  # four applyWrites of 50
    await ledger.plan(pool, user, Network.BLUESKY, ts)
    publish = deps.publish

    async def erase_after_first(subject: str, message: Message, msg_id: str) -> None:
        await publish(subject, message, msg_id)
        await pool.execute(
            "insert into erased_users (user_hash) values ($1) on conflict do nothing",
            db.user_hash(user),
        )

    deps.publish = erase_after_first
    out = await handle_follow_requested(batch(user, ts), FakeDelivery(), deps)  # type: ignore[arg-type]
    assert out == Skipped("user_erased")
    assert follow_counts(await repo_follows(bsky_pds, did), ts) == {1: 50, 0: 150}


async def test_unreachable_pds_retries_later_with_backoff_and_loses_nothing(
    deps: Deps, pool: asyncpg.Pool, settings: ServiceSettings, bsky_pds: dict[str, Any]
) -> None:
    user, _ = await link(pool, settings, bsky_pds, bsky_pds["accounts"][10])
    port = free_port()
    dead = f"http://127.0.0.1:{port}"
    await pool.execute("update identities set instance = $2 where user_id = $1", user, dead)
    # The SDK keeps the PDS endpoint inside the session too: point both at the dead port.
    ident = await identity.load(pool, user)
    assert ident is not None
    parts = ident.session(deps.cipher).get_secret_value().split(":::")
    parts[-1] = dead
    await identity.save_session(pool, deps.cipher, user, ident.did, SecretStr(":::".join(parts)))
    ts = targets(10)
    await ledger.plan(pool, user, Network.BLUESKY, ts)
    # Delivered 9 times (8 of them waits for a window, say): its first unanswered try still
    # comes back soon; the wait doubles only on the message's own repeats.
    deps.settings = deps.settings.model_copy(update={"max_backoff_s": 5.0})
    seq = FakeDelivery().stream_sequence
    waits = []
    for n in (9, 10, 11):
        out = await handle_follow_requested(batch(user, ts), FakeDelivery(n, seq), deps)  # type: ignore[arg-type]
        assert isinstance(out, RetryLater) and out.reason == "network_unavailable"
        waits.append(out.delay_s)
    assert waits == [2.0, 4.0, 5.0]
    other = await handle_follow_requested(batch(user, ts), FakeDelivery(9), deps)  # type: ignore[arg-type]
    assert isinstance(other, RetryLater) and other.delay_s == 2.0  # another message: its own
    assert await ledger_states(pool, user) == {"planned": 10}


async def test_not_linked_paused_and_redelivered_batches(
    deps: Deps, pool: asyncpg.Pool, settings: ServiceSettings, bsky_pds: dict[str, Any]
) -> None:
    user, did = await link(pool, settings, bsky_pds, bsky_pds["accounts"][11])
    ts = targets(30)
    await ledger.plan(pool, user, Network.BLUESKY, ts)
    msg = batch(user, ts)
    assert await handle_follow_requested(msg, FakeDelivery(), deps) == Done()  # type: ignore[arg-type]
    # Redelivered (the ack was lost): nothing is planned any more, nothing is sent.
    again = await handle_follow_requested(msg, FakeDelivery(2), deps)  # type: ignore[arg-type]
    assert again == Done("nothing planned")
    assert follow_counts(await repo_follows(bsky_pds, did), ts) == {1: 30}

    await pool.execute("update identities set status = 'paused' where user_id = $1", user)
    more = targets(3)
    await ledger.plan(pool, user, Network.BLUESKY, more)
    paused = await handle_follow_requested(batch(user, more), FakeDelivery(), deps)  # type: ignore[arg-type]
    assert paused == Skipped("account_paused")

    stranger = await new_user(pool)
    none = await handle_follow_requested(batch(stranger, more), FakeDelivery(), deps)  # type: ignore[arg-type]
    assert none == Skipped("not_linked")
