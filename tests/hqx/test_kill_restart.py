"""SIGKILL a service mid-handler and restart it: the unacked message is redelivered, not lost."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import nats

from hqx import subjects
from hqx.messages import GraphIngested
from hqx.settings import ServiceSettings
from tests.eventually import drained, eventually
from tests.hqx.killable_service import SPEC

ROOT = Path(__file__).resolve().parents[2]


def spawn(settings: ServiceSettings, work: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "NATS_URL": settings.nats_url,
        "HQX_HEALTH_HOST": "127.0.0.1",
        "HQX_JETSTREAM_MAX_BYTES": str(settings.jetstream_max_bytes),
        "HQX_LOG_JSON": "0",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "tests.hqx.killable_service", str(work)], cwd=ROOT, env=env
    )


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


async def test_sigkill_mid_handler_redelivers(
    settings: ServiceSettings, tmp_path: Path, user_id: str
) -> None:
    first = spawn(settings, tmp_path)
    try:
        nc = await nats.connect(settings.nats_url)
        js = nc.jetstream()
        await eventually(lambda: _consumer_exists(js), timeout=30)
        msg = GraphIngested(
            user_id=user_id,
            owner_x_account_id="12",
            owner_username="precious",
            following_count=0,
            follower_count=0,
            graph_version=1,
        )
        await js.publish(subjects.graph_ingested(user_id), msg.to_bytes())
        await eventually(lambda: lines(tmp_path / "deliveries") == ["precious 1"], timeout=30)
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        assert lines(tmp_path / "done") == []

        (tmp_path / "release").touch()
        second = spawn(settings, tmp_path)
        try:
            await eventually(lambda: lines(tmp_path / "done") == ["precious"], timeout=30)
            await drained(js, SPEC.stream.value, SPEC.durable)
            assert lines(tmp_path / "deliveries") == ["precious 1", "precious 2"]
        finally:
            second.send_signal(signal.SIGTERM)
            assert second.wait(20) == 0  # a clean stop on SIGTERM
        await nc.close()
    finally:
        if first.poll() is None:
            first.kill()


async def _consumer_exists(js: object) -> bool:
    try:
        await js.consumer_info(SPEC.stream.value, SPEC.durable)  # type: ignore[attr-defined]
        return True
    except Exception:
        return False
