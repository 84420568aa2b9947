"""The cost of taking one message off a durable: the raw message injected, or read from context.

`python -m bench.consume [--quick]`. Every service consumes through `hqx.service.Service.consume`:
a faststream pull subscriber (one message per pull, 8 handlers at once) whose handler needs the
raw NATS message to ack it. Declared as a `NatsMessage` parameter, fast_depends resolves it with
a sync call in a worker thread, one thread hop per message; the handler now reads it from
faststream's context. Both forms consume the same number of messages from their own durable on
an embedded NATS, alternately, and ack each one; CPU is this process' own (all its threads).
Prints a markdown section, last line a one-line summary; JSON to bench/results/consume.json.
"""

from __future__ import annotations

import asyncio
import logging
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from faststream.middlewares import AckPolicy
from faststream.nats import JStream, NatsBroker, PullSub
from faststream.nats.annotations import NatsMessage

from bench import stored
from hqx import embedded

STREAM, SUBJECT = "BENCH", "bench.consume"
FORMS = ("injected (before)", "from context (now)")


def subscriber(broker: NatsBroker, durable: str, done: Callable[[], None], form: str) -> None:
    """A subscriber configured as `Service.consume` configures its own."""
    sub = broker.subscriber(
        SUBJECT,
        stream=JStream(STREAM, declare=False),
        durable=durable,
        pull_sub=PullSub(batch_size=1, timeout=5.0),
        max_workers=8,
        ack_policy=AckPolicy.MANUAL,
        no_reply=True,
    )

    if form == FORMS[0]:

        @sub
        async def injected(msg: NatsMessage) -> None:
            await msg.raw_message.ack()
            done()

    else:

        @sub
        async def from_context() -> None:
            msg: NatsMessage = broker.context.get_local("message")
            await msg.raw_message.ack()
            done()


async def consume(url: str, form: str, n: int, round_: int) -> dict[str, float]:
    """Publish `n` messages, then time one subscriber taking them all."""
    broker = NatsBroker(url, log_level=logging.DEBUG, logger=logging.getLogger("bench"))
    left = n
    finished = asyncio.Event()

    def done() -> None:
        nonlocal left
        left -= 1
        if left == 0:
            finished.set()

    await broker.connect()
    js = broker.connection.jetstream()
    for i in range(0, n, 500):
        await asyncio.gather(*(js.publish(SUBJECT, b"x" * 200) for _ in range(min(500, n - i))))
    subscriber(broker, f"bench-{round_}-{FORMS.index(form)}", done, form)
    cpu, wall = time.process_time(), time.perf_counter()
    await broker.start()
    await finished.wait()
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    await js.purge_stream(STREAM)  # the next round's new durable finds only its own messages
    await broker.stop()
    return {"cpu_ms_per_msg": cpu / n * 1000, "msgs_per_s": n / wall}


async def run(quick: bool) -> dict[str, object]:
    n, rounds = (3_000, 3) if quick else (20_000, 5)
    with tempfile.TemporaryDirectory(prefix="hqx-bench-consume-") as tmp:
        server = embedded.start_nats(Path(tmp) / "nats")
        try:
            setup = NatsBroker(server.url)
            await setup.connect()
            await setup.connection.jetstream().add_stream(name=STREAM, subjects=[SUBJECT])
            await setup.stop()
            runs: dict[str, list[dict[str, float]]] = {f: [] for f in FORMS}
            for r in range(rounds):
                for form in FORMS if r % 2 == 0 else FORMS[::-1]:
                    runs[form].append(await consume(server.url, form, n, r))
        finally:
            server.stop()

    def median(form: str, key: str) -> float:
        return statistics.median(x[key] for x in runs[form])

    forms: dict[str, Any] = {
        f: {
            "cpu_ms_per_msg": round(median(f, "cpu_ms_per_msg"), 3),
            "msgs_per_s": round(median(f, "msgs_per_s")),
        }
        for f in FORMS
    }
    before, now = forms[FORMS[0]], forms[FORMS[1]]
    return {
        "mode": "quick" if quick else "full",
        "messages": n,
        "rounds": rounds,
        "forms": forms,
        "cpu_ratio": round(before["cpu_ms_per_msg"] / now["cpu_ms_per_msg"], 2),
        "rate_ratio": round(now["msgs_per_s"] / before["msgs_per_s"], 2),
    }


def report(r: dict) -> str:  # type: ignore[type-arg]
    lines = [
        "## consume",
        "",
        f"Taking {r['messages']:,} messages off a durable and acking each ({r['mode']} mode), as"
        " every service's consumers do (one message per pull, 8 handlers at once), the raw"
        " message injected as a parameter or read from faststream's context. Medians of"
        f" {r['rounds']} rounds per form, run alternately; CPU of the consuming process.",
        "",
        "| handler | CPU ms per message | messages per s |",
        "|---|---|---|",
    ]
    for name, f in r["forms"].items():
        lines.append(f"| {name} | {f['cpu_ms_per_msg']} | {f['msgs_per_s']:,} |")
    lines += [
        "",
        f"consume ({r['mode']}): before / now: {r['cpu_ratio']}x CPU per message,"
        f" now / before: {r['rate_ratio']}x messages per s",
    ]
    return "\n".join(lines)


def main() -> int:
    return stored.cli("consume", run, report)


if __name__ == "__main__":
    sys.exit(main())
