"""Ingest benchmark: parse speed vs raw inflate, peak memory, end to end, 1 vs 2 replicas.

`python -m bench.ingest [--quick]`. Ratios are measured in the same run:
1. Parse: an archive with F followers, 5,000 following and T MB of tweets, parsed by
   `parse_archive` in a child process (peak RSS from ru_maxrss) vs merely inflating its graph
   members with zlib in the same child.
2. End to end: the archive put in the object store, `archive.uploaded` published, an ingest
   process (`python -m services.ingest`) streams it -> rows in PostgreSQL -> `graph.ingested`;
   peak RSS of that process from /proc (VmHWM).
3. Throughput: N small archives (median 300 following / 500 followers) queued, drained by 1
   then 2 ingest processes: archives/s and the 2/1 ratio.
Prints a markdown section, last line a one-line summary; JSON to bench/results/ingest.json.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import asyncpg

from bench import stored
from hqx import bus, db, embedded, subjects
from hqx.messages import ArchiveUploaded
from hqx.settings import ServiceSettings
from tests.factories.archives import ArchiveSpec, build_archive, random_ids, write_archive

HERE = Path(__file__).parent
ROOT = HERE.parent
SPEC = subjects.CONSUMERS_BY_SERVICE["ingest"][0]


@dataclass(frozen=True)
class Sizes:
    followers: int
    following: int
    tweets_mb: int
    small_archives: int


FULL = Sizes(2_000_000, 5_000, 200, 1_000)
QUICK = Sizes(200_000, 5_000, 20, 100)

_CHILD = r"""
import json, resource, sys, time, zipfile, zlib
from services.ingest.archive import parse_archive
path = sys.argv[1]
def chunks():
    with open(path, "rb") as f:
        while c := f.read(1 << 17):
            yield c
# Baseline: inflate only the graph members (offsets from the central directory), same chunks.
zf = zipfile.ZipFile(path)
spans = []
for info in zf.infolist():
    if "follow" in info.filename:
        with open(path, "rb") as f:
            f.seek(info.header_offset + 26)
            n, m = int.from_bytes(f.read(2), "little"), int.from_bytes(f.read(2), "little")
        spans.append((info.header_offset + 30 + n + m, info.compress_size))
best_inflate = best_parse = 1e9
for _ in range(int(sys.argv[2])):
    t = time.perf_counter()
    inflated = 0
    with open(path, "rb") as f:
        for start, size in spans:
            f.seek(start)
            d = zlib.decompressobj(-15)
            while size:
                c = f.read(min(size, 1 << 17))
                size -= len(c)
                inflated += len(d.decompress(c))
    best_inflate = min(best_inflate, time.perf_counter() - t)
    t = time.perf_counter()
    parsed = parse_archive(chunks())
    best_parse = min(best_parse, time.perf_counter() - t)
import random
from array import array
shuffled = list(parsed.follower.ids) + list(parsed.following.ids)
random.Random(0).shuffle(shuffled)
shuffled = array("q", shuffled)  # stream order is random, as X lists by follow date
import numpy as np
t = time.perf_counter()
array("q", np.sort(np.frombuffer(shuffled, dtype=np.int64)).tobytes())
sort_s = time.perf_counter() - t  # ~ the sort part of parse_archive (_merge)
print(json.dumps({"inflate_s": best_inflate, "parse_s": best_parse, "inflated": inflated,
                  "sort_s": sort_s,
                  "followers": len(parsed.follower), "following": len(parsed.following),
                  "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def make_big(path: Path, s: Sizes) -> ArchiveSpec:
    rng = random.Random(1)
    spec = ArchiveSpec(following=random_ids(s.following, rng),
                       follower=random_ids(s.followers, rng),
                       tweets_bytes=s.tweets_mb << 20, media_files=50)  # fmt: skip
    with path.open("wb") as f:
        write_archive(spec, f)
    return spec


def parse_bench(path: Path, repeat: int) -> dict[str, float]:
    out = subprocess.run([sys.executable, "-c", _CHILD, str(path), str(repeat)], cwd=ROOT,
                         capture_output=True, text=True, check=True)  # fmt: skip
    return json.loads(out.stdout.strip().splitlines()[-1])


# --- the stack ---------------------------------------------------------------------------


def _pg_base(tmp: Path) -> tuple[str, embedded.Embedded | None]:
    url = os.environ.get("HQX_TEST_DATABASE_URL")
    if url:
        return url.rsplit("/", 1)[0], None
    with socket.socket() as s:
        if s.connect_ex(("127.0.0.1", 5432)) == 0:
            return "postgresql://postgres@127.0.0.1:5432", None
    server = embedded.start_postgres(tmp / "pg", "postgres")
    return server.url.rsplit("/", 1)[0], server


class Stack:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.nats = embedded.start_nats(tmp / "nats")
        base, self.pg = _pg_base(tmp)
        self.db_url = f"{base}/hqx_bench_ingest_{uuid.uuid4().hex[:8]}"
        self.settings = ServiceSettings(NATS_URL=self.nats.url, DATABASE_URL=self.db_url,
                                        HQX_ENV="test", HQX_LOG_JSON=True)  # fmt: skip

    def env(self) -> dict[str, str]:
        return {**os.environ, "NATS_URL": self.nats.url, "DATABASE_URL": self.db_url,
                "HQX_ENV": "test", "HQX_LOG_LEVEL": "WARNING",
                "HQX_HEALTH_HOST": "127.0.0.1"}  # fmt: skip

    def replica(self) -> subprocess.Popen[bytes]:
        return subprocess.Popen([sys.executable, "-m", "services.ingest"], cwd=ROOT, env=self.env(),
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip

    def stop(self) -> None:
        self.nats.stop()
        if self.pg:
            self.pg.stop()


def vm_hwm_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def _wait(pred, timeout: float) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not await pred():
        if time.monotonic() > deadline:
            raise TimeoutError("benchmark condition not reached")
        await asyncio.sleep(0.05)


async def _drained(js, n: int) -> bool:  # type: ignore[no-untyped-def]
    info = await js.consumer_info(SPEC.stream.value, SPEC.durable)
    return info.delivered.stream_seq >= n and info.num_pending == 0 and info.num_ack_pending == 0


async def _consuming(js, replicas: int) -> bool:  # type: ignore[no-untyped-def]
    """Every replica has a pull request waiting: it is up and consuming."""
    info = await js.consumer_info(SPEC.stream.value, SPEC.durable)
    return (info.num_waiting or 0) >= replicas


async def end_to_end(stack: Stack, path: Path, size: int) -> dict[str, float]:
    nc = await bus.connect(stack.settings, "bench-ingest")
    js = nc.jetstream()
    await bus.ensure_topology(js, stack.settings)
    store = await bus.archive_store(js, stack.settings)
    user = "benchbig"
    with path.open("rb") as f:
        await store.put("big.zip", f)
    proc = stack.replica()
    pool = await db.connect(stack.db_url)
    try:
        await _wait(lambda: _consuming(js, 1), 120)
        msg = ArchiveUploaded(user_id=user, object_name="big.zip", size=size)
        started = time.perf_counter()
        await js.publish(subjects.archive_uploaded(user), msg.to_bytes())

        async def ingested() -> bool:
            try:
                await js.get_last_msg(subjects.Stream.EVENTS.value, subjects.graph_ingested(user))
                return True
            except Exception:
                return False

        await _wait(ingested, 1800)
        seconds = time.perf_counter() - started
        rows = await pool.fetchval("select count(*) from graph_edges where user_id = $1", user)
        return {"e2e_s": seconds, "rows": rows, "service_rss_mb": vm_hwm_mb(proc.pid)}
    finally:
        proc.terminate()
        proc.wait(30)
        await pool.close()
        await nc.close()


async def throughput(stack: Stack, n: int, replicas: int, archives: list[bytes]) -> float:
    nc = await bus.connect(stack.settings, "bench-ingest")
    js = nc.jetstream()
    await bus.ensure_topology(js, stack.settings)
    store = await bus.archive_store(js, stack.settings)
    tag = uuid.uuid4().hex[:6]
    msgs = []
    for i in range(n):
        data = archives[i % len(archives)]
        name = f"small-{tag}-{i}.zip"
        await store.put(name, data)
        msgs.append(ArchiveUploaded(user_id=f"s{tag}{i}", object_name=name, size=len(data),
                                    sha256=hashlib.sha256(data).hexdigest()))  # fmt: skip
    base = (await js.consumer_info(SPEC.stream.value, SPEC.durable)).delivered.stream_seq
    procs = [stack.replica() for _ in range(replicas)]
    try:
        await _wait(lambda: _consuming(js, replicas), 120)
        started = time.perf_counter()
        for m in msgs:
            await js.publish(subjects.archive_uploaded(m.user_id), m.to_bytes())
        await _wait(lambda: _drained(js, base + n), 1800)
        return n / (time.perf_counter() - started)
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(30)
        await nc.close()


def small_archives(k: int) -> list[bytes]:
    rng = random.Random(5)
    out = []
    for _ in range(k):
        fol = max(1, int(rng.lognormvariate(5.7, 0.6)))  # median ~300
        fer = max(1, int(rng.lognormvariate(6.2, 0.8)))  # median ~500
        out.append(build_archive(ArchiveSpec(following=random_ids(fol, rng),
                                             follower=random_ids(fer, rng),
                                             tweets_bytes=50_000, media_files=3)))  # fmt: skip
    return out


async def run_stack(tmp: Path, big: Path, size: int, s: Sizes) -> dict[str, float]:
    stack = Stack(tmp)
    try:
        await db.ensure_database(stack.db_url)
        pool = await db.connect(stack.db_url)
        await db.migrate(pool)
        await pool.close()
        out = await end_to_end(stack, big, size)
        archives = small_archives(100)
        out["tput_1"] = await throughput(stack, s.small_archives, 1, archives)
        out["tput_2"] = await throughput(stack, s.small_archives, 2, archives)
        return out
    finally:
        stack.stop()
        conn = await asyncpg.connect(stack.db_url.rsplit("/", 1)[0] + "/postgres")
        await conn.execute(f'drop database if exists "{stack.db_url.rsplit("/", 1)[1]}"')
        await conn.close()


def report(res: dict[str, Any]) -> str:
    edges = res["followers"] + res["following"]
    ratio = res["parse_over_inflate"]
    scan = res["parse_s"] - res["sort_s"]
    return "\n".join(
        [
            f"## ingest ({res['mode']})",
            "",
            f"Archive: {res['followers']:,} followers, {res['following']:,} following, "
            f"{res['tweets_mb']} MB of tweets; zip {res['archive_mb']:.0f} MB, graph members "
            f"inflate to {res['inflated'] / 2**20:.0f} MB.",
            "",
            "| measure | value | ratio / limit |",
            "|---|---|---|",
            f"| inflate graph members (zlib, baseline) | {res['inflate_s']:.2f} s | 1.00 |",
            f"| parse whole archive (`parse_archive`) | {res['parse_s']:.2f} s | "
            f"{ratio:.2f}x baseline (target <= 2) |",
            f"| of which sort + dedupe of the ids (approx.) | {res['sort_s']:.2f} s | "
            f"parse without it: {scan / res['inflate_s']:.2f}x baseline |",
            f"| peak RSS, parser process | {res['maxrss_mb']:.0f} MB | limit 300 MB |",
            f"| end to end: object store -> {res['rows']:,} rows -> graph.ingested | "
            f"{res['e2e_s']:.2f} s | {edges / res['e2e_s']:,.0f} edges/s |",
            f"| peak RSS, ingest service process | {res['service_rss_mb']:.0f} MB | limit 300 MB |",
            f"| {res['small_archives']} small archives, 1 replica | {res['tput_1']:.1f} "
            "archives/s | 1.00 |",
            f"| {res['small_archives']} small archives, 2 replicas | {res['tput_2']:.1f} "
            f"archives/s | {res['replica_ratio']:.2f}x |",
            "",
            f"ingest: parse/inflate {ratio:.2f}x (<=2), parser RSS {res['maxrss_mb']:.0f} MB, "
            f"service RSS {res['service_rss_mb']:.0f} MB (<=300), e2e {res['e2e_s']:.1f} s, "
            f"2/1 replicas {res['replica_ratio']:.2f}x",
        ]
    )


def main() -> int:
    p = argparse.ArgumentParser(prog="python -m bench.ingest")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--from-results", action="store_true", help="print the stored results only")
    args = p.parse_args()
    if args.from_results:
        print(report(stored.load("ingest")))
        return 0
    s = QUICK if args.quick else FULL
    with tempfile.TemporaryDirectory(prefix="hqx-bench-ingest-") as d:
        tmp = Path(d)
        big = tmp / "big.zip"
        t = time.perf_counter()
        make_big(big, s)
        gen_s = time.perf_counter() - t
        parse = parse_bench(big, 2 if args.quick else 3)
        stack = asyncio.run(run_stack(tmp, big, big.stat().st_size, s))
        size_mb = big.stat().st_size / 2**20
    ratio = parse["parse_s"] / parse["inflate_s"]
    res = {"mode": "quick" if args.quick else "full", **asdict(s), "archive_mb": size_mb,
           "generate_s": gen_s, **parse, **stack, "parse_over_inflate": ratio,
           "replica_ratio": stack["tput_2"] / stack["tput_1"]}  # fmt: skip
    stored.save("ingest", res)
    print(report(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
