"""Security headers and CSRF (double-submit token) as one pure-ASGI middleware.

Pure ASGI, not `BaseHTTPMiddleware`: upload bodies and SSE streams pass through untouched.
Unsafe requests to the API must carry `X-CSRF-Token` equal to the `hqx_csrf` cookie, which a
page of another site can neither read nor set; the cookie is minted on the first response.
"""

from __future__ import annotations

import json
import secrets
from http.cookies import SimpleCookie

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hqx.errors import Reason

CSRF_COOKIE = "hqx_csrf"
CSRF_HEADER = b"x-csrf-token"
SAFE = {"GET", "HEAD", "OPTIONS"}
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
    "frame-ancestors 'none'; form-action 'self'"
)
HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=(), interest-cohort=()"),
]


def _cookies(scope: Scope) -> dict[str, str]:
    jar: SimpleCookie = SimpleCookie()
    for k, v in scope.get("headers", []):
        if k == b"cookie":
            try:
                jar.load(v.decode("latin-1"))
            except Exception:  # noqa: S112  (a malformed cookie header is ignored)
                continue
    return {k: m.value for k, m in jar.items()}


class SecurityMiddleware:
    def __init__(self, app: ASGIApp, *, secure_cookies: bool = False) -> None:
        self.app = app
        self.secure = secure_cookies

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        cookies = _cookies(scope)
        token = cookies.get(CSRF_COOKIE)
        if scope["method"] not in SAFE and not self._csrf_ok(scope, token):
            await self._refuse(send)
            return
        new_token = None if token else secrets.token_urlsafe(24)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.extend(HEADERS)
                if self.secure:
                    headers.append((b"strict-transport-security", b"max-age=31536000"))
                if new_token:
                    # NOTE: Lax, not Strict: the X sign-in callback is a cross-site navigation
                    # and binds the OAuth state to this cookie. Cross-site POSTs still omit it.
                    attrs = "Path=/; SameSite=Lax" + ("; Secure" if self.secure else "")
                    headers.append((b"set-cookie", f"{CSRF_COOKIE}={new_token}; {attrs}".encode()))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)

    @staticmethod
    def _csrf_ok(scope: Scope, token: str | None) -> bool:
        if not token:
            return False
        sent = next((v for k, v in scope.get("headers", []) if k == CSRF_HEADER), b"")
        return secrets.compare_digest(sent, token.encode())

    async def _refuse(self, send: Send) -> None:
        body = json.dumps(
            {"error": {"code": Reason.CSRF_FAILED.value, "message": "missing or wrong CSRF token"}}
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 403,
                "headers": [(b"content-type", b"application/json"), *HEADERS],
            }
        )
        await send({"type": "http.response.body", "body": body})
