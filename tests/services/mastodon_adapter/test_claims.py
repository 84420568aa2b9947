"""Twin batches holding the same rows at once (a re-link's re-send, a redelivery after an ack
wait ran out mid-work): each follow is called once."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import redis.asyncio as aioredis

from hqx import ledger, subjects
from hqx.messages import FollowRequested
from hqx.settings import ServiceSettings
from services.mastodon_adapter import claims
from tests.eventually import drained
from tests.peers.mastodon import following
from tests.peers.mastodon_limits import LimitFront
from tests.services.mastodon_adapter.conftest import adapter_settings, link_identity, remote
from tests.services.mastodon_adapter.test_handlers import (
    NET,
    SPEC,
    ledger_states,
    run_adapter,
    targets,
)


async def test_a_claim_is_its_holders_until_released_or_expired(redis_url: str) -> None:
    r = aioredis.from_url(redis_url)
    a, C = "acct@test.example", claims.Claim
    try:
        await claims.release(r, a, ["1", "2"])
        assert await claims.take(r, a, "1", "7:1", 1.0, 0.2) is C.TAKEN
        assert await claims.take(r, a, "1", "7:1", 1.0, 0.2) is C.RETAKEN  # run again in place
        assert await claims.take(r, a, "1", "8:1", 1.0, 0.2) is C.HELD  # another message: a twin
        # its redelivery: the earlier delivery may still run, until the claim is quiet
        assert await claims.take(r, a, "1", "7:2", 1.0, 0.2) is C.HELD
        await asyncio.sleep(0.3)
        assert await claims.take(r, a, "1", "7:2", 1.0, 0.2) is C.RETAKEN
        assert await claims.take(r, a, "1", "7:1", 1.0, 0.0) is C.HELD  # the earlier one, back
        assert await claims.take(r, a, "2", "8:1", 1.0, 0.2) is C.TAKEN  # another target
        await claims.release(r, a, ["1"])
        assert await claims.take(r, a, "1", "9:1", 0.3, 0.2) is C.TAKEN
        await asyncio.sleep(0.5)  # the holder was killed: its claim frees itself
        assert await claims.take(r, a, "1", "8:1", 1.0, 0.2) is C.TAKEN
    finally:
        await claims.release(r, a, ["1", "2"])
        await r.aclose()


async def test_twin_deliveries_of_a_batch_call_each_follow_once(
    settings: ServiceSettings,
    pool: asyncpg.Pool,
    mastodon: dict[str, Any],
    front: LimitFront,
    user_id: str,
) -> None:
    """Two replicas hold the same rows in two batches at once, as after a re-link re-sent a
    batch still running: both see every row planned, yet every target is followed once, none
    is lost, and the twin that left targets comes back."""
    replicas = [await run_adapter(settings, claim_retry_s=0.5) for _ in range(2)]
    try:
        await link_identity(
            pool,
            adapter_settings(settings),
            user_id,
            front.base_url,
            f"erin@{mastodon['domain']}",
            "erin-token",
        )
        ts = targets([remote(i) for i in range(1, 61)])
        await ledger.plan(pool, user_id, NET, ts)
        twins = [
            FollowRequested(user_id=user_id, network=NET, targets=tuple(ts), plan=p)
            for p in ("1", "2")  # the same rows in two messages: JetStream keeps both
        ]
        await asyncio.gather(
            *(
                svc.publish(subjects.follow_requested(NET, user_id), m, msg_id=m.msg_id())
                for svc, m in zip(replicas, twins, strict=True)
            )
        )
        await drained(replicas[0].js, SPEC.stream.value, SPEC.durable, timeout=60)
        assert sorted(following(mastodon, "erin-token")) == sorted(t.account for t in ts)
        assert front.stats["follows_new"] == len(ts)
        assert front.stats["follows_repeated"] == 0
        assert {st for st, _ in (await ledger_states(pool, user_id)).values()} == {"done"}
    finally:
        for svc in replicas:
            await svc.stop()
