"""The HTTP surface of the API node (FastAPI): authorise, record, then answer.

``create_app`` assembles one node's app: the routers of ``routes/`` (one per resource), the
dependencies of ``gate.py`` that resolve and authorise every caller, one error shape for
clients, security headers, the console's session and the catalog poller's lifetime. Content
is only ever streamed after the object was found in the archive and its ``accessed`` event is
stored in this node's signed ledger (``access.py``). Whatever a person writes into the chain
passes ``reasons.py``; a validation error never sends the input back. This module must not
hand-write HTTP: routing, parsing and streaming are FastAPI/Starlette's.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.middleware.sessions import SessionMiddleware

from ..errors import (
    AccessError,
    ConflictError,
    EvidenceError,
    IntegrityError,
    NotFoundError,
    StorageError,
    UsageError,
)
from .auth import load_or_create_secret
from .gate import Gate, Unauthorized
from .routes import API, audit, console, content, exports, incidents, recordings, service
from .routes import annotations as annotation_routes
from .service import ApiNode, Poller
from ..i18n import _

log = logging.getLogger(__name__)

_STATUS = (
    (NotFoundError, 404),
    (ConflictError, 409),
    (UsageError, 422),
    (AccessError, 403),
    (StorageError, 503),
    (IntegrityError, 409),
)
_CSP = ("default-src 'self'; img-src 'self' data:; media-src 'self'; style-src 'self';"
        " script-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
_ROUTERS = (service.router, console.router, recordings.router, content.router,
            annotation_routes.router, exports.router, audit.router, incidents.router)


def create_app(node: ApiNode, *, poll: bool = True) -> FastAPI:
    """The ASGI app of one API node. ``poll`` runs the catalog poller for the app's lifetime."""
    poller = Poller(node)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        # Packages are built here and deleted once sent; a crash can leave some behind. They
        # are copies (the archive keeps the evidence), so removing them loses nothing.
        for stale in node.exports_dir.glob("*.zip*"):
            stale.unlink(missing_ok=True)
        if poll:
            poller.start()
        try:
            yield
        finally:
            poller.stop()

    app = FastAPI(
        title="evidence-daemon API",
        version="1",
        description="Retrieval of archived body-camera recordings for auditors and supervisors."
                    " Every content access is recorded in a signed audit chain.",
        # Served behind a token like every other route (routes/service.py); no Swagger UI (it
        # would load scripts from a CDN, which the console's CSP and offline sites forbid).
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.gate = Gate(node)
    app.state.poller = poller
    app.add_exception_handler(EvidenceError, evidence_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, invalid_request)  # type: ignore[arg-type]
    app.add_exception_handler(Unauthorized, unauthorized)  # type: ignore[arg-type]
    app.middleware("http")(security_headers)
    for router in _ROUTERS:
        app.include_router(router)
    app.mount("/console", console.static_files(), name="console")
    app.add_middleware(
        SessionMiddleware,
        secret_key=load_or_create_secret(node.config.api.state_dir / "session.key"),
        session_cookie=console.SESSION_COOKIE, max_age=console.SESSION_MAX_AGE_S,
        path=console.SESSION_PATH, same_site="strict", https_only=node.config.api.secure_cookies)
    return app


# -- one answer shape for every failure ----------------------------------------------------

async def evidence_error(request: Request, exc: EvidenceError) -> JSONResponse:
    status = next((code for kind, code in _STATUS if isinstance(exc, kind)), 500)
    if status >= 500:
        log.error(_("request failed: %s"), exc.message)
    return JSONResponse({"error": exc.message}, status_code=status)


async def invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
    # One error shape for clients: {"error": text}, plus an itemised detail naming each
    # field and problem. FastAPI's own detail echoes each input back (a 1 MB reason came
    # back whole): never the input here.
    detail = validation_detail(exc.errors())
    problems = [f"{'.'.join(str(part) for part in error['loc'])}: {error['msg']}"
                for error in detail]
    return JSONResponse({"error": "; ".join(problems) or "invalid request",
                         "detail": detail}, status_code=422)


async def unauthorized(_: Request, exc: Unauthorized) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"}
    if exc.retry_after_s:
        headers["Retry-After"] = str(exc.retry_after_s)
    return JSONResponse({"error": exc.message}, status_code=exc.status, headers=headers)


async def security_headers(request: Request, call_next: Any) -> Response:
    response: Response = await call_next(request)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "no-referrer")
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("Content-Security-Policy", _CSP)
    if request.url.path.startswith(API):
        response.headers.setdefault("Cache-Control", "no-store")
    return response


_DETAIL_ITEMS = 20
_DETAIL_CHARS = 200


def validation_detail(errors: Sequence[Any]) -> list[dict[str, Any]]:
    """Pydantic's validation errors without the input they were about: where (``loc``), what
    kind (``type``) and the message, each cut short, and at most ``_DETAIL_ITEMS`` of them
    (a list of a thousand bad ids is not answered with a thousand items)."""
    def short(value: Any) -> str:
        text = str(value)
        return text if len(text) <= _DETAIL_CHARS else text[:_DETAIL_CHARS] + "…"

    return [{"loc": [part if isinstance(part, int) else short(part)
                     for part in error.get("loc", ())],
             "type": short(error.get("type", "")), "msg": short(error.get("msg", ""))}
            for error in list(errors)[:_DETAIL_ITEMS]]
