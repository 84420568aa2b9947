"""Rate budgets against a real Redis: caps, head-room, atomic multi-budget spends, server views."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest
import redis.asyncio as aioredis

from hqx import ratelimit
from hqx.ratelimit import Budget, BudgetTooSmallError, RateLimiter
from tests.eventually import eventually


@pytest.fixture
async def limiter(redis_url: str):
    r = aioredis.from_url(redis_url)
    yield RateLimiter(r)
    await r.aclose()


async def granted(limiter: RateLimiter, charges, units: int = 1) -> bool:
    return (await limiter.acquire(charges, units=units)).ok


def acct() -> str:
    return f"did:plc:{uuid.uuid4().hex[:24]}"


HOUR = ratelimit.BLUESKY_WRITE_HOUR
DAY = ratelimit.BLUESKY_WRITE_DAY


async def test_cap_leaves_headroom_and_says_how_long_to_wait(limiter: RateLimiter) -> None:
    a = acct()
    charges = [HOUR.per_unit(a, "create"), DAY.per_unit(a, "create")]
    g = await limiter.acquire(charges, units=200, min_units=1)
    assert (g.units, g.ok) == (200, True)
    total = 200
    while (g := await limiter.acquire(charges, units=200, min_units=1)).ok:
        total += g.units
    # 5000 points, 10 % head-room, 3 points a create -> 1500 creates an hour.
    assert total == HOUR.cap // 3 == 1500
    assert g.units == 0 and g.limited_by == "repo-write-hour"
    assert 3590 < g.wait_s <= 3601
    assert await limiter.used(HOUR, a) == await limiter.used(DAY, a) == 4500


async def test_spending_several_budgets_is_all_or_nothing(limiter: RateLimiter) -> None:
    a, host = acct(), f"pds-{uuid.uuid4().hex[:6]}"
    small = Budget("bluesky", "tiny", 60, 10, {"request": 1}, headroom=0.0)
    assert (await limiter.acquire([small.per_call(host)] * 1, units=0)).ok
    for _ in range(9):
        assert (await limiter.acquire([small.per_call(host)], units=0)).ok
    g = await limiter.acquire([HOUR.per_unit(a, "create"), small.per_call(host)], units=5)
    assert not g.ok and g.limited_by == "tiny"
    assert await limiter.used(HOUR, a) == 0  # nothing spent on the budget that had room


async def test_partial_grant_never_below_min_units(limiter: RateLimiter) -> None:
    a = acct()
    b = Budget("bluesky", "b10", 60, 30, {"create": 3}, headroom=0.0)  # 10 creates
    assert (await limiter.acquire([b.per_unit(a, "create")], units=7)).units == 7
    g = await limiter.acquire([b.per_unit(a, "create")], units=7, min_units=4)
    assert not g.ok and g.wait_s > 50  # 3 left, 4 asked at least
    g = await limiter.acquire([b.per_unit(a, "create")], units=7, min_units=1)
    assert (g.ok, g.units) == (True, 3)


async def test_sliding_window_refills_after_window(limiter: RateLimiter) -> None:
    a = acct()
    b = Budget("bluesky", "fast", 0.4, 10, {"create": 1}, headroom=0.0)
    assert (await limiter.acquire([b.per_unit(a, "create")], units=10)).ok
    g = await limiter.acquire([b.per_unit(a, "create")], units=1)
    assert not g.ok and 0 < g.wait_s <= 0.41
    started = time.monotonic()
    await eventually(
        lambda: granted(limiter, [b.per_unit(a, "create")], 10), timeout=3, interval=0.05
    )
    assert time.monotonic() - started >= g.wait_s - 0.05


async def test_concurrent_spenders_never_exceed_the_cap(limiter: RateLimiter) -> None:
    accounts = [acct() for _ in range(3)]
    host = f"pds-{uuid.uuid4().hex[:6]}"
    hostb = ratelimit.BLUESKY_HOST_REQUESTS  # 2700 requests with head-room

    async def spender(i: int) -> int:
        a = accounts[i % 3]
        got = 0
        for _ in range(30):
            g = await limiter.acquire(
                [HOUR.per_unit(a, "create"), DAY.per_unit(a, "create"), hostb.per_call(host)],
                units=1 + i % 17,
                min_units=1,
            )
            got += g.units
        return got

    per = await asyncio.gather(*(spender(i) for i in range(60)))
    by_account = [sum(per[i] for i in range(60) if i % 3 == k) for k in range(3)]
    assert by_account == [1500, 1500, 1500]  # every account filled exactly to its cap
    assert await limiter.used(hostb, host) <= hostb.cap


async def test_429_reset_blocks_until_the_servers_reset(limiter: RateLimiter) -> None:
    a = acct()
    reset = time.time() + 1.0
    await limiter.observe(HOUR, a, limit=5000, remaining=0, reset_at=reset)
    g = await limiter.acquire([HOUR.per_unit(a, "create")], units=1)
    assert not g.ok and 0.5 < g.wait_s <= 1.05
    await eventually(lambda: granted(limiter, [HOUR.per_unit(a, "create")]), timeout=3)
    assert time.time() >= reset - 0.01


async def test_headers_override_our_estimate_and_count_our_spends(limiter: RateLimiter) -> None:
    a = acct()
    # The server says 4000 of 5000 are used (the person's own activity): 500 left under our cap.
    await limiter.observe(HOUR, a, limit=5000, remaining=1000, reset_at=time.time() + 60)
    g = await limiter.acquire([HOUR.per_unit(a, "create")], units=400, min_units=1)
    assert g.units == 166  # 500 // 3
    assert not (await limiter.acquire([HOUR.per_unit(a, "create")])).ok


async def test_aligned_window_waits_until_utc_midnight(limiter: RateLimiter) -> None:
    a = f"alice@{uuid.uuid4().hex[:6]}.example"
    b = ratelimit.MASTODON_FOLLOWS_DAY
    assert (await limiter.acquire([b.per_unit(a, "follow")], units=b.cap)).ok
    g = await limiter.acquire([b.per_unit(a, "follow")])
    now = time.time()
    assert not g.ok
    assert g.wait_s == pytest.approx(86400 - now % 86400, abs=2)


async def at_window_position(window_s: float, lo: float, hi: float) -> None:
    """Sleep until the aligned window's position is in [lo, hi) s (Redis runs on our clock)."""
    while not lo <= time.time() % window_s < hi:
        await asyncio.sleep(0.005)


async def test_aligned_window_opens_at_the_boundary_with_a_guard_at_each_edge(
    limiter: RateLimiter,
) -> None:
    """Mastodon's windows are fixed: a full window reopens at its boundary (a sliding log would
    stay shut a whole window after its first spend), but never within `guard_s` of an edge."""
    b = Budget("mastodon", "t", 2.0, 10, kind="aligned", guard_s=0.3, headroom=0.0)
    a = acct()
    await at_window_position(2.0, 0.5, 0.7)
    assert (await limiter.acquire([b.per_call(a)], units=1)).ok
    for _ in range(9):
        assert (await limiter.acquire([b.per_call(a)])).ok
    full = await limiter.acquire([b.per_call(a)])
    assert not full.ok
    assert full.wait_s == pytest.approx(2.0 - time.time() % 2.0 + 0.3, abs=0.05)

    await at_window_position(2.0, 1.75, 1.9)  # the end guard: shut although the count is fresh
    c = acct()
    end = await limiter.acquire([b.per_call(c)])
    assert not end.ok
    assert end.wait_s == pytest.approx(2.0 - time.time() % 2.0 + 0.3, abs=0.05)

    await at_window_position(2.0, 0.05, 0.2)  # the start guard of the next window
    start = await limiter.acquire([b.per_call(a)])
    assert not start.ok
    assert start.wait_s == pytest.approx(0.3 - time.time() % 2.0, abs=0.05)

    await at_window_position(2.0, 0.35, 0.5)  # inside the window: all ten again at once
    assert (await limiter.acquire([b.per_call(a)], units=10, min_units=10)).ok


def test_compression_scales_the_guard_with_the_window() -> None:
    b = ratelimit.MASTODON_TOKEN_REQUESTS.scaled(24)
    assert b.window_s == 12.5
    assert b.guard_s == pytest.approx(1 / 24)
    tiny = ratelimit.MASTODON_TOKEN_REQUESTS.scaled(1e5)
    assert tiny.guard_ms <= tiny.window_ms // 4  # a guard never closes a window


async def test_answered_gives_back_only_the_budgets_the_server_did_not_count(
    limiter: RateLimiter,
) -> None:
    a = acct()
    g = await limiter.acquire([HOUR.per_unit(a, "create"), DAY.per_unit(a, "create")], units=100)
    assert await limiter.used(HOUR, a) == 300
    await limiter.answered(g, refund=[HOUR])
    assert (await limiter.used(HOUR, a), await limiter.used(DAY, a)) == (0, 300)
    await limiter.answered(g, refund=[HOUR])  # once only
    assert await limiter.used(HOUR, a) == 0


def _aligned(in_flight_s: float, window_s: float = 2.0) -> Budget:
    b = Budget("mastodon", "t", window_s, 10, kind="aligned", guard_s=0.1, headroom=0.0)
    return b.tracked(in_flight_s)


async def _grantable(limiter: RateLimiter, b: Budget, a: str) -> int:
    g = await limiter.acquire([b.per_unit(a, "request")], units=10, min_units=0)
    return g.units


async def test_calls_in_flight_across_an_aligned_boundary_count_in_the_next_window(
    limiter: RateLimiter,
) -> None:
    """The instance counts a call when it arrives: one granted before the boundary and still
    unanswered may land in the next window, which must then grant that much less."""
    tracked, untracked = _aligned(5.0), _aligned(0.0)
    a, c = acct(), acct()
    await at_window_position(2.0, 1.5, 1.7)
    grants = [await limiter.acquire([tracked.per_call(a)]) for _ in range(4)]
    for _ in range(4):
        assert (await limiter.acquire([untracked.per_call(c)])).ok
    assert all(g.ok for g in grants)
    await limiter.answered(grants[0])  # answered in its own window: counted there only
    await at_window_position(2.0, 0.2, 0.4)
    await limiter.answered(grants[1])  # answered after the boundary, before any new spend
    assert await _grantable(limiter, tracked, a) == 7
    for g in grants[2:]:
        await limiter.answered(g)  # still counted: it may have arrived in this window
    assert await _grantable(limiter, tracked, a) == 0
    assert await _grantable(limiter, untracked, c) == 10


async def test_a_call_never_answered_stops_counting_after_in_flight_s(
    limiter: RateLimiter,
) -> None:
    """A replica killed mid-call never answers it: its call counts for `in_flight_s` at most."""
    b = _aligned(1.2, window_s=1.0)
    a = acct()
    await at_window_position(1.0, 0.4, 0.5)
    assert (await limiter.acquire([b.per_call(a)])).ok  # never answered
    await at_window_position(1.0, 0.2, 0.3)
    g = await limiter.acquire([b.per_call(a)])
    assert await limiter.used(b, a) == 2
    await limiter.answered(g)
    await at_window_position(1.0, 0.5, 0.6)  # past this window's start, then the next one's
    await at_window_position(1.0, 0.2, 0.3)
    assert (await limiter.acquire([b.per_call(a)])).ok
    assert await limiter.used(b, a) == 1


async def test_accounts_are_independent_and_impossible_asks_raise(limiter: RateLimiter) -> None:
    a, b = acct(), acct()
    assert (await limiter.acquire([HOUR.per_unit(a, "create")], units=1500)).ok
    assert not (await limiter.acquire([HOUR.per_unit(a, "create")])).ok
    assert (await limiter.acquire([HOUR.per_unit(b, "create")], units=200)).ok
    with pytest.raises(BudgetTooSmallError):
        await limiter.acquire([HOUR.per_unit(b, "create")], units=1501)


def test_header_parsing() -> None:
    h = {
        "RateLimit-Limit": "5000",
        "ratelimit-remaining": "12",
        "RateLimit-Reset": "1700000000",
        "RateLimit-Policy": "5000;w=3600",
    }
    assert ratelimit.parse_headers(h) == (5000, 12, 1700000000.0)
    assert ratelimit.policy_window(h) == 3600.0
    assert ratelimit.parse_headers({"ratelimit-limit": "x"}) is None
