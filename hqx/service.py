"""The runtime every bus service shares: connections, topology, subscribers, health, shutdown.

A service's `app.py` builds a `Service`, registers its consumers with `consume`, and its
`__main__.py` calls `run_forever`. Handlers get the `Service` as their dependencies (`deps`):
the JetStream context, the PostgreSQL pool, Redis and `publish`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import asyncpg
import redis.asyncio as aioredis
from faststream.middlewares import AckPolicy
from faststream.nats import JStream, NatsBroker, PullSub
from faststream.nats.annotations import NatsMessage
from nats.aio.client import Client as NATS
from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from nats.js.api import PubAck
from nats.js.object_store import ObjectStore
from redis.exceptions import RedisError

from hqx import backoff, bus, db, metrics, telemetry
from hqx.consumer import Delivery, Handler, process
from hqx.health import HealthServer, health_app
from hqx.messages import Message
from hqx.settings import ServiceSettings
from hqx.subjects import ConsumerSpec

log = logging.getLogger(__name__)
FAILURES_KEY = "hqx:failures:{}:{}"  # durable, stream sequence


class Service:
    """One service process. Stateless apart from its stores: N replicas share each durable."""

    def __init__(
        self,
        name: str,
        settings: ServiceSettings,
        *,
        uses_db: bool = True,
        uses_redis: bool = True,
    ) -> None:
        self.name = name
        self.settings = settings
        self.uses_db = uses_db
        self.uses_redis = uses_redis
        self.broker = NatsBroker(
            settings.nats_url,
            name=f"hqx-{name}",
            max_reconnect_attempts=-1,
            reconnect_time_wait=1,
            logger=logging.getLogger(f"faststream.{name}"),
            # faststream's own "Received" / "Processed" line per message (plain text, outside
            # our JSON logs): debug only. Outcomes are counted in metrics, failures logged.
            log_level=logging.DEBUG,
        )
        self._consumers: list[ConsumerSpec] = []
        self._on_start: list[Callable[[], Awaitable[None]]] = []
        self._on_stop: list[Callable[[], Awaitable[None]]] = []
        self._tasks: list[asyncio.Task[Any]] = []
        self.nc: NATS | None = None
        self._js: JetStreamContext | None = None
        self._pool: asyncpg.Pool | None = None
        self._redis: aioredis.Redis | None = None
        self._archives: ObjectStore | None = None
        self.health_port: int | None = None
        self._health: HealthServer | None = None

    # --- resources (available after start) ----------------------------------------------
    @property
    def js(self) -> JetStreamContext:
        assert self._js is not None, "service not started"
        return self._js

    @property
    def pool(self) -> asyncpg.Pool:
        assert self._pool is not None, "service has no database"
        return self._pool

    @property
    def redis(self) -> aioredis.Redis:
        assert self._redis is not None, "service has no redis"
        return self._redis

    async def archives(self) -> ObjectStore:
        if self._archives is None:
            self._archives = await bus.archive_store(self.js, self.settings)
        return self._archives

    # --- registration ----------------------------------------------------------------------
    def consume(
        self,
        spec: ConsumerSpec,
        accepted: tuple[type[Message], ...],
        handler: Handler,
        *,
        concurrency: int = 8,
    ) -> None:
        """Bind a durable pull consumer to a handler through the hqx wrapper (manual acks)."""
        self._consumers.append(spec)

        @self.broker.subscriber(
            stream=JStream(spec.stream.value, declare=False),
            durable=spec.durable,
            # NOTE: a short fetch timeout lets nats-py's fetch raise the builtin TimeoutError when
            # its probe answers near the deadline; faststream only suppresses nats' own, so its
            # pull task crashes and restarts, and a pull request it left may hold messages
            # until ack_wait. 5 s (faststream's default) makes that path practically unreachable.
            # NOTE: one message per pull request, `concurrency` handlers at once. nats-py's batch
            # fetch could leave a delivered message in no one's hands until ack_wait (seen with
            # two replicas naking at once); single fetches do not.
            pull_sub=PullSub(batch_size=1, timeout=5.0),
            max_workers=concurrency,
            config=bus.consumer_config(spec),
            ack_policy=AckPolicy.MANUAL,
            no_reply=True,
            title=spec.durable,
        )
        async def _on_message() -> None:
            # NOTE: the message is read from faststream's context, not injected as a
            # `NatsMessage` parameter: fast_depends resolves that Context field (a sync call)
            # in a worker thread, one thread hop per message (`python -m bench.consume`).
            msg: NatsMessage = self.broker.context.get_local("message")
            await process(self.js, spec, accepted, handler, msg.raw_message, self._failures)

    def on_start(self, fn: Callable[[], Awaitable[None]]) -> None:
        self._on_start.append(fn)

    def on_stop(self, fn: Callable[[], Awaitable[None]]) -> None:
        self._on_stop.append(fn)

    def background(self, coro_fn: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """A periodic job (sweeps, lag gauges) started after the consumers, cancelled at stop."""
        self.on_start(lambda: self._spawn(coro_fn))

    async def _spawn(self, coro_fn: Callable[[], Coroutine[Any, Any, None]]) -> None:
        self._tasks.append(asyncio.create_task(coro_fn(), name=f"{self.name}-background"))

    # --- publishing ----------------------------------------------------------------------------
    async def publish(self, subject: str, message: Message, *, msg_id: str | None = None) -> PubAck:
        """Publish a message to JetStream and wait for the stream's ack (at-least-once)."""
        with telemetry.publish_span(self.name, subject):
            headers = telemetry.inject({"Nats-Msg-Id": msg_id} if msg_id else None)
            return await self.js.publish(subject, message.to_bytes(), headers=headers or None)

    # --- failure counting for consumers with unbounded redelivery ---------------------------
    async def _failures(self, spec: ConsumerSpec, delivery: Delivery) -> int:
        if spec.max_deliver > 0 or self._redis is None:
            return delivery.num_delivered
        key = FAILURES_KEY.format(spec.durable, delivery.stream_sequence)
        return await backoff.count(self._redis, key, 7 * 86400)

    # --- lifecycle -------------------------------------------------------------------------------
    async def start(self) -> None:
        telemetry.setup(self.name)  # off unless the OTEL_* variables ask for traces
        deadline = time.monotonic() + self.settings.start_retry_s
        attempt = 0
        while True:
            try:
                await self._connect_stores()
                break
            except (TimeoutError, OSError, asyncpg.PostgresError, NatsError, RedisError) as e:
                # NOTE: a store restarting (or starting after us) is waited for, as a kubelet
                # would restart us; a real misconfiguration still fails after the deadline.
                attempt += 1
                if time.monotonic() > deadline:
                    raise
                log.warning(
                    "store unavailable at start, retrying",
                    extra={"attempt": attempt, "error_class": type(e).__name__},
                )
                await asyncio.sleep(min(0.5 * 2**attempt, 5.0))

    async def _connect_stores(self) -> None:
        """Connect what is not connected yet, create the topology, migrate (idempotent)."""
        if self.nc is None or not self.nc.is_connected:
            await self.broker.connect()
            self.nc = self.broker.connection
            try:
                bus.require_supported_server(self.nc)
            except bus.UnsupportedServerError:
                await self.broker.stop()
                raise
            self._js = self.nc.jetstream()
        await bus.ensure_topology(self.js, self.settings, own=self._consumers)
        if self.uses_db and self._pool is None:
            await db.ensure_database(self.settings.database_url)
            self._pool = await db.connect(
                self.settings.database_url, max_size=self.settings.db_pool_max_size
            )
            await db.migrate(self._pool)
        if self.uses_redis and self._redis is None:
            # NOTE: redis-py's default pool raises past its size; a blocking pool queues instead.
            redis = aioredis.Redis(
                connection_pool=aioredis.BlockingConnectionPool.from_url(
                    self.settings.redis_url,
                    max_connections=self.settings.redis_max_connections,
                    timeout=30,
                )
            )
            await redis.ping()
            self._redis = redis
        await self.broker.start()
        for fn in self._on_start:
            await fn()
        self._tasks.append(asyncio.create_task(self._lag_gauges()))
        self._health = HealthServer(
            health_app(self.name, self._checks()),
            self.settings.health_host,
            self.settings.health_port,
        )
        self.health_port = await self._health.start()
        if self.settings.health_port_file:
            # NOTE: `hqx up` lets each service bind a free port itself and read it here: picking
            # a port for a child in advance races with everything else on the machine.
            self.settings.health_port_file.write_text(str(self.health_port))
        log.info("service started", extra={"health_port": self.health_port})

    async def stop(self) -> None:
        await _cancel(self._tasks)
        self._tasks.clear()
        if self._health:
            await self._health.stop()
        with contextlib.suppress(Exception):
            await self.broker.stop()
        for fn in self._on_stop:
            with contextlib.suppress(Exception):
                await fn()
        if self._pool:
            await self._pool.close()
        if self._redis:
            await self._redis.aclose()
        telemetry.flush()
        log.info("service stopped")

    async def run_forever(self) -> None:
        """Start, serve until SIGTERM/SIGINT, then drain and stop cleanly."""
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await self.start()
        await stop.wait()
        await self.stop()

    def _checks(self) -> dict[str, Callable[[], Awaitable[bool]]]:
        async def nats_ok() -> bool:
            return bool(self.nc and self.nc.is_connected)

        async def pg_ok() -> bool:
            return await self.pool.fetchval("select 1") == 1

        async def redis_ok() -> bool:
            return bool(await self.redis.ping())

        checks: dict[str, Callable[[], Awaitable[bool]]] = {"nats": nats_ok}
        if self.uses_db:
            checks["postgres"] = pg_ok
        if self.uses_redis:
            checks["redis"] = redis_ok
        return checks

    async def _lag_gauges(self) -> None:
        while True:
            for spec in self._consumers:
                with contextlib.suppress(Exception):
                    info = await self.js.consumer_info(spec.stream.value, spec.durable)
                    metrics.CONSUMER_PENDING.labels(self.name, spec.durable).set(info.num_pending)
                    metrics.CONSUMER_ACK_PENDING.labels(self.name, spec.durable).set(
                        info.num_ack_pending
                    )
            await asyncio.sleep(5)


async def _cancel(tasks: list[asyncio.Task[Any]], grace_s: float = 5.0) -> None:
    """Cancel and await every task; cancel once more any that swallowed it; never hang.

    NOTE: nats-py's flush path catches CancelledError: a sweep cancelled in there carries on
    looping, and a single cancel-then-await waited for it forever (a stop that never returned).
    """
    pending = {t for t in tasks if not t.done()}
    for _ in range(2):  # a second cancel for what swallowed the first
        if not pending:
            break
        for t in pending:
            t.cancel()
        _, pending = await asyncio.wait(pending, timeout=grace_s)
    if pending:
        log.warning("background tasks ignored their cancellation", extra={"tasks": len(pending)})
    for t in tasks:
        if t.done():
            with contextlib.suppress(asyncio.CancelledError, Exception):
                t.result()
