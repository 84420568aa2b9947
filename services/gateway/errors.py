"""The gateway's HTTP errors: `HqxError`s carrying a stable code and an HTTP status."""

from __future__ import annotations

from hqx.errors import HqxError, Reason


class ApiError(HqxError):
    """An expected refusal; the app's one exception handler turns it into `{"error": {...}}`."""

    def __init__(self, code: Reason, message: str = "", status: int = 400) -> None:
        super().__init__(code, message)
        self.http_status = status


def not_authenticated() -> ApiError:
    return ApiError(Reason.NOT_AUTHENTICATED, "sign in first", 401)


def not_found(what: str = "not found") -> ApiError:
    return ApiError(Reason.NOT_FOUND, what, 404)
