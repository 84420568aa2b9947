"""Matcher benchmark: forward / reverse match latency at directory scale, and an exodus burst.

`python -m bench.matcher [--quick] [--keep]`. Uses a database of its own (`hqx_bench_matcher`,
dropped and re-created unless --keep finds it loaded at the same size), an embedded NATS and Redis.

1. Load (COPY): N identities (users, identities, directory) and E graph edges.
2. Baseline: one indexed directory lookup (`select ... where x_account_id = $1`), p50/p99.
3. Forward: a user with 5,000 followings (half in the directory) -> plans (p50/p99), and the
   dispatch of their batches to JetStream.
4. Reverse: a new identity followed by 20,000 opted-in users -> plans, then dispatch.
5. Exodus: U users (graphs already stored) prove, link and have their graph ingested, in random
   order at a fixed rate, against 1 then 2 matcher processes; consumer lag sampled every second.
Prints a markdown section, last line a one-line summary; JSON to bench/results/matcher.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import numpy as np

from bench import stored
from hqx import bus, db, embedded, subjects
from hqx.messages import GraphIngested, IdentityLinked, IdentityProven
from hqx.settings import ServiceSettings
from hqx.subjects import Network
from services.matcher import dispatch, plans

BSKY = Network.BLUESKY
XB = 10**12  # X id of identity i is XB + i
DB_NAME = "hqx_bench_matcher"


@dataclass(frozen=True)
class Sizes:
    identities: int
    owners: int  # users with a stored graph, all opted in (400 followings + 100 followers each)
    forward_followings: int
    reverse_followers: int
    samples: int
    exodus_users: int
    exodus_rate: float  # events per second (3 events per user)


# NOTE: 20,000 users joining within an hour is ~17 events/s; the burst replays it ~6x faster.
FULL = Sizes(1_000_000, 100_000, 5_000, 20_000, 10, 20_000, 100.0)
QUICK = Sizes(100_000, 5_000, 5_000, 2_000, 10, 2_000, 100.0)


def run_base(s: Sizes, tag: str) -> int:
    """X ids private to one run (a --keep run reuses the directory of an earlier one)."""
    return XB + 100 * s.identities + int("".join(c for c in tag if c.isdigit())) * 10**6


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(p / 100 * (len(xs) - 1)))]


def ms(xs: list[float]) -> dict[str, float]:
    return {"p50_ms": round(pct(xs, 50) * 1000, 3), "p99_ms": round(pct(xs, 99) * 1000, 3)}


# --- load ------------------------------------------------------------------------------------


async def copy_text(conn: asyncpg.Connection, table: str, columns: list[str], chunks) -> None:  # type: ignore[no-untyped-def]
    async def source():  # type: ignore[no-untyped-def]
        for chunk in chunks:
            yield chunk.encode()

    await conn.copy_to_table(table, source=source(), columns=columns, format="text")


def edge_chunks(s: Sizes, rng: np.random.Generator, per: int = 2_000):  # type: ignore[no-untyped-def]
    universe = 10 * s.identities
    for start in range(0, s.owners, per):
        ks = range(start, min(start + per, s.owners))
        lines = []
        for k in ks:
            fol = np.unique(rng.integers(0, universe, 400)) + XB
            fwr = np.unique(rng.integers(0, universe, 100)) + XB
            lines.extend(f"u{k}\t1\t{x}" for x in fol.tolist())
            lines.extend(f"u{k}\t2\t{x}" for x in fwr.tolist())
        yield "\n".join(lines) + "\n"


async def load(pool: asyncpg.Pool, s: Sizes) -> dict[str, float]:
    rng = np.random.default_rng(7)
    t0 = time.perf_counter()
    n = s.identities
    async with pool.acquire() as conn:
        await conn.execute("set session_replication_role = replica")  # no FK / trigger per row
        await conn.execute("set maintenance_work_mem = '1GB'")
        await conn.execute("alter table graph_edges drop constraint graph_edges_pkey")
        await conn.execute("drop index graph_edges_reverse")

        def rows(fmt: str, per: int = 100_000):  # type: ignore[no-untyped-def]
            for a in range(0, n, per):
                yield "".join(
                    fmt.format(i=i, x=XB + i, o="{bluesky}" if i < s.owners else "{}")
                    for i in range(a, min(a + per, n))
                )

        await copy_text(
            conn,
            "users",
            ["id", "x_account_id", "x_proven", "auto_reconnect"],
            rows("u{i}\t{x}\tt\t{o}\n"),
        )
        await copy_text(
            conn,
            "identities",
            ["user_id", "network", "account", "auth_kind"],
            rows("u{i}\tbluesky\tdid:plc:u{i}\toauth\n"),
        )
        await copy_text(
            conn,
            "directory",
            ["x_account_id", "network", "account", "user_id"],
            rows("{x}\tbluesky\tdid:plc:u{i}\tu{i}\n"),
        )
        await copy_text(
            conn,
            "graphs",
            ["user_id", "owner_x_id", "following_count", "follower_count", "version"],
            (f"u{k}\t{XB + k}\t400\t100\t1\n" for k in range(s.owners)),
        )
        t_nodes = time.perf_counter()
        await copy_text(
            conn, "graph_edges", ["user_id", "direction", "x_account_id"], edge_chunks(s, rng)
        )
        t_edges = time.perf_counter()
        await conn.execute(
            "alter table graph_edges add primary key (user_id, direction, x_account_id)"
        )
        await conn.execute(
            "create index graph_edges_reverse on graph_edges (x_account_id, direction)"
        )
        t_idx = time.perf_counter()
        await conn.execute("analyze")
        edges = await conn.fetchval("select count(*) from graph_edges")
        await conn.execute("reset all")  # the pool keeps sessions as they are (hqx.db)
    return {
        "nodes_s": round(t_nodes - t0, 1),
        "edges_copy_s": round(t_edges - t_nodes, 1),
        "edges_index_s": round(t_idx - t_edges, 1),
        "total_s": round(time.perf_counter() - t0, 1),
        "edges": int(edges),
    }


async def new_user(
    pool: asyncpg.Pool,
    uid: str,
    x: int,
    followings: list[int],
    optin: bool,
    proven: bool = True,
    linked: bool = True,
) -> None:
    await pool.execute(
        "insert into users (id, x_account_id, x_proven, auto_reconnect) values ($1, $2, $3, $4)",
        uid,
        x,
        proven,
        ["bluesky"] if optin else [],
    )
    if linked:
        await pool.execute(
            "insert into identities (user_id, network, account, auth_kind)"
            " values ($1, 'bluesky', $2, 'oauth')",
            uid,
            f"did:plc:{uid}",
        )
    if followings:
        await pool.execute(
            "insert into graphs (user_id, owner_x_id, following_count,"
            " follower_count, version) values ($1, $2, $3, 0, 1)",
            uid,
            x,
            len(followings),
        )
        await pool.copy_records_to_table(
            "graph_edges",
            records=[(uid, 1, f) for f in followings],
            columns=["user_id", "direction", "x_account_id"],
        )


# --- latency ----------------------------------------------------------------------------------


async def baseline(pool: asyncpg.Pool, s: Sizes, n: int = 2000) -> list[float]:
    out = []
    async with pool.acquire() as conn:
        for _ in range(n):
            x = XB + random.randrange(s.identities)
            t = time.perf_counter()
            await conn.fetchval(
                "select account from directory where x_account_id = $1 and network = 'bluesky'", x
            )
            out.append(time.perf_counter() - t)
    return out


async def forward(pool: asyncpg.Pool, publish, s: Sizes, tag: str) -> dict[str, object]:  # type: ignore[no-untyped-def]
    half = s.forward_followings // 2
    plan_t, send_t, planned = [], [], []
    for k in range(s.samples):
        uid = f"fw{tag}{k}"
        inside = random.sample(range(s.identities), half)
        outside = random.sample(range(20 * s.identities, 30 * s.identities), half)
        await new_user(
            pool, uid, XB + 40 * s.identities + k, [XB + i for i in inside + outside], optin=False
        )
        async with pool.acquire() as conn:
            t = time.perf_counter()
            work = await plans.on_graph(conn, uid)
            plan_t.append(time.perf_counter() - t)
        t = time.perf_counter()
        for net, owners in work.dispatch.items():
            await dispatch.dispatch(pool, publish, net, owners, 200)
        send_t.append(time.perf_counter() - t)
        planned.append(
            await pool.fetchval("select count(*) from follow_ledger where user_id = $1", uid)
        )
    return {
        "plan": ms(plan_t),
        "dispatch": ms(send_t),
        "planned_per_user": planned[0],
        "raw": plan_t,
    }


async def reverse(pool: asyncpg.Pool, publish, s: Sizes, tag: str) -> dict[str, object]:  # type: ignore[no-untyped-def]
    plan_t, send_t, planned = [], [], []
    for k in range(s.samples):
        x = run_base(s, tag) + 100_000 + k
        fans = random.sample(range(s.owners), s.reverse_followers)
        await pool.copy_records_to_table(
            "graph_edges",
            records=[(f"u{f}", 1, x) for f in fans],
            columns=["user_id", "direction", "x_account_id"],
        )
        uid = f"rv{tag}{k}"
        await new_user(pool, uid, x, [], optin=False)
        async with pool.acquire() as conn:
            t = time.perf_counter()
            await plans.on_linked(conn, uid, BSKY, datetime.now(UTC))
            plan_t.append(time.perf_counter() - t)
        # what the matcher's sweep sends once the reverse plans settle
        t = time.perf_counter()
        owners = await pool.fetch(
            "select user_id from follow_ledger where target_x_id = $1 and network = 'bluesky'"
            " and state = 'planned' and batch_id is null",
            x,
        )
        await dispatch.dispatch(pool, publish, BSKY, [r[0] for r in owners], 200)
        send_t.append(time.perf_counter() - t)
        planned.append(
            await pool.fetchval("select count(*) from follow_ledger where target_x_id = $1", x)
        )
    return {
        "plan": ms(plan_t),
        "dispatch": ms(send_t),
        "planned_per_identity": planned[0],
        "raw": plan_t,
    }


# --- exodus -----------------------------------------------------------------------------------


async def exodus(
    pool: asyncpg.Pool,
    js,
    env: dict[str, str],
    s: Sizes,
    replicas: int,  # type: ignore[no-untyped-def]
    tag: str,
) -> dict[str, object]:
    """U users join in random order at a fixed event rate; lag sampled each second."""
    u = s.exodus_users
    base = run_base(s, tag) + 200_000
    ids = [f"ex{tag}{j}" for j in range(u)]
    users = [(ids[j], base + j, False, ["bluesky"] if j % 2 == 0 else []) for j in range(u)]
    await pool.copy_records_to_table(
        "users", records=users, columns=["id", "x_account_id", "x_proven", "auto_reconnect"]
    )
    await pool.copy_records_to_table(
        "identities",
        records=[(i, "bluesky", f"did:plc:{i}", "oauth") for i in ids],
        columns=["user_id", "network", "account", "auth_kind"],
    )
    await pool.copy_records_to_table(
        "graphs",
        records=[(ids[j], base + j, 200, 100, 1) for j in range(u)],
        columns=["user_id", "owner_x_id", "following_count", "follower_count", "version"],
    )
    edges = []
    for j in range(u):
        friends = {base + f for f in random.sample(range(u), 100)} - {base + j}
        known = {XB + i for i in random.sample(range(s.identities), 100)}
        edges += [(ids[j], 1, x) for x in friends | known]
        edges += [(ids[j], 2, base + f) for f in set(random.sample(range(u), 100)) - {j}]
    await pool.copy_records_to_table(
        "graph_edges", records=edges, columns=["user_id", "direction", "x_account_id"]
    )
    events = []
    for j in range(u):
        events.append(
            (
                subjects.identity_proven(ids[j]),
                IdentityProven(user_id=ids[j], x_account_id=str(base + j)),
            )
        )
        events.append(
            (
                subjects.identity_linked(ids[j]),
                IdentityLinked(user_id=ids[j], network=BSKY, account=f"did:plc:{ids[j]}"),
            )
        )
        events.append(
            (
                subjects.graph_ingested(ids[j]),
                GraphIngested(
                    user_id=ids[j],
                    owner_x_account_id=str(base + j),
                    following_count=200,
                    follower_count=100,
                    graph_version=1,
                ),
            )
        )
    random.shuffle(events)
    spec = subjects.CONSUMERS_BY_SERVICE["matcher"][0]
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "services.matcher",
            env=env,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        for _ in range(replicas)
    ]
    lag: list[tuple[float, int]] = []
    try:
        deadline = time.monotonic() + 60
        while (await js.consumer_info(spec.stream.value, spec.durable)).num_waiting < replicas:
            if time.monotonic() > deadline:
                raise RuntimeError("matcher replicas did not start")
            await asyncio.sleep(0.2)

        async def sample(stop: asyncio.Event, t0: float) -> None:
            while not stop.is_set():
                info = await js.consumer_info(spec.stream.value, spec.durable)
                lag.append(
                    (round(time.monotonic() - t0, 1), info.num_pending + info.num_ack_pending)
                )
                await asyncio.sleep(1.0)

        stop = asyncio.Event()
        t0 = time.monotonic()
        sampler = asyncio.create_task(sample(stop, t0))
        for n, (subj, msg) in enumerate(events):
            await js.publish(subj, msg.to_bytes())
            ahead = t0 + (n + 1) / s.exodus_rate - time.monotonic()
            if ahead > 0:
                await asyncio.sleep(ahead)
        published = time.monotonic() - t0
        while True:
            info = await js.consumer_info(spec.stream.value, spec.durable)
            if info.num_pending + info.num_ack_pending == 0:
                break
            await asyncio.sleep(0.2)
        done = time.monotonic() - t0
        stop.set()
        await sampler
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            await asyncio.wait_for(p.wait(), 30)
    planned = await pool.fetchval("select count(*) from follow_ledger where user_id = any($1)", ids)
    return {
        "replicas": replicas,
        "users": u,
        "events": len(events),
        "publish_s": round(published, 1),
        "drained_s": round(done, 1),
        "catch_up_s": round(done - published, 1),
        "max_lag": max(v for _, v in lag),
        "events_per_s": round(len(events) / done, 1),
        "follows_planned": int(planned),
        "lag": lag,
    }


# --- main -------------------------------------------------------------------------------------


def progress(phase: str, data: object) -> None:
    """Phase results on stderr as they come (a full run takes long)."""
    print(f"[{time.strftime('%H:%M:%S')}] {phase}: {json.dumps(data)}", file=sys.stderr, flush=True)


async def run(quick: bool, keep: bool, exodus_users: int | None = None) -> dict[str, object]:
    s = QUICK if quick else FULL
    if exodus_users:
        s = replace(s, exodus_users=exodus_users)
    pg_base = os.environ.get("HQX_BENCH_PG", "postgresql://postgres@127.0.0.1:5432")
    url = f"{pg_base}/{DB_NAME}"
    tmp = Path(tempfile.mkdtemp(prefix="hqx-bench-matcher-"))
    nats_srv = embedded.start_nats(tmp / "nats")
    redis_srv = embedded.start_redis(tmp / "redis")
    try:
        admin = await asyncpg.connect(f"{pg_base}/postgres")
        marker = f"{s.identities}/{s.owners}"
        exists = await admin.fetchval("select 1 from pg_database where datname = $1", DB_NAME)
        reuse = False
        if exists and keep:
            c = await asyncpg.connect(url)
            reuse = await c.fetchval("select obj_description('graph_edges'::regclass)") == marker
            await c.close()
        if not reuse:
            await admin.execute(f'drop database if exists "{DB_NAME}" with (force)')
            await admin.execute(f'create database "{DB_NAME}"')
        await admin.close()
        pool = await db.connect(url, max_size=8)
        await db.migrate(pool)
        loaded = {"reused": True} if reuse else await load(pool, s)
        progress("load", loaded)
        await pool.execute(f"comment on table graph_edges is '{marker}'")
        settings = ServiceSettings(
            NATS_URL=nats_srv.url,
            REDIS_URL=redis_srv.url,
            DATABASE_URL=url,
            HQX_JETSTREAM_MAX_BYTES=8 * 1024**3,
        )
        nc = await bus.connect(settings, "bench")
        js = nc.jetstream()
        await bus.ensure_topology(js, settings)

        async def publish(subject, message, msg_id):  # type: ignore[no-untyped-def]
            return await js.publish(subject, message.to_bytes(), headers={"Nats-Msg-Id": msg_id})

        tag = f"{int(time.time()) % 100000}"
        base = await baseline(pool, s)
        progress("baseline", ms(base))
        fwd = await forward(pool, publish, s, tag)
        progress("forward", {k: v for k, v in fwd.items() if k != "raw"})
        rev = await reverse(pool, publish, s, tag)
        progress("reverse", {k: v for k, v in rev.items() if k != "raw"})
        env = {
            **os.environ,
            "NATS_URL": nats_srv.url,
            "REDIS_URL": redis_srv.url,
            "DATABASE_URL": url,
            "HQX_LOG_LEVEL": "WARNING",
            "HQX_HEALTH_HOST": "127.0.0.1",
        }
        ex = []
        for r in (1, 2):
            ex.append(await exodus(pool, js, env, s, r, f"{tag}r{r}"))
            progress("exodus", {k: v for k, v in ex[-1].items() if k != "lag"})
        await nc.close()
        await pool.close()
    finally:
        nats_srv.stop()
        redis_srv.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    b50 = pct(base, 50)
    return {
        "mode": "quick" if quick else "full",
        "sizes": asdict(s),
        "load": loaded,
        "baseline_lookup": ms(base),
        "forward": {k: v for k, v in fwd.items() if k != "raw"}
        | {"ratio_p50_to_lookup": round(pct(fwd["raw"], 50) / b50, 1)},  # type: ignore[arg-type]
        "reverse": {k: v for k, v in rev.items() if k != "raw"}
        | {"ratio_p50_to_lookup": round(pct(rev["raw"], 50) / b50, 1)},  # type: ignore[arg-type]
        "exodus": ex,
    }


def report(r: dict) -> str:  # type: ignore[type-arg]
    s, f, v, b = r["sizes"], r["forward"], r["reverse"], r["baseline_lookup"]
    lines = [
        "## matcher",
        "",
        f"Directory {s['identities']:,} identities, {r['load'].get('edges', 'reused')} edges "
        f"({r['mode']} mode); load (COPY + indexes): {r['load'].get('total_s', 'reused')} s "
        f"{json.dumps(r['load'])}.",
        "",
        "| operation | p50 ms | p99 ms | ratio p50 / one indexed lookup |",
        "|---|---|---|---|",
        f"| baseline: one indexed directory lookup | {b['p50_ms']} | {b['p99_ms']} | 1 |",
        f"| forward: plan {s['forward_followings']:,} followings ({f['planned_per_user']} "
        f"matched) | {f['plan']['p50_ms']} | {f['plan']['p99_ms']} | {f['ratio_p50_to_lookup']} |",
        f"| forward: publish its batches | {f['dispatch']['p50_ms']} | {f['dispatch']['p99_ms']} "
        "| |",
        f"| reverse: plan a new identity for {v['planned_per_identity']:,} opted-in followers | "
        f"{v['plan']['p50_ms']} | {v['plan']['p99_ms']} | {v['ratio_p50_to_lookup']} |",
        f"| reverse: publish {v['planned_per_identity']:,} follow commands | "
        f"{v['dispatch']['p50_ms']} | {v['dispatch']['p99_ms']} | |",
        "",
        "| exodus burst | users | events | publish s | drained s | catch-up s | max lag | "
        "events/s | follows planned |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for e in r["exodus"]:
        lines.append(
            f"| {e['replicas']} replica(s) | {e['users']:,} | {e['events']:,} | "
            f"{e['publish_s']} | {e['drained_s']} | {e['catch_up_s']} | {e['max_lag']} | "
            f"{e['events_per_s']} | {e['follows_planned']:,} |"
        )
    lines += [
        "",
        "Lag (pending + unacked) sampled each second: "
        + "; ".join(
            f"{e['replicas']}r: "
            + " ".join(str(v) for _, v in e["lag"][:: max(1, len(e["lag"]) // 20)])
            for e in r["exodus"]
        ),
        "",
    ]
    e1, e2 = r["exodus"]
    lines.append(
        f"matcher ({r['mode']}): forward {s['forward_followings']} p50 {f['plan']['p50_ms']} ms "
        f"({f['ratio_p50_to_lookup']}x lookup), reverse {v['planned_per_identity']} p50 "
        f"{v['plan']['p50_ms']} ms ({v['ratio_p50_to_lookup']}x), exodus {e1['events_per_s']} ev/s "
        f"1 replica / {e2['events_per_s']} ev/s 2 replicas, max lag {e1['max_lag']}/{e2['max_lag']}"
    )
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(prog="python -m bench.matcher")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--keep", action="store_true", help="reuse a database loaded at this size")
    p.add_argument("--exodus-users", type=int, help="override the exodus population")
    p.add_argument("--from-results", action="store_true", help="print the stored results only")
    args = p.parse_args()
    if args.from_results:
        print(report(stored.load("matcher")))
        return 0
    r = asyncio.run(run(args.quick, args.keep, args.exodus_users))
    stored.save("matcher", r)
    print(report(r))
    return 0


if __name__ == "__main__":
    sys.exit(main())
