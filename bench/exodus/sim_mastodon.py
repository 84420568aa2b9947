"""Simulated Mastodon instances: the endpoints the adapter's Mastodon.py client calls, limited.

One server on many loopback addresses: each address is one instance with its own domain
(`127.0.0.<n>:<port>`), its local accounts and its tokens; every instance resolves every other
one's accounts (federation, simplified). Limits as Mastodon counts them, compressed by the
run's factor: 400 follows per account per 24 h window aligned to the epoch (429), 7,500
follows total then 1.1 x followers (422), 300 requests / 5 min per token (429, rack-attack).
Following someone already followed changes nothing (Mastodon's FollowService): the state
keeps every follow call, so the checks see redundant calls as well as follows.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bench.exodus.limits import Limit, Limiter, Verdict

FOLLOWS_DAY = Limit("follows-day", 400, 86400, kind="aligned")
TOKEN_REQUESTS = Limit("token-requests", 300, 300, kind="aligned")
FOLLOW_CAP = 7500


@dataclass
class Account:
    id: str
    username: str
    domain: str
    token: str
    followers_count: int
    following: set[str] = field(default_factory=set)  # target ids

    @property
    def acct(self) -> str:
        return f"{self.username}@{self.domain}"


@dataclass
class FollowCall:
    follower: str  # acct
    target: str  # acct
    at: float
    new: bool


@dataclass
class MastodonSim:
    factor: float
    accounts: dict[str, Account] = field(default_factory=dict)  # id -> account
    by_acct: dict[str, Account] = field(default_factory=dict)
    by_token: dict[str, Account] = field(default_factory=dict)
    follow_calls: list[FollowCall] = field(default_factory=list)
    calls: dict[str, int] = field(default_factory=dict)
    searches: Counter[str] = field(default_factory=Counter)  # acct -> searches on its token
    down_until: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)
    limiter: Limiter = field(init=False)

    def __post_init__(self) -> None:
        self.limiter = Limiter(self.factor)

    def add_account(self, username: str, domain: str, token: str, followers: int) -> Account:
        with self.lock:
            acc = Account(str(len(self.accounts) + 1000), username, domain, token, followers)
            self.accounts[acc.id] = acc
            self.by_acct[acc.acct.lower()] = acc
            self.by_token[token] = acc
            return acc

    @property
    def violations(self) -> list[Any]:
        return self.limiter.violations

    def outage(self, until: float) -> None:
        """Answer 503 to every request until `until` (epoch s): the network is down."""
        self.down_until = until

    def recorded(self) -> tuple[list[FollowCall], list[str], Counter[str]]:
        """Every follow call, the limit of each refused request, searches per acct."""
        with self.lock:
            calls, searches = list(self.follow_calls), Counter(self.searches)
        return calls, [v.limit for v in self.violations], searches

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/api/v1/instance", self._instance),
                Route("/api/v2/instance", self._instance),
                Route("/api/v2/search", self._search),
                Route("/api/v1/accounts/verify_credentials", self._verify),
                Route("/api/v1/accounts/relationships", self._relationships),
                Route("/api/v1/accounts/{id}/follow", self._follow, methods=["POST"]),
            ]
        )

    # --- helpers --------------------------------------------------------------------------

    def _count(self, name: str) -> None:
        with self.lock:
            self.calls[name] = self.calls.get(name, 0) + 1

    def _gate(self, request: Request, name: str) -> Account | Response:
        self._count(name)
        if time.time() < self.down_until:
            return JSONResponse({"error": "simulated outage"}, status_code=503)
        token = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        me = self.by_token.get(token)
        if me is None:
            return JSONResponse({"error": "The access token is invalid"}, status_code=401)
        v = self.limiter.consume(TOKEN_REQUESTS, token)
        return me if v.ok else _limited(v)

    def _json(self, acc: Account, domain: str) -> dict[str, Any]:
        local = acc.domain == domain
        return {
            "id": acc.id,
            "username": acc.username,
            "acct": acc.username if local else acc.acct,
            "display_name": acc.username,
            "locked": False,
            "bot": False,
            "group": False,
            "created_at": "2025-01-20T00:00:00.000Z",
            "note": "",
            "url": f"http://{acc.domain}/@{acc.username}",
            "avatar": "",
            "avatar_static": "",
            "header": "",
            "header_static": "",
            "followers_count": acc.followers_count,
            "following_count": len(acc.following),
            "statuses_count": 0,
            "last_status_at": None,
            "emojis": [],
            "fields": [],
        }

    # --- endpoints ------------------------------------------------------------------------

    async def _instance(self, request: Request) -> Response:
        self._count("instance")
        host = request.headers.get("host", "")
        return JSONResponse(
            {
                "uri": host,
                "domain": host,
                "title": f"sim {host}",
                "version": "4.3.2",
                "api_versions": {"mastodon": 2},
            }
        )

    async def _verify(self, request: Request) -> Response:
        me = self._gate(request, "verify_credentials")
        if isinstance(me, Response):
            return me
        return JSONResponse(self._json(me, me.domain))

    async def _search(self, request: Request) -> Response:
        me = self._gate(request, "search")
        if isinstance(me, Response):
            return me
        with self.lock:
            self.searches[me.acct] += 1
        q = request.query_params.get("q", "").lower().lstrip("@")
        acc = self.by_acct.get(q)
        accounts = [self._json(acc, me.domain)] if acc is not None else []
        return JSONResponse({"accounts": accounts, "statuses": [], "hashtags": []})

    async def _relationships(self, request: Request) -> Response:
        me = self._gate(request, "relationships")
        if isinstance(me, Response):
            return me
        ids = request.query_params.getlist("id[]") or request.query_params.getlist("id")
        with self.lock:
            rels = [_relationship(i) | {"following": i in me.following} for i in ids]
        return JSONResponse(rels)

    async def _follow(self, request: Request) -> Response:
        me = self._gate(request, "follow")
        if isinstance(me, Response):
            return me
        target = self.accounts.get(request.path_params["id"])
        if target is None:
            return JSONResponse({"error": "Record not found"}, status_code=404)
        with self.lock:
            if target.id in me.following:
                self.follow_calls.append(FollowCall(me.acct, target.acct, time.time(), False))
                return JSONResponse(_relationship(target.id))
        # NOTE: Mastodon counts the follow family only for a new follow.
        v = self.limiter.consume(FOLLOWS_DAY, me.id)
        if not v.ok:
            return _limited(v)
        with self.lock:
            n = len(me.following)
            if n >= FOLLOW_CAP and n >= me.followers_count * 1.1:
                return JSONResponse(
                    {"error": "Validation failed: You have reached the follow limit"},
                    status_code=422,
                )
            me.following.add(target.id)
            self.follow_calls.append(FollowCall(me.acct, target.acct, time.time(), True))
        return _with_rl(JSONResponse(_relationship(target.id)), v)


def _relationship(target_id: str) -> dict[str, Any]:
    return {
        "id": target_id,
        "following": True,
        "showing_reblogs": True,
        "notifying": False,
        "followed_by": False,
        "blocking": False,
        "blocked_by": False,
        "muting": False,
        "muting_notifications": False,
        "requested": False,
        "domain_blocking": False,
        "endorsed": False,
        "note": "",
    }


def _with_rl(response: Response, v: Verdict) -> Response:
    """Rate-limit headers spelled as Mastodon's nginx sends them over HTTP/1.1.

    NOTE: appended raw: starlette would lower-case them, and clients that look headers up
    case-sensitively (a plain dict) must be tested against the real spelling.
    """
    reset = datetime.fromtimestamp(v.reset_at, UTC).isoformat(timespec="milliseconds")
    for k, val in (
        ("X-RateLimit-Limit", str(v.limit)),
        ("X-RateLimit-Remaining", str(v.remaining)),
        ("X-RateLimit-Reset", reset.replace("+00:00", "Z")),
    ):
        response.raw_headers.append((k.encode(), val.encode()))
    return response


def _limited(v: Verdict) -> Response:
    return _with_rl(JSONResponse({"error": "Too many requests"}, status_code=429), v)
