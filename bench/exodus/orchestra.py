"""Processes of one bench run: embedded servers, every service as N replicas, and the chaos.

Servers are the wheels' (`hqx.embedded`) on free ports under the run's data dir (never the
developer's 4222/6379, never the shared PostgreSQL: the chaos restarts them). Topology and
schema come from `hqx.stack.Stack.prepare`. Each replica is `python -m services.<name>` in its
own process group; peak memory is read from `/proc/<pid>/status` (VmHWM) while it runs, and
CPU seconds (user + system, with reaped children) of every process tree, servers included, so a
run says where the machine's cores went.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import redis

from hqx import embedded
from hqx.stack import Stack

log = logging.getLogger(__name__)
ROOT = Path(__file__).resolve().parents[2]
# Stages that scale out (a durable shared by replicas); the gateway is not driven here.
SCALABLE = ("ingest", "matcher", "bluesky_adapter", "mastodon_adapter", "purger")
FAMILY_RELIST_S = 10.0
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class Replica:
    service: str
    index: int
    proc: subprocess.Popen[bytes]
    health_port: int
    peak_rss_kb: int = 0
    restarts: int = 0

    @property
    def name(self) -> str:
        return f"{self.service}#{self.index}"


@dataclass
class Orchestra:
    data_dir: Path
    replicas: int = 1
    env: dict[str, str] = field(default_factory=dict)
    services: tuple[str, ...] = SCALABLE
    stack: Stack = field(init=False)
    running: dict[str, Replica] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    peak_rss_kb: dict[str, int] = field(default_factory=dict)
    revived: dict[str, int] = field(default_factory=dict)  # replica -> restarts after an exit
    # (service or server, pid) -> CPU seconds last read: a killed or restarted process keeps
    # what it used, its successor adds to it.
    cpu_s: dict[tuple[str, int], float] = field(default_factory=dict)
    _family: dict[int, list[int]] = field(default_factory=dict)  # root pid -> its tree's pids
    _listed_at: float = -FAMILY_RELIST_S
    # NOTE: kill (in a worker thread) and revive (in the watcher) must not both respawn one
    # replica: the loser's process would be left untracked.
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _nats_port: int = 0

    def __post_init__(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.stack = Stack(self.data_dir)

    # --- servers ------------------------------------------------------------------------

    def start_servers(self) -> None:
        self._nats_port = embedded.free_port()
        nats = embedded.start_nats(self.data_dir / "nats", self._nats_port)
        red = embedded.start_redis(self.data_dir / "redis")
        pg = embedded.start_postgres(self.data_dir / "postgres")
        self.stack.servers += [nats, red, pg]
        self.stack.env.update(NATS_URL=nats.url, REDIS_URL=red.url, DATABASE_URL=pg.url)
        asyncio.run(self.stack.prepare())

    def url(self, name: str) -> str:
        return self.stack.env[name]

    def _server(self, name: str) -> embedded.Embedded:
        return next(s for s in self.stack.servers if s.name == name)

    def restart_nats(self, down_s: float = 2.0) -> None:
        """Stop NATS (SIGTERM: JetStream flushes) and start it on the same port and store."""
        self.sample_cpu()
        old = self._server("nats")
        old.stop()
        time.sleep(down_s)
        new = embedded.start_nats(self.data_dir / "nats", self._nats_port)
        self.stack.servers[self.stack.servers.index(old)] = new

    def restart_postgres(self, down_s: float = 2.0) -> None:
        self.sample_cpu()
        old = self._server("postgres")
        old.stop()
        time.sleep(down_s)
        new = embedded.start_postgres(self.data_dir / "postgres")
        if new.url != old.url:  # pragma: no cover - the socket lives in the data dir
            log.warning("postgres came back on another url: %s", new.url)
        self.stack.servers[self.stack.servers.index(old)] = new

    def flush_redis(self) -> None:
        with redis.Redis.from_url(self.url("REDIS_URL")) as r:
            r.flushall()

    # --- services -----------------------------------------------------------------------

    def start_services(self) -> None:
        for name in self.services:
            if not (ROOT / "services" / name / "__main__.py").exists():
                self.missing.append(name)
                continue
            for i in range(self.replicas):
                self._spawn(name, i)

    def _spawn(self, name: str, index: int) -> Replica:
        port = embedded.free_port()
        env = {**os.environ, **self.stack.env, **self.env, "HQX_HEALTH_PORT": str(port)}
        logf = open(self.data_dir / f"{name}.{index}.log", "ab")
        proc = subprocess.Popen(
            [sys.executable, "-m", f"services.{name}"],
            cwd=ROOT,
            env=env,
            stdout=logf,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        logf.close()
        old = self.running.get(f"{name}#{index}")
        rep = Replica(name, index, proc, port, restarts=(old.restarts + 1) if old else 0)
        self.running[rep.name] = rep
        return rep

    def wait_ready(self, timeout: float = 90.0) -> dict[str, bool]:
        deadline = time.monotonic() + timeout
        ready = dict.fromkeys(self.running, False)
        while time.monotonic() < deadline and not all(ready.values()):
            for key, rep in self.running.items():
                if ready[key] or rep.proc.poll() is not None:
                    continue
                with contextlib.suppress(httpx.HTTPError):
                    r = httpx.get(f"http://127.0.0.1:{rep.health_port}/readyz", timeout=1.0)
                    ready[key] = r.status_code == 200
            if all(ready[k] or self.running[k].proc.poll() is not None for k in ready):
                break
            time.sleep(0.2)
        return ready

    def dead(self) -> list[str]:
        return [k for k, r in self.running.items() if r.proc.poll() is not None]

    def revive(self) -> list[str]:
        """Start again every replica that exited on its own, as a kubelet would (a service
        started while PostgreSQL or NATS is down exits); returns their names."""
        with self._lock:
            dead = self.dead()
            for key in dead:
                rep = self.running[key]
                self.revived[key] = self.revived.get(key, 0) + 1
                self._spawn(rep.service, rep.index)
        return dead

    def kill(self, key: str) -> None:
        """SIGKILL one replica (no cleanup, no ack of what it held) and start it again."""
        with self._lock:
            rep = self.running[key]
            self.sample_rss()
            self.sample_cpu()
            with contextlib.suppress(ProcessLookupError):
                os.killpg(rep.proc.pid, signal.SIGKILL)
            rep.proc.wait(10)
            self._spawn(rep.service, rep.index)

    def sample_rss(self) -> None:
        for rep in self.running.values():
            kb = _vm_hwm_kb(rep.proc.pid)
            rep.peak_rss_kb = max(rep.peak_rss_kb, kb)
            self.peak_rss_kb[rep.service] = max(self.peak_rss_kb.get(rep.service, 0), kb)

    def sample_cpu(self, relist: bool = False) -> None:
        """CPU seconds of every process tree so far. Trees are listed again every
        `FAMILY_RELIST_S` (or on `relist`): a child that ended meanwhile is in its parent's
        reaped-children time, one started meanwhile waits for the next listing."""
        roots = [(rep.service, rep.proc.pid) for rep in self.running.values()]
        for server in self.stack.servers:
            pid = server.proc.pid if server.proc else _postmaster_pid(self.data_dir)
            if pid:
                roots.append((server.name, pid))
        now = time.monotonic()
        if (
            relist
            or now > self._listed_at + FAMILY_RELIST_S
            or any(pid not in self._family for _, pid in roots)
        ):
            children = _children_by_pid()
            self._family = {pid: _descendants(pid, children) for _, pid in roots}
            self._listed_at = now
        for key in roots:
            used = sum(process_cpu_s(p) for p in self._family[key[1]])
            if used:
                self.cpu_s[key] = max(self.cpu_s.get(key, 0.0), used)

    def cpu_by_process(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for (name, _), used in self.cpu_s.items():
            out[name] = out.get(name, 0.0) + used
        return out

    def stop(self) -> None:
        self._lock.acquire()  # no respawn from here on
        self.sample_rss()
        self.sample_cpu(relist=True)
        for rep in self.running.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(rep.proc.pid, signal.SIGTERM)
        for rep in self.running.values():
            try:
                rep.proc.wait(20)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(rep.proc.pid, signal.SIGKILL)
                rep.proc.wait(5)
        self.running.clear()
        self.stack.stop()


def _vm_hwm_kb(pid: int) -> int:
    """Peak resident set size of a live process, in kB (0 once it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        return 0
    return 0


def _children_by_pid() -> dict[int, list[int]]:
    """Every live process's children, from one pass over /proc.

    NOTE: `psutil.Process.children` reads all of /proc on each call (7 ms idle here, 0.1 s
    under a quick run's load); once per tree (13 of them), twice a second, that blocked the
    driver's loop for a second at a time and took a share of the CPU the day measures.
    """
    out: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                ppid = int(_stat_fields(int(entry.name))[1])
                out.setdefault(ppid, []).append(int(entry.name))
    return out


def _descendants(pid: int, children: dict[int, list[int]]) -> list[int]:
    """`pid` and every process under it."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        if p not in out:
            out.append(p)
            todo += children.get(p, [])
    return out


def _stat_fields(pid: int) -> list[bytes]:
    """/proc/<pid>/stat after the command name: state, ppid, ... (proc(5), from field 3)."""
    return (Path("/proc") / str(pid) / "stat").read_bytes().rsplit(b")", 1)[1].split()


def process_cpu_s(pid: int) -> float:
    """CPU seconds of a live process (0.0 once it is gone): user + system, with its reaped
    children's."""
    try:
        utime_to_cstime = _stat_fields(pid)[11:15]
    except OSError:
        return 0.0
    return sum(int(x) for x in utime_to_cstime) / CLOCK_TICKS


def _postmaster_pid(data_dir: Path) -> int:
    with contextlib.suppress(OSError, ValueError, IndexError):
        return int((data_dir / "postgres" / "pgdata" / "postmaster.pid").read_text().split()[0])
    return 0
