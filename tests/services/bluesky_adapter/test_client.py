"""How each SDK failure becomes one of our errors (the table in client.py); a PDS that is down."""

from __future__ import annotations

import pytest
from atproto import exceptions as sdk
from atproto_client.models.common import XrpcError
from atproto_client.request import Response
from pydantic import SecretStr

from hqx.embedded import free_port
from hqx.messages import FollowTarget
from services.bluesky_adapter import client
from services.bluesky_adapter.follows import Create
from tests.peers.bluesky import random_did


def response(status: int, error: str = "", headers: dict[str, str] | None = None) -> Response:
    content = XrpcError(error=error, message="m") if error else None
    return Response(False, status, content, headers or {})


@pytest.mark.parametrize(
    ("exc", "expected", "code"),
    [
        (
            sdk.RateLimitExceededError(
                response(429, "RateLimitExceeded", {"ratelimit-reset": "9"})
            ),
            client.RateLimitedError,
            "rate_limited",
        ),
        (
            sdk.UnauthorizedError(response(401, "AuthenticationRequired")),
            client.SessionInvalidError,
            "session_revoked",
        ),
        (
            sdk.BadRequestError(response(400, "ExpiredToken")),
            client.SessionInvalidError,
            "session_revoked",
        ),
        (
            sdk.BadRequestError(response(400, "AccountTakedown")),
            client.SessionInvalidError,
            "session_revoked",
        ),
        (
            sdk.BadRequestError(response(400, "InvalidRequest")),
            client.RejectedError,
            "invalid_target",
        ),
        (
            sdk.RequestException(response(500, "InternalServerError")),
            client.UnavailableError,
            "network_unavailable",
        ),
        (sdk.RequestException(response(503)), client.UnavailableError, "network_unavailable"),
        (sdk.NetworkError(), client.UnavailableError, "network_unavailable"),
        (sdk.InvokeTimeoutError(), client.UnavailableError, "network_unavailable"),
        (sdk.ModelError("bad field"), client.MalformedResponseError, "malformed_response"),
    ],
)
def test_sdk_errors_map_to_reason_codes(exc: Exception, expected: type, code: str) -> None:
    mapped = client._map(exc)
    assert type(mapped) is expected and mapped.code == code


def test_429_keeps_the_headers() -> None:
    e = client._map(sdk.RateLimitExceededError(response(429, "x", {"ratelimit-reset": "9"})))
    assert e.headers == {"ratelimit-reset": "9"}


async def test_unreachable_pds_is_unavailable() -> None:
    port = free_port()
    c = client.AccountClient(f"http://127.0.0.1:{port}", SecretStr(_fake_session()))
    try:
        with pytest.raises(client.UnavailableError):
            await c.create_follows(
                "did:plc:" + "a" * 24,
                [Create(FollowTarget(x_account_id="1", account=random_did()), "3kaaaaaaaaaa2")],
            )
    finally:
        await c.close()


def _fake_session() -> str:
    """A well-formed session string whose access token is not expired (never reaches a PDS)."""
    import base64
    import json
    import time

    def b64(d: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(d).encode()).rstrip(b"=").decode()

    now = int(time.time())
    jwt = f"{b64({'alg': 'ES256K'})}.{b64({'iat': now, 'exp': now + 7200, 'sub': 'x'})}.sig"
    return ":::".join(["a.test", "did:plc:" + "a" * 24, jwt, jwt, "http://127.0.0.1:1"])
