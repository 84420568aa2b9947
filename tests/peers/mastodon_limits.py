"""A limit-enforcing front for the Mastodon peer: Mastodon's published limits, time compressed.

The peer (mastodon_mock) has no limits. This small HTTP proxy sits between the adapter and it
and enforces what Mastodon 4.x does (see ../shared/peers/mastodon/README.md for the sources):

- `app/lib/rate_limiter.rb` (`FAMILIES[:follows]`): 400 follows per account per 24 h, in fixed
  windows aligned to the epoch; a repeated follow does not count; over -> 429
  `{"error": "Too many requests"}` with `X-RateLimit-*` (reset in ISO 8601, microseconds).
- `config/initializers/rack_attack.rb` (`throttle_per_token_api`): 300 requests / 5 min per
  token, fixed epoch-aligned periods; successful responses carry the tightest bucket's headers.
- `app/validators/follow_limit_validator.rb`: from `threshold` (7,500) follows on, a new follow
  needs `following_count < followers_count * ratio` (1.1), else 422 "Validation failed".

`compression` divides every window (86,400 s / 1,000 = 86.4 s). Accounts are keyed by token (one
token per account here). `stats` counts what was let through and what was refused: a refusal is
a limit the client failed to respect (a violation).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import re
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

FOLLOW_RE = re.compile(r"^/api/v1/accounts/([^/]+)/follow$")
_HOP = {
    "content-length",
    "content-encoding",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "x-ratelimit-limit",
    "x-ratelimit-remaining",
    "x-ratelimit-reset",
    "retry-after",
}


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class Window:
    """A fixed window aligned to the epoch: `limit` per `period` seconds, per key."""

    limit: int
    period: float
    counts: dict[tuple[str, int], int] = field(default_factory=dict)

    def index(self, now: float) -> int:
        return int(now // self.period)

    def used(self, key: str, now: float) -> int:
        return self.counts.get((key, self.index(now)), 0)

    def reset_at(self, now: float) -> float:
        return (self.index(now) + 1) * self.period

    def hit(self, key: str, now: float) -> None:
        k = (key, self.index(now))
        self.counts[k] = self.counts.get(k, 0) + 1

    def headers(self, key: str, now: float) -> dict[str, str]:
        return {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(max(0, self.limit - self.used(key, now))),
            "X-RateLimit-Reset": iso(self.reset_at(now)),
        }


class LimitFront:
    """The proxy. `start()` serves it on a free port in a thread; `base_url` is its address.

    `upstream=None` simulates the instance itself (benchmarks: the limits, not the peer)."""

    def __init__(
        self,
        upstream: str | None,
        *,
        compression: float = 1.0,
        follows_per_day: int = 400,
        requests_per_5min: int = 300,
        follow_threshold: int = 7500,
        follow_ratio: float = 1.1,
    ) -> None:
        self.upstream = upstream.rstrip("/") if upstream else None
        self.compression = compression
        self.follows = Window(follows_per_day, 86400.0 / compression)
        self.token_api = Window(requests_per_5min, 300.0 / compression)
        self.threshold = follow_threshold
        self.ratio = follow_ratio
        self.stats: Counter[str] = Counter()
        self.follow_log: list[tuple[float, str, str]] = []  # (time, token, target id) new follows
        # Requests of one token being answered at once, now and at the most (`max_in_flight`).
        self.in_flight: Counter[str] = Counter()
        self._followed: set[tuple[str, str]] = set()
        self._counts: dict[str, tuple[int, int]] = {}  # token -> (following, followers)
        self._lock = asyncio.Lock()
        self._client: httpx.AsyncClient | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.port = 0
        self.app = Starlette(
            routes=[
                Route(
                    "/{path:path}", self._handle, methods=["GET", "POST", "PUT", "PATCH", "DELETE"]
                )
            ]
        )

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # --- serving -------------------------------------------------------------------------
    def start(self) -> LimitFront:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = int(s.getsockname()[1])
        config = uvicorn.Config(
            self.app,
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            lifespan="off",
            access_log=False,
            server_header=False,
            date_header=False,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 20
        while not self._server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("limit front did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        if self._server:
            self._server.should_exit = True
        if self._thread:
            self._thread.join(10)

    # --- the proxy -------------------------------------------------------------------------
    async def _handle(self, request: Request) -> Response:
        token = _bearer(request)
        key = token or ""
        self.in_flight[key] += 1
        self.stats["max_in_flight"] = max(self.stats["max_in_flight"], self.in_flight[key])
        try:
            return await self._answer(request, token)
        finally:
            self.in_flight[key] -= 1

    async def _answer(self, request: Request, token: str | None) -> Response:
        now = time.time()
        path = request.url.path
        if token and path.startswith("/api/"):
            if self.token_api.used(token, now) >= self.token_api.limit:
                self.stats["refused_token_api"] += 1
                return self._too_many(self.token_api.headers(token, now))
            self.token_api.hit(token, now)
        m = FOLLOW_RE.match(path)
        if m and request.method == "POST" and token:
            async with self._lock:  # one follow decision at a time (count, then create)
                return await self._follow(request, token, m.group(1), now)
        resp = await self._forward(request)
        if token and path.startswith("/api/") and resp.status_code < 400:
            resp.headers.update(self.token_api.headers(token, now))
        return resp

    async def _follow(self, request: Request, token: str, target: str, now: float) -> Response:
        repeated = (token, target) in self._followed
        if not repeated:
            if self.follows.used(token, now) >= self.follows.limit:
                self.stats["refused_follows"] += 1
                return self._too_many(self.follows.headers(token, now))
            following, followers = await self._account_counts(request, token)
            if following >= self.threshold and following >= followers * self.ratio:
                self.stats["refused_follow_cap"] += 1
                return JSONResponse(
                    {
                        "error": "Validation failed: You have reached the maximum number of "
                        "follows allowed for your account"
                    },
                    status_code=422,
                )
        resp = await self._forward(request)
        if resp.status_code == 200 and not repeated:
            self.follows.hit(token, now)
            self._followed.add((token, target))
            f, fl = self._counts[token]
            self._counts[token] = (f + 1, fl)
            self.follow_log.append((now, token, target))
            self.stats["follows_new"] += 1
        elif resp.status_code == 200:
            self.stats["follows_repeated"] += 1
        if resp.status_code == 200:
            tighter = min(
                (self.follows, self.token_api), key=lambda w: w.limit - w.used(token, now)
            )
            resp.headers.update(tighter.headers(token, now))
        return resp

    async def _account_counts(self, request: Request, token: str) -> tuple[int, int]:
        if token not in self._counts and self.upstream is None:
            self._counts[token] = (0, 0)
        if token not in self._counts:
            r = await self._http().get(
                f"{self.upstream}/api/v1/accounts/verify_credentials",
                headers={"Authorization": f"Bearer {token}"},
            )
            me = r.json() if r.status_code == 200 else {}
            self._counts[token] = (
                int(me.get("following_count") or 0),
                int(me.get("followers_count") or 0),
            )
        return self._counts[token]

    def set_followers(self, token: str, following: int, followers: int) -> None:
        """Pretend an account's counts (to reach the follow cap without 7,500 real follows)."""
        self._counts[token] = (following, followers)

    def _too_many(self, headers: dict[str, str]) -> Response:
        self.stats["http_429"] += 1
        return JSONResponse({"error": "Too many requests"}, status_code=429, headers=headers)

    async def _forward(self, request: Request) -> Response:
        if self.upstream is None:
            return self._simulate(request)
        url = f"{self.upstream}{request.url.path}"
        if request.url.query:
            url += f"?{request.url.query}"
        headers = {
            k: v for k, v in request.headers.items() if k.lower() not in ("host", "content-length")
        }
        body = await request.body()
        r = await self._http().request(request.method, url, headers=headers, content=body)
        self.stats["forwarded"] += 1
        out = {k: v for k, v in r.headers.items() if k.lower() not in _HOP}
        return Response(r.content, status_code=r.status_code, headers=out)

    def _simulate(self, request: Request) -> Response:
        """No upstream (benchmarks): an instance where every `user@host` exists and is open."""
        self.stats["simulated"] += 1
        path = request.url.path
        if path == "/api/v2/search":
            acct = request.query_params.get("q", "").lstrip("@").lower()
            account = {
                "id": _sim_id(acct),
                "username": acct.split("@")[0],
                "acct": acct,
                "display_name": acct,
                "locked": False,
                "bot": False,
                "group": False,
            }
            return JSONResponse({"accounts": [account], "statuses": [], "hashtags": []})
        m = FOLLOW_RE.match(path)
        if m and request.method == "POST":
            return JSONResponse(
                {
                    "id": m.group(1),
                    "following": True,
                    "showing_reblogs": True,
                    "notifying": False,
                    "followed_by": False,
                    "blocking": False,
                    "muting": False,
                    "requested": False,
                    "domain_blocking": False,
                }
            )
        if path == "/api/v1/accounts/verify_credentials":
            return JSONResponse(
                {
                    "id": "1",
                    "username": "sim",
                    "acct": "sim",
                    "following_count": 0,
                    "followers_count": 0,
                }
            )
        return JSONResponse({"error": "Record not found"}, status_code=404)

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(
                timeout=60, trust_env=False, limits=httpx.Limits(max_connections=64)
            )
        return self._client


def _sim_id(acct: str) -> str:
    return str(int.from_bytes(hashlib.sha256(acct.encode()).digest()[:6], "big"))


def _bearer(request: Request) -> str | None:
    auth = request.headers.get("authorization", "")
    return auth[7:].strip() if auth.lower().startswith("bearer ") else None


@contextlib.contextmanager
def running(upstream: str, **kw: Any):  # type: ignore[no-untyped-def]
    front = LimitFront(upstream, **kw).start()
    try:
        yield front
    finally:
        front.stop()
