"""`hqx up` as a newcomer runs it: embedded servers, every service, the printed URL, a clean
Ctrl-C with no process left behind, and a second start reusing the same data."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest

from hqx.embedded import free_port

ROOT = Path(__file__).resolve().parents[2]


def start_up(data_dir: Path, gateway_port: int) -> subprocess.Popen[str]:
    env = {
        k: v for k, v in os.environ.items() if k not in ("NATS_URL", "REDIS_URL", "DATABASE_URL")
    }
    env["HQX_GATEWAY_PORT"] = str(gateway_port)
    return subprocess.Popen(
        [sys.executable, "-m", "hqx.cli", "up", "--data-dir", str(data_dir)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def wait_for_url(proc: subprocess.Popen[str], timeout: float = 120.0) -> tuple[str, list[str]]:
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            pytest.fail(f"hqx up exited early: {''.join(lines)}")
        lines.append(line)
        m = re.search(r"is up in [0-9.]+s: (http://\S+)", line)
        if m:
            return m.group(1), lines
    pytest.fail(f"no URL printed within {timeout}s: {''.join(lines)}")


def stop(proc: subprocess.Popen[str]) -> int:
    proc.send_signal(signal.SIGINT)
    return proc.wait(60)


@pytest.mark.timeout(400)
def test_hqx_up_starts_everything_and_stops_cleanly_twice(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    for run in (1, 2):
        port = free_port()
        proc = start_up(data_dir, port)
        try:
            url, lines = wait_for_url(proc)
            assert url == f"http://127.0.0.1:{port}/"
            assert not any("NOT READY" in line for line in lines), lines
            family = psutil.Process(proc.pid).children(recursive=True)
            assert family, "no service or server was started"
            if (ROOT / "services" / "gateway" / "__main__.py").exists():
                assert httpx.get(url, timeout=10).status_code == 200
        finally:
            code = stop(proc)
        assert code == 0, f"run {run}: exit {code}"
        survivors = [p for p in family if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
        assert survivors == [], f"run {run}: orphans {survivors}"
        pid_file = data_dir / "postgres" / "pgdata" / "postmaster.pid"
        assert not pid_file.exists(), "embedded PostgreSQL still running"
    assert (data_dir / "nats").is_dir()  # data kept across runs, as documented
