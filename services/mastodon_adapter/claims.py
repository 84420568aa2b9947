"""Claims on the follows in flight: one follow call per (account, target), even for twin batches.

The same rows can be in two batches running at once: a re-link re-sends what is still planned
while its batch may still run, and JetStream redelivers a message whose ack wait ran out while
its first delivery still works. Both see the rows `planned` until results are recorded, every
CHUNK. On Mastodon a second call is not harmless: it spends the account's daily follow budget
like a new follow (seen at full scale: 9 follows lost by a person at the daily cap). So a
follow is claimed before its ledger guard and the claim is kept until its result is recorded;
a batch that meets another delivery's claim leaves the target to its own redelivery, never
drops it. (Bluesky needs none: a follow's record key is derived from the pair, so a twin's
create collides.)
"""

from __future__ import annotations

from collections.abc import Iterable

import redis.asyncio as aioredis


def _key(account: str, x_account_id: str) -> str:
    return f"hqx:mastodon:claim:{account}:{x_account_id}"


async def take(
    redis: aioredis.Redis, account: str, x_account_id: str, holder: str, ttl_s: float
) -> bool:
    """Claim one follow for `holder` (a delivery: stream sequence and delivery count).

    True when it is free or already this holder's: a handler run again in place after a store
    outage is the same delivery. A killed holder's claim frees itself after `ttl_s`.
    """
    key = _key(account, x_account_id)
    if await redis.set(key, holder, nx=True, px=int(ttl_s * 1000)):
        return True
    mine = await redis.get(key)
    return mine is not None and (mine.decode() if isinstance(mine, bytes) else mine) == holder


async def release(redis: aioredis.Redis, account: str, x_account_ids: Iterable[str]) -> None:
    """Drop claims once their results are recorded (the ledger guard stops twins from then on),
    or when no follow was made."""
    keys = [_key(account, x) for x in x_account_ids]
    if keys:
        await redis.delete(*keys)
