"""The gateway app: FastAPI on the hqx Service runtime (NATS, PostgreSQL, Redis)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from hqx.errors import HqxError, Reason
from hqx.service import Service
from hqx.telemetry import HttpTelemetry
from services.gateway.deps import request_limits
from services.gateway.hub import ProgressHub
from services.gateway.ratelimit import RequestLimiter
from services.gateway.routes import accounts, auth, me, pages, progress, uploads
from services.gateway.security import SecurityMiddleware
from services.gateway.settings import Settings

STATUS_CODES = {
    401: Reason.NOT_AUTHENTICATED,
    403: Reason.FORBIDDEN,
    404: Reason.NOT_FOUND,
    429: Reason.TOO_MANY_REQUESTS,
}


def _error(
    code: str, message: str, status: int, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(
        {"error": {"code": code, "message": message}}, status_code=status, headers=headers
    )


async def _hqx_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HqxError)
    retry = getattr(exc, "retry_after", None)
    headers = {"Retry-After": str(retry)} if retry else None
    return _error(exc.code.value, exc.message, exc.http_status, headers)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    first = exc.errors()[0] if exc.errors() else {}
    where = ".".join(str(p) for p in first.get("loc", ()))
    return _error(Reason.VALIDATION_FAILED.value, f"{where}: {first.get('msg', 'invalid')}", 422)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = STATUS_CODES.get(exc.status_code, Reason.VALIDATION_FAILED)
    return _error(code.value, str(exc.detail), exc.status_code, getattr(exc, "headers", None))


def create(settings: Settings) -> FastAPI:
    svc = Service("gateway", settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await svc.start()
        await svc.archives()
        app.state.limiter = RequestLimiter(svc.redis, settings.rate_window_s)
        app.state.hub = ProgressHub(svc.nc, svc.pool)  # type: ignore[arg-type]
        await app.state.hub.start()
        try:
            yield
        finally:
            await app.state.hub.stop()
            await svc.stop()

    app = FastAPI(
        title="HelloQuitteX",
        version="1",
        description="Leave X together: sign in, upload your archive, link accounts, follow again.",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    app.state.svc = svc
    app.state.settings = settings
    app.add_middleware(SecurityMiddleware, secure_cookies=settings.cookie_secure)
    app.add_middleware(HttpTelemetry, service="gateway")
    app.add_exception_handler(HqxError, _hqx_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    limited = [Depends(request_limits)]
    for module in (auth, uploads, me, progress, accounts):
        app.include_router(module.router, dependencies=limited)
    app.include_router(pages.router)
    app.mount("/static", StaticFiles(directory=Path(__file__).parent / "static"), name="static")
    return app
