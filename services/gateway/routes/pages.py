"""The web page: one HTML document, localized on the server; behaviour in static/app.js."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from services.gateway.deps import SettingsDep, T
from services.gateway.i18n import LOCALES

router = APIRouter(include_in_schema=False)
templates = Jinja2Templates(directory=Path(__file__).parent.parent / "templates")


@router.get("/", response_class=HTMLResponse)
async def index(request: Request, t: T, settings: SettingsDep) -> Response:
    other = next(lc for lc in LOCALES if lc != t.locale)
    response = templates.TemplateResponse(
        request,
        "index.html",
        {"t": t, "strings": t.strings, "other": other, "x_signin": bool(settings.x_client_id)},
    )
    if request.query_params.get("lang") in LOCALES:
        response.set_cookie("hqx_lang", t.locale, max_age=365 * 86400, samesite="lax")
    return response


@router.get("/lang/{locale}")
async def switch_language(locale: str) -> Response:
    response = RedirectResponse("/", status_code=303)
    if locale in LOCALES:
        response.set_cookie("hqx_lang", locale, max_age=365 * 86400, samesite="lax")
    return response
