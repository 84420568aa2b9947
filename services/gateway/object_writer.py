"""Resumable writes into the JetStream object store, one chunk message at a time.

nats-py's `ObjectStore.put` wants the whole object from one reader in one call; a resumable
upload arrives as many HTTP requests, maybe on different replicas. So we speak the object store's
own layout (chunks on `$O.<bucket>.C.<nuid>`, then one meta message with size, chunk count and
SHA-256 digest on `$O.<bucket>.M.<b64 name>`): every chunk is published as it arrives and the
object becomes visible only when its meta is written. Readers (`ObjectStore.get`) cannot tell.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime

from nats.js import api
from nats.js.object_store import (
    OBJ_CHUNKS_PRE_TEMPLATE,
    OBJ_DEFAULT_CHUNK_SIZE,
    OBJ_DIGEST_TEMPLATE,
    OBJ_META_PRE_TEMPLATE,
    ObjectStore,
)

CHUNK_SIZE = OBJ_DEFAULT_CHUNK_SIZE
# The zip end-of-central-directory record is 22 bytes plus a comment of at most 65,535.
TAIL_BYTES = 22 + 65_535


@dataclass
class WriteState:
    """What has been stored so far: enough to resume, verify and seal without re-reading."""

    offset: int = 0
    chunks: int = 0
    hasher: hashlib._Hash = field(default_factory=hashlib.sha256)
    head: bytes = b""
    tail: bytearray = field(default_factory=bytearray)

    def add(self, data: bytes) -> None:
        self.hasher.update(data)
        if len(self.head) < 4:
            self.head += data[: 4 - len(self.head)]
        self.tail += data
        if len(self.tail) > TAIL_BYTES:
            del self.tail[: len(self.tail) - TAIL_BYTES]
        self.offset += len(data)
        self.chunks += 1


class ObjectWriter:
    def __init__(self, store: ObjectStore) -> None:
        self._js = store._js
        self._bucket = store._name
        self._stream = store._stream

    def _chunks(self, nuid: str) -> str:
        return OBJ_CHUNKS_PRE_TEMPLATE.format(bucket=self._bucket, obj=nuid)

    def new_nuid(self) -> str:
        return self._js._nc._nuid.next().decode()

    async def append(self, nuid: str, state: WriteState, data: bytes) -> None:
        """Store one chunk (acked by the stream) and account for it."""
        await self._js.publish(self._chunks(nuid), data)
        state.add(data)

    async def replay(self, nuid: str, timeout: float = 10.0) -> WriteState:
        """Rebuild the state from the stored chunks (resume on another replica / after restart)."""
        state = WriteState()
        info = await self._js.stream_info(self._stream, subjects_filter=self._chunks(nuid))
        count = (info.state.subjects or {}).get(self._chunks(nuid), 0)
        if count == 0:
            return state
        sub = await self._js.subscribe(self._chunks(nuid), ordered_consumer=True)
        try:
            for _ in range(count):
                msg = await sub.next_msg(timeout=timeout)
                state.add(msg.data)
        finally:
            await sub.unsubscribe()
        return state

    async def seal(self, name: str, nuid: str, state: WriteState) -> None:
        """Publish the meta message: from now on the object exists for `ObjectStore.get`."""
        info = api.ObjectInfo(
            name=name,
            bucket=self._bucket,
            nuid=nuid,
            size=state.offset,
            chunks=state.chunks,
            mtime=datetime.now(UTC).isoformat(),
            digest=OBJ_DIGEST_TEMPLATE.format(
                digest=base64.urlsafe_b64encode(state.hasher.digest()).decode()
            ),
            options=api.ObjectMetaOptions(max_chunk_size=CHUNK_SIZE),
        )
        meta = OBJ_META_PRE_TEMPLATE.format(
            bucket=self._bucket, obj=base64.urlsafe_b64encode(name.encode()).decode()
        )
        await self._js.publish(
            meta, json.dumps(info.as_dict()).encode(), headers={api.Header.ROLLUP: "sub"}
        )

    async def discard(self, nuid: str) -> None:
        """Drop the chunks of an abandoned or refused upload."""
        await asyncio.shield(self._js.purge_stream(self._stream, subject=self._chunks(nuid)))
