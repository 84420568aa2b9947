"""Named rate budgets shared by every replica in Redis, spent atomically by one Lua script.

A `Budget` is one named limit of a network (the PDS's `repo-write-hour`, Mastodon's 400 follows
a day): a window, a number of points, a cost per operation and a head-room fraction left for
the person's own use. Our cap is `points * (1 - headroom)`.

Two window kinds:
- `sliding`: a log of spends (Redis sorted set); in ANY interval of `window_s` we spend at most
  the cap. This is what keeps us inside a server whose own window starts whenever it likes
  (the PDS's fixed windows start at the first request it sees).
- `aligned`: a fixed window aligned to the epoch (for 24 h: UTC midnight), as Mastodon counts
  (`RateLimiter` families and Rack::Attack throttles alike). A sliding log would be safe there
  too, but it cannot use a boundary: 270 requests spent 2 s before one leave it shut for the next
  5 min, where the server has already opened a new window. Our clock and the server's differ by
  a little, so we spend nothing within `guard_s` of either edge of an aligned window.

`RateLimiter.acquire` spends several budgets at once — all or nothing — and may grant fewer
units than asked (never fewer than `min_units`), so a batch shrinks to what the budgets allow
instead of waiting for room for all of it. When nothing can be granted it returns the wait until
enough points refill: the caller re-delivers later (nak with that delay), it never sleeps.

A server counts a call when it arrives, and a call granted just before an aligned boundary may
arrive after it, where the next window would grant the full cap again. So a budget with
`in_flight_s` keeps its granted calls in flight (`:fly`, a sorted set) until `answered`: when a
window turns, whatever is still unanswered counts in the new window too. A call never answered
(its replica killed) stops counting after `in_flight_s`.

The server's view wins: `observe` records what `RateLimit-*` headers (or a 429 and its reset)
say, and until that reset we count at least the server's usage plus what we spent since.

Keys: `hqx:budget:<network>:<account>:<budget>` (+ `:total`, `:server`, `:fly`). Clock: Redis
`TIME`, so replicas with skewed clocks agree. All keys expire on their own.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

import redis.asyncio as aioredis

DEFAULT_HEADROOM = 0.10
PREFIX = "hqx:budget"


@dataclass(frozen=True)
class Budget:
    """One named limit: `points` per `window_s`, an op costs `costs[op]` points."""

    network: str
    name: str
    window_s: float
    points: int
    costs: Mapping[str, int] = field(default_factory=lambda: {"request": 1})
    headroom: float = DEFAULT_HEADROOM
    kind: Literal["sliding", "aligned"] = "sliding"
    guard_s: float = 0.0  # aligned only: no spend this close to either edge (clock skew)
    # aligned only: the longest a call stays unanswered (waiting for a thread, then its
    # timeout); 0: calls are not tracked in flight. Wall time: `scaled` leaves it.
    in_flight_s: float = 0.0

    @property
    def cap(self) -> int:
        """Points we allow ourselves per window: the rest is the person's own head-room."""
        return math.floor(self.points * (1.0 - self.headroom))

    @property
    def window_ms(self) -> int:
        return max(1, round(self.window_s * 1000))

    @property
    def guard_ms(self) -> int:
        return min(round(self.guard_s * 1000), self.window_ms // 4)

    @property
    def in_flight_ms(self) -> int:
        return round(self.in_flight_s * 1000) if self.kind == "aligned" else 0

    def key(self, account: str) -> str:
        return f"{PREFIX}:{self.network}:{account}:{self.name}"

    def per_unit(self, account: str, op: str) -> Charge:
        """Each granted unit costs `costs[op]` (e.g. one follow record = one create = 3)."""
        return Charge(self, account, per_unit=self.costs[op])

    def per_call(self, account: str, op: str = "request") -> Charge:
        """The call costs `costs[op]` whatever the number of units (e.g. one HTTP request)."""
        return Charge(self, account, fixed=self.costs[op])

    def tracked(self, in_flight_s: float) -> Budget:
        """The same budget, its calls counted in flight until answered (at most `in_flight_s`)."""
        return replace(self, in_flight_s=in_flight_s)

    def with_headroom(self, headroom: float) -> Budget:
        return replace(self, headroom=headroom)

    def scaled(self, factor: float) -> Budget:
        """The same budget with time compressed (factor 1000: one hour lasts 3.6 s)."""
        return replace(self, window_s=self.window_s / factor, guard_s=self.guard_s / factor)


def units_per_minute(budgets: Iterable[Budget], op: str) -> float:
    """Sustained `op`s per minute one account may make under all these budgets (the tightest)."""
    return min(b.cap / b.costs[op] / (b.window_s / 60.0) for b in budgets)


@dataclass(frozen=True)
class Charge:
    """What one acquire spends on one budget of one account: `fixed + units * per_unit`."""

    budget: Budget
    account: str
    per_unit: int = 0
    fixed: int = 0


@dataclass(frozen=True)
class Grant:
    """`units` granted (spent), or 0 with `wait_s` until `min_units` would fit."""

    units: int
    wait_s: float
    limited_by: str | None = None
    at: float = 0.0  # when Redis decided (epoch seconds): the spend's place in the windows
    _nonce: str = ""
    _spent: tuple[tuple[Budget, str, int], ...] = ()  # (budget, account, points)

    @property
    def ok(self) -> bool:
        return self.wait_s <= 0


class BudgetTooSmallError(ValueError):
    """A request can never fit (its cost exceeds the budget's cap): a caller bug."""


# --- the budgets table -------------------------------------------------------------------
# Bluesky PDS (@atproto/pds rate-limits.ts): per DID, creates cost 3, updates 2, deletes 1.
_REPO_WRITE_COSTS = {"create": 3, "update": 2, "delete": 1}
BLUESKY_WRITE_HOUR = Budget("bluesky", "repo-write-hour", 3600, 5000, _REPO_WRITE_COSTS)
BLUESKY_WRITE_DAY = Budget("bluesky", "repo-write-day", 86400, 35000, _REPO_WRITE_COSTS)
# Per client IP on the PDS; we key it per PDS host (all our calls to a host share our egress).
BLUESKY_HOST_REQUESTS = Budget("bluesky", "host-requests", 300, 3000)
# createSession: 30 / 5 min and 300 / day per identifier (linking only; we never log in per batch).
BLUESKY_SESSION_5MIN = Budget("bluesky", "create-session-5min", 300, 30, {"login": 1})
BLUESKY_SESSION_DAY = Budget("bluesky", "create-session-day", 86400, 300, {"login": 1})
# Mastodon: 400 follows per account per 24 h window (aligned to UTC midnight); 300 requests per
# 5 min per token and 1,500 per user (Rack::Attack: fixed periods aligned to the epoch); our own
# politeness cap per instance.
_SKEW_S = 1.0  # NTP keeps servers within milliseconds; a second spares one that drifted
MASTODON_FOLLOWS_DAY = Budget(
    "mastodon", "follows-day", 86400, 400, {"follow": 1}, kind="aligned", guard_s=_SKEW_S
)
MASTODON_TOKEN_REQUESTS = Budget(
    "mastodon", "token-requests", 300, 300, kind="aligned", guard_s=_SKEW_S
)
MASTODON_USER_REQUESTS = Budget(
    "mastodon", "user-requests", 300, 1500, kind="aligned", guard_s=_SKEW_S
)
MASTODON_INSTANCE_REQUESTS = Budget("mastodon", "instance-requests", 300, 3000)

BUDGETS: Mapping[str, Budget] = {
    f"{b.network}:{b.name}": b
    for b in (
        BLUESKY_WRITE_HOUR,
        BLUESKY_WRITE_DAY,
        BLUESKY_HOST_REQUESTS,
        BLUESKY_SESSION_5MIN,
        BLUESKY_SESSION_DAY,
        MASTODON_FOLLOWS_DAY,
        MASTODON_TOKEN_REQUESTS,
        MASTODON_USER_REQUESTS,
        MASTODON_INSTANCE_REQUESTS,
    )
}

# Lua: an aligned budget's window and count, rolled over to the current window if it turned
# since the last spend: calls granted before and still unanswered may arrive in it, so they
# count there (entries older than `fly` ms are from a killed caller and dropped).
_ROLL = """
local function roll(base, flyk, win, fly, now)
  local w = math.floor(now / win)
  local h = redis.call('HMGET', base, 'w', 'used')
  if tonumber(h[1]) == w then return w, tonumber(h[2]) end
  local u = 0
  if fly > 0 then
    redis.call('ZREMRANGEBYSCORE', flyk, '-inf', now - fly)
    for _, m in ipairs(redis.call('ZRANGE', flyk, 0, -1)) do
      u = u + tonumber(string.match(m, ':(%d+)$'))
    end
    if u > 0 then
      redis.call('HSET', base, 'w', w, 'used', u)
      redis.call('PEXPIREAT', base, (w + 1) * win + 1000)
    end
  end
  return w, u
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

# KEYS: per charge (base, total, server, fly). ARGV: units, min_units, nonce, then per charge
# (window_ms, cap, per_unit, fixed, kind 0=sliding 1=aligned, guard_ms, in_flight_ms).
# Returns {granted, wait_ms, limiting charge index (1-based, 0 = none), Redis time ms};
# wait_ms -1: never fits.
_ACQUIRE = (
    _ROLL
    + """
local units = tonumber(ARGV[1])
local min_units = tonumber(ARGV[2])
local nonce = ARGV[3]
local n = #KEYS / 4
local best = units
local limiting = 0
local st = {}
for i = 1, n do
  local base, totk, srvk, flyk = KEYS[4*i-3], KEYS[4*i-2], KEYS[4*i-1], KEYS[4*i]
  local o = 3 + (i - 1) * 7
  local win, cap = tonumber(ARGV[o+1]), tonumber(ARGV[o+2])
  local pu, fx, kind = tonumber(ARGV[o+3]), tonumber(ARGV[o+4]), tonumber(ARGV[o+5])
  local guard, fly = tonumber(ARGV[o+6]), tonumber(ARGV[o+7])
  local u, w, shut = 0, 0, 0
  if kind == 0 then
    local old = redis.call('ZRANGEBYSCORE', base, '-inf', now - win)
    u = tonumber(redis.call('GET', totk) or '0')
    if #old > 0 then
      local s = 0
      for _, m in ipairs(old) do s = s + tonumber(string.match(m, ':(%d+)$')) end
      redis.call('ZREMRANGEBYSCORE', base, '-inf', now - win)
      u = math.max(0, u - s)
      redis.call('SET', totk, u, 'PX', win + 1000)
    end
  else
    w, u = roll(base, flyk, win, fly, now)
    local pos = now - w * win
    if pos < guard then shut = guard - pos
    elseif pos >= win - guard then shut = win - pos + guard end
  end
  local s = redis.call('HMGET', srvk, 'used', 'extra', 'until')
  local su, suntil = 0, 0
  if s[1] and tonumber(s[3]) > now then
    su = tonumber(s[1]) + tonumber(s[2] or '0')
    suntil = tonumber(s[3])
  end
  local eff = math.max(u, su)
  st[i] = {base=base, totk=totk, srvk=srvk, flyk=flyk, win=win, cap=cap, pu=pu, fx=fx,
           kind=kind, u=u, w=w, su=su, suntil=suntil, shut=shut, guard=guard, fly=fly}
  local room = cap - eff - fx
  local k
  if room < 0 or shut > 0 then k = -1
  elseif pu == 0 then k = units else k = math.floor(room / pu) end
  if k < best then best = k; limiting = i end
end
if best >= min_units then
  for i = 1, n do
    local c = st[i]
    local cost = c.fx + best * c.pu
    if cost > 0 then
      if c.kind == 0 then
        redis.call('ZADD', c.base, now, nonce .. ':' .. cost)
        redis.call('PEXPIRE', c.base, c.win + 1000)
        redis.call('SET', c.totk, c.u + cost, 'PX', c.win + 1000)
      else
        redis.call('HSET', c.base, 'w', c.w, 'used', c.u + cost)
        redis.call('PEXPIREAT', c.base, (c.w + 1) * c.win + 1000)
        if c.fly > 0 then
          redis.call('ZADD', c.flyk, now, nonce .. ':' .. cost)
          redis.call('PEXPIRE', c.flyk, c.fly + 1000)
        end
      end
      if c.suntil > now then redis.call('HINCRBY', c.srvk, 'extra', cost) end
    end
  end
  return {best, 0, limiting, now}
end
local wait, worst = 0, 0
for i = 1, n do
  local c = st[i]
  local need = c.fx + min_units * c.pu
  if need > c.cap then return {0, -1, i, now} end
  local wi = c.shut
  if c.su + need > c.cap then wi = math.max(wi, c.suntil - now) end
  if c.u + need > c.cap then
    if c.kind == 0 then
      local entries = redis.call('ZRANGE', c.base, 0, -1, 'WITHSCORES')
      local left = c.u
      for j = 1, #entries, 2 do
        left = left - tonumber(string.match(entries[j], ':(%d+)$'))
        if left + need <= c.cap then
          wi = math.max(wi, tonumber(entries[j+1]) + c.win - now + 1)
          break
        end
      end
    else
      wi = math.max(wi, (c.w + 1) * c.win - now + c.guard)
    end
  end
  if wi > wait then wait = wi; worst = i end
end
return {0, math.max(wait, 1), worst, now}
"""
)

# KEYS: base, total, server of one budget. ARGV: used (server's, in our points), until_ms.
_OBSERVE = """
redis.call('HSET', KEYS[3], 'used', ARGV[1], 'extra', 0, 'until', ARGV[2])
redis.call('PEXPIREAT', KEYS[3], tonumber(ARGV[2]) + 1000)
return 1
"""

# KEYS: base, total, fly per spent entry. ARGV: nonce, then per entry: cost, window_ms, kind,
# in_flight_ms, refund (1: the server did not count this call against that budget).
_ANSWERED = (
    _ROLL
    + """
local nonce = ARGV[1]
for i = 1, #KEYS / 3 do
  local base, totk, flyk = KEYS[3*i-2], KEYS[3*i-1], KEYS[3*i]
  local o = 1 + (i - 1) * 5
  local cost, win, kind = tonumber(ARGV[o+1]), tonumber(ARGV[o+2]), ARGV[o+3]
  local fly, back = tonumber(ARGV[o+4]), ARGV[o+5]
  local member = nonce .. ':' .. cost
  if kind == '0' then
    if back == '1' and redis.call('ZREM', base, member) == 1 then
      local u = tonumber(redis.call('GET', totk) or '0')
      redis.call('SET', totk, math.max(0, u - cost), 'KEEPTTL')
    end
  else
    if fly > 0 and redis.call('ZSCORE', flyk, member) then
      roll(base, flyk, win, fly, now)
      redis.call('ZREM', flyk, member)
    end
    if back == '1' and redis.call('EXISTS', base) == 1 then
      local u = tonumber(redis.call('HGET', base, 'used') or '0')
      redis.call('HSET', base, 'used', math.max(0, u - cost))
    end
  end
end
return 1
"""
)


class RateLimiter:
    """Spends budgets in Redis. Cheap to build; share one per process."""

    def __init__(self, redis: aioredis.Redis) -> None:
        self._redis = redis
        self._acquire = redis.register_script(_ACQUIRE)
        self._observe = redis.register_script(_OBSERVE)
        self._answered = redis.register_script(_ANSWERED)

    async def acquire(
        self, charges: Sequence[Charge], units: int = 1, min_units: int | None = None
    ) -> Grant:
        """Spend `charges` for between `min_units` (default: all) and `units` units, atomically.

        Granted: `Grant(units=k, wait_s=0)`. Not granted: nothing is spent and `wait_s` says
        when `min_units` would fit. Raises `BudgetTooSmallError` if it never can.
        """
        lo = units if min_units is None else min_units
        if not 0 <= lo <= units:
            raise ValueError("need 0 <= min_units <= units")
        keys: list[str] = []
        argv: list[str | int] = [units, lo, uuid.uuid4().hex]
        for c in charges:
            b = c.budget
            base = b.key(c.account)
            keys += [base, f"{base}:total", f"{base}:server", f"{base}:fly"]
            kind = 0 if b.kind == "sliding" else 1
            guard = b.guard_ms if kind else 0
            argv += [b.window_ms, b.cap, c.per_unit, c.fixed, kind, guard, b.in_flight_ms]
        granted, wait_ms, idx, at_ms = (int(x) for x in await self._acquire(keys=keys, args=argv))
        name = charges[idx - 1].budget.name if idx else None
        if wait_ms < 0:
            raise BudgetTooSmallError(f"{lo} units never fit budget {name}")
        if wait_ms > 0:
            return Grant(0, wait_ms / 1000.0, name, at_ms / 1000.0)
        spent = tuple(
            (c.budget, c.account, c.fixed + granted * c.per_unit)
            for c in charges
            if c.fixed + granted * c.per_unit > 0
        )
        return Grant(granted, 0.0, name, at_ms / 1000.0, str(argv[2]), spent)

    async def answered(self, grant: Grant, refund: Collection[Budget] = ()) -> None:
        """The call `grant` paid for has its answer (or its error): it is no longer in flight.

        `refund`: budgets the server did not count this call against (a follow it refused to
        create), given back in the current window. What every call costs on arrival (a request)
        is never refunded: the server counted it, whatever it answered.
        """
        back = {(b.network, b.name) for b in refund}
        keys: list[str] = []
        argv: list[str | int] = [grant._nonce]
        for budget, account, cost in grant._spent:
            give = (budget.network, budget.name) in back
            if not give and not budget.in_flight_ms:
                continue
            base = budget.key(account)
            keys += [base, f"{base}:total", f"{base}:fly"]
            kind = "0" if budget.kind == "sliding" else "1"
            argv += [cost, budget.window_ms, kind, budget.in_flight_ms, int(give)]
        if keys:
            await self._answered(keys=keys, args=argv)

    async def observe(
        self,
        budget: Budget,
        account: str,
        *,
        limit: int,
        remaining: int,
        reset_at: float,
    ) -> None:
        """Adopt the server's view until `reset_at` (epoch seconds): `RateLimit-*` or a 429.

        The server's used share is mapped onto our points; until the reset we count at least
        that plus whatever we spend meanwhile.
        """
        if limit <= 0:
            return
        used = math.ceil(budget.points * (1.0 - max(0, min(remaining, limit)) / limit))
        base = budget.key(account)
        await self._observe(
            keys=[base, f"{base}:total", f"{base}:server"], args=[used, int(reset_at * 1000)]
        )

    async def used(self, budget: Budget, account: str) -> int:
        """Points our log counts in the current window (diagnostics and tests)."""
        base = budget.key(account)
        if budget.kind == "aligned":
            return int(await self._redis.hget(base, "used") or 0)
        return int(await self._redis.get(f"{base}:total") or 0)


def parse_headers(headers: Mapping[str, str]) -> tuple[int, int, float] | None:
    """(limit, remaining, reset epoch s) from `RateLimit-*` headers (any case), if present."""
    h = {k.lower(): v for k, v in headers.items()}
    try:
        return (
            int(h["ratelimit-limit"]),
            int(h["ratelimit-remaining"]),
            float(h["ratelimit-reset"]),
        )
    except (KeyError, ValueError):
        return None


def policy_window(headers: Mapping[str, str]) -> float | None:
    """The window in seconds of `RateLimit-Policy: <points>;w=<seconds>`, if present."""
    h = {k.lower(): v for k, v in headers.items()}
    pol = h.get("ratelimit-policy", "")
    for part in pol.split(";")[1:]:
        k, _, v = part.strip().partition("=")
        if k == "w":
            try:
                return float(v)
            except ValueError:
                return None
    return None
