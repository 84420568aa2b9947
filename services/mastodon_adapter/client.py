"""The only module that imports Mastodon.py: calls to an instance, errors mapped to ours.

Every call is blocking (requests) and runs in a worker thread: an account's calls in the pool
of `AccountClients`, sized for every call the adapter may have in flight (asyncio's default
pool has cpu + 4 threads, six on two cores, fewer than the batches waiting on it); linking
calls in `asyncio.to_thread`. Each `AccountClient` owns its `requests.Session` (urllib3's pool
serves concurrent calls) with `trust_env = False`: `REQUESTS_CA_BUNDLE` / `CURL_CA_BUNDLE` in
the environment would otherwise override `verify`, and `.netrc` could inject credentials.
Mastodon.py runs with `ratelimit_method="throw"`: it never sleeps (its own rate-limit fields,
shared by concurrent calls, are then only informative); a 429 becomes `RateLimitedError`
carrying the reset parsed from `X-RateLimit-Reset` by our own code.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import secrets
import threading
import time
from collections.abc import Mapping
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

import requests
from mastodon import (
    Mastodon,
    MastodonAPIError,
    MastodonNetworkError,
    MastodonNotFoundError,
    MastodonRatelimitError,
    MastodonServerError,
    MastodonUnauthorizedError,
)

from hqx.errors import HqxError, Reason

SCOPES = ["read", "write", "follow"]
APP_NAME = "HelloQuitteX"
APP_WEBSITE = "https://helloquittex.com"
TIMEOUT_S = 20.0


# --- errors: what the handler and the gateway see ----------------------------------------


class MastodonCallError(HqxError):
    """A call to an instance failed in a way the caller maps to an outcome (see `code`)."""

    http_status = 502


class RateLimitedError(MastodonCallError):
    code = Reason.RATE_LIMITED

    def __init__(
        self, reset_at: float | None, message: str = "", headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(message=message)
        self.reset_at = reset_at
        self.headers: Mapping[str, str] = headers or {}


class FollowCapError(MastodonCallError):
    """422 on follow: FollowLimitValidator (7,500 then 1.1 x followers)."""

    code = Reason.FOLLOW_CAP


class UnavailableError(MastodonCallError):
    """Network error, timeout or 5xx: retry later with backoff."""

    code = Reason.NETWORK_UNAVAILABLE


class UnauthorizedError(MastodonCallError):
    """401: the token was revoked or expired; the account is paused until the person relinks."""

    code = Reason.SESSION_REVOKED


class TargetError(MastodonCallError):
    """The target cannot be followed (404 gone, 403 blocked/moved, suspended)."""


def parse_reset(value: str | None, now: float | None = None) -> float | None:
    """`X-RateLimit-Reset` as epoch seconds: ISO 8601 (Mastodon) or epoch seconds (others)."""
    if not value:
        return None
    v = value.strip()
    try:
        n = float(v)
    except ValueError:
        try:
            return datetime.fromisoformat(v.replace("Z", "+00:00")).timestamp()
        except ValueError:
            return None
    # NOTE: some servers send seconds-until-reset instead of a timestamp.
    return n if n > 1e9 else (now if now is not None else time.time()) + n


def _session(verify: bool | str) -> requests.Session:
    s = requests.Session()
    s.trust_env = False
    s.verify = verify
    s.headers["User-Agent"] = f"{APP_NAME} (+{APP_WEBSITE})"
    return s


# --- per-account calls (the follow path) --------------------------------------------------


@dataclass(frozen=True)
class Resolved:
    id: str
    acct: str
    locked: bool
    suspended: bool
    moved: bool


@dataclass(frozen=True)
class Relationship:
    following: bool
    requested: bool
    # The follow response's `X-RateLimit-*` (and other) headers, for `budgets.observe_headers`.
    headers: Mapping[str, str] = field(default_factory=dict, compare=False)

    @classmethod
    def of(cls, rel: Mapping[str, Any], headers: Mapping[str, str]) -> Relationship:
        return cls(bool(rel.get("following")), bool(rel.get("requested")), headers)


class AccountClient:
    """One account's token on one instance; a batch may make several calls at once.

    Each call's response headers are kept per worker thread (the response hook runs in the
    thread that made the request), so concurrent calls never read each other's.
    """

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        verify: bool | str = True,
        executor: Executor | None = None,
    ) -> None:
        self.base_url = base_url
        self._session = _session(verify)
        self._executor = executor
        self._local = threading.local()
        self._session.hooks["response"].append(self._remember)
        self._api = Mastodon(
            access_token=token,
            api_base_url=base_url,
            ratelimit_method="throw",
            session=self._session,
            version_check_mode="none",
            request_timeout=TIMEOUT_S,
        )

    def _remember(self, response: requests.Response, *args: Any, **kwargs: Any) -> None:
        self._local.headers = response.headers  # case-insensitive

    def close(self) -> None:
        self._session.close()

    async def resolve(self, acct: str, own_domain: str) -> Resolved | None:
        """`/api/v2/search?resolve=true` for `user@host`; match on `acct`, never on a URL."""
        # NOTE: exclude_unreviewed=False skips Mastodon.py's version probe (two more requests,
        # outside our budgets, and an endless recursion in 2.3.3 when the probe gets a 429).
        res = await self._call(
            lambda: self._api.search_v2(
                acct, resolve=True, result_type="accounts", limit=5, exclude_unreviewed=False
            )
        )
        want = acct.lower().lstrip("@")
        for a in res.get("accounts") or []:
            got = str(a["acct"]).lower()
            if "@" not in got:
                got = f"{got}@{own_domain.lower()}"
            if got == want:
                return Resolved(
                    id=str(a["id"]),
                    acct=got,
                    locked=bool(a.get("locked")),
                    suspended=bool(a.get("suspended")),
                    moved=bool(a.get("moved")),
                )
        return None

    async def follow(self, account_id: str) -> Relationship:
        rel, headers = await self._in_thread(lambda: self._api.account_follow(account_id))
        return Relationship.of(rel, headers)

    async def relationship(self, account_id: str) -> Relationship:
        """Whether this account already follows (or asked to follow) `account_id`."""
        rels, headers = await self._in_thread(lambda: self._api.account_relationships([account_id]))
        return Relationship.of(rels[0] if rels else {}, headers)

    async def verify_credentials(self) -> dict[str, Any]:
        return dict(await self._call(self._api.account_verify_credentials))

    async def _call(self, fn: Any) -> Any:
        result, _ = await self._in_thread(fn)
        return result

    async def _in_thread(self, fn: Any) -> tuple[Any, Mapping[str, str]]:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._with_headers, fn)

    def _with_headers(self, fn: Any) -> tuple[Any, Mapping[str, str]]:
        """(result, the response's headers), in the worker thread that makes the call."""
        self._local.headers = {}
        return self._map_errors(fn), self._local.headers

    def _map_errors(self, fn: Any) -> Any:
        try:
            return fn()
        except MastodonRatelimitError as e:
            headers = self._local.headers
            reset = parse_reset(headers.get("X-RateLimit-Reset"))
            raise RateLimitedError(reset, "429 from the instance", headers) from e
        except MastodonUnauthorizedError as e:
            raise UnauthorizedError(message="token refused (401)") from e
        except MastodonNotFoundError as e:
            raise TargetError(Reason.TARGET_NOT_FOUND, "404") from e
        except (MastodonNetworkError, MastodonServerError) as e:
            raise UnavailableError(message=str(e)[:200]) from e
        except MastodonAPIError as e:
            status = e.args[1] if len(e.args) > 1 else None
            if status == 422:
                raise FollowCapError(message=str(e.args[-1])[:200]) from e
            if status in (403, 410):
                raise TargetError(Reason.BLOCKED if status == 403 else Reason.TARGET_DELETED) from e
            if status == 429:
                headers = self._local.headers
                reset = parse_reset(headers.get("X-RateLimit-Reset"))
                raise RateLimitedError(reset, "429 from the instance", headers) from e
            raise


# --- linking calls (app registration, OAuth) ---------------------------------------------


@dataclass(frozen=True)
class ServerInfo:
    software: str  # mastodon | pleroma | akkoma | gotosocial | unknown
    version: str
    domain: str  # what local accounts' handles end with
    pkce: bool
    authorize_endpoint: str
    token_endpoint: str
    revocation_endpoint: str


def pkce_pair() -> tuple[str, str]:
    """(verifier, S256 challenge) per RFC 7636."""
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


class InstanceClient:
    """App-level calls to one instance (no user token): detection, registration, OAuth."""

    def __init__(self, base_url: str, *, verify: bool | str = True) -> None:
        self.base_url = base_url
        self._session = _session(verify)

    def close(self) -> None:
        self._session.close()

    async def get_json(self, path_or_url: str) -> Any | None:
        """GET -> JSON, or None for 404/410/non-JSON; UnavailableError when the host is down."""
        return await asyncio.to_thread(self._get_json, path_or_url)

    def _get_json(self, path_or_url: str) -> Any | None:
        url = path_or_url if "://" in path_or_url else self.base_url + path_or_url
        try:
            r = self._session.get(url, timeout=TIMEOUT_S, headers={"Accept": "application/json"})
        except requests.RequestException as e:
            raise UnavailableError(Reason.INSTANCE_UNREACHABLE, str(e)[:200]) from e
        if r.status_code >= 500:
            raise UnavailableError(Reason.INSTANCE_UNREACHABLE, f"HTTP {r.status_code}")
        if r.status_code != 200:
            return None
        try:
            return r.json()
        except ValueError:
            return None

    async def register_app(self, redirect_uri: str) -> tuple[str, str]:
        def call() -> tuple[str, str]:
            try:
                cid, secret = Mastodon.create_app(
                    APP_NAME,
                    scopes=SCOPES,
                    redirect_uris=redirect_uri,
                    website=APP_WEBSITE,
                    api_base_url=self.base_url,
                    session=self._session,
                    request_timeout=TIMEOUT_S,
                )
            except MastodonNetworkError as e:
                raise UnavailableError(Reason.INSTANCE_UNREACHABLE, str(e)[:200]) from e
            except (KeyError, TypeError, ValueError) as e:
                # NOTE: create_app reads the JSON without checking the status: an error body
                # (403/422 "registrations closed", rate limits) has no client_id.
                raise MastodonCallError(Reason.REGISTRATION_CLOSED) from e
            return str(cid), str(secret)

        return await asyncio.to_thread(call)

    def authorize_url(
        self, info: ServerInfo, client_id: str, redirect_uri: str, state: str, challenge: str | None
    ) -> str:
        params = {
            "client_id": client_id,
            "response_type": "code",
            "redirect_uri": redirect_uri,
            "scope": " ".join(SCOPES),
            "state": state,
        }
        if challenge:
            params |= {"code_challenge": challenge, "code_challenge_method": "S256"}
        return f"{info.authorize_endpoint}?{urlencode(params)}"

    async def exchange_code(
        self,
        info: ServerInfo,
        client_id: str,
        client_secret: str,
        code: str,
        redirect_uri: str,
        verifier: str | None,
    ) -> str:
        """POST the token endpoint (Mastodon.py's `log_in` cannot send a PKCE verifier)."""
        data = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect_uri,
            "client_id": client_id,
            "client_secret": client_secret,
            "scope": " ".join(SCOPES),
        }
        if verifier:
            data["code_verifier"] = verifier

        def call() -> str:
            try:
                r = self._session.post(info.token_endpoint, data=data, timeout=TIMEOUT_S)
            except requests.RequestException as e:
                raise UnavailableError(Reason.INSTANCE_UNREACHABLE, str(e)[:200]) from e
            if r.status_code >= 500:
                raise UnavailableError(Reason.INSTANCE_UNREACHABLE, f"HTTP {r.status_code}")
            body = (
                r.json() if r.headers.get("content-type", "").startswith("application/json") else {}
            )
            if r.status_code != 200 or "access_token" not in body:
                raise MastodonCallError(Reason.INVALID_CREDENTIALS, "the code was refused")
            return str(body["access_token"])

        return await asyncio.to_thread(call)

    async def revoke(
        self, info: ServerInfo, client_id: str, client_secret: str, token: str
    ) -> None:
        data = {"client_id": client_id, "client_secret": client_secret, "token": token}

        def call() -> None:
            try:
                self._session.post(info.revocation_endpoint, data=data, timeout=TIMEOUT_S)
            except requests.RequestException as e:
                raise UnavailableError(Reason.INSTANCE_UNREACHABLE, str(e)[:200]) from e

        await asyncio.to_thread(call)


class AccountClients:
    """Idle `AccountClient`s per account, reused across batches (HTTP keep-alive), and the
    threads their calls run in (`threads`: as many as calls in flight at most).

    A client serves one batch at a time; concurrent batches of one account get their own.
    """

    def __init__(self, verify: bool | str = True, max_idle: int = 2000, threads: int = 32) -> None:
        self._verify = verify
        self._max_idle = max_idle
        self._idle: dict[tuple[str, str, str], AccountClient] = {}
        self._executor = ThreadPoolExecutor(threads, thread_name_prefix="mastodon-call")

    def take(self, base_url: str, account: str, token: str) -> AccountClient:
        key = (base_url, account, hashlib.sha256(token.encode()).hexdigest())
        client = self._idle.pop(key, None)
        return client or AccountClient(
            base_url, token, verify=self._verify, executor=self._executor
        )

    def give_back(self, account: str, token: str, client: AccountClient) -> None:
        key = (client.base_url, account, hashlib.sha256(token.encode()).hexdigest())
        if key in self._idle or len(self._idle) >= self._max_idle:
            old = self._idle.pop(next(iter(self._idle)), None) if self._idle else None
            if old is not None and old is not client:
                old.close()
        self._idle[key] = client

    def close(self) -> None:
        for c in self._idle.values():
            c.close()
        self._idle.clear()
        self._executor.shutdown(wait=False, cancel_futures=True)
