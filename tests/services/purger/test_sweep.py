"""The sweep beyond archives: expired rows of any table, late messages of erased users."""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta

import pytest

from hqx import db, subjects
from hqx.erasure import tombstone
from hqx.messages import FollowRequested, FollowTarget
from hqx.subjects import Network, Stream
from services.purger import archives, sweep
from services.purger.handlers import Deps
from tests.services.purger.conftest import Clock


def user() -> str:
    return f"u{uuid.uuid4().hex[:16]}"


async def test_expired_rows_of_any_table_are_deleted(deps: Deps, clock: Clock) -> None:
    """A table the purger has never heard of, with an `expires_at`: discovered and swept."""
    await deps.pool.execute(
        "create table web_sessions (id text primary key, user_id text, expires_at timestamptz)"
    )
    await deps.pool.execute(
        "create table oauth_states (state text, expires_at timestamp without time zone)"
    )
    now = clock()
    await deps.pool.executemany(
        "insert into web_sessions values ($1, $2, $3)",
        [("s1", user(), now + timedelta(hours=1)), ("s2", user(), now + timedelta(days=8))],
    )
    await deps.pool.execute(
        "insert into oauth_states values ('st', $1)",
        (now + timedelta(minutes=10)).replace(tzinfo=None),
    )
    assert await sweep.sweep_once(deps) == {}
    clock.advance(days=1)  # past both, whatever the server's time zone for the naive column
    assert await sweep.sweep_once(deps) == {"web_sessions": 1, "oauth_states": 1}
    assert [r["id"] for r in await deps.pool.fetch("select id from web_sessions")] == ["s2"]


async def test_late_messages_of_erased_users_are_purged(deps: Deps) -> None:
    gone, alive = user(), user()
    await tombstone(deps.pool, gone)
    for u in (gone, alive):
        msg = FollowRequested(
            user_id=u,
            network=Network.MASTODON,
            targets=(FollowTarget(x_account_id="12", account="a@b.test"),),
        )
        await deps.js.publish(subjects.follow_requested(Network.MASTODON, u), msg.to_bytes())
        await deps.js.publish(subjects.dlq("bluesky_adapter", u), b"{}")
    assert await sweep.sweep_once(deps) == {"late_messages": 2}
    for stream in (Stream.FOLLOWS, Stream.DLQ):
        info = await deps.js.stream_info(stream.value, subjects_filter=">")
        assert [s.rsplit(".", 1)[-1] for s in info.state.subjects or {}] == [alive]
    tags = await deps.pool.fetch("select distinct user_hash from purge_audit")
    assert db.user_hash(gone) not in {t["user_hash"] for t in tags}  # owner unknown: "-"


async def test_a_failing_step_does_not_stop_the_others(
    deps: Deps, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The archive step failing at every sweep must not keep late messages there forever."""
    gone = user()
    await tombstone(deps.pool, gone)
    await deps.js.publish(subjects.dlq("bluesky_adapter", gone), b"{}")

    async def unreadable(js: object) -> list[archives.Chunks]:
        raise RuntimeError("chunk listing unavailable")

    monkeypatch.setattr(archives, "list_chunks", unreadable)
    with caplog.at_level(logging.WARNING, logger="services.purger.events"):
        assert await sweep.sweep_once(deps) == {"late_messages": 1}
    [failed] = [r for r in caplog.records if r.getMessage() == "sweep failed"]
    assert failed.step == "raw_archives"  # type: ignore[attr-defined]
    assert failed.error == "chunk listing unavailable"  # type: ignore[attr-defined]
