"""Smoke test of the exodus harness at tiny scale: the real pipeline, the real checks."""

from __future__ import annotations

import socket
import time
from collections import Counter

import httpx
import psutil
import pytest

from bench.exodus import check
from bench.exodus.check import (
    BUDGETS,
    Budget,
    Seen,
    at_own_speed,
    earliest,
    fastest_pace,
    limit_allowed,
    limit_min,
    schedule,
    verify,
)
from bench.exodus.driver import Timeline
from bench.exodus.loopback import ForkedServer, LoopbackServer
from bench.exodus.orchestra import process_cpu_s
from bench.exodus.population import Shape, build
from bench.exodus.report import lateness, markdown, throughput
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


def test_a_forked_network_serves_its_accounts_and_reports_what_it_recorded() -> None:
    """The simulated networks run in a child process each (no wait on the driver's GIL): the
    child serves the accounts registered before the fork; what it records comes back by
    `call`, the parent's copy stays as it was; an outage reaches the child."""
    sim = BlueskySim(factor=1.0)
    sim.add_account("did:plc:" + "a" * 24, "a.bsky.test", "pw", "127.0.0.2")
    srv = ForkedServer(sim, ["127.0.0.2"]).start()
    try:
        url = srv.url("127.0.0.2") + "/xrpc/com.atproto.server.createSession"
        body = {"identifier": "a.bsky.test", "password": "pw"}
        codes = [httpx.post(url, json=body).status_code for _ in range(31)]
        _, refused = srv.call("recorded")
        srv.call("outage", time.time() + 60)
        during = httpx.post(url, json=body).status_code
        child = srv.pid
        assert child is not None and process_cpu_s(child) > 0
    finally:
        srv.stop()
    assert codes[:30] == [200] * 30 and codes[30] == 429
    assert refused == ["create-session-5min"] and sim.violations == []
    assert during == 503
    assert not psutil.pid_exists(child) or psutil.Process(child).status() == "zombie"


def test_simulated_hosts_answer_without_waiting_for_a_delayed_ack() -> None:
    """Accepted connections inherit TCP_NODELAY: without it every response of the simulated
    networks waited 40 ms for the client's delayed ACK (uvicorn writes head and body apart)."""
    srv = LoopbackServer(BlueskySim(factor=1.0).app(), ["127.0.0.2", "127.0.0.3"]).start()
    try:
        for s in srv._socks:
            assert s.proto == socket.IPPROTO_TCP  # asyncio sets TCP_NODELAY only then
            assert s.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
    finally:
        srv.stop()


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
    w, n = five_min.window_s / 24, five_min.units // 2 + 13  # one window and a few follows more
    start = 1000 * w - 0.7
    assert limit_min("mastodon", n, start, 24) == pytest.approx(0.7, abs=1e-3)
    assert earliest("mastodon", n, start, 24, floor=2.5) == pytest.approx(0.7 + w, abs=1e-3)
    assert earliest("mastodon", five_min.units // 2, start, 24, floor=2.5) == 2.5


def test_earliest_is_no_faster_than_the_pipelines_pace() -> None:
    """200 follows of 2 requests, 0.91 s before a boundary. The limits alone allow 135 follows
    at once and the rest at the boundary; at 20 ms a follow only 46 fit before it, 135 in the
    next window, and the last 19 wait for the one after."""
    w = BUDGETS["mastodon"][1].window_s / 24
    start = 1000 * w - 0.91
    assert earliest("mastodon", 200, start, 24, floor=0.0) == pytest.approx(0.91, abs=1e-3)
    paced = earliest("mastodon", 200, start, 24, floor=0.0, pace=0.02)
    assert paced == pytest.approx(0.91 + w + 18 * 0.02, abs=1e-3)
    assert earliest("mastodon", 100, start, 24, floor=0.5, pace=0.02) == pytest.approx(2.48)


def test_fastest_pace_is_one_accounts_best_run_of_follows() -> None:
    accounts = [[0.0, 1.0, 2.0, 3.0], [9.0, 5.0, 5.5, 6.0]]  # the second: 0.5 s a follow
    assert fastest_pace(accounts, 3) == 0.5
    assert fastest_pace(accounts, 4) == 1.0  # the first's 0..3 beats the second's 5..9
    assert fastest_pace(accounts, 5) == 0.0  # no account made 5: no ceiling


def test_at_own_speed_splits_the_ratio_into_speed_and_what_was_lost_at_it() -> None:
    """200 follows of 2 requests, 0.91 s before a boundary, made at 40 ms a follow from 0.3 s:
    made as early as that speed allows, the person's own earliest is their latency; made one
    window later than that after the first follow, the scheduling lost that window."""
    w = BUDGETS["mastodon"][1].window_s / 24
    start, reqs = 1000 * w - 0.91, [2] * 200
    tight = schedule(BUDGETS["mastodon"], [start + 0.3] * 200, 24, reqs, gap=0.04)
    pace, own = at_own_speed("mastodon", start, tight, reqs, 24)
    assert pace == pytest.approx(0.04)
    assert own == pytest.approx(tight[-1] - start)
    assert own / earliest("mastodon", 200, start, 24, floor=0.0, pace=0.002) > 1.5  # the speed
    late = [tight[0], *(t + w for t in tight[1:])]
    _, own_late = at_own_speed("mastodon", start, late, reqs, 24)
    assert own_late == pytest.approx(own)
    assert (late[-1] - start) / own_late > 1.3  # the window lost
    assert at_own_speed("mastodon", start, [], reqs, 24)[0] == 0.0


def test_a_follow_whose_target_is_already_known_takes_one_request() -> None:
    """270 requests per token window: 135 follows that each need a resolve, 270 that need none."""
    w = BUDGETS["mastodon"][1].window_s / 24
    start = 1000 * w + 1.0
    assert limit_min("mastodon", 136, start, 24) == pytest.approx(w - 1.0, abs=1e-3)
    assert limit_min("mastodon", 270, start, 24, [1] * 270) == 0.0
    assert limit_min("mastodon", 200, start, 24, [2] * 70 + [1] * 130) == 0.0
    assert limit_min("mastodon", 201, start, 24, [2] * 70 + [1] * 131) > 0.0


def test_allowed_counts_windows_only_for_friends_already_there() -> None:
    """A day's unused follows cannot serve friends who join the next day: the daily cap (360
    after head-room) applies to each window, to the friends ready in it."""
    day = 86400.0
    ready = [10.0] * 100 + [day + 10.0] * 500  # 100 friends on day one, 500 on day two
    assert limit_allowed("mastodon", ready, 2 * day - 1, 1.0) == 100 + 360
    assert limit_allowed("mastodon", ready, 3 * day - 1, 1.0) == 600
    assert limit_allowed("mastodon", [10.0] * 500, 20.0, 1.0) == 270  # one 5-min window, 1 req
    # 9 follows of day one went to friends who erased themselves later: 351 left that day
    assert limit_allowed("mastodon", [10.0] * 400, day - 1, 1.0, spent=[5.0] * 9) == 351
    assert limit_allowed("bluesky", [5.0] * 1600, 3600.0, 1.0) == 1500


def test_latency_leaves_out_only_whom_the_limits_let_finish_after_the_end(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two people with no follow made by the run's end: the one the limits would still hold
    back (their earliest lies past the end) has no latency yet; the one they would have let
    finish keeps the censored `end - start`, late against an earliest inside the run."""
    pop = build(Shape.quick(300, seed=3))
    on_mastodon = [
        q
        for q in pop.people
        if q.mastodon_instance is not None and not q.hostile and q.erase_at_s is None
    ]
    owners = [
        q
        for q in on_mastodon
        if any(t.mastodon_instance is not None for t in pop.platform_followings(q.index))
    ][:2]
    assert len(owners) == 2
    tl = Timeline(t0=0.0, lag=[{"t": 200.0}])
    for q in on_mastodon:
        tl.links[(q.user_id, "mastodon")] = 0.0
    for q, start in zip(owners, (100.0, 110.0), strict=True):
        tl.uploads[q.user_id] = [start]
        tl.links[(q.user_id, "mastodon")] = start
    held, free = owners[0].user_id, owners[1].user_id
    accts = {q.user_id: f"{q.username}@i{q.mastodon_instance}.test" for q in on_mastodon}
    seen = Seen([], [], [], Counter(), accts)

    def fake_earliest(network: str, n: int, start: float, *_: object) -> float:
        return 1e6 if start == 100.0 else 10.0

    monkeypatch.setattr(check, "earliest", fake_earliest)
    v = verify(pop, tl, seen, 24.0, {})
    assert [u for u, *_ in v.unfinished] == [held]
    assert free not in [u for u, *_ in v.unfinished]
    assert v.latency == [90.0]  # the free one: censored at the end, 9x its earliest
    assert v.ratios == [9.0]


@pytest.mark.slow
def test_throughput_reads_each_durable_from_its_own_last_sample() -> None:
    """A lag reading that timed out for some durables (the run collecting its results) leaves
    them out of that sample, not out of the table."""
    tl = Timeline(t0=0.0)
    tl.lag = [
        {"t": 0.0, "a": (5, 0), "b": (5, 0)},
        {"t": 10.0, "a": (1, 40), "b": (2, 15)},  # both busy until here
        {"t": 15.0, "a": (0, 50), "b": (0, 20)},
        {"t": 20.0, "a": (0, 50)},
    ]
    assert throughput(tl) == {"a": 50 / 10.0, "b": 20 / 10.0}


def test_lateness_is_read_per_bin_of_the_days_schedule() -> None:
    """Steps are binned by when they were due, not by when they began: a step due at 290 s and
    begun at 340 s is the first bin's lateness."""
    tl = Timeline(t0=1000.0, late=[(1010.0, 0.5), (1290.0, 50.0), (1301.0, 2.0), (1000.0, 0.1)])
    assert lateness(tl, 300.0) == [
        {"from_s": 0.0, "to_s": 300.0, "steps": 3, "p50_s": 0.5, "max_s": 50.0},
        {"from_s": 300.0, "to_s": 600.0, "steps": 1, "p50_s": 2.0, "max_s": 2.0},
    ]


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
    assert result.calibration_s > 0
    assert "in those units" in markdown([result], [], "smoke")
    ingested = result.timeline.ingested  # read back off the events stream
    kept = [q for q in pop.people if not q.hostile and q.erase_at_s is None]
    assert kept and all(ingested[q.user_id] > result.timeline.uploads[q.user_id][0] for q in kept)
