"""A service process for the kill-and-restart test: its handler records, then waits for a file.

Run as `python -m tests.hqx.killable_service WORKDIR`: the first delivery of a message blocks
until WORKDIR/release exists, so the test can SIGKILL it mid-handler.
"""

from __future__ import annotations

import asyncio
import dataclasses
import sys
from pathlib import Path

from hqx import subjects
from hqx.consumer import Delivery
from hqx.messages import GraphIngested
from hqx.outcomes import Done, Outcome
from hqx.service import Service
from hqx.settings import ServiceSettings

# NOTE: on the EVENTS stream (limits retention), so this durable may coexist with the registry's.
SPEC = dataclasses.replace(
    subjects.CONSUMERS_BY_SERVICE["matcher"][0],
    durable="killable-test",
    filter_subjects=(subjects.any_user(subjects.graph_ingested),),
    ack_wait_s=2.0,
)


def main() -> None:
    work = Path(sys.argv[1])

    async def handler(msg: GraphIngested, delivery: Delivery) -> Outcome:
        with (work / "deliveries").open("a") as f:
            f.write(f"{msg.owner_username} {delivery.num_delivered}\n")
        while not (work / "release").exists():
            await asyncio.sleep(0.05)
        with (work / "done").open("a") as f:
            f.write(f"{msg.owner_username}\n")
        return Done()

    svc = Service("ingest", ServiceSettings(), uses_db=False, uses_redis=False)
    svc.consume(SPEC, (GraphIngested,), handler, concurrency=1)
    asyncio.run(svc.run_forever())


if __name__ == "__main__":
    main()
