"""Per-message counts of what went wrong, and the wait after a network did not answer.

JetStream's `num_delivered` is no measure of either: a limit-bound person's batch comes back many
times while it waits for its windows, and a back-off read from it would turn one timeout after
ten such waits into minutes. So a message counts its own failures, in Redis (a redelivery may
land on another replica), keyed by its stream sequence.
"""

from __future__ import annotations

import redis.asyncio as aioredis


async def count(redis: aioredis.Redis, key: str, ttl_s: float) -> int:
    """One more in `key`'s count, which is forgotten `ttl_s` after its last increment."""
    async with redis.pipeline(transaction=True) as pipe:
        pipe.incr(key)
        pipe.expire(key, int(ttl_s))
        n, _ = await pipe.execute()
    return int(n)


UNAVAILABLE_KEY = "hqx:unavailable:{}:{}"  # scope, stream sequence


async def unavailable_delay(
    redis: aioredis.Redis, scope: str, stream_sequence: int, first_s: float, max_s: float
) -> float:
    """`first_s`, then twice the last wait, at most `max_s`. The streak is forgotten once the
    message has gone well over a longest wait without meeting the network down again."""
    streak = await count(redis, UNAVAILABLE_KEY.format(scope, stream_sequence), 2 * max_s + 120)
    return float(min(max_s, first_s * 2.0 ** (streak - 1)))
