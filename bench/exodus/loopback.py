"""Serve an ASGI app on several loopback addresses (one per simulated host) from a thread.

Linux routes all of 127.0.0.0/8 to loopback, so 50 Mastodon instances are 50 addresses on one
port, served by one uvicorn server: each instance has its own host (its own domain and its own
per-IP limits) without 50 processes.

The sockets are TCP sockets by name (`IPPROTO_TCP`), not `socket.socket()`'s protocol 0:
asyncio sets TCP_NODELAY on an accepted connection only when its protocol says TCP, and without
it uvicorn's two writes of a response (head, then body) wait for the client's delayed ACK: 40 ms
a request, a network 24 times farther away than a real one once its limits are compressed.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import uvicorn


def bind_all(addresses: list[str], tries: int = 50) -> tuple[int, list[socket.socket]]:
    """One port free on every address; returns it with the bound sockets."""
    for _ in range(tries):
        with socket.socket() as probe:
            probe.bind((addresses[0], 0))
            port = probe.getsockname()[1]
        socks: list[socket.socket] = []
        try:
            for a in addresses:
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # accepted ones inherit it
                socks.append(s)
                s.bind((a, port))
                s.listen(512)
            return port, socks
        except OSError:
            for s in socks:
                s.close()
    raise OSError("no port free on every loopback address")


@dataclass
class LoopbackServer:
    app: Any
    addresses: list[str]
    port: int = 0
    _server: uvicorn.Server | None = None
    _thread: threading.Thread | None = None
    _socks: list[socket.socket] = field(default_factory=list)

    def start(self) -> LoopbackServer:
        self.port, self._socks = bind_all(self.addresses)
        config = uvicorn.Config(
            self.app, log_level="warning", access_log=False, lifespan="off", backlog=512
        )
        self._server = uvicorn.Server(config)
        # NOTE: uvicorn installs signal handlers only in the main thread; here it does not.
        self._thread = threading.Thread(
            target=lambda: asyncio.run(self._server.serve(sockets=self._socks)),  # type: ignore[union-attr]
            daemon=True,
            name="sim-" + self.addresses[0],
        )
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started and time.monotonic() < deadline:
            time.sleep(0.01)
        return self

    def url(self, address: str) -> str:
        return f"http://{address}:{self.port}"

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(10)
        for s in self._socks:
            with contextlib.suppress(OSError):
                s.close()
