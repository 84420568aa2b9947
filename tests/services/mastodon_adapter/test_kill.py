"""1,000 follows for one account, exactly once, across a SIGKILL of the adapter and redeliveries.

The adapter runs as a real subprocess (`python -m services.mastodon_adapter`) behind the limit
front with time compressed, so the 1,000 follows also cross three 24 h follow windows.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import asyncpg
import nats
import nats.errors
import pytest

from hqx import bus, ledger, subjects
from hqx.messages import FollowDone, FollowRequested
from hqx.settings import ServiceSettings
from hqx.subjects import Network, Stream
from tests.eventually import drained, eventually
from tests.peers.mastodon import following
from tests.peers.mastodon_limits import LimitFront
from tests.services.mastodon_adapter.conftest import adapter_settings, link_identity, remote
from tests.services.mastodon_adapter.test_handlers import targets

ROOT = Path(__file__).resolve().parents[3]
SPEC = subjects.CONSUMERS_BY_SERVICE["mastodon_adapter"][0]
NET = Network.MASTODON
WINDOW = 12.0  # the 24 h follow window, compressed 7,200 times
N = 1000


def spawn(settings: ServiceSettings) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "NATS_URL": settings.nats_url,
        "REDIS_URL": settings.redis_url,
        "DATABASE_URL": settings.database_url,
        "HQX_ENV": "test",
        "HQX_HEALTH_HOST": "127.0.0.1",
        "HQX_LOG_JSON": "0",
        "HQX_LOG_LEVEL": "WARNING",
        "HQX_JETSTREAM_MAX_BYTES": str(settings.jetstream_max_bytes),
        "HQX_MASTODON_ADAPTER_ALLOW_LOCAL_INSTANCES": "1",
        "HQX_MASTODON_ADAPTER_TIME_COMPRESSION": str(86400 / WINDOW),
    }
    return subprocess.Popen([sys.executable, "-m", "services.mastodon_adapter"], cwd=ROOT, env=env)


@pytest.fixture
def front(mastodon: dict[str, Any]):
    f = LimitFront(mastodon["base_url"], compression=86400 / WINDOW).start()
    yield f
    f.stop()


@pytest.mark.timeout(720)
async def test_thousand_follows_exactly_once_across_sigkill(
    settings: ServiceSettings, mastodon: dict[str, Any], front: LimitFront, user_id: str
) -> None:
    pool = await asyncpg.create_pool(settings.database_url, min_size=1, max_size=2)
    nc = await nats.connect(settings.nats_url)
    js = nc.jetstream()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        await link_identity(
            pool,
            adapter_settings(settings),
            user_id,
            front.base_url,
            f"alice@{mastodon['domain']}",
            "alice-token",
        )
        ts = targets([remote(i) for i in range(1, N + 1)])
        await ledger.plan(pool, user_id, NET, ts)
        procs.append(spawn(settings))

        async def done() -> int:
            return int(
                await pool.fetchval(
                    "select count(*) from follow_ledger where user_id = $1 and state = 'done'",
                    user_id,
                )
            )

        async def at_least(n: int) -> bool:
            return await done() >= n

        await eventually(lambda: _consumer_exists(js), timeout=60)
        batches = [
            FollowRequested(user_id=user_id, network=NET, targets=tuple(ts[i : i + 200]))
            for i in range(0, N, 200)
        ]
        for b in batches:
            await js.publish(
                subjects.follow_requested(NET, user_id),
                b.to_bytes(),
                headers={"Nats-Msg-Id": b.msg_id()},
            )
        await eventually(lambda: at_least(150), timeout=60)
        procs[0].send_signal(signal.SIGKILL)
        procs[0].wait(10)
        killed_at = await done()
        assert killed_at < N

        # NOTE: ack_wait is 120 s in production. Shorten it, take back the batches the killed
        # process held (they expire after 1 s) and put them back at once (nak), then restore it.
        config = bus.consumer_config(SPEC)
        await js.add_consumer(SPEC.stream.value, dataclasses.replace(config, ack_wait=1.0))
        sub = await js.pull_subscribe_bind(SPEC.durable, SPEC.stream.value)
        held: set[int] = set()
        while True:
            try:
                msgs = await sub.fetch(len(batches), timeout=5)
            except nats.errors.TimeoutError:
                break
            seqs = {m.metadata.sequence.stream for m in msgs}
            for m in msgs:
                await m.nak()
            if seqs <= held:
                break
            held |= seqs
        await sub.unsubscribe()
        await js.add_consumer(SPEC.stream.value, config)
        procs.append(spawn(settings))
        await eventually(lambda: at_least(N), timeout=480)  # slow when the machine is loaded
        await drained(js, SPEC.stream.value, SPEC.durable, timeout=30)

        # a batch re-published later (no dedup id) is a no-op
        calls = front.stats["forwarded"]
        await js.publish(subjects.follow_requested(NET, user_id), batches[0].to_bytes())
        await drained(js, SPEC.stream.value, SPEC.durable, timeout=30)
        assert front.stats["forwarded"] == calls

        # exactly once on the network, in the ledger; within every window's limit
        assert sorted(following(mastodon, "alice-token")) == sorted(t.account for t in ts)
        assert front.stats["follows_new"] == N
        # none followed again: what the killed process made and had not recorded, its
        # redeliveries ask the instance about first (the claims it left, retaken)
        assert front.stats["follows_repeated"] == 0
        assert front.stats["http_429"] == 0
        per_window = Counter(int(t // WINDOW) for t, _, _ in front.follow_log)
        # 400 minus 10 % head-room; a follow granted just before a window's end can land just
        # after it (one per batch in flight): what head-room is for, the server's 400 is far
        assert max(per_window.values()) <= 360 + len(batches)
        assert await done() == N
        reported = Counter()
        for seq in range(1, (await js.stream_info(Stream.EVENTS.value)).state.last_seq + 1):
            m = await js.get_msg(Stream.EVENTS.value, seq)
            if m.subject == subjects.follow_done(NET, user_id):
                reported.update(r.account for r in FollowDone.model_validate_json(m.data).results)
        assert set(reported) == {t.account for t in ts}
        assert sum(reported.values()) - N <= 20 * len(batches)
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(20)
                except subprocess.TimeoutExpired:
                    p.kill()
        await nc.close()
        await pool.close()


async def _consumer_exists(js: Any) -> bool:
    try:
        await js.consumer_info(SPEC.stream.value, SPEC.durable)
        return True
    except Exception:
        return False
