"""Gateway benchmark: 500 concurrent uploads and 1,000 open progress streams on ONE process.

`python -m bench.gateway [--quick]`. Embedded NATS and Redis, PostgreSQL on 127.0.0.1:5432 (or
embedded), a database of its own (`hqx_bench_gateway`, re-created), and the gateway as a real
subprocess (`python -m services.gateway`), whose resident memory is read from /proc.

1. Baseline: `GET /api/me` one at a time, p50/p99.
2. S sessions open their progress stream (SSE); RSS before/after -> memory per open stream.
3. With the streams open: `GET /api/me` at concurrency 50 -> p99 as a ratio to the baseline.
4. U uploads at once (each: create + one PATCH of a small slimmed archive) by U of the stream
   holders; latency of each call, and of the progress event reaching that person's stream.
Prints a markdown section, the last line a one-line summary; JSON to bench/results/gateway.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import asyncpg
import httpx
import numpy as np

from bench import stored
from hqx import embedded

DB_NAME = "hqx_bench_gateway"


class _NoJar(httpx.Cookies):
    """Each simulated person sends their own cookies; the shared client keeps none."""

    def extract_cookies(self, response: httpx.Response) -> None:
        return None


def small_archive(i: int) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("data/manifest.js", "window.__THAR_CONFIG = {}")
        z.writestr(
            "data/account.js",
            f'window.YTD.account.part0 = [{{"account": {{"accountId": "{i + 1}"}}}}]',
        )
        recs = [{"following": {"accountId": str(10**12 + j)}} for j in range(300)]
        z.writestr(
            "data/following.js", "window.YTD.following.part0 = " + json.dumps(recs, indent=2)
        )
    return buf.getvalue()


def cpu_s(pid: int) -> float:
    """User + system CPU seconds the process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def pct(xs: list[float], q: float) -> float:
    return float(np.percentile(np.array(xs) * 1000, q)) if xs else float("nan")


class Person:
    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client
        self.csrf = secrets.token_urlsafe(16)
        self.cookie = f"hqx_csrf={self.csrf}"
        self.received = asyncio.Event()

    @property
    def headers(self) -> dict[str, str]:
        return {"Cookie": self.cookie, "X-CSRF-Token": self.csrf}

    async def sign_in(self) -> None:
        r = await self.client.post("/api/session", headers=self.headers)
        r.raise_for_status()
        token = r.cookies.get("hqx_session") or _cookie(r, "hqx_session")
        self.cookie += f"; hqx_session={token}"

    async def timed(self, method: str, url: str, **kw) -> tuple[float, httpx.Response]:
        t0 = time.perf_counter()
        r = await self.client.request(
            method, url, headers=self.headers | kw.pop("headers", {}), **kw
        )
        return time.perf_counter() - t0, r

    async def watch(self, opened: asyncio.Event | None = None) -> None:
        async with self.client.stream("GET", "/api/me/progress/stream", headers=self.headers) as r:
            async for line in r.aiter_lines():
                if line.startswith("data: "):
                    if opened is not None and not opened.is_set():
                        opened.set()
                    if '"stage": "received"' in line:
                        self.received.set()


def _cookie(r: httpx.Response, name: str) -> str:
    for v in r.headers.get_list("set-cookie"):
        if v.startswith(name + "="):
            return v.split(";", 1)[0].split("=", 1)[1]
    raise RuntimeError(f"no {name} cookie")


def _pg_base(tmp: Path) -> tuple[str, embedded.Embedded | None]:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", 5432), 0.3):
        return "postgresql://postgres@127.0.0.1:5432", None
    server = embedded.start_postgres(tmp / "pg", "postgres")
    return server.url.rsplit("/", 1)[0], server


async def _fresh_db(base: str) -> str:
    conn = await asyncpg.connect(f"{base}/postgres")
    try:
        await conn.execute(f'drop database if exists "{DB_NAME}" with (force)')
        await conn.execute(f'create database "{DB_NAME}"')
    finally:
        await conn.close()
    return f"{base}/{DB_NAME}"


async def run(streams: int, uploads: int) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="hqx-bench-gw-"))
    nats = embedded.start_nats(tmp / "nats")
    redis = embedded.start_redis(tmp / "redis")
    pg_base, pg = _pg_base(tmp)
    port = embedded.free_port()
    env = os.environ | {
        "NATS_URL": nats.url,
        "REDIS_URL": redis.url,
        "DATABASE_URL": await _fresh_db(pg_base),
        "HQX_ENV": "test",
        "HQX_LOG_LEVEL": "WARNING",
        "HQX_JETSTREAM_MAX_BYTES": str(4 * 1024**3),
        "HQX_GATEWAY_PORT": str(port),
        "HQX_GATEWAY_RATE_PER_IP": "1000000000",
        "HQX_GATEWAY_RATE_PER_USER": "1000000000",
        "HQX_HEALTH_HOST": "127.0.0.1",
    }
    proc = subprocess.Popen([sys.executable, "-m", "services.gateway"], env=env)  # noqa: ASYNC220
    out: dict = {"streams": streams, "uploads": uploads}
    try:
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
                break
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("gateway did not start")
            await asyncio.sleep(0.1)
        limits = httpx.Limits(
            max_connections=streams + uploads + 200, max_keepalive_connections=200
        )
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}", timeout=120, limits=limits
        ) as client:
            client._cookies = _NoJar()
            await _measure(client, proc.pid, streams, uploads, out)
    finally:
        proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(20)
        if proc.poll() is None:
            proc.kill()
        nats.stop()
        redis.stop()
        if pg:
            pg.stop()
    return out


async def _measure(
    client: httpx.AsyncClient, pid: int, streams: int, uploads: int, out: dict
) -> None:
    solo = Person(client)
    await solo.sign_in()
    for _ in range(20):
        await solo.timed("GET", "/api/me")
    cpu0 = cpu_s(pid)
    base = [(await solo.timed("GET", "/api/me"))[0] for _ in range(300)]
    out["base_cpu_ms"] = 1000 * (cpu_s(pid) - cpu0) / 300
    out["base_p50_ms"], out["base_p99_ms"] = pct(base, 50), pct(base, 99)

    people = [Person(client) for _ in range(streams)]
    sem = asyncio.Semaphore(50)

    async def sign_in(p: Person) -> None:
        async with sem:
            await p.sign_in()

    await asyncio.gather(*(sign_in(p) for p in people))
    rss_before = rss_kb(pid)
    cpu0 = cpu_s(pid)
    opened = [asyncio.Event() for _ in people]
    t0 = time.perf_counter()
    watchers = [asyncio.create_task(p.watch(ev)) for p, ev in zip(people, opened, strict=True)]
    await asyncio.wait_for(asyncio.gather(*(ev.wait() for ev in opened)), 300)
    out["streams_open_s"] = time.perf_counter() - t0
    out["streams_open_cpu_s"] = cpu_s(pid) - cpu0
    await asyncio.sleep(1.0)  # let allocations settle before reading RSS
    rss_after = rss_kb(pid)
    out["rss_before_mb"], out["rss_streams_mb"] = rss_before / 1024, rss_after / 1024
    out["kb_per_stream"] = (rss_after - rss_before) / streams

    async def me(p: Person) -> float:
        async with sem:
            return (await p.timed("GET", "/api/me"))[0]

    loaded = await asyncio.gather(*(me(people[i % streams]) for i in range(1000)))
    out["loaded_p50_ms"], out["loaded_p99_ms"] = pct(list(loaded), 50), pct(list(loaded), 99)

    archives = [small_archive(i) for i in range(uploads)]
    create_t: list[float] = []
    patch_t: list[float] = []
    push_t: list[float] = []
    errors = 0

    async def upload(p: Person, data: bytes) -> None:
        nonlocal errors
        dt, r = await p.timed("POST", "/api/uploads", json={"size": len(data), "slimmed": True})
        create_t.append(dt)
        if r.status_code != 201:
            errors += 1
            return
        headers = {"Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"}
        dt, r = await p.timed(
            "PATCH", f"/api/uploads/{r.json()['id']}", content=data, headers=headers
        )
        patch_t.append(dt)
        if r.status_code != 200 or r.json()["state"] != "received":
            errors += 1
            return
        t = time.perf_counter()
        await asyncio.wait_for(p.received.wait(), 60)
        push_t.append(time.perf_counter() - t)

    t0, cpu0 = time.perf_counter(), cpu_s(pid)
    await asyncio.gather(*(upload(people[i], archives[i]) for i in range(uploads)))
    out["uploads_wall_s"] = time.perf_counter() - t0
    out["uploads_cpu_s"] = cpu_s(pid) - cpu0
    out["upload_errors"] = errors
    out["rss_end_mb"] = rss_kb(pid) / 1024
    for name, xs in (("create", create_t), ("patch", patch_t), ("push", push_t)):
        out[f"{name}_p50_ms"], out[f"{name}_p99_ms"] = pct(xs, 50), pct(xs, 99)
    out["archive_bytes"] = int(np.mean([len(a) for a in archives]))
    for w in watchers:
        w.cancel()
    await asyncio.gather(*watchers, return_exceptions=True)


def report(r: dict) -> str:
    base = r["base_p99_ms"]
    rows = [
        ("`GET /api/me`, idle (baseline)", r["base_p50_ms"], base, 1.0),
        (
            f"`GET /api/me`, {r['streams']} streams open",
            r["loaded_p50_ms"],
            r["loaded_p99_ms"],
            r["loaded_p99_ms"] / base,
        ),
        (
            f"`POST /api/uploads`, {r['uploads']} at once",
            r["create_p50_ms"],
            r["create_p99_ms"],
            r["create_p99_ms"] / base,
        ),
        (
            f"`PATCH` whole archive ({r['archive_bytes'] // 1024} KB), {r['uploads']} at once",
            r["patch_p50_ms"],
            r["patch_p99_ms"],
            r["patch_p99_ms"] / base,
        ),
        (
            "progress event reaches the stream after upload",
            r["push_p50_ms"],
            r["push_p99_ms"],
            r["push_p99_ms"] / base,
        ),
    ]
    lines = [
        "## gateway",
        "",
        f"One gateway process; {r['streams']} open SSE progress streams, then {r['uploads']} "
        "concurrent uploads of small slimmed archives by stream holders "
        "(`python -m bench.gateway`).",
        "",
        "| measure | p50 ms | p99 ms | p99 / baseline p99 |",
        "|---|---:|---:|---:|",
        *(f"| {n} | {a:.1f} | {b:.1f} | {c:.1f}x |" for n, a, b, c in rows),
        "",
        "| gateway CPU (load-independent) | ms | / one idle `GET /api/me` |",
        "|---|---:|---:|",
        f"| one `GET /api/me` | {r['base_cpu_ms']:.2f} | 1.0x |",
        f"| one upload (create + PATCH + announce) | {1000 * r['uploads_cpu_s'] / r['uploads']:.2f}"
        f" | {1000 * r['uploads_cpu_s'] / r['uploads'] / r['base_cpu_ms']:.1f}x |",
        f"| opening one progress stream | {1000 * r['streams_open_cpu_s'] / r['streams']:.2f}"
        f" | {1000 * r['streams_open_cpu_s'] / r['streams'] / r['base_cpu_ms']:.1f}x |",
        "",
        "| memory | value |",
        "|---|---:|",
        f"| RSS before streams | {r['rss_before_mb']:.1f} MB |",
        f"| RSS with {r['streams']} streams | {r['rss_streams_mb']:.1f} MB |",
        f"| per open stream | {r['kb_per_stream']:.1f} KB |",
        f"| RSS after uploads | {r['rss_end_mb']:.1f} MB |",
        "",
        f"Streams opened in {r['streams_open_s']:.1f} s ({r['streams_open_cpu_s']:.1f} CPU s of "
        f"the gateway); {r['uploads']} uploads in {r['uploads_wall_s']:.1f} s "
        f"({r['uploads_cpu_s']:.1f} CPU s of the gateway, "
        f"{1000 * r['uploads_cpu_s'] / r['uploads']:.1f} ms per upload), "
        f"{r['upload_errors']} errors. Load average at the end: {os.getloadavg()[0]:.1f} "
        f"on {os.cpu_count()} CPUs (the client runs on the same machine).",
        "",
        f"gateway: {r['uploads']} concurrent uploads PATCH p99 {r['patch_p99_ms']:.0f} ms "
        f"({r['patch_p99_ms'] / base:.0f}x idle API p99), API p99 with {r['streams']} streams "
        f"{r['loaded_p99_ms'] / base:.1f}x idle, {r['kb_per_stream']:.0f} KB per open stream, "
        f"{r['upload_errors']} errors, gateway CPU per upload "
        f"{1000 * r['uploads_cpu_s'] / r['uploads'] / r['base_cpu_ms']:.1f}x one API call",
    ]
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(prog="python -m bench.gateway")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--from-results", action="store_true", help="print the stored results only")
    args = p.parse_args()
    if args.from_results:
        print(report(stored.load("gateway")))
        return 0
    streams, uploads = (200, 100) if args.quick else (1000, 500)
    r = asyncio.run(run(streams, uploads))
    stored.save("gateway", r)
    print(report(r))
    return 0 if r["upload_errors"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
