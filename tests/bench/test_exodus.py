"""Smoke test of the exodus harness at tiny scale: the real pipeline, the real checks."""

from __future__ import annotations

import httpx
import pytest

from bench.exodus.check import BUDGETS, Budget, earliest, limit_allowed, limit_min, unloaded_pace
from bench.exodus.loopback import LoopbackServer
from bench.exodus.population import Shape, build
from bench.exodus.run import Plan, run
from bench.exodus.sim_bluesky import BlueskySim


def test_population_is_seeded_and_shaped() -> None:
    a, b = build(Shape.quick(120)), build(Shape.quick(120))
    assert [p.x_id for p in a.people] == [p.x_id for p in b.people]
    assert all((x == y).all() for x, y in zip(a._followings, b._followings, strict=True))
    assert sum(p.bluesky for p in a.people) > 0
    assert any(a.platform_followings(i) for i in range(120))


def test_pds_refuses_and_records_what_exceeds_its_limits() -> None:
    sim = BlueskySim(factor=1.0)
    sim.add_account("did:plc:" + "a" * 24, "a.bsky.test", "pw", "127.0.0.2")
    srv = LoopbackServer(sim.app(), ["127.0.0.2"]).start()
    try:
        url = srv.url("127.0.0.2") + "/xrpc/com.atproto.server.createSession"
        codes = [
            httpx.post(url, json={"identifier": "a.bsky.test", "password": "pw"}).status_code
            for _ in range(31)
        ]
    finally:
        srv.stop()
    assert codes[:30] == [200] * 30 and codes[30] == 429
    assert [v.limit for v in sim.violations] == ["create-session-5min"]


def test_limit_minimum() -> None:
    hour = Budget(1500, 3600, aligned=False)
    assert hour.min_time(1500, 0, 1.0) == 0
    assert hour.min_time(1501, 0, 1.0) == 3600
    day = Budget(360, 86400, aligned=True)
    assert day.min_time(361, 86400 - 10, 1.0) == pytest.approx(10)
    assert limit_min("mastodon", 100, 0.0, 1.0) == 0


def test_earliest_is_the_floor_then_the_limits() -> None:
    """A start 0.7 s before a 5-minute boundary: the limits alone allow 0.7 s, but a pipeline
    needing 2.5 s (uncompressed) misses that boundary and waits for the next one."""
    five_min = BUDGETS["mastodon"][1]
    w, n = five_min.window_s / 24, five_min.units + 13  # one window and a few follows more
    start = 1000 * w - 0.7
    assert limit_min("mastodon", n, start, 24) == pytest.approx(0.7, abs=1e-3)
    assert earliest("mastodon", n, start, 24, floor=2.5) == pytest.approx(0.7 + w, abs=1e-3)
    assert earliest("mastodon", five_min.units, start, 24, floor=2.5) == 2.5


def test_earliest_at_the_pipelines_pace() -> None:
    """At 60 ms a follow a compressed 12.5 s window holds ~200 follows, so the limits alone
    (all 135 of a window at once) are not what this pipeline can reach."""
    five_min = BUDGETS["mastodon"][1]
    w = five_min.window_s / 24
    start = 1000 * w - 2.0
    n = five_min.units + 13
    assert earliest("mastodon", n, start, 24, floor=0.0) == pytest.approx(2.0)  # limits alone
    # 34 made before the boundary, 114 after it: the pace, not the limits, decides
    assert earliest("mastodon", n, start, 24, 0.0, 0.06) == pytest.approx(147 * 0.06, abs=1e-3)
    # 300 follows: 34, then the window's 135, then the next boundary for the last 131
    assert earliest("mastodon", 300, start, 24, 0.0, 0.06) == pytest.approx(
        2.0 + w + 130 * 0.06, abs=1e-3
    )


def test_allowed_counts_windows_only_for_friends_already_there() -> None:
    """A day's unused follows cannot serve friends who join the next day: the daily cap (360
    after head-room) applies to each window, to the friends ready in it."""
    day = 86400.0
    ready = [10.0] * 100 + [day + 10.0] * 500  # 100 friends on day one, 500 on day two
    assert limit_allowed("mastodon", ready, 2 * day - 1, 1.0) == 100 + 360
    assert limit_allowed("mastodon", ready, 3 * day - 1, 1.0) == 600
    assert limit_allowed("mastodon", [10.0] * 500, 20.0, 1.0) == 270  # one 5-min window, 1 req
    assert limit_allowed("bluesky", [5.0] * 1600, 3600.0, 1.0) == 1500


def test_unloaded_pace_fits_floor_and_per_follow_robustly() -> None:
    rows = [(n, 0.5 + 0.02 * n) for n in (1, 5, 10, 20, 40, 80)] + [(3, 9.0)]  # one slow user
    floor, per = unloaded_pace(rows)
    assert per == pytest.approx(0.02, rel=0.05)
    assert floor == pytest.approx(0.5, abs=0.05)
    assert unloaded_pace([]) == (0.0, 0.0)
    assert unloaded_pace([(4, 1.0), (4, 3.0)]) == (2.0, 0.0)


@pytest.mark.slow
def test_tiny_exodus_day_end_to_end() -> None:
    pop = build(Shape.quick(24, seed=7))
    result = run(
        pop, Plan(day_wall_s=8.0, replicas=1, drain_timeout_s=40.0, erase_settle_s=5.0), "smoke"
    )
    v = result.verdict
    last = result.timeline.lag[-1] if result.timeline.lag else {}
    busy = {k: n for k, n in last.items() if k != "t" and n[0]}
    assert result.timeline.drained_at is not None, busy
    assert not result.timeline.failures, result.timeline.retried
    assert v.required > 0
    assert v.lost == []
    assert v.duplicates == 0
    assert sum(v.violations.values()) == 0
    assert v.erased_violations == 0
    assert v.objects_left == 0
    assert v.dlq_unexpected == []
