"""Which budgets one Mastodon call spends (hqx.ratelimit), with head-room and time compression.

Per account: 400 follows per UTC day (aligned window) and 300 requests / 5 min per token. Per
instance: our own politeness cap on requests. A 429 or `X-RateLimit-*` headers feed `observe`,
so every replica adopts the server's view until its reset.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass

from hqx import ratelimit
from hqx.ratelimit import Budget, Charge, RateLimiter
from services.mastodon_adapter.client import parse_reset


@dataclass(frozen=True)
class Budgets:
    follows: Budget
    token: Budget
    instance: Budget

    @classmethod
    def build(cls, headroom: float, compression: float = 1.0, in_flight_s: float = 0.0) -> Budgets:
        """`in_flight_s`: the longest a call stays unanswered; the per-account windows count
        a call in flight across their boundary (`hqx.ratelimit`), as the instance may."""

        def b(x: Budget) -> Budget:
            return x.with_headroom(headroom).scaled(compression)

        return cls(
            b(ratelimit.MASTODON_FOLLOWS_DAY).tracked(in_flight_s),
            b(ratelimit.MASTODON_TOKEN_REQUESTS).tracked(in_flight_s),
            b(ratelimit.MASTODON_INSTANCE_REQUESTS),
        )

    def for_follow(self, account: str, host: str) -> list[Charge]:
        return [
            self.follows.per_unit(account, "follow"),
            self.token.per_call(account),
            self.instance.per_call(host),
        ]

    def for_request(self, account: str, host: str) -> list[Charge]:
        return [self.token.per_call(account), self.instance.per_call(host)]


async def observe_headers(
    limiter: RateLimiter, budgets: Budgets, account: str, headers: Mapping[str, str]
) -> float | None:
    """Adopt `X-RateLimit-*` (the tighter bucket of this response); returns the reset if any."""
    h = {k.lower(): v for k, v in headers.items()}
    try:
        limit = int(h["x-ratelimit-limit"])
        remaining = int(h["x-ratelimit-remaining"])
    except (KeyError, ValueError):
        return None
    if remaining > limit // 4:
        # NOTE: far from the server's limit our own count is the tighter one; adopting the
        # server's view only near its end saves a Redis call per follow and stays safe while
        # head-room > 0 (with none, the server's 429 still stops us).
        return None
    reset = parse_reset(h.get("x-ratelimit-reset"))
    if reset is None or reset <= time.time():
        return None
    budget = budgets.follows if limit == budgets.follows.points else budgets.token
    await limiter.observe(budget, account, limit=limit, remaining=remaining, reset_at=reset)
    return reset
