"""One exodus run: servers, networks, services, the day, the chaos, the drain, the checks."""

from __future__ import annotations

import asyncio
import contextlib
import os
import pickle
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench.exodus import calibration
from bench.exodus.check import LATENCY_CHECK, Seen, verify
from bench.exodus.driver import Driver, Networks
from bench.exodus.orchestra import Orchestra
from bench.exodus.population import DAY_S, Population
from bench.exodus.report import RunResult, throughput

BENCH_PROCESS = "bench (driver)"
NETWORKS_PROCESS = "simulated networks"


@dataclass(frozen=True)
class Plan:
    day_wall_s: float = 600.0  # how long the exodus day lasts in wall seconds
    replicas: int = 1
    chaos: bool = False
    drain_timeout_s: float = 300.0
    keep_data: bool = False
    # The purger's second erase pass (wall seconds); must exceed the adapters' ack_wait (15 s)
    # when replicas are killed.
    erase_settle_s: float = 20.0

    @property
    def factor(self) -> float:
        return DAY_S / self.day_wall_s


def service_env(plan: Plan) -> dict[str, str]:
    f = f"{plan.factor:g}"
    env = {
        "HQX_LOG_LEVEL": "INFO",
        "HQX_MASTODON_ADAPTER_TIME_COMPRESSION": f,
        "HQX_MASTODON_ADAPTER_ALLOW_LOCAL_INSTANCES": "true",
        # NOTE(#11): read by the Bluesky adapter once it supports compressed budgets.
        "HQX_BLUESKY_ADAPTER_TIME_COMPRESSION": f,
        "HQX_BLUESKY_ADAPTER_ALLOW_LOCAL_PDS": "true",
        # Network-time settings, compressed like the networks' windows.
        "HQX_PURGER_COMPLETION_GRACE_S": f"{3600 / plan.factor:g}",
        # Wall-time safety margins, shortened so that a run drains in minutes: a killed
        # replica's unacked messages come back after ack_wait. The Mastodon adapter keeps its
        # 120 s (a batch may run 60 s); what an erase's second pass misses of its late writes,
        # `hqx.db.is_erased` refuses.
        "HQX_BLUESKY_ADAPTER_ACK_WAIT_S": "15",
        "HQX_PURGER_ERASE_SETTLE_S": f"{plan.erase_settle_s:g}",
        "HQX_PURGER_SWEEP_INTERVAL_S": "5",
    }
    return env


async def _chaos(drv: Driver, orch: Orchestra, nets: Networks, plan: Plan) -> None:
    """During the day: SIGKILL each replica in turn, restart NATS and PostgreSQL, flush Redis,
    drop the networks. Spread evenly over the middle of the day."""
    actions: list[tuple[str, object]] = [(f"kill {k}", k) for k in sorted(orch.running)]
    actions += [("restart nats", None), ("restart postgres", None), ("flush redis", None)]
    actions += [("drop networks", None)]
    span = plan.day_wall_s * 0.8
    for i, (what, arg) in enumerate(actions):
        at = drv.tl.t0 + plan.day_wall_s * 0.1 + span * i / len(actions)
        await asyncio.sleep(max(0.0, at - time.time()))
        drv.tl.chaos.append((time.time(), what))
        if what.startswith("kill"):
            await asyncio.to_thread(orch.kill, str(arg))
        elif what == "restart nats":
            await asyncio.to_thread(orch.restart_nats)
        elif what == "restart postgres":
            await asyncio.to_thread(orch.restart_postgres)
        elif what == "flush redis":
            await asyncio.to_thread(orch.flush_redis)
        else:
            nets.drop(max(2.0, plan.day_wall_s * 0.04))


async def _day(drv: Driver, orch: Orchestra, nets: Networks, plan: Plan) -> dict[str, object]:
    await drv.connect()
    try:
        drv.tl.t0 = time.time() + 1.0
        stop = asyncio.Event()
        watcher = asyncio.create_task(drv.watch(stop))
        chaos = asyncio.create_task(_chaos(drv, orch, nets, plan)) if plan.chaos else None
        await drv.play()
        if chaos is not None:
            await chaos
        await drv.drain(plan.drain_timeout_s)
        stop.set()
        await watcher
        await drv.read_ingested()
        # Dead replicas would make the drain look clean: record them.
        drv.tl.failures += [f"replica {k} is dead" for k in orch.dead()]
        return await drv.leftovers()
    finally:
        await drv.close()


def run(pop: Population, plan: Plan, label: str) -> RunResult:
    started = time.monotonic()
    data_dir = Path(tempfile.mkdtemp(prefix="hqx-exodus-"))
    orch = Orchestra(data_dir, replicas=plan.replicas, env=service_env(plan))
    nets = Networks(plan.factor, pop.shape.mastodon_instances)
    keep = plan.keep_data
    try:
        nets.start(pop)  # forked first: before this process has threads of its own
        orch.start_servers()
        orch.start_services()
        ready = orch.wait_ready()
        drv = Driver(pop, orch, nets, plan.factor)
        cpu0, wall0 = time.process_time(), time.time()
        leftovers = asyncio.run(_day(drv, orch, nets, plan))
        cpu = {BENCH_PROCESS: time.process_time() - cpu0, NETWORKS_PROCESS: nets.cpu_s()}
        orch.sample_cpu()
        cpu |= orch.cpu_by_process()
        day_wall = time.time() - wall0
        seen = Seen.of(nets, pop)
        with (data_dir / "verify.pickle").open("wb") as f:
            pickle.dump((pop.shape, drv.tl, seen, plan.factor, leftovers), f)
        verdict = verify(pop, drv.tl, seen, plan.factor, leftovers)
        # A run that breaks exactly-once, the limits or the data lifecycle keeps its logs: an
        # intermittent failure must be readable after the fact.
        broken = [k for k, ok in verdict.passed().items() if ok is False and k != LATENCY_CHECK]
        keep = keep or bool(broken)
        orch.sample_rss()
        return RunResult(
            label=label,
            replicas=plan.replicas,
            chaos=plan.chaos,
            users=len(pop.people),
            factor=plan.factor,
            verdict=verdict,
            timeline=drv.tl,
            peak_rss_mb={k: v / 1024 for k, v in orch.peak_rss_kb.items()},
            missing_services=orch.missing,
            not_ready=[k for k, ok in ready.items() if not ok],
            wall_s=time.monotonic() - started,
            throughput=throughput(drv.tl),
            cpu_s=cpu,
            cpu_capacity_s=day_wall * (os.cpu_count() or 1),
            calibration_s=calibration.day_figure(drv.tl.speed),
        )
    except BaseException:
        keep = True
        raise
    finally:
        with contextlib.suppress(Exception):
            orch.stop()
        nets.stop()
        if keep:
            print(f"exodus: data and logs kept in {data_dir}", file=sys.stderr)
        else:
            shutil.rmtree(data_dir, ignore_errors=True)
