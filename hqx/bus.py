"""JetStream topology: streams, the archive bucket and durable consumers, created idempotently.

Every service calls `ensure_topology` at start; the first one creates, the others find the same
configuration and change nothing (a second `hqx up` against the same servers reuses them). A
durable that exists is changed only by the service that consumes it, with its own settings.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

import nats
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DiscardPolicy,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.errors import BadRequestError, NotFoundError
from nats.js.object_store import ObjectStore

from hqx.settings import ServiceSettings
from hqx.subjects import ARCHIVE_BUCKET, ARCHIVE_BUCKET_SHARE, STREAMS, ConsumerSpec, StreamSpec

log = logging.getLogger(__name__)

MIN_SERVER = (2, 10)


class UnsupportedServerError(RuntimeError):
    """The NATS server cannot run this topology safely: a misconfiguration, never retried."""


def require_supported_server(nc: NATS) -> None:
    """Refuse a NATS server older than 2.10, before anything is created on it.

    Both failures are silent on 2.9 (measured on Debian's 2.9.10): it ignores a consumer's
    `filter_subjects`, so a durable meant for a few subjects receives every message of its
    stream; and a purge by subject moves every consumer's ack floor past the stream's last
    message, so other users' pending and nak'd messages (a deferred follow batch, an erase
    waiting for its final pass) are never delivered again (erasures delete one by one on
    consumed streams, `hqx.erasure.delete_subject`, but would meet the first failure anyway).
    """
    v = nc.connected_server_version
    if (v.major, v.minor) < MIN_SERVER:
        need = ".".join(map(str, MIN_SERVER))
        where = nc.connected_url.netloc if nc.connected_url else "?"
        raise UnsupportedServerError(
            f"NATS server {v.major}.{v.minor}.{v.patch} at {where} is too old: HelloQuitteX"
            f" needs NATS >= {need} with JetStream (unset NATS_URL for the embedded server)"
        )


async def connect(settings: ServiceSettings, name: str) -> NATS:
    nc = await nats.connect(
        settings.nats_url,
        name=f"hqx-{name}",
        max_reconnect_attempts=-1,
        reconnect_time_wait=1,
    )
    try:
        require_supported_server(nc)
    except UnsupportedServerError:
        await nc.close()
        raise
    return nc


def stream_config(spec: StreamSpec, settings: ServiceSettings) -> StreamConfig:
    return StreamConfig(
        name=spec.name.value,
        subjects=list(spec.subjects),
        retention=RetentionPolicy.WORK_QUEUE if spec.work_queue else RetentionPolicy.LIMITS,
        # Work queues refuse new messages when full (the publisher sees it), event logs drop
        # their oldest.
        discard=DiscardPolicy.NEW if spec.work_queue else DiscardPolicy.OLD,
        max_age=spec.max_age_s,
        max_bytes=int(spec.max_bytes_share * settings.jetstream_max_bytes),
        max_msg_size=spec.max_msg_size,
        storage=StorageType.MEMORY if settings.stream_storage == "memory" else StorageType.FILE,
        duplicate_window=min(spec.duplicate_window_s, spec.max_age_s),
        num_replicas=1,
    )


def consumer_config(spec: ConsumerSpec) -> ConsumerConfig:
    subjects = list(spec.filter_subjects)
    return ConsumerConfig(
        durable_name=spec.durable,
        ack_policy=AckPolicy.EXPLICIT,
        ack_wait=spec.ack_wait_s,
        max_deliver=spec.max_deliver,
        max_ack_pending=spec.max_ack_pending,
        filter_subject=subjects[0] if len(subjects) == 1 else None,
        filter_subjects=subjects if len(subjects) > 1 else None,
    )


async def ensure_stream(js: JetStreamContext, spec: StreamSpec, settings: ServiceSettings) -> None:
    cfg = stream_config(spec, settings)
    try:
        info = await js.stream_info(spec.name.value)
    except NotFoundError:
        await js.add_stream(cfg)
        log.info("stream created", extra={"stream": spec.name.value})
        return
    current = info.config
    if (
        sorted(current.subjects or []) != sorted(cfg.subjects or [])
        or current.max_age != cfg.max_age
        or current.max_bytes != cfg.max_bytes
        or current.duplicate_window != cfg.duplicate_window
    ):
        cfg.storage = current.storage  # storage cannot change on a live stream
        await js.update_stream(cfg)
        log.info("stream updated", extra={"stream": spec.name.value})


async def ensure_consumer(js: JetStreamContext, spec: ConsumerSpec, *, update: bool = True) -> None:
    """Create the durable; if it exists, bring it to `spec` (`update`) or leave it as it is."""
    if not update:
        try:
            await js.consumer_info(spec.stream.value, spec.durable)
            return
        except NotFoundError:
            pass
    cfg = consumer_config(spec)
    try:
        await js.add_consumer(spec.stream.value, cfg)
    except BadRequestError:
        # An older config under the same durable: replace the mutable parts in place.
        await js.add_consumer(spec.stream.value, cfg)


async def archive_store(js: JetStreamContext, settings: ServiceSettings) -> ObjectStore:
    """The `archives` object store, whose own max age is the 24 h ceiling of ARCHITECTURE §7."""
    from nats.js.api import ObjectStoreConfig

    try:
        return await js.object_store(ARCHIVE_BUCKET)
    except (NotFoundError, BadRequestError):
        storage = StorageType.MEMORY if settings.stream_storage == "memory" else StorageType.FILE
        return await js.create_object_store(
            ARCHIVE_BUCKET,
            config=ObjectStoreConfig(
                bucket=ARCHIVE_BUCKET,
                description="raw X archives, only until unpacked",
                ttl=settings.archive_max_age_s,
                max_bytes=int(ARCHIVE_BUCKET_SHARE * settings.jetstream_max_bytes),
                storage=storage,
            ),
        )


async def ensure_topology(
    js: JetStreamContext, settings: ServiceSettings, own: Iterable[ConsumerSpec] = ()
) -> None:
    """Streams, the archive bucket and every durable consumer of the registry.

    `own`: the durables the calling service consumes, as it consumes them (its settings may
    change one, a shorter ack_wait say); only these are brought to their spec if they exist.
    Every other durable is created if missing and otherwise left alone: another service's
    start, or a replica of another version, must not undo them.
    """
    from hqx.subjects import CONSUMERS

    for spec in STREAMS:
        await ensure_stream(js, spec, settings)
    await archive_store(js, settings)
    mine = {c.durable: c for c in own}
    for c in CONSUMERS:
        if c.durable not in mine:
            await ensure_consumer(js, c, update=False)
    for c in mine.values():
        await ensure_consumer(js, c)
