"""Route dependencies as `Annotated` aliases: a signature says what a route needs."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from hqx.errors import Reason
from hqx.service import Service
from services.gateway.errors import ApiError, not_authenticated
from services.gateway.i18n import Translator, pick_locale
from services.gateway.ratelimit import RequestLimiter
from services.gateway.sessions import COOKIE, session_user
from services.gateway.settings import Settings


def get_service(request: Request) -> Service:
    return request.app.state.svc


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


SvcDep = Annotated[Service, Depends(get_service)]
SettingsDep = Annotated[Settings, Depends(get_settings)]


async def maybe_user(request: Request, svc: SvcDep) -> str | None:
    return await session_user(svc.redis, request.cookies.get(COOKIE))


async def current_user(user: Annotated[str | None, Depends(maybe_user)]) -> str:
    """Every personal route depends on this: no session, no data."""
    if user is None:
        raise not_authenticated()
    return user


MaybeUser = Annotated[str | None, Depends(maybe_user)]
CurrentUser = Annotated[str, Depends(current_user)]


def client_ip(request: Request) -> str:
    return request.client.host if request.client else "unknown"


async def request_limits(
    request: Request, svc: SvcDep, settings: SettingsDep, user: MaybeUser
) -> None:
    """Per-IP and per-user request budgets; over budget answers 429 with Retry-After."""
    limiter: RequestLimiter = request.app.state.limiter
    wait = await limiter.hit("ip", client_ip(request), settings.rate_per_ip)
    if wait is None and user is not None:
        wait = await limiter.hit("user", user, settings.rate_per_user)
    if wait is not None:
        err = ApiError(Reason.TOO_MANY_REQUESTS, "too many requests: slow down", 429)
        err.retry_after = max(1, int(wait) + 1)  # type: ignore[attr-defined]
        raise err


def translator(request: Request) -> Translator:
    return Translator(
        pick_locale(
            request.query_params.get("lang"),
            request.cookies.get("hqx_lang"),
            request.headers.get("accept-language"),
        )
    )


T = Annotated[Translator, Depends(translator)]
