"""A simulated Bluesky PDS: the XRPC the adapter's atproto SDK client calls, with the PDS's limits.

Served on loopback (one address per PDS host). Enough of the PDS for the follow path:
`createSession`, `refreshSession`, `getSession`, `describeRepo`, `listRecords`, `applyWrites`.
Limits as `@atproto/pds` counts them (fixed windows opened by the first request, rejected
points counted too), compressed by the run's factor: 5,000 points/hour and 35,000/day per DID
(a create costs 3), 3,000 requests / 5 min per client IP, `createSession` 30 / 5 min and 300 /
day per identifier, `applyWrites` <= 200 writes. Like the real PDS it stores duplicate follows
(a second record with the same subject) and answers 500 to a create whose record key exists.

Its own state is the ground truth of the bench's checks: every record created, when, and
every limit violation.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bench.exodus.limits import Limit, Limiter, Verdict

FOLLOW = "app.bsky.graph.follow"
WRITE_HOUR = Limit("repo-write-hour", 5000, 3600)
WRITE_DAY = Limit("repo-write-day", 35000, 86400)
HOST_REQUESTS = Limit("ip-requests", 3000, 300)
SESSION_5MIN = Limit("create-session-5min", 30, 300)
SESSION_DAY = Limit("create-session-day", 300, 86400)
COSTS = {"create": 3, "update": 2, "delete": 1}
MAX_WRITES = 200


def _b64(obj: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()


def jwt(did: str, scope: str, ttl_s: float) -> str:
    now = int(time.time())
    head = _b64({"typ": "at+jwt", "alg": "HS256"})
    body = _b64({"scope": scope, "sub": did, "iat": now, "exp": now + int(ttl_s), "jti": _cid()})
    return f"{head}.{body}.c2lt"


def _cid(seed: str | None = None) -> str:
    h = hashlib.sha256((seed or repr(time.perf_counter_ns())).encode()).digest()
    return "bafyrei" + base64.b32encode(h).decode().lower().rstrip("=")[:52]


def _sub(token: str) -> str | None:
    try:
        body = token.split(".")[1]
        return json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))["sub"]
    except (IndexError, ValueError, KeyError):
        return None


@dataclass
class Created:
    did: str
    rkey: str
    subject: str
    at: float  # wall clock


@dataclass
class Account:
    did: str
    handle: str
    password: str
    host: str
    records: dict[str, str] = field(default_factory=dict)  # rkey -> subject


@dataclass
class BlueskySim:
    """The network's state; `app` serves it. Thread-safe (uvicorn runs in its own thread)."""

    factor: float
    accounts: dict[str, Account] = field(default_factory=dict)
    by_identifier: dict[str, str] = field(default_factory=dict)
    created: list[Created] = field(default_factory=list)
    calls: dict[str, int] = field(default_factory=dict)
    down_until: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)
    limiter: Limiter = field(init=False)

    def __post_init__(self) -> None:
        self.limiter = Limiter(self.factor)

    def add_account(self, did: str, handle: str, password: str, host: str) -> None:
        with self.lock:
            self.accounts[did] = Account(did, handle, password, host)
            self.by_identifier[handle] = did
            self.by_identifier[did] = did

    @property
    def violations(self) -> list[Any]:
        return self.limiter.violations

    def outage(self, until: float) -> None:
        """Answer 503 to every request until `until` (epoch s): the network is down."""
        self.down_until = until

    def recorded(self) -> tuple[list[Created], list[str]]:
        """The records created, and the limit of each refused request."""
        with self.lock:
            return list(self.created), [v.limit for v in self.violations]

    # --- HTTP -----------------------------------------------------------------------------

    def app(self) -> Starlette:
        routes = [
            Route("/xrpc/com.atproto.server.createSession", self._create_session, methods=["POST"]),
            Route(
                "/xrpc/com.atproto.server.refreshSession", self._refresh_session, methods=["POST"]
            ),
            Route("/xrpc/com.atproto.server.getSession", self._get_session),
            Route("/xrpc/com.atproto.repo.describeRepo", self._describe_repo),
            Route("/xrpc/com.atproto.repo.listRecords", self._list_records),
            Route("/xrpc/com.atproto.repo.applyWrites", self._apply_writes, methods=["POST"]),
            Route("/xrpc/_health", lambda r: JSONResponse({"version": "sim"})),
        ]
        return Starlette(routes=routes)

    def _gate(self, request: Request, name: str) -> Response | None:
        """Outage and the per-IP limit, applied to every call."""
        with self.lock:
            self.calls[name] = self.calls.get(name, 0) + 1
        if time.time() < self.down_until:
            return _error(503, "InternalServerError", "simulated outage")
        host = request.headers.get("host", "?")
        v = self.limiter.consume(HOST_REQUESTS, host)
        return None if v.ok else _limited(v)

    def _auth(self, request: Request, scope: str = "access") -> str | Response:
        auth = request.headers.get("authorization", "")
        did = _sub(auth.removeprefix("Bearer ").strip()) if auth.startswith("Bearer ") else None
        if did is None or did not in self.accounts:
            return _error(401, "AuthenticationRequired", "no valid session")
        return did

    def _session_body(self, acc: Account) -> dict[str, Any]:
        return {
            "did": acc.did,
            "handle": acc.handle,
            "accessJwt": jwt(acc.did, "com.atproto.appPass", 7 * 86400),
            "refreshJwt": jwt(acc.did, "com.atproto.refresh", 60 * 86400),
            "active": True,
        }

    async def _create_session(self, request: Request) -> Response:
        if (r := self._gate(request, "createSession")) is not None:
            return r
        body = await request.json()
        ident = str(body.get("identifier", ""))
        for lim in (SESSION_5MIN, SESSION_DAY):
            v = self.limiter.consume(lim, ident)
            if not v.ok:
                return _limited(v)
        did = self.by_identifier.get(ident)
        acc = self.accounts.get(did or "")
        if acc is None or body.get("password") != acc.password:
            return _error(401, "AuthenticationRequired", "Invalid identifier or password")
        return JSONResponse(self._session_body(acc))

    async def _refresh_session(self, request: Request) -> Response:
        if (r := self._gate(request, "refreshSession")) is not None:
            return r
        did = self._auth(request, "refresh")
        if isinstance(did, Response):
            return did
        return JSONResponse(self._session_body(self.accounts[did]))

    async def _get_session(self, request: Request) -> Response:
        if (r := self._gate(request, "getSession")) is not None:
            return r
        did = self._auth(request)
        if isinstance(did, Response):
            return did
        acc = self.accounts[did]
        return JSONResponse({"did": acc.did, "handle": acc.handle, "active": True})

    async def _describe_repo(self, request: Request) -> Response:
        if (r := self._gate(request, "describeRepo")) is not None:
            return r
        acc = self.accounts.get(self.by_identifier.get(request.query_params.get("repo", ""), ""))
        if acc is None:
            return _error(400, "RepoNotFound", "Could not find repo")
        return JSONResponse(
            {
                "handle": acc.handle,
                "did": acc.did,
                "didDoc": {"id": acc.did},
                "collections": [FOLLOW] if acc.records else [],
                "handleIsCorrect": True,
            }
        )

    async def _list_records(self, request: Request) -> Response:
        if (r := self._gate(request, "listRecords")) is not None:
            return r
        q = request.query_params
        acc = self.accounts.get(self.by_identifier.get(q.get("repo", ""), ""))
        if acc is None:
            return _error(400, "RepoNotFound", "Could not find repo")
        limit = max(1, min(100, int(q.get("limit", "50"))))
        cursor = q.get("cursor")
        if q.get("collection") != FOLLOW:
            return JSONResponse({"records": []})
        with self.lock:
            keys = sorted(acc.records, reverse=True)  # PDS default order: newest rkey first
            if cursor:
                keys = [k for k in keys if k < cursor]
            page = [(k, acc.records[k]) for k in keys[:limit]]
        records = [
            {
                "uri": f"at://{acc.did}/{FOLLOW}/{k}",
                "cid": _cid(acc.did + k),
                "value": {"$type": FOLLOW, "subject": s, "createdAt": "2025-01-20T12:00:00.000Z"},
            }
            for k, s in page
        ]
        out: dict[str, Any] = {"records": records}
        if len(page) == limit:
            out["cursor"] = page[-1][0]
        return JSONResponse(out)

    async def _apply_writes(self, request: Request) -> Response:
        if (r := self._gate(request, "applyWrites")) is not None:
            return r
        did = self._auth(request)
        if isinstance(did, Response):
            return did
        body = await request.json()
        writes = body.get("writes") or []
        if body.get("repo") not in (did, self.accounts[did].handle):
            return _error(401, "AuthRequiredError", "repo does not match the session")
        if len(writes) > MAX_WRITES:
            return _error(400, "InvalidRequest", f"Too many writes. Max: {MAX_WRITES}")
        points = 0
        for w in writes:
            kind = str(w.get("$type", "")).rsplit("#", 1)[-1]
            if kind not in COSTS:
                return _error(400, "InvalidRequest", f"unknown write {kind!r}")
            points += COSTS[kind]
        verdicts = [self.limiter.consume(lim, did, points) for lim in (WRITE_HOUR, WRITE_DAY)]
        for v in verdicts:
            if not v.ok:
                return _limited(v)
        acc = self.accounts[did]
        results = []
        now = time.time()
        with self.lock:
            for w in writes:
                if w.get("collection") != FOLLOW or not str(w.get("rkey", "")):
                    return _error(400, "InvalidRequest", "only follows with a record key")
                if w["rkey"] in acc.records:
                    # NOTE: the real PDS fails the whole batch with a 500 on an existing key.
                    return _error(500, "InternalServerError", "Internal Server Error")
            for w in writes:
                subject = str((w.get("value") or {}).get("subject", ""))
                acc.records[w["rkey"]] = subject
                self.created.append(Created(did, w["rkey"], subject, now))
                results.append(
                    {
                        "$type": "com.atproto.repo.applyWrites#createResult",
                        "uri": f"at://{did}/{FOLLOW}/{w['rkey']}",
                        "cid": _cid(did + w["rkey"]),
                        "validationStatus": "valid",
                    }
                )
        hour = verdicts[0]
        return JSONResponse(
            {"commit": {"cid": _cid(), "rev": f"{int(now * 1e6):x}"}, "results": results},
            headers=_rl_headers(hour),
        )


def _error(status: int, error: str, message: str) -> JSONResponse:
    return JSONResponse({"error": error, "message": message}, status_code=status)


def _rl_headers(v: Verdict) -> dict[str, str]:
    return {
        "RateLimit-Limit": str(v.limit),
        "RateLimit-Remaining": str(v.remaining),
        "RateLimit-Reset": f"{v.reset_at:.3f}",
        "RateLimit-Policy": f"{v.limit};w={v.window_s:g}",
    }


def _limited(v: Verdict) -> JSONResponse:
    return JSONResponse(
        {"error": "RateLimitExceeded", "message": "Rate Limit Exceeded"},
        status_code=429,
        headers=_rl_headers(v),
    )
