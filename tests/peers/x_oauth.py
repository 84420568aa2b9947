"""A local stand-in for X's OAuth 2.0 provider: authorize, token (PKCE S256), `/2/users/me`.

It speaks the shapes of X's endpoints (`/i/oauth2/authorize`, `/2/oauth2/token`,
`/2/users/me` -> `{"data": {"id", "name", "username"}}`) and checks what X checks: the client
id and secret (HTTP Basic), the redirect URI, the state round trip and the PKCE verifier.
The person who "signs in" is whoever the test set with `sign_in_as`; authorize approves at once.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from urllib.parse import urlencode

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from hqx.embedded import free_port


@dataclass
class XProvider:
    client_id: str = "hqx-test-client"
    client_secret: str = field(default_factory=lambda: secrets.token_urlsafe(16))
    user: tuple[str, str] = ("1234567890123456789", "test_person")
    codes: dict[str, dict] = field(default_factory=dict)
    tokens: dict[str, tuple[str, str]] = field(default_factory=dict)
    denied: bool = False
    url: str = ""

    def sign_in_as(self, account_id: str, username: str) -> None:
        self.user = (account_id, username)

    # --- endpoints ------------------------------------------------------------------------
    async def authorize(self, request: Request) -> Response:
        q = request.query_params
        if q.get("client_id") != self.client_id or q.get("response_type") != "code":
            return JSONResponse({"error": "invalid_request"}, status_code=400)
        if q.get("code_challenge_method") != "S256" or not q.get("code_challenge"):
            return JSONResponse({"error": "invalid_request", "detail": "PKCE S256"}, 400)
        redirect = q.get("redirect_uri", "")
        if self.denied:
            return RedirectResponse(
                f"{redirect}?{urlencode({'error': 'access_denied', 'state': q.get('state', '')})}"
            )
        code = secrets.token_urlsafe(16)
        self.codes[code] = {
            "challenge": q["code_challenge"],
            "redirect_uri": redirect,
            "user": self.user,
            "at": time.monotonic(),
        }
        return RedirectResponse(f"{redirect}?{urlencode({'code': code, 'state': q['state']})}")

    async def token(self, request: Request) -> Response:
        auth = request.headers.get("authorization", "")
        expected = base64.b64encode(f"{self.client_id}:{self.client_secret}".encode()).decode()
        if auth != f"Basic {expected}":
            return JSONResponse({"error": "unauthorized_client"}, status_code=401)
        form = await request.form()
        grant = self.codes.pop(str(form.get("code", "")), None)
        if form.get("grant_type") != "authorization_code" or grant is None:
            return JSONResponse({"error": "invalid_grant"}, status_code=400)
        if form.get("redirect_uri") != grant["redirect_uri"]:
            return JSONResponse({"error": "invalid_grant", "detail": "redirect_uri"}, 400)
        verifier = str(form.get("code_verifier", ""))
        digest = hashlib.sha256(verifier.encode()).digest()
        challenge = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
        if challenge != grant["challenge"]:
            return JSONResponse({"error": "invalid_grant", "detail": "code_verifier"}, 400)
        access = secrets.token_urlsafe(24)
        self.tokens[access] = grant["user"]
        return JSONResponse(
            {
                "token_type": "bearer",
                "access_token": access,
                "expires_in": 7200,
                "scope": "users.read tweet.read",
            }
        )

    async def me(self, request: Request) -> Response:
        auth = request.headers.get("authorization", "")
        user = self.tokens.get(auth.removeprefix("Bearer ").strip())
        if not auth.startswith("Bearer ") or user is None:
            return JSONResponse({"title": "Unauthorized", "status": 401}, status_code=401)
        return JSONResponse({"data": {"id": user[0], "name": user[1].title(), "username": user[1]}})

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/i/oauth2/authorize", self.authorize),
                Route("/2/oauth2/token", self.token, methods=["POST"]),
                Route("/2/users/me", self.me),
            ]
        )


@pytest.fixture
def x_provider() -> Iterator[XProvider]:
    """The X OAuth stand-in, served by uvicorn in a thread on a free port."""
    provider = XProvider()
    port = free_port()
    provider.url = f"http://127.0.0.1:{port}"
    server = uvicorn.Server(
        uvicorn.Config(provider.app(), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline:
            raise TimeoutError("x provider did not start")
        time.sleep(0.01)
    yield provider
    server.should_exit = True
    thread.join(5)
