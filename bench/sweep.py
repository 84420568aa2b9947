"""The matcher's dispatch sweep at an exodus peak: the owners due, against the scans before.

`python -m bench.sweep [--quick]`, in a database of its own (`bench.pg`). Every second each
matcher replica looks for owners whose late joiners have settled and who have no batch in
flight. At an exodus peak thousands of followers are held while a batch of theirs is in flight
(a full day at factor 12, read off its ledger: 3,805 followers, 13,009 unsent rows, 40,780
rows in flight), so a scan mostly finds nothing. The scans before read every unsent row: with
the in-flight check once per row (two changes ago), then once per follower. Now the sweep
reads only the owners due (`services/matcher/due.py`: held ones are postponed to the end of
their hold, and woken when their batch is acted on), and the scan of every unsent row runs
once a minute as a backstop. All forms run on the same ledger; buffers read are exact
(EXPLAIN), times are not. Prints a markdown section, last line a one-line summary; JSON to
bench/results/sweep.json.
"""

from __future__ import annotations

import asyncio
import sys
import time
from datetime import UTC, datetime, timedelta

import asyncpg

from bench import pg, stored
from services.matcher import dispatch, due
from services.matcher.settings import Settings

DB_NAME = "hqx_bench_sweep"
# The form before `dispatch.UNSENT`: the in-flight check once per unsent row.
PER_ROW = """
select distinct f.network, f.user_id from follow_ledger f
 where f.state = 'planned' and f.batch_id is null
   and f.planned_at < now() - make_interval(secs => $1)
   and not exists (
       select 1 from follow_ledger s
        where s.user_id = f.user_id and s.network = f.network
          and s.state = 'planned' and s.batch_id is not null
          and s.updated_at > now() - make_interval(secs => $3))
 limit $2
"""
# name: (SQL, runs every n sweeps)
BACKSTOP = round(
    Settings.model_fields["sweep_backstop_s"].default
    / Settings.model_fields["sweep_interval_s"].default
)
FORMS = {
    "per row (two changes ago)": (PER_ROW, 1),
    "every unsent row (before)": (dispatch.UNSENT, 1),
    "owners due (now)": (due.DUE, 1),
    "every unsent row, backstop (now)": (dispatch.UNSENT, BACKSTOP),
}
# settle s, owners per sweep, in-flight s: the matcher's defaults but a shorter settle
ARGS = (0.5, 2000, 600.0)


async def load(
    pool: asyncpg.Pool, held: int, unsent: float, in_flight: int, free: int, done: int
) -> list[str]:
    """`held` followers with `in_flight` rows of a batch in flight and `unsent` settled rows
    (on average) waiting for it, and `free` followers with as many rows and nothing in flight
    (what the sweep must find); each with `done` follows already made (their own migration).
    Held followers are postponed in `dispatch_due` as the sweep leaves them; free ones are due."""
    owners = [f"h{k}" for k in range(held)] + [f"f{k}" for k in range(free)]
    await pool.copy_records_to_table(
        "users", records=[(u, k) for k, u in enumerate(owners)], columns=["id", "x_account_id"]
    )
    now = datetime.now(UTC)
    rows: list[tuple[object, ...]] = []
    for k, u in enumerate(owners):
        n = int(unsent) + (k % 100 < round(unsent % 1 * 100))
        flying = in_flight if k < held else 0
        rows += [(u, j, "planned", "batch") for j in range(flying)]
        rows += [(u, j, "planned", None) for j in range(flying, flying + n)]
        rows += [(u, j, "done", "old") for j in range(flying + n, flying + n + done)]
    await pool.copy_records_to_table(
        "follow_ledger",
        records=[(u, "bluesky", j, f"did:plc:{j}", st, b, now, now) for u, j, st, b in rows],
        columns=[
            *("user_id", "network", "target_x_id", "target", "state", "batch_id"),
            *("planned_at", "updated_at"),
        ],
    )
    hold_end, settled = now + timedelta(seconds=ARGS[2]), now - timedelta(seconds=10)
    await pool.copy_records_to_table(
        "dispatch_due",
        records=[(u, "bluesky", hold_end if k < held else settled) for k, u in enumerate(owners)],
        columns=["user_id", "network", "due_at"],
    )
    await pool.execute("analyze")
    await asyncio.sleep(ARGS[0] + 0.5)  # the rows settle
    return owners[held:]


def _found(rows: list[asyncpg.Record]) -> set[str]:
    """Owners a form says to send (the due form also returns those it would forget or hold)."""
    if rows and "unsent" in rows[0]:
        return {r["user_id"] for r in rows if due.verdict(r) == "send"}
    return {r["user_id"] for r in rows}


async def measure(
    pool: asyncpg.Pool, sql: str, every: int, free: list[str], runs: int
) -> dict[str, object]:
    found = _found(await pool.fetch(sql, *ARGS))
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        await pool.fetch(sql, *ARGS)
        times.append(time.perf_counter() - t)
    times.sort()
    buffers = await pg.buffers(pool, sql, *ARGS)
    p50_ms = times[len(times) // 2] * 1000
    return {
        "every_s": every,
        "buffers": buffers,
        "p50_ms": round(p50_ms, 3),
        "buffers_per_s": round(buffers / every, 1),
        "ms_per_s": round(p50_ms / every, 3),
        "found_all_free": found == set(free),
    }


async def run(quick: bool) -> dict[str, object]:
    held, unsent, in_flight, free, done, runs = (
        (500, 3.42, 11, 50, 300, 10) if quick else (3_805, 3.42, 11, 50, 300, 30)
    )
    with pg.server() as url:
        async with pg.database(url, DB_NAME) as pool:
            version = await pool.fetchval("show server_version")
            free_owners = await load(pool, held, unsent, in_flight, free, done)
            forms = {
                name: await measure(pool, sql, every, free_owners, runs)
                for name, (sql, every) in FORMS.items()
            }

    def per_s(key: str, names: list[str]) -> float:
        return sum(forms[n][key] for n in names)  # type: ignore[misc]

    before = ["every unsent row (before)"]
    now = ["owners due (now)", "every unsent row, backstop (now)"]
    return {
        "mode": "quick" if quick else "full",
        "postgres": version,
        "held": held,
        "unsent_each": unsent,
        "in_flight_each": in_flight,
        "free": free,
        "done_each": done,
        "forms": forms,
        "buffers_ratio": round(per_s("buffers_per_s", before) / per_s("buffers_per_s", now), 2),
        "time_ratio": round(per_s("ms_per_s", before) / per_s("ms_per_s", now), 2),
    }


def report(r: dict) -> str:  # type: ignore[type-arg]
    lines = [
        "## sweep",
        "",
        f"The matcher's dispatch sweep at an exodus peak ({r['mode']} mode, PostgreSQL"
        f" {r['postgres']}): {r['held']:,} followers held by a batch in flight"
        f" ({r['in_flight_each']} rows each) with {r['unsent_each']} settled rows each on"
        f" average, {r['free']} free to send, {r['done_each']} follows made each. All forms on"
        " the same ledger; buffers read from EXPLAIN (exact), time p50 of repeated scans; per"
        " second: what one matcher replica spends on it each second of the peak.",
        "",
        "| scan | runs every | buffers read | p50 ms | buffers per s | ms per s"
        " | finds every free follower |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, f in r["forms"].items():
        lines.append(
            f"| {name} | {f['every_s']} s | {f['buffers']:,} | {f['p50_ms']}"
            f" | {f['buffers_per_s']:,} | {f['ms_per_s']} | {f['found_all_free']} |"
        )
    lines += [
        "",
        f"sweep ({r['mode']}): before / now, per second: {r['buffers_ratio']}x buffers,"
        f" {r['time_ratio']}x time, {r['held']} followers held",
    ]
    return "\n".join(lines)


def main() -> int:
    return stored.cli("sweep", run, report, found_every_free)


def found_every_free(r: dict) -> bool:  # type: ignore[type-arg]
    return all(f["found_all_free"] for f in r["forms"].values())


if __name__ == "__main__":
    sys.exit(main())
