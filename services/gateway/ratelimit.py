"""Per-IP and per-user request limits: a fixed window counter in Redis, one round trip."""

from __future__ import annotations

import hashlib
import time

import redis.asyncio as aioredis

# NOTE: INCR then set the expiry only on the first hit, atomically, so a key never lives forever.
_SCRIPT = """
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
return n
"""

KEY = "hqx:reqlimit:{}:{}:{}"  # kind, hashed caller, window


class RequestLimiter:
    def __init__(self, redis: aioredis.Redis, window_s: int) -> None:
        self._redis = redis
        self._window = window_s
        self._script = redis.register_script(_SCRIPT)

    async def hit(self, kind: str, who: str, limit: int) -> float | None:
        """Count one request; returns seconds to wait when over `limit`, else None."""
        now = time.time()
        window = int(now // self._window)
        # NOTE: hashed, so no key names a person (an erase leaves nothing to find, even here).
        tag = hashlib.sha256(f"{kind}|{who}".encode()).hexdigest()[:24]
        key = KEY.format(kind, tag, window)
        n = int(await self._script(keys=[key], args=[self._window + 1]))
        if n > limit:
            return (window + 1) * self._window - now
        return None
