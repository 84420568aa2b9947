"""Bluesky adapter benchmark: throughput against the real PDS, budgets against a simulated network.

`python -m bench.bluesky [--quick]`.

1. Throughput (local PDS, limits off): follows/s of the adapter (in-process service: JetStream,
   ledger, budgets, applyWrites) against a direct `applyWrites` loop of 200 creates, same PDS,
   same run, in ABBA order per round (direct, adapter, adapter, direct) so a drift cancels.
   Target: ratio >= 0.8.
2. Budgets (simulated network, time compressed 1,000x: one hour lasts 3.6 s): 100 accounts,
   each with more follows than it may make, spend `hqx.ratelimit` budgets in the real Redis the
   way the adapter does (grant up to 200, at least 1; when refused, come back after the wait
   the budget gives). The simulated PDS enforces the real limits like @atproto/pds does (fixed
   windows from the first point: 5,000 points/h and 35,000/day per DID, create = 3; 3,000
   requests/5 min per IP) and each person also uses their own account (3 % of the hour).
   Target: achieved >= 0.95 x allowed (the hour's cap minus head-room), 0 limit violations.

Prints a markdown section, last line a one-line summary; JSON to bench/results/bluesky.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import redis.asyncio as aioredis

from bench import stored
from hqx import db, embedded, ledger, ratelimit
from hqx.crypto import TokenCipher
from hqx.messages import FollowRequested, FollowTarget
from hqx.ratelimit import RateLimiter
from hqx.subjects import Network, follow_requested
from services.bluesky_adapter.app import create
from services.bluesky_adapter.client import AccountClient
from services.bluesky_adapter.follows import Create, record_key
from services.bluesky_adapter.linking import link_app_password
from services.bluesky_adapter.settings import Settings

HERE = Path(__file__).parent
PEER_DIR = Path(
    os.environ.get("HQX_BSKY_PEER_DIR", HERE.parent.parent / "shared" / "peers" / "bluesky")
)
DB_NAME = "hqx_bench_bluesky"
B32 = "234567abcdefghijklmnopqrstuvwxyz"


def random_did(rng: random.Random) -> str:
    return "did:plc:" + "".join(rng.choice(B32) for _ in range(24))


# --- 1. throughput against the real PDS --------------------------------------------------------


def start_pds(run_dir: Path) -> tuple[dict[str, Any], dict[str, str]]:
    env = {
        **os.environ,
        "BSKY_RUN_DIR": str(run_dir),
        "PDS_PORT": str(embedded.free_port()),
        "PLC_PORT": str(embedded.free_port()),
        "APPVIEW_PORT": str(embedded.free_port()),
        "RATE_LIMITS": "0",
        "EXTRA_ACCOUNTS": "10",
    }
    for script in ("install.sh", "start-pds.sh"):
        p = subprocess.run(
            ["bash", str(PEER_DIR / script)], env=env, capture_output=True, text=True, check=False
        )
        if p.returncode != 0:
            raise SystemExit(f"{script} failed:\n{p.stdout}\n{p.stderr}")
    return json.loads((run_dir / "accounts.json").read_text()), env


async def direct_loop(
    pds: dict[str, Any], account: dict[str, Any], n: int, rng: random.Random
) -> float:
    """The baseline: one client, applyWrites of 200 creates back to back. Returns follows/s."""
    from services.bluesky_adapter.client import create_session

    info = await create_session(pds["pdsUrl"], account["handle"], account["password"])
    c = AccountClient(pds["pdsUrl"], info.session)
    targets = [FollowTarget(x_account_id=str(i + 1), account=random_did(rng)) for i in range(n)]
    started = time.perf_counter()
    for i in range(0, n, 200):
        chunk = targets[i : i + 200]
        await c.create_follows(
            info.did, [Create(t, record_key(info.did, t.account)) for t in chunk]
        )
    elapsed = time.perf_counter() - started
    await c.close()
    return n / elapsed


async def adapter_run(
    settings: Settings,
    pool: asyncpg.Pool,
    pds: dict[str, Any],
    account: dict[str, Any],
    n: int,
    rng: random.Random,
) -> float:
    """The adapter end to end: n planned follows published, until the ledger says all done."""
    user = f"b{uuid.uuid4().hex[:12]}"
    await pool.execute("insert into users (id) values ($1)", user)
    await link_app_password(
        pool,
        TokenCipher(settings.token_keys),
        user,
        account["handle"],
        account["password"],
        pds["pdsUrl"],
    )
    base = rng.randrange(10**12, 10**13)
    targets = [FollowTarget(x_account_id=str(base + i), account=random_did(rng)) for i in range(n)]
    await ledger.plan(pool, user, Network.BLUESKY, targets)
    svc = create(settings)
    await svc.start()
    try:
        started = time.perf_counter()
        for i in range(0, n, 200):
            msg = FollowRequested(
                user_id=user, network=Network.BLUESKY, targets=tuple(targets[i : i + 200])
            )
            await svc.publish(follow_requested(Network.BLUESKY, user), msg, msg_id=msg.msg_id())
        while True:
            done = await pool.fetchval(
                "select count(*) from follow_ledger where user_id = $1 and state = 'done'", user
            )
            if done >= n:
                break
            if time.perf_counter() - started > 600:
                raise SystemExit(f"adapter did not finish: {done}/{n}")
            await asyncio.sleep(0.01)
        elapsed = time.perf_counter() - started
    finally:
        await svc.stop()
    return n / elapsed


def stop_pds(env: dict[str, str]) -> None:
    subprocess.run(
        ["bash", str(PEER_DIR / "stop-pds.sh")], env=env, check=False, capture_output=True
    )


async def throughput(quick: bool, tmp: Path) -> dict[str, Any]:
    # NOTE: 1,400 follows fit one account's hour budget (1,500 with head-room): a bigger n
    # would measure the budget, not the adapter. Full mode repeats with fresh accounts.
    n, rounds = 1400, (1 if quick else 2)
    rng = random.Random(7)
    pds, env = await asyncio.to_thread(start_pds, tmp / "pds")
    nats_srv = embedded.start_nats(tmp / "nats")
    redis_srv = embedded.start_redis(tmp / "redis")
    pg_base = os.environ.get("HQX_BENCH_PG", "postgresql://postgres@127.0.0.1:5432")
    try:
        admin = await asyncpg.connect(f"{pg_base}/postgres")
        await admin.execute(f'drop database if exists "{DB_NAME}" with (force)')
        await admin.execute(f'create database "{DB_NAME}"')
        await admin.close()
        url = f"{pg_base}/{DB_NAME}"
        pool = await db.connect(url)
        await db.migrate(pool)
        settings = Settings(
            NATS_URL=nats_srv.url,
            REDIS_URL=redis_srv.url,
            DATABASE_URL=url,
            HQX_ENV="test",
            HQX_HEALTH_HOST="127.0.0.1",
            HQX_LOG_LEVEL="WARNING",
            HQX_JETSTREAM_MAX_BYTES=1024**3,
        )
        accounts = iter(pds["accounts"])
        await direct_loop(pds, next(accounts), 600, rng)  # warm-up: the PDS's first writes are slow
        directs, adapters = [], []
        for _ in range(rounds):  # ABBA: a drift of the PDS's speed cancels out
            directs.append(await direct_loop(pds, next(accounts), n, rng))
            adapters.append(await adapter_run(settings, pool, pds, next(accounts), n, rng))
            adapters.append(await adapter_run(settings, pool, pds, next(accounts), n, rng))
            directs.append(await direct_loop(pds, next(accounts), n, rng))
        await pool.close()
    finally:
        nats_srv.stop()
        redis_srv.stop()
        await asyncio.to_thread(stop_pds, env)
    direct = sum(directs) / len(directs)
    adapter = sum(adapters) / len(adapters)
    return {
        "follows_per_run": n,
        "rounds": rounds,
        "direct_follows_per_s": [round(x, 1) for x in directs],
        "adapter_follows_per_s": [round(x, 1) for x in adapters],
        "ratio": round(adapter / direct, 3),
    }


# --- 2. budgets against a simulated network ---------------------------------------------------


@dataclass
class FixedWindow:
    """One @atproto/pds limiter key: the window starts at the first point after the last one."""

    points: int
    window: float
    started: float = -1.0
    used: int = 0

    def consume(self, now: float, cost: int) -> bool:
        if self.started < 0 or now >= self.started + self.window:
            self.started, self.used = now, 0
        if self.used + cost > self.points:
            return False
        self.used += cost
        return True


@dataclass
class SimulatedPDS:
    """Enforces the PDS's limits on a compressed clock (simulated seconds)."""

    factor: float
    t0: float = field(default_factory=time.time)
    keys: dict[str, FixedWindow] = field(default_factory=dict)
    violations: int = 0
    ours: dict[str, int] = field(default_factory=dict)

    def now(self, at: float | None = None) -> float:
        """Simulated seconds since the start, of wall time `at` (default: now)."""
        return ((time.time() if at is None else at) - self.t0) * self.factor

    def _key(self, name: str, points: int, window: float) -> FixedWindow:
        return self.keys.setdefault(name, FixedWindow(points, window))

    def apply_writes(
        self, did: str, creates: int, *, ours: bool = True, at: float | None = None
    ) -> bool:
        now = self.now(at)
        # The person's own app calls from another IP: only our calls count on our IP's key.
        ok = all(
            [
                self._key("ip", 3000, 300).consume(now, 1) if ours else True,
                self._key(f"h:{did}", 5000, 3600).consume(now, 3 * creates),
                self._key(f"d:{did}", 35000, 86400).consume(now, 3 * creates),
            ]
        )
        # NOTE: like the PDS, a refused call may have consumed points of the keys it passed.
        if ours:
            if ok:
                self.ours[did] = self.ours.get(did, 0) + creates
            else:
                self.violations += 1
        return ok


async def simulated(
    quick: bool, tmp: Path, factor: float, headroom: float = ratelimit.DEFAULT_HEADROOM
) -> dict[str, Any]:
    accounts = 100
    hours = 2 if quick else 3
    redis_srv = embedded.start_redis(tmp / f"redis-sim-{headroom}")
    r = aioredis.from_url(redis_srv.url)
    limiter = RateLimiter(r)
    hour = ratelimit.BLUESKY_WRITE_HOUR.with_headroom(headroom).scaled(factor)
    day = ratelimit.BLUESKY_WRITE_DAY.with_headroom(headroom).scaled(factor)
    host = ratelimit.BLUESKY_HOST_REQUESTS.with_headroom(headroom).scaled(factor)
    sim = SimulatedPDS(factor)
    duration = hours * 3600 / factor
    deadline = time.monotonic() + duration
    waits = 0
    lag = [0.0]  # longest acquire -> call delay, in simulated seconds (compression artefact)

    async def account(did: str) -> None:
        nonlocal waits
        while time.monotonic() < deadline:
            before = sim.now()
            g = await limiter.acquire(
                [
                    hour.per_unit(did, "create"),
                    day.per_unit(did, "create"),
                    host.per_call("pds.example"),
                ],
                units=200,
                min_units=1,
            )
            if not g.ok:
                waits += 1
                # The adapter naks with this delay: JetStream brings the batch back then.
                await asyncio.sleep(min(g.wait_s, max(0.0, deadline - time.monotonic())))
                continue
            lag[0] = max(lag[0], sim.now() - before)
            # NOTE: the call reaches the server when Redis granted it (zero network latency).
            # Time compression turns event-loop lag on a busy machine into simulated minutes,
            # which would be an artefact of the bench, not of the budgets (see the lag figure).
            sim.apply_writes(did, g.units, at=g.at)

    async def person(did: str, rng: random.Random) -> None:
        """The person's own use: 10 records five times an hour (150 points, 3 %)."""
        await asyncio.sleep(rng.uniform(0, 0.2) * 3600 / factor)
        while time.monotonic() < deadline:
            sim.apply_writes(did, 10, ours=False)
            await asyncio.sleep(0.2 * 3600 / factor)

    rng = random.Random(11)
    dids = [random_did(rng) for _ in range(accounts)]
    started = time.monotonic()
    await asyncio.gather(
        *(account(d) for d in dids), *(person(d, random.Random(i)) for i, d in enumerate(dids))
    )
    elapsed = time.monotonic() - started
    await r.aclose()
    redis_srv.stop()
    made = sum(sim.ours.values())
    allowed = accounts * hour.cap // 3 * hours  # creates per account per hour, minus head-room
    return {
        "factor": factor,
        "headroom": headroom,
        "accounts": accounts,
        "simulated_hours": hours,
        "wall_s": round(elapsed, 2),
        "follows_made": made,
        "follows_allowed": allowed,
        "ratio": round(made / allowed, 4),
        "violations": sim.violations,
        "budget_waits": waits,
        "max_acquire_lag_simulated_s": round(lag[0], 1),
        "min_account_ratio": round(min(sim.ours.get(d, 0) for d in dids) / (allowed / accounts), 4),
    }


async def run(quick: bool, factor: float, parts: str) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="hqx-bench-bluesky-"))
    out: dict[str, Any] = {"mode": "quick" if quick else "full"}
    if parts in ("all", "throughput"):
        out["throughput"] = await throughput(quick, tmp)
    if parts in ("all", "simulated"):
        out["simulated"] = await simulated(quick, tmp, factor)
        # Control: the same run without head-room must show violations (the person's own
        # writes then push the account over), or the simulated PDS would prove nothing.
        out["control_no_headroom"] = await simulated(True, tmp, factor, headroom=0.0)
    return out


def report(res: dict[str, Any]) -> str:
    t, s = res["throughput"], res["simulated"]
    ok_t = t["ratio"] >= 0.8
    ok_s = s["ratio"] >= 0.95 and s["violations"] == 0
    lines = [
        "## bluesky",
        "",
        "| measure | value | target |",
        "|---|---|---|",
        f"| direct applyWrites loop, 200 a call (follows/s, each run) | "
        f"{', '.join(map(str, t['direct_follows_per_s']))} | baseline |",
        f"| adapter end to end (follows/s, {t['follows_per_run']} follows a run) | "
        f"{', '.join(map(str, t['adapter_follows_per_s']))} | |",
        f"| adapter / direct | **{t['ratio']}** | >= 0.8 {'ok' if ok_t else 'MISSED'} |",
        f"| simulated: {s['accounts']} accounts x {s['simulated_hours']} h "
        f"(1 h = {3600 / s['factor']:.1f} s) follows made / allowed | "
        f"{s['follows_made']} / {s['follows_allowed']} | |",
        f"| achieved / allowed (head-room excluded) | **{s['ratio']}** "
        f"(worst account {s['min_account_ratio']}) | >= 0.95 {'ok' if ok_s else 'MISSED'} |",
        f"| limit violations (429 on our calls) | **{s['violations']}** | 0 |",
        f"| control without head-room: violations (the simulated PDS does catch them) | "
        f"{res['control_no_headroom']['violations']} | > 0 |",
        "",
    ]
    lines.append(
        f"bluesky: adapter/direct {t['ratio']}x (target 0.8), simulated budgets "
        f"{s['ratio']}x allowed with {s['violations']} violations over {s['accounts']} accounts"
    )
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(prog="python -m bench.bluesky")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--factor", type=float, default=1000.0, help="time compression (simulated)")
    p.add_argument("--parts", choices=("all", "throughput", "simulated"), default="all")
    p.add_argument("--from-results", action="store_true", help="print the stored results only")
    args = p.parse_args()
    if args.from_results:
        print(report(stored.load("bluesky")))
        return 0
    res = asyncio.run(run(args.quick, args.factor, args.parts))
    if args.parts != "all":
        print(json.dumps(res, indent=2))
        return 0
    stored.save("bluesky", res)
    print(report(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
