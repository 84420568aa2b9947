"""The hqx subscriber wrapper: validate → handler → ack / nak(delay) / dead letter.

faststream's default ack policy terms a message on any exception (no retry, no dead letter), so
every hqx subscriber uses manual acks and this wrapper decides, per the outcome table of
STYLE.md: Done/Skipped → ack; RetryLater → nak(delay); invalid payload → DLQ then term;
unexpected exception → nak with backoff, and on the last allowed attempt DLQ then term.
The dead letter is confirmed by JetStream before the original is termed: nothing is lost between.

A store going away under a handler (PostgreSQL, Redis or NATS restarting) is waited out in
place: the handler is run again after a short pause, the message held with `in_progress`. A nak
sent in the same outage can be lost with the connection, and the message then waits out the
whole ack wait (seen in `make chaos`: naks sent just after a PostgreSQL restart took effect only
65 s later); a pause of seconds here costs nothing, since handlers are idempotent.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import asyncpg
import nats.errors
import redis.exceptions
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from hqx import metrics, telemetry
from hqx.errors import InvalidMessageError, Reason
from hqx.messages import DeadLetter, Message, parse
from hqx.outcomes import Done, Outcome, RetryLater, Skipped
from hqx.subjects import ConsumerSpec, dlq, user_id_of

log = logging.getLogger(__name__)
_SAFE_HEADERS = {"Nats-Msg-Id", "traceparent", "tracestate", "Nats-Expected-Stream"}

# What a store restart raises in a handler. OSError covers refused and reset connections, a
# Unix socket gone (FileNotFoundError) and timeouts (TimeoutError, nats' included).
STORE_OUTAGE: tuple[type[BaseException], ...] = (
    OSError,
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,  # admin shutdown, "cannot connect now"
    asyncpg.exceptions.ConnectionDoesNotExistError,
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    nats.errors.ConnectionClosedError,
    nats.errors.NoRespondersError,  # JetStream not back yet after a NATS restart
)
# Pauses before running the handler again in place: 15.5 s in all, well inside every ack wait
# (each attempt starts with `in_progress`); what outlasts them takes the nak and backoff path.
OUTAGE_PAUSES_S = (0.5, 1.0, 2.0, 4.0, 8.0)


@dataclass(frozen=True)
class Delivery:
    """What the handler may know about the transport (for idempotency and long work)."""

    subject: str
    stream_sequence: int
    num_delivered: int
    headers: dict[str, str]
    raw: Msg

    async def in_progress(self) -> None:
        """Tell JetStream we are still working (long archive), instead of a huge ack_wait."""
        await self.raw.in_progress()


class FailureCounter(Protocol):
    async def __call__(self, spec: ConsumerSpec, delivery: Delivery) -> int: ...


Handler = Callable[[Any, Delivery], Awaitable[Outcome]]


def backoff_delay(spec: ConsumerSpec, attempt: int) -> float:
    seq = spec.backoff_s or (1.0,)
    return seq[min(max(attempt - 1, 0), len(seq) - 1)]


async def dead_letter(
    js: JetStreamContext,
    service: str,
    msg: Msg,
    reason: Reason | str,
    error: BaseException | None,
    attempts: int,
) -> None:
    """Publish the original message with its reason to `hqx.dlq.<service>.<user>`, confirmed."""
    meta = msg.metadata
    headers = {k: v for k, v in (msg.headers or {}).items() if k in _SAFE_HEADERS}
    letter = DeadLetter(
        service=service,
        reason=str(reason),
        error_class=type(error).__name__ if error else None,
        error=str(error)[:1000] if error else None,
        original_subject=msg.subject,
        original_stream=meta.stream if meta else None,
        original_sequence=meta.sequence.stream if meta else None,
        headers=headers,
        payload_b64=base64.b64encode(msg.data).decode(),
        attempts=attempts,
    )
    msg_id = f"dlq-{service}-{letter.original_stream}-{letter.original_sequence}"
    await js.publish(
        dlq(service, user_id_of(msg.subject)),
        letter.model_dump_json(by_alias=True).encode(),
        headers={"Nats-Msg-Id": msg_id},
    )
    metrics.MESSAGES_DEAD_LETTERED.labels(service, str(reason)).inc()
    log.warning(
        "message dead-lettered",
        extra={"subject": msg.subject, "reason": str(reason), "attempts": attempts},
    )


async def process(
    js: JetStreamContext,
    spec: ConsumerSpec,
    accepted: tuple[type[Message], ...],
    handler: Handler,
    msg: Msg,
    failures: FailureCounter | None = None,
) -> str:
    """Handle one raw JetStream message end to end; returns the outcome label (for tests)."""
    meta = msg.metadata
    delivery = Delivery(
        subject=msg.subject,
        stream_sequence=meta.sequence.stream,
        num_delivered=meta.num_delivered,
        headers=dict(msg.headers or {}),
        raw=msg,
    )
    started = time.perf_counter()
    try:
        message = parse(msg.data, accepted)
        if getattr(message, "user_id", None) != user_id_of(msg.subject):
            raise InvalidMessageError(Reason.SCHEMA_INVALID, "user_id differs from the subject")
    except InvalidMessageError as e:
        await dead_letter(js, spec.service, msg, e.code, e, meta.num_delivered)
        await msg.term()
        return _count(spec, "dead_lettered", started)
    try:
        with telemetry.consume_span(spec.service, spec.durable, msg.subject, msg.headers) as span:
            outcome = await _through_outages(handler, message, delivery)
            span.set_attribute(telemetry.OUTCOME_ATTR, type(outcome).__name__)
    except Exception as e:
        attempts = await failures(spec, delivery) if failures else meta.num_delivered
        limit = spec.max_deliver if spec.max_deliver > 0 else len(spec.backoff_s) + 1
        if attempts >= limit:
            await dead_letter(js, spec.service, msg, Reason.RETRIES_EXHAUSTED, e, attempts)
            await msg.term()
            log.exception("handler failed, retries exhausted", extra={"subject": msg.subject})
            return _count(spec, "dead_lettered", started)
        delay = backoff_delay(spec, attempts)
        log.warning(
            "handler failed, will retry",
            extra={
                "subject": msg.subject,
                "attempt": attempts,
                "delay_s": delay,
                "error_class": type(e).__name__,
                "error": str(e)[:300],
            },
        )
        await msg.nak(delay=delay)
        return _count(spec, "failed", started)
    match outcome:
        case Done() | Skipped():
            await msg.ack_sync()
            return _count(spec, "done" if isinstance(outcome, Done) else "skipped", started)
        case RetryLater(delay_s=delay):
            await msg.nak(delay=max(delay, 0.001))
            return _count(spec, "retry_later", started)
    raise TypeError(f"handler returned {outcome!r}, not an Outcome")


async def _through_outages(handler: Handler, message: Message, delivery: Delivery) -> Outcome:
    """Run the handler; on a store outage, pause and run it again (see the module docstring)."""
    for pause in OUTAGE_PAUSES_S:
        try:
            return await handler(message, delivery)
        except STORE_OUTAGE as e:
            log.warning(
                "store unavailable, retrying in place",
                extra={
                    "subject": delivery.subject,
                    "delay_s": pause,
                    "error_class": type(e).__name__,
                    "error": str(e)[:300],
                },
            )
        await asyncio.sleep(pause)
        with contextlib.suppress(Exception):  # NATS itself may be the store that is away
            await delivery.in_progress()
    return await handler(message, delivery)


def _count(spec: ConsumerSpec, outcome: str, started: float) -> str:
    metrics.MESSAGES_CONSUMED.labels(spec.service, spec.durable, outcome).inc()
    metrics.HANDLER_SECONDS.labels(spec.service, spec.durable).observe(
        time.perf_counter() - started
    )
    return outcome
