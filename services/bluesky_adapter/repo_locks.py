"""Per-repo write locks within one adapter process."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator


class RepoLocks:
    """One lock per repo in this process: writes to one repo go one at a time.

    NOTE: the PDS serializes the commits of a repo anyway; concurrent applyWrites on one repo
    only contend there (slower than one after the other). Holding the lock for the call alone
    lets the other batches of the account do their database work meanwhile.
    """

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    @contextlib.asynccontextmanager
    async def hold(self, did: str) -> AsyncIterator[None]:
        lock, users = self._locks.get(did, (asyncio.Lock(), 0))
        self._locks[did] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[did]
            if users <= 1:
                del self._locks[did]
            else:
                self._locks[did] = (lock, users - 1)
