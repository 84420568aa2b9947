"""The only module importing the atproto SDK: sessions, listing follows, applyWrites.

Every SDK failure leaves this module as one of our errors, each carrying a `Reason` code:

| the PDS / transport said                           | raised                    |
|----------------------------------------------------|---------------------------|
| 401/403, ExpiredToken, InvalidToken, refresh fails | `SessionInvalidError`     |
| 429 (with `RateLimit-*` headers)                   | `RateLimitedError`        |
| 5xx, 409/413/502, timeout, connection refused      | `UnavailableError`        |
| 400 on a write (bad subject, bad key)              | `RejectedError`           |
| a 2xx we cannot read                               | `MalformedResponseError`  |

NOTE: the PDS answers 500 (not a conflict) to an applyWrites create whose record key exists;
callers tell that from a real outage by listing the repo again.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from http.cookiejar import Cookie, CookieJar
from typing import Any

import httpx
from atproto import AsyncClient, models
from atproto.exceptions import (
    AtProtocolError,
    BadRequestError,
    LoginRequiredError,
    ModelError,
    NetworkError,
    RateLimitExceededError,
    RequestErrorBase,
    UnauthorizedError,
)
from atproto_client.client.session import SessionEvent
from atproto_client.request import AsyncRequest, RequestBase
from pydantic import SecretStr

from hqx.errors import HqxError, Reason
from services.bluesky_adapter.follows import FOLLOW_COLLECTION, Create, follow_record

log = logging.getLogger(__name__)
_SESSION_ERRORS = {
    "ExpiredToken",
    "InvalidToken",
    "AuthMissing",
    "AuthenticationRequired",
    "AccountTakedown",
    "AccountDeactivated",
    "InvalidAuth",  # NOTE: hypothetical; a refused login shows up as 401 AuthenticationRequired
}
LIST_PAGE = 100  # listRecords maximum
# NOTE: a 200-create applyWrites takes 0.2 s on an idle PDS and seconds on a busy one; the SDK's
# default 5 s would turn slow successes into doubtful writes.
TIMEOUT = httpx.Timeout(60.0, connect=10.0)


@cache
def _tls() -> ssl.SSLContext:
    # NOTE: built once per process: loading the CA bundle costs ~0.1 s, per client it dominated.
    return ssl.create_default_context()


def _request() -> AsyncRequest:
    return AsyncRequest(verify=_tls(), timeout=TIMEOUT)


class _NoCookies(CookieJar):
    """A shared pool must not carry one account's cookies into another's requests."""

    def set_cookie(self, cookie: Cookie) -> None:
        return None

    def extract_cookies(self, response: Any, request: Any) -> None:
        return None


class _SharedRequest(AsyncRequest):
    """The SDK's request object over a pool it does not own: the account's auth headers stay
    on this object (the SDK sets them per client), the connections belong to `PdsConnections`."""

    def __init__(self, http: httpx.AsyncClient) -> None:
        RequestBase.__init__(self)
        self._client_kwargs: dict[str, Any] = {}
        self._client = http

    def _new_instance(self) -> _SharedRequest:
        return type(self)(self._client)

    async def close(self) -> None:
        return None  # the pool outlives one account's run


class PdsConnections:
    """One keep-alive connection pool per PDS, shared by every account on it.

    Most accounts live on a handful of PDSs: a new connection (and TLS handshake) per follow
    batch cost more CPU than the batch itself on exodus day. Built in the running event loop.
    """

    def __init__(self, max_per_host: int = 32) -> None:
        self._limits = httpx.Limits(
            max_connections=max_per_host, max_keepalive_connections=max_per_host
        )
        self._pools: dict[str, httpx.AsyncClient] = {}

    def get(self, pds_url: str) -> httpx.AsyncClient:
        key = pds_url.rstrip("/")
        pool = self._pools.get(key)
        if pool is None or pool.is_closed:
            pool = self._pools[key] = httpx.AsyncClient(
                follow_redirects=True,
                verify=_tls(),
                timeout=TIMEOUT,
                limits=self._limits,
                cookies=_NoCookies(),
            )
        return pool

    async def close(self) -> None:
        pools, self._pools = list(self._pools.values()), {}
        for pool in pools:
            await pool.aclose()


class BlueskyError(HqxError):
    """A PDS call that did not succeed; `code` says how the caller should react."""

    def __init__(
        self,
        code: Reason | None = None,
        message: str = "",
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(code, message)
        self.headers = dict(headers or {})


class SessionInvalidError(BlueskyError):
    code = Reason.SESSION_REVOKED


class RateLimitedError(BlueskyError):
    code = Reason.RATE_LIMITED


class UnavailableError(BlueskyError):
    code = Reason.NETWORK_UNAVAILABLE


class RejectedError(BlueskyError):
    code = Reason.INVALID_TARGET


class MalformedResponseError(BlueskyError):
    code = Reason.MALFORMED_RESPONSE


@dataclass(frozen=True)
class SessionInfo:
    did: str
    handle: str
    session: SecretStr  # the SDK's session string (access + refresh JWT)


OnRefresh = Callable[[SecretStr], Awaitable[None]]


class _Client(AsyncClient):
    """Keeps the headers of the last response (the PDS's `RateLimit-*` view)."""

    last_headers: Mapping[str, str] = {}

    async def _invoke(self, invoke_type: Any, **kwargs: Any) -> Any:
        response = await super()._invoke(invoke_type, **kwargs)
        self.last_headers = response.headers
        return response


def _map(e: Exception) -> BlueskyError:
    """One SDK exception -> one of ours."""
    response = getattr(e, "response", None)
    headers = dict(response.headers) if response is not None else {}
    content = getattr(response, "content", None)
    error = getattr(content, "error", None) or ""
    detail = f"{error}: {getattr(content, 'message', '') or ''}".strip(": ")[:300]
    if isinstance(e, ModelError):
        return MalformedResponseError(message=f"unreadable response: {str(e)[:200]}")
    if isinstance(e, RateLimitExceededError):
        return RateLimitedError(message=detail, headers=headers)
    if isinstance(e, UnauthorizedError | LoginRequiredError) or error in _SESSION_ERRORS:
        return SessionInvalidError(message=detail or type(e).__name__, headers=headers)
    if isinstance(e, BadRequestError):
        return RejectedError(message=detail, headers=headers)
    if isinstance(e, NetworkError) or response is None or response.status_code >= 500:
        return UnavailableError(message=detail or type(e).__name__, headers=headers)
    if isinstance(e, RequestErrorBase):
        return UnavailableError(message=f"{response.status_code} {detail}", headers=headers)
    return MalformedResponseError(message=f"{type(e).__name__}: {str(e)[:200]}", headers=headers)


async def create_session(pds_url: str, identifier: str, password: SecretStr | str) -> SessionInfo:
    """`com.atproto.server.createSession`: limited to 30 / 5 min per account, call it once."""
    pw = password.get_secret_value() if isinstance(password, SecretStr) else password
    client = _Client(base_url=pds_url, request=_request())
    try:
        s = await client.com.atproto.server.create_session(
            models.ComAtprotoServerCreateSession.Data(identifier=identifier, password=pw),
            ignore_session_check=True,
        )
        await client._set_session(SessionEvent.CREATE, s)
        return SessionInfo(s.did, s.handle, SecretStr(client.export_session_string()))
    except (AtProtocolError, ValueError) as e:
        raise _map(e) from e
    finally:
        await client.request.close()


class AccountClient:
    """One linked account on its PDS. Refreshes its session itself (refresh JWT) and reports
    every new session through `on_refresh`, so it is stored before it is needed again.
    With `pools`, its requests go over the PDS's shared connections."""

    def __init__(
        self,
        pds_url: str,
        session: SecretStr,
        on_refresh: OnRefresh | None = None,
        pools: PdsConnections | None = None,
    ):
        request = _SharedRequest(pools.get(pds_url)) if pools is not None else _request()
        self._client = _Client(base_url=pds_url, request=request)
        self._session = session
        self._on_refresh = on_refresh
        self._ready = False

    @property
    def last_headers(self) -> Mapping[str, str]:
        return self._client.last_headers

    async def _start(self) -> None:
        if self._ready:
            return

        async def changed(event: SessionEvent, _session: Any) -> None:
            if event == SessionEvent.REFRESH and self._on_refresh is not None:
                await self._on_refresh(SecretStr(self._client.export_session_string()))

        self._client.on_session_change(changed)
        try:
            await self._client.login(
                session_string=self._session.get_secret_value(), fetch_bsky_profile=False
            )
        except (AtProtocolError, ValueError) as e:
            raise SessionInvalidError(message=f"session unreadable: {type(e).__name__}") from e
        self._ready = True

    async def list_follows(
        self, did: str, before_page: Callable[[], Awaitable[None]] | None = None
    ) -> dict[str, str]:
        """Every `app.bsky.graph.follow` record of the repo: subject DID -> record key."""
        await self._start()
        out: dict[str, str] = {}
        cursor: str | None = None
        while True:
            if before_page is not None:
                await before_page()
            try:
                page = await self._client.com.atproto.repo.list_records(
                    models.ComAtprotoRepoListRecords.Params(
                        repo=did, collection=FOLLOW_COLLECTION, limit=LIST_PAGE, cursor=cursor
                    )
                )
                for r in page.records:
                    subject = r.value["subject"] if isinstance(r.value, dict) else r.value.subject
                    out.setdefault(str(subject), r.uri.rsplit("/", 1)[-1])
            except (AtProtocolError, ValueError, KeyError, AttributeError) as e:
                raise _map(e) from e
            if not page.cursor or not page.records:
                return out
            cursor = page.cursor

    async def create_follows(self, did: str, creates: Sequence[Create]) -> list[str]:
        """One `applyWrites` of creates (<= 200) with our record keys; returns the keys made."""
        await self._start()
        writes = [
            models.ComAtprotoRepoApplyWrites.Create(
                collection=FOLLOW_COLLECTION, rkey=c.rkey, value=follow_record(c.target.account)
            )
            for c in creates
        ]
        try:
            res = await self._client.com.atproto.repo.apply_writes(
                models.ComAtprotoRepoApplyWrites.Data(repo=did, writes=writes)
            )
        except AtProtocolError as e:
            raise _map(e) from e
        try:
            made = [r.uri.rsplit("/", 1)[-1] for r in (res.results or ())]
        except (AttributeError, TypeError, ModelError) as e:
            raise MalformedResponseError(message="applyWrites results unreadable") from e
        if sorted(made) != sorted(c.rkey for c in creates):
            raise MalformedResponseError(message="applyWrites results do not match the writes")
        return made

    async def close(self) -> None:
        await self._client.request.close()
