"""A person's audience on the networks (`hqx.audience.measure`) against the form it replaced.

`python -m bench.audience [--quick]`. The matcher measures a person's audience each time their
stats settle after a friend joined, and a friend joining dirties every graph that holds them:
on a full exodus day at factor 12 this query was 13 % (peak) to 29 % (ramp) of PostgreSQL's
active backends (pg_stat_activity sampled every 0.1 s for a minute), with a directory smaller
than the biggest graphs. Both forms run on the same graphs, in turn, against a directory the
size of that day's and one of a million entries (a real exodus), in a database of its own
(`bench.pg`; before PostgreSQL 17 an `= any` index scan descends once per key, and both forms
read the same buffers). Buffers are exact (EXPLAIN); times are p50 of alternating runs.
Prints a markdown section, last line a one-line summary; JSON to bench/results/audience.json.
"""

from __future__ import annotations

import random
import statistics
import sys
import time

import asyncpg

from bench import pg, stored
from hqx import audience

DB_NAME = "hqx_bench_audience"
# The form `audience.measure` replaced: one directory lookup per edge.
PER_EDGE = """
select d.network,
       count(*) filter (where e.direction = 1) as matched,
       count(*) filter (where e.direction = 2) as followers
  from graph_edges e
 cross join lateral (
       select network, user_id from directory where x_account_id = e.x_account_id
       offset 0) d
 where e.user_id = $1 and d.user_id <> $1
 group by d.network
"""
FORMS = {"per edge (before)": PER_EDGE, "one scan (now)": audience.MEASURE}
# (followings, followers) of the people measured: a median person, the day's typical
# materialized graph, and the biggest graph the exodus bench materializes
GRAPHS = {"median": (300, 300), "typical": (400, 1_000), "big": (1_000, 19_000)}
MATCHED = 0.05  # share of a graph's accounts that are in the directory


async def load(pool: asyncpg.Pool, entries: int, seed: int) -> dict[str, int]:
    """`entries` directory rows (x ids 1..entries, 60 % Bluesky, 40 % Mastodon, a tenth on
    both) owned by as many users, and one graph per size in GRAPHS. Returns the people's
    expected matched counts (followings + followers in the directory, per network summed)."""
    rng = random.Random(seed)
    owners = [(f"d{x}", x) for x in range(1, entries + 1)]
    await pool.copy_records_to_table("users", records=owners, columns=["id", "x_account_id"])
    rows: list[tuple[int, str, str, str]] = []
    for uid, x in owners:
        nets = ["bluesky"] if x % 10 < 6 else ["mastodon"]
        if x % 10 == 0:
            nets = ["bluesky", "mastodon"]
        rows += [(x, n, f"{n}:{x}", uid) for n in nets]
    await pool.copy_records_to_table(
        "directory", records=rows, columns=["x_account_id", "network", "account", "user_id"]
    )
    per_entry = {x: 2 if x % 10 == 0 else 1 for x in range(1, entries + 1)}
    expected: dict[str, int] = {}
    people = [(name, 10**12 + k) for k, name in enumerate(GRAPHS)]
    await pool.copy_records_to_table("users", records=people, columns=["id", "x_account_id"])
    for name, _x in people:
        edges: list[tuple[str, int, int]] = []
        for direction, n in zip((1, 2), GRAPHS[name], strict=True):
            hits = rng.sample(range(1, entries + 1), round(n * MATCHED))
            misses = rng.sample(range(10**9, 10**10), n - len(hits))
            edges += [(name, direction, x) for x in hits + misses]
            expected[name] = expected.get(name, 0) + sum(per_entry[x] for x in hits)
        await pool.copy_records_to_table(
            "graph_edges", records=edges, columns=["user_id", "direction", "x_account_id"]
        )
    await pool.execute("analyze")
    return expected


async def measure(pool: asyncpg.Pool, user: str, runs: int) -> dict[str, dict[str, object]]:
    out: dict[str, dict[str, object]] = {}
    times: dict[str, list[float]] = {name: [] for name in FORMS}
    for name, sql in FORMS.items():
        rows = await pool.fetch(sql, user)
        out[name] = {
            "buffers": await pg.buffers(pool, sql, user),
            "found": sum(r["matched"] + r["followers"] for r in rows),
        }
    for _ in range(runs):  # alternating, so a busy moment costs both forms alike
        for name, sql in FORMS.items():
            t = time.perf_counter()
            await pool.fetch(sql, user)
            times[name].append(time.perf_counter() - t)
    for name in FORMS:
        out[name]["p50_ms"] = round(statistics.median(times[name]) * 1000, 3)
    return out


async def run(quick: bool) -> dict[str, object]:
    sizes, runs = ((20_000,), 15) if quick else ((20_000, 1_000_000), 41)
    results: list[dict[str, object]] = []
    with pg.server() as url:
        for entries in sizes:
            async with pg.database(url, DB_NAME) as pool:
                version = await pool.fetchval("show server_version")
                results += await cases(pool, entries, runs)
    return {
        "mode": "quick" if quick else "full",
        "postgres": version,
        "matched_share": MATCHED,
        "cases": results,
    }


async def cases(pool: asyncpg.Pool, entries: int, runs: int) -> list[dict[str, object]]:
    """Every graph of GRAPHS measured both ways against a directory of `entries`."""
    expected = await load(pool, entries, seed=entries)
    out: list[dict[str, object]] = []
    for person in GRAPHS:
        forms = await measure(pool, person, runs)
        before, now = forms["per edge (before)"], forms["one scan (now)"]
        out.append(
            {
                "directory": entries,
                "graph": person,
                "edges": sum(GRAPHS[person]),
                "expected": expected[person],
                "forms": forms,
                "buffers_ratio": round(before["buffers"] / now["buffers"], 2),  # type: ignore[operator]
                "time_ratio": round(before["p50_ms"] / now["p50_ms"], 2),  # type: ignore[operator]
            }
        )
    return out


def report(r: dict) -> str:  # type: ignore[type-arg]
    lines = [
        "## audience",
        "",
        f"A person's audience per network, as the matcher measures it for their stats"
        f" ({r['mode']} mode, PostgreSQL {r['postgres']}): {r['matched_share']:.0%} of each"
        " graph's accounts in the directory. Both forms on the same graphs; buffers from EXPLAIN"
        " (exact), time p50 of alternating runs.",
        "",
        "| directory | graph (edges) | per edge: buffers / p50 ms | one scan: buffers / p50 ms"
        " | buffers ratio | time ratio | same counts |",
        "|---|---|---|---|---|---|---|",
    ]
    for c in r["cases"]:
        b, n = c["forms"]["per edge (before)"], c["forms"]["one scan (now)"]
        same = b["found"] == n["found"] == c["expected"]
        lines.append(
            f"| {c['directory']:,} | {c['graph']} ({c['edges']:,}) | {b['buffers']:,} /"
            f" {b['p50_ms']} | {n['buffers']:,} / {n['p50_ms']} | {c['buffers_ratio']}x |"
            f" {c['time_ratio']}x | {same} |"
        )
    worst = min(r["cases"], key=lambda c: c["time_ratio"])
    best = max(r["cases"], key=lambda c: c["time_ratio"])
    lines += [
        "",
        f"audience ({r['mode']}): per-edge form / now: time {worst['time_ratio']}x to"
        f" {best['time_ratio']}x, buffers {min(c['buffers_ratio'] for c in r['cases'])}x to"
        f" {max(c['buffers_ratio'] for c in r['cases'])}x, counts equal {counts_equal(r)}",
    ]
    return "\n".join(lines)


def counts_equal(r: dict) -> bool:  # type: ignore[type-arg]
    return all(f["found"] == c["expected"] for c in r["cases"] for f in c["forms"].values())


def main() -> int:
    return stored.cli("audience", run, report, counts_equal)


if __name__ == "__main__":
    sys.exit(main())
