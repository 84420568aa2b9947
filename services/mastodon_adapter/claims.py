"""Claims on the follows in flight: one follow call per (account, target), even for twin batches.

The same rows can be in two batches running at once: a re-link re-sends what is still planned
while its batch may still run, and JetStream redelivers a message whose ack wait ran out while
its first delivery still works. Both see the rows `planned` until results are recorded, every
CHUNK. On Mastodon a second call is not harmless: it spends the account's daily follow budget
like a new follow (seen at full scale: 9 follows lost by a person at the daily cap). So a
follow is claimed before its ledger guard and the claim is kept until its result is recorded;
a batch that meets another delivery's claim leaves the target to its own redelivery, never
drops it. (Bluesky needs none: a follow's record key is derived from the pair, so a twin's
create collides.) A target this message held before, and may have followed without recording
it (a kill, a store outage), is asked about first: a request, not a unit of the daily budget.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import Enum

import redis.asyncio as aioredis


def _key(account: str, x_account_id: str) -> str:
    return f"hqx:mastodon:claim:{account}:{x_account_id}"


class Claim(Enum):
    TAKEN = "taken"
    # Held before by this message: this delivery before a store outage (run again in place), or
    # an earlier delivery that died on it. It may have followed and not recorded it: ask the
    # instance before following.
    RETAKEN = "retaken"
    HELD = "held"  # by another message's delivery, alive or not yet expired


async def take(
    redis: aioredis.Redis,
    account: str,
    x_account_id: str,
    holder: str,
    ttl_s: float,
    quiet_s: float,
) -> Claim:
    """Claim one follow for `holder` (a delivery, as `holder_of` names it).

    Taken when it is free; retaken when it is already this holder's (a handler run again in
    place after a store outage is the same delivery), or an earlier delivery's of the same
    message once the claim is `quiet_s` old: by then that delivery, were it alive, would have
    made its last call (a batch's time limit, then a call's timeout), so it was killed, and
    what it left in flight is known here (the claim outlives the ack wait). Sooner, it may
    still be running (redelivered after a NATS restart): held, as another message's claim is,
    which frees itself after `ttl_s`.
    """
    key = _key(account, x_account_id)
    px = int(ttl_s * 1000)
    if await redis.set(key, holder, nx=True, px=px):
        return Claim.TAKEN
    raw = await redis.get(key)
    held = raw.decode() if isinstance(raw, bytes) else raw
    if held == holder:
        return Claim.RETAKEN
    if held is not None and _earlier_delivery(held, holder):
        age_ms = px - await redis.pttl(key)
        if age_ms >= quiet_s * 1000 and await redis.set(key, holder, xx=True, px=px):
            return Claim.RETAKEN
    return Claim.HELD


def holder_of(stream_sequence: int, num_delivered: int) -> str:
    """Who holds a claim: one delivery of one message (`_earlier_delivery` reads it back)."""
    return f"{stream_sequence}:{num_delivered}"


def _earlier_delivery(held: str, holder: str) -> bool:
    seq, _, n = held.partition(":")
    my_seq, _, my_n = holder.partition(":")
    return seq == my_seq and n.isdigit() and my_n.isdigit() and int(n) < int(my_n)


async def release(redis: aioredis.Redis, account: str, x_account_ids: Iterable[str]) -> None:
    """Drop claims once their results are recorded (the ledger guard stops twins from then on),
    or when no follow was made."""
    keys = [_key(account, x) for x in x_account_ids]
    if keys:
        await redis.delete(*keys)
