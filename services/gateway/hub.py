"""Live progress fan-out: one core-NATS subscription per process, many SSE streams.

Every replica must see every user's events for the streams it holds, so this is not a durable
consumer: a plain subscription on the EVENTS subjects. A missed event costs nothing, since each
stream re-reads the person's progress from PostgreSQL when woken (and on a keep-alive timer).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict

import asyncpg
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from hqx import subjects
from hqx.messages import ArchiveRejected, parse
from hqx.subjects import STREAM_BY_NAME, Stream

log = logging.getLogger(__name__)


class ProgressHub:
    def __init__(self, nc: NATS, pool: asyncpg.Pool) -> None:
        self._nc = nc
        self._pool = pool
        self._subs: list[Subscription] = []
        self._listeners: dict[str, set[asyncio.Event]] = defaultdict(set)

    async def start(self) -> None:
        # NOTE: archive.uploaded lives in ARCHIVES (a work queue); a core subscription sees it too.
        wanted = (
            *STREAM_BY_NAME[Stream.EVENTS].subjects,
            *STREAM_BY_NAME[Stream.ARCHIVES].subjects,
        )
        for subject in wanted:
            self._subs.append(await self._nc.subscribe(subject, cb=self._on_event))

    async def stop(self) -> None:
        for sub in self._subs:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        self._subs.clear()

    @property
    def listeners(self) -> int:
        return sum(len(s) for s in self._listeners.values())

    def listen(self, user_id: str) -> asyncio.Event:
        ev = asyncio.Event()
        self._listeners[user_id].add(ev)
        return ev

    def forget(self, user_id: str, ev: asyncio.Event) -> None:
        group = self._listeners.get(user_id)
        if group is not None:
            group.discard(ev)
            if not group:
                del self._listeners[user_id]

    async def _on_event(self, msg: Msg) -> None:
        user_id = subjects.user_id_of(msg.subject)
        if not subjects.USER_ID_RE.fullmatch(user_id):
            return
        try:
            await self._record(msg, user_id)
        except Exception:
            log.warning(
                "progress event not recorded", extra={"subject": msg.subject}, exc_info=True
            )
        for ev in self._listeners.get(user_id, ()):
            ev.set()

    async def _record(self, msg: Msg, user_id: str) -> None:
        """Archive outcomes are not stored by anyone else in a form the page can read."""
        if msg.subject == subjects.archive_rejected(user_id):
            m = parse(msg.data, (ArchiveRejected,))
            assert isinstance(m, ArchiveRejected)
            await self._pool.execute(
                "update uploads set state = 'rejected', reason = $2, updated_at = now()"
                " where object_name = $1 and user_id = $3",
                m.object_name,
                m.reason,
                user_id,
            )
        elif msg.subject == subjects.archive_unpacked(user_id):
            await self._pool.execute(
                "update uploads set state = 'unpacked', updated_at = now()"
                " where user_id = $1 and state = 'received'",
                user_id,
            )
