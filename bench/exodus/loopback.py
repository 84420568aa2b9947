"""Serve an ASGI app on several loopback addresses (one per simulated host), from a thread
(`LoopbackServer`) or from a child process of its own (`ForkedServer`).

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
import multiprocessing
import socket
import threading
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any, Protocol

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

    def start(self, socks: list[socket.socket] | None = None) -> LoopbackServer:
        """Serve on `socks` when given (bound by `bind_all`), else on sockets bound here."""
        if socks:
            self.port, self._socks = socks[0].getsockname()[1], socks
        else:
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


class Served(Protocol):
    """A simulated network's state: what it serves, and what it recorded."""

    def app(self) -> Any: ...


@dataclass
class ForkedServer:
    """`state` served on loopback from a child process of its own, forked once the parent has
    filled it (the accounts of the day): its answers never wait for the driver's GIL.

    NOTE: in a thread of the driver's process, every simulated network call waited on the
    driver's own work (building archives, uploading them, sampling CPU), most at the peak of
    the day, which the limits' windows then turned into whole windows of delay: a network 24
    times farther away than a real one exactly when it matters. The parent's `state` is a
    copy from before the fork: read what the child recorded with `call`.
    """

    state: Served
    addresses: list[str]
    port: int = 0
    _socks: list[socket.socket] = field(default_factory=list)
    _proc: BaseProcess | None = None
    _conn: Connection | None = None

    def bind(self) -> ForkedServer:
        """Take the port now: the state may need its own URLs before it is served."""
        if not self._socks:
            self.port, self._socks = bind_all(self.addresses)
        return self

    def start(self, timeout_s: float = 30.0) -> ForkedServer:
        self.bind()
        ctx = multiprocessing.get_context("fork")
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(
            target=_serve_forked,
            args=(self.state, self.addresses, self._socks, child),
            name="sim-" + self.addresses[0],
            daemon=True,
        )
        self._proc.start()
        child.close()
        for s in self._socks:  # the child serves them
            s.close()
        if not self._conn.poll(timeout_s) or self._conn.recv() != "ready":
            self.stop()
            raise RuntimeError(f"simulated network on {self.addresses[0]} did not start")
        return self

    def url(self, address: str) -> str:
        return f"http://{address}:{self.port}"

    def call(self, method: str, *args: Any) -> Any:
        """`state.<method>(*args)` in the child, and its result (pickled back)."""
        assert self._conn is not None, "not started"
        self._conn.send((method, args))
        return self._conn.recv()

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def stop(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(OSError):
                self._conn.send(None)
        if self._proc is not None:
            self._proc.join(10)
            if self._proc.is_alive():
                self._proc.kill()
                self._proc.join(5)
        if self._conn is not None:
            self._conn.close()
        self._proc = self._conn = None


def _serve_forked(
    state: Served, addresses: list[str], socks: list[socket.socket], conn: Connection
) -> None:
    """The child: serve until the parent says stop (None) or is gone (end of the pipe)."""
    server = LoopbackServer(state.app(), addresses).start(socks)
    conn.send("ready")
    try:
        while (request := conn.recv()) is not None:
            method, args = request
            conn.send(getattr(state, method)(*args))
    except (EOFError, KeyboardInterrupt):
        pass
    finally:
        server.stop()
