"""How long a batch waits after its network did not answer: short at first, growing on repeats.

Counted per message, in Redis (a redelivery may land on another replica), and only for the
times that message met no answer. JetStream's `num_delivered` is no measure of that: a
limit-bound person's batch comes back many times while it waits for its windows, and a back-off
read from it would turn one timeout after ten such waits into minutes.
"""

from __future__ import annotations

import redis.asyncio as aioredis


async def unavailable_delay(
    redis: aioredis.Redis, scope: str, stream_sequence: int, first_s: float, max_s: float
) -> float:
    """`first_s`, then twice the last wait, at most `max_s`. The streak is forgotten once the
    message has gone well over a longest wait without meeting the network down again."""
    key = f"unavailable:{scope}:{stream_sequence}"
    async with redis.pipeline(transaction=True) as pipe:
        pipe.incr(key)
        pipe.expire(key, int(2 * max_s + 120))
        streak, _ = await pipe.execute()
    return float(min(max_s, first_s * 2.0 ** (int(streak) - 1)))
