"""The web console: its page and static files, and the session its media elements use.

The console signs in with a bearer token like any client. A ``<video>`` element cannot send
that header, so ``POST /session`` sets a signed cookie naming the user (never the token), sent
only to grant URLs; signing out works without a token (after a revocation too).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from fastapi import APIRouter, Request, Response
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

from ..gate import CurrentUser
from . import API

SESSION_COOKIE = "evidence_session"
SESSION_PATH = f"{API}/grants"  # the cookie goes to grant URLs only
SESSION_MAX_AGE_S = 12 * 3600  # a working day; the console signs in again after it

router = APIRouter()


def console_dir() -> Path:
    return Path(str(resources.files("evidence_daemon.api").joinpath("console")))


def static_files() -> StaticFiles:
    """The console's scripts, styles and images, served under ``/console``."""
    return StaticFiles(directory=console_dir(), check_dir=False)


@router.get("/", include_in_schema=False)
def index() -> Response:
    page = console_dir() / "index.html"
    if not page.is_file():
        return JSONResponse({"error": "the web console is not installed"}, status_code=404)
    return FileResponse(page, media_type="text/html")


@router.post(f"{API}/session", status_code=204, tags=["session"])
def open_session(request: Request, user: CurrentUser) -> Response:
    """Set the cookie that lets this browser's media elements fetch player grants: a
    signed session naming the user (never the token), sent only to grant URLs."""
    request.session.clear()
    request.session["user"] = user.name
    return Response(status_code=204)


@router.delete(f"{API}/session", status_code=204, tags=["session"])
def close_session(request: Request) -> Response:
    """Forget the session (no token needed: signing out must work after a revocation).
    The cookie is only sent to grant URLs, so it is expired here explicitly."""
    request.session.clear()
    response = Response(status_code=204)
    response.delete_cookie(SESSION_COOKIE, path=SESSION_PATH, httponly=True, samesite="strict")
    return response
