"""The one helper for waiting on a condition in tests (never on time)."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from nats.js.errors import NotFoundError

T = TypeVar("T")


async def eventually(
    predicate: Callable[[], Any | Awaitable[Any]], timeout: float = 10.0, interval: float = 0.02
) -> Any:
    """Poll `predicate` until it returns a truthy value; returns it, or fails after `timeout`."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        last = predicate()
        if inspect.isawaitable(last):
            last = await last
        if last:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s (last value: {last!r})")
        await asyncio.sleep(interval)


async def drained(js: Any, stream: str, durable: str, timeout: float = 20.0) -> None:
    """Wait until a durable consumer has acked all it matched so far, with nothing pending.

    Zero pending and zero unacked is not enough alone: right after a publish is acknowledged
    the server may not have counted the message as pending yet. So the consumer's ack floor
    must also have reached the last message its filter matches at the time of the call, or
    no message be left past it: an erasure deletes messages one by one, and the floor does not
    move over those deleted before delivery.
    """
    info = await js.consumer_info(stream, durable)
    filters = info.config.filter_subjects or [info.config.filter_subject or ">"]
    last = 0
    for subject in filters:
        try:
            last = max(last, (await js.get_last_msg(stream, subject)).seq)
        except NotFoundError:
            pass

    async def nothing_after(floor: int) -> bool:
        for subject in filters:
            try:
                await js.get_msg(stream, seq=floor + 1, subject=subject, next=True)
                return False
            except NotFoundError:
                pass
        return True

    async def check() -> bool:
        info = await js.consumer_info(stream, durable)
        if info.num_pending or info.num_ack_pending:
            return False
        floor = info.ack_floor.stream_seq
        return floor >= last or await nothing_after(floor)

    await eventually(check, timeout)
