"""One person's erase from Redis on an exodus-day keyspace: opaque values skipped, against all read.

`python -m bench.erase [--quick]`. An embedded Redis of its own is filled in the proportions read
off a full exodus day at its peak: 7 keys in 10 cached Mastodon lookups, 2 in 10 rate budgets,
the rest the Bluesky adapter's follow caches, sessions and failure counts. Each pass erases one
person who holds keys of every kind, then puts them back. The two forms differ only by
`erasure.OPAQUE_VALUES` (empty: every value read, as before) and run alternately. Redis' own time
is read from INFO commandstats (exact per call); the stall is what a client sending GETs all
along waits at worst, which is what a rate limiter's calls meet while an erase pass runs.
Prints a markdown section, last line a one-line summary; JSON to bench/results/erase.json.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import redis.asyncio as aioredis

from bench import stored
from hqx import embedded, erasure

ME, ACCOUNTS = "u424242", ["me@mastodon.example", "did:plc:me4242"]
FORMS = {"every value read (before)": (), "opaque values skipped (now)": erasure.OPAQUE_VALUES}


async def fill(r: aioredis.Redis, keys: int) -> None:
    """`keys` keys of strangers in the day's proportions, values of the size they had."""
    resolved = json.dumps({"id": "109876543210", "acct": "someone@far.example", "moved": None})
    async with r.pipeline(transaction=False) as p:
        for i in range(keys):
            share = i % 100
            if share < 70:
                p.set(f"hqx:mastodon:resolve:inst{i % 40}.example:p{i}@far.example", resolved)
            elif share < 80:
                p.zadd(f"hqx:budget:mastodon:a{i}@inst.example:follows", {f"{i:032x}:1": i})
            elif share < 90:
                p.set(f"hqx:budget:bluesky:did:plc:a{i}:writes:total", str(i % 5000))
            elif share < 93:
                follows = {"__listed__": "1"} | {f"did:plc:t{j}": f"3k{j}" for j in range(30)}
                # NOTE: redis-py's stubs refuse a dict[str, str] mapping (invariant keys).
                p.hset(f"hqx:bluesky:follows:did:plc:a{i}", mapping=follows)  # type: ignore[arg-type]
            elif share < 97:
                p.set(f"hqx:session:{i:064x}", f"u{i}")
            else:
                p.set(f"hqx:failures:bluesky-adapter:{i}", "1")
            if i % 5000 == 4999:
                await p.execute()
        await p.execute()


async def plant(r: aioredis.Redis) -> None:
    """The erased person's own keys: named by their id or an account, or naming them inside."""
    await r.set(f"hqx:session:{'f' * 64}", ME)
    await r.sadd(f"hqx:user-sessions:{ME}", "f" * 64)
    await r.zadd(f"hqx:budget:mastodon:{ACCOUNTS[0]}:follows", {"nonce:1": 1})
    await r.set(f"hqx:budget:bluesky:{ACCOUNTS[1]}:writes:total", "12")
    await r.hset(f"hqx:bluesky:follows:{ACCOUNTS[1]}", mapping={"__listed__": "1"})
    await r.set(f"hqx:mastodon:resolve:inst0.example:{ACCOUNTS[0]}", "{}")


async def evalsha_usec(r: aioredis.Redis) -> tuple[int, int]:
    stats = await r.info("commandstats")
    s = stats.get("cmdstat_evalsha", {"usec": 0, "calls": 0})
    return int(s["usec"]), int(s["calls"])


async def one_pass(r: aioredis.Redis, probe: aioredis.Redis) -> dict[str, float]:
    """One erase pass while a probe client sends GETs back to back; Redis' time and the stall."""
    await plant(r)
    usec0, calls0 = await evalsha_usec(r)
    waits: list[float] = []
    done = asyncio.Event()

    async def probing() -> None:
        while not done.is_set():
            t = time.perf_counter()
            await probe.get("hqx:probe")
            waits.append(time.perf_counter() - t)

    task = asyncio.create_task(probing())
    t = time.perf_counter()
    changed = await erasure.erase_redis(r, ME, ACCOUNTS)
    wall = time.perf_counter() - t
    done.set()
    await task
    usec1, calls1 = await evalsha_usec(r)
    return {
        "changed": changed,
        "redis_ms": (usec1 - usec0) / 1000,  # the scan's pages; the probe's GETs are apart
        "pages": calls1 - calls0,
        "wall_ms": wall * 1000,
        "stall_ms": max(waits) * 1000,
    }


async def run(quick: bool) -> dict[str, object]:
    keys, passes = (14_000, 3) if quick else (70_000, 7)
    with tempfile.TemporaryDirectory(prefix="hqx-bench-erase-") as tmp:
        server = embedded.start_redis(Path(tmp) / "redis")
        r = aioredis.Redis.from_url(server.url)
        probe = aioredis.Redis.from_url(server.url)
        try:
            await fill(r, keys)
            await plant(r)
            total = int(await r.dbsize())
            runs: dict[str, list[dict[str, float]]] = {name: [] for name in FORMS}
            for _ in range(passes):
                for name, opaque in FORMS.items():
                    erasure.OPAQUE_VALUES = opaque  # type: ignore[misc]
                    runs[name].append(await one_pass(r, probe))
            erasure.OPAQUE_VALUES = FORMS["opaque values skipped (now)"]  # type: ignore[misc]
        finally:
            await r.aclose()
            await probe.aclose()
            server.stop()
    forms = {
        name: {
            "changed": sorted({int(p["changed"]) for p in ps}),
            "redis_ms": round(statistics.median([p["redis_ms"] for p in ps]), 1),
            "pages": int(statistics.median([p["pages"] for p in ps])),
            "wall_ms": round(statistics.median([p["wall_ms"] for p in ps]), 1),
            "stall_ms": round(statistics.median([p["stall_ms"] for p in ps]), 2),
        }
        for name, ps in runs.items()
    }
    before, now = forms["every value read (before)"], forms["opaque values skipped (now)"]
    return {
        "mode": "quick" if quick else "full",
        "keys": total,
        "passes": passes,
        "forms": forms,
        "redis_ratio": round(before["redis_ms"] / now["redis_ms"], 2),  # type: ignore[operator]
        "stall_ratio": round(before["stall_ms"] / now["stall_ms"], 2),  # type: ignore[operator]
        "same_erase": before["changed"] == now["changed"] and len(now["changed"]) == 1,  # type: ignore[arg-type]
    }


def report(r: dict) -> str:  # type: ignore[type-arg]
    lines = [
        "## erase",
        "",
        f"One person's erase pass over Redis ({r['mode']} mode): {r['keys']:,} keys in the"
        " proportions of a full exodus day's peak, the person's own keys of every kind planted"
        f" again before each pass; medians of {r['passes']} passes per form, run alternately."
        " Redis ms from INFO commandstats; stall: the longest a GET sent all along waited.",
        "",
        "| form | keys erased or changed | SCAN pages | Redis ms | wall ms | longest stall ms |",
        "|---|---|---|---|---|---|",
    ]
    for name, f in r["forms"].items():
        changed = ", ".join(str(c) for c in f["changed"])
        lines.append(
            f"| {name} | {changed} | {f['pages']} | {f['redis_ms']} | {f['wall_ms']}"
            f" | {f['stall_ms']} |"
        )
    lines += [
        "",
        f"erase ({r['mode']}): before / now: {r['redis_ratio']}x Redis time,"
        f" {r['stall_ratio']}x longest stall, same keys erased: {r['same_erase']}",
    ]
    return "\n".join(lines)


def main() -> int:
    return stored.cli("erase", run, report, lambda r: bool(r["same_erase"]))


if __name__ == "__main__":
    sys.exit(main())
