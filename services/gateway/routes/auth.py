"""Sign-in: anonymous accounts, X sign-in (proof of X id), sign-out."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request, Response
from fastapi.responses import RedirectResponse
from pydantic import BaseModel

from hqx import subjects
from hqx.errors import HqxError, Reason
from hqx.messages import IdentityProven
from services.gateway import accounts, events, sessions, x_signin
from services.gateway.deps import MaybeUser, SettingsDep, SvcDep
from services.gateway.errors import ApiError
from services.gateway.security import CSRF_COOKIE

log = logging.getLogger(__name__)
router = APIRouter(tags=["session"])


class SessionOut(BaseModel):
    authenticated: bool
    user_id: str | None = None
    x_proven: bool = False
    x_username: str | None = None
    x_signin_available: bool = False


def _set_session_cookie(response: Response, token: str, settings: SettingsDep) -> None:
    response.set_cookie(
        sessions.COOKIE,
        token,
        max_age=settings.session_ttl_s,
        httponly=True,
        secure=settings.cookie_secure,
        samesite="lax",  # lax: the OAuth callbacks are top-level navigations from X / Mastodon
        path="/",
    )


@router.get("/api/session", response_model=SessionOut)
async def get_session(svc: SvcDep, settings: SettingsDep, user: MaybeUser) -> SessionOut:
    out = SessionOut(authenticated=False, x_signin_available=bool(settings.x_client_id))
    row = await accounts.get_user(svc.pool, user) if user else None
    if row is None:
        return out
    return SessionOut(
        authenticated=True,
        user_id=user,
        x_proven=row["x_proven"],
        x_username=row["x_username"],
        x_signin_available=out.x_signin_available,
    )


@router.post("/api/session", response_model=SessionOut, status_code=201)
async def create_anonymous(
    request: Request, response: Response, svc: SvcDep, settings: SettingsDep, user: MaybeUser
) -> SessionOut:
    """Start without X: a new HQX account (or the current one if already signed in)."""
    if user is None or await accounts.get_user(svc.pool, user) is None:
        user = await accounts.create_user(svc.pool, request.cookies.get("hqx_lang"))
        _set_session_cookie(
            response, await sessions.open_session(svc.redis, user, settings.session_ttl_s), settings
        )
        events.account_created("anonymous")
    return SessionOut(
        authenticated=True, user_id=user, x_signin_available=bool(settings.x_client_id)
    )


@router.delete("/api/session", status_code=204)
async def sign_out(request: Request, svc: SvcDep) -> Response:
    await sessions.close_session(svc.redis, request.cookies.get(sessions.COOKIE))
    response = Response(status_code=204)
    response.delete_cookie(sessions.COOKIE, path="/")
    return response


@router.get("/auth/x/start", include_in_schema=False)
async def x_start(request: Request, svc: SvcDep, settings: SettingsDep) -> Response:
    binding = request.cookies.get(CSRF_COOKIE)
    if not binding:  # first visit straight to this URL: come back through the page
        return RedirectResponse("/", status_code=303)
    return RedirectResponse(await x_signin.start(svc.redis, settings, binding), status_code=303)


@router.get("/auth/x/callback", include_in_schema=False)
async def x_callback(
    request: Request,
    svc: SvcDep,
    settings: SettingsDep,
    user: MaybeUser,
    code: str = "",
    state: str = "",
    error: str = "",
) -> Response:
    if error or not code:
        return RedirectResponse("/?error=user_denied", status_code=303)
    try:
        who = await x_signin.finish(
            svc.redis, settings, code, state, request.cookies.get(CSRF_COOKIE, "")
        )
    except HqxError as e:
        return RedirectResponse(f"/?error={e.code.value}", status_code=303)
    x_id = int(who.account_id)
    owner = await accounts.user_for_x(svc.pool, x_id)
    if owner is None:
        if user is None or await accounts.get_user(svc.pool, user) is None:
            user = await accounts.create_user(svc.pool, request.cookies.get("hqx_lang"))
        if not await accounts.mark_proven(svc.pool, user, x_id, who.username):
            raise ApiError(Reason.NOT_FOUND, "this account was erased meanwhile", 409)
        owner = user
        await svc.publish(
            subjects.identity_proven(owner),
            IdentityProven(user_id=owner, x_account_id=who.account_id, x_username=who.username),
            msg_id=f"proven-{owner}-{who.account_id}",
        )
        events.x_proven()
    response = RedirectResponse("/", status_code=303)
    # NOTE: a new session token after every sign-in (no fixation of a pre-sign-in token).
    await sessions.close_session(svc.redis, request.cookies.get(sessions.COOKIE))
    token = await sessions.open_session(svc.redis, owner, settings.session_ttl_s)
    _set_session_cookie(response, token, settings)
    return response
