"""Per-repo locks: one writer per repo at a time, other repos not held up, nothing left behind."""

from __future__ import annotations

import asyncio

from services.bluesky_adapter.repo_locks import RepoLocks


async def test_one_writer_per_repo_and_no_leftovers() -> None:
    locks = RepoLocks()
    inside: dict[str, int] = {"a": 0, "b": 0}
    most: dict[str, int] = {"a": 0, "b": 0}
    order: list[str] = []

    async def write(did: str) -> None:
        async with locks.hold(did):
            inside[did] += 1
            most[did] = max(most[did], inside[did])
            await asyncio.sleep(0.01)
            order.append(did)
            inside[did] -= 1

    await asyncio.gather(*(write("a") for _ in range(5)), write("b"))
    assert most == {"a": 1, "b": 1}
    assert order.index("b") < 4  # "b" did not wait behind the five writes of "a"
    assert locks._locks == {}
