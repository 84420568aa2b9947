"""Read an archive from the object store chunk by chunk, never whole (nats-py's `get` would).

An ephemeral pull consumer on the object's chunk subject fetches a few chunks at a time, so
memory stays bounded however large the archive; the SHA-256 of the object's metadata is checked
once the last chunk has been read. `sync_chunks` hands the chunks to the parser's thread.

The consumer is deleted as soon as the object is read: left to expire, they pile up (one per
archive for `inactive_threshold`) until the server refuses new ones (seen in the ingest bench:
`maximum consumers limit reached` after ~1,000 archives in two minutes).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import uuid
from collections.abc import Iterator

from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, ObjectInfo
from nats.js.errors import NotFoundError, ObjectNotFoundError
from nats.js.object_store import OBJ_CHUNKS_PRE_TEMPLATE, OBJ_DIGEST_TYPE, OBJ_STREAM_TEMPLATE

from hqx.errors import ArchiveRejectedError, Reason
from hqx.subjects import ARCHIVE_BUCKET

_STREAM = OBJ_STREAM_TEMPLATE.format(bucket=ARCHIVE_BUCKET)


class DigestMismatchError(Exception):
    """The bytes read are not the bytes stored: a storage or transport fault, retried."""


class ObjectChunks:
    """Chunks of one object, in order; `next_batch` returns [] at the end."""

    def __init__(self, js: JetStreamContext, info: ObjectInfo, batch: int) -> None:
        self._js = js
        self.info = info
        self._batch = batch
        self._sha = hashlib.sha256()
        self._received = 0
        self._sub: JetStreamContext.PullSubscription | None = None
        self._consumer = ""
        self._done = info.size == 0

    @classmethod
    async def open(cls, js: JetStreamContext, name: str, batch: int = 16) -> ObjectChunks:
        store = await js.object_store(ARCHIVE_BUCKET)
        try:
            info = await store.get_info(name)
        except (ObjectNotFoundError, NotFoundError):
            raise ArchiveRejectedError(
                Reason.ARCHIVE_MISSING, "the uploaded archive is gone: please upload it again"
            ) from None
        return cls(js, info, batch)

    async def next_batch(self) -> list[bytes]:
        if self._done:
            return []
        if self._sub is None:
            self._consumer = f"ingest-read-{uuid.uuid4().hex}"
            await self._js.add_consumer(
                _STREAM,
                ConsumerConfig(
                    name=self._consumer,
                    filter_subject=OBJ_CHUNKS_PRE_TEMPLATE.format(
                        bucket=ARCHIVE_BUCKET, obj=self.info.nuid
                    ),
                    ack_policy=AckPolicy.NONE,
                    deliver_policy=DeliverPolicy.ALL,
                    inactive_threshold=60.0,  # only if we could not delete it (process killed)
                ),
            )
            self._sub = await self._js.pull_subscribe_bind(
                stream=_STREAM, name=self._consumer, pending_bytes_limit=64 * 1024 * 1024
            )
        msgs = await self._sub.fetch(self._batch, timeout=30)
        out = []
        for m in msgs:
            out.append(m.data)
            self._sha.update(m.data)
            self._received += len(m.data)
            if m.metadata.num_pending == 0:
                await self._end()
                break
        return out

    async def _end(self) -> None:
        self._done = True
        await self.close()
        expected = base64.urlsafe_b64decode((self.info.digest or "").removeprefix(OBJ_DIGEST_TYPE))
        if self._received != self.info.size or self._sha.digest() != expected:
            raise DigestMismatchError(f"object {self.info.name} read back differently")

    async def close(self) -> None:
        if self._sub is not None:
            sub, self._sub = self._sub, None
            await sub.unsubscribe()
            with contextlib.suppress(NotFoundError):
                await self._js.delete_consumer(_STREAM, self._consumer)


def sync_chunks(
    loop: asyncio.AbstractEventLoop, chunks: ObjectChunks, timeout_s: float = 120.0
) -> Iterator[bytes]:
    """The chunks as a plain iterator, for the parser running in a worker thread.

    The timeout frees the thread if the loop stops (service shutdown) mid-archive.
    """
    while True:
        batch = asyncio.run_coroutine_threadsafe(chunks.next_batch(), loop).result(timeout_s)
        if not batch:
            return
        yield from batch
