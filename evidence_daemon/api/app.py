"""The HTTP surface of the API node (FastAPI): authorise, record, then answer.

Every route but ``/healthz`` and ``/metrics`` resolves the caller from a bearer token and
checks the role matrix (``auth.PERMISSIONS``) before doing anything. Content is only ever streamed after the
object was found in the archive and its ``accessed`` event is stored in this node's signed
ledger; if the ledger cannot be written, nothing is sent, and an object that is not there (or
not the size catalogued) is an ``access-failed`` event and an error — never an ``accessed``
event followed by an empty body. Whatever a person writes into the chain passes
``reasons.py``; a validation error never sends the input back. Object keys come from the
catalog row of a validated recording id, never from the request. This module must not
hand-write HTTP: routing, parsing and streaming are FastAPI/Starlette's.
"""

from __future__ import annotations

import logging
import re
import secrets
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager
from datetime import datetime, timedelta, timezone
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, Header, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import AfterValidator, BaseModel, Field
from pydantic_core import PydanticCustomError
from starlette.background import BackgroundTask
from starlette.middleware.sessions import SessionMiddleware

from ..archive import keys
from ..custody.chain import Event
from ..clock import format_time
from ..custody.verify import verify_recording
from ..errors import (
    AccessError,
    ConflictError,
    EvidenceError,
    IntegrityError,
    NotFoundError,
    ObjectMissingError,
    StorageError,
    UsageError,
)
from .auth import (
    Action,
    FailedLogins,
    User,
    allowed,
    load_or_create_secret,
    may_see,
    token_label,
)
from .catalog import SearchFilters, missing_content_problem, parse_instant
from .clients import client_address, trusted_networks
from .ranges import RangeNotSatisfiable, parse_range
from .reasons import (
    NOTE_MAX_CHARS,
    REASON_MAX_CHARS,
    REASON_MIN_CHARS,
    checked_reason,
    checked_text,
    text_problem,
)
from .service import ApiNode, Poller

log = logging.getLogger(__name__)

API = "/api/v1"
SESSION_COOKIE = "evidence_session"
SESSION_MAX_AGE_S = 12 * 3600  # a working day; the console signs in again after it
# Each chunk costs a thread hop and a pass through the middleware: 2 MiB streamed 5-25 %
# faster than 1 MiB, for ~4 MB more memory a stream (benchmarks/api_range.py).
STREAM_CHUNK_BYTES = 2 * 1024 * 1024
ContentKind = Literal["original", "proxy", "poster"]
CASE_ID_MAX_CHARS = 100
_HOLD_ID = re.compile(r"^[0-9a-f]{16}$")
_GRANT_ID = re.compile(r"^[A-Za-z0-9_-]{20,64}$")

_STATUS = (
    (NotFoundError, 404),
    (ConflictError, 409),
    (UsageError, 422),
    (AccessError, 403),
    (StorageError, 503),
    (IntegrityError, 409),
)


class Unauthorized(Exception):
    def __init__(self, message: str, status: int = 401, retry_after_s: int = 0) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.retry_after_s = retry_after_s


# -- request and response bodies ---------------------------------------------------------

def _audit_text(min_chars: int, max_chars: int) -> AfterValidator:
    """The body-field form of ``reasons.checked_text``: trimmed, or a validation error naming
    the field (never quoting the value)."""
    def check(text: str) -> str:
        stripped = text.strip()
        problem = text_problem(stripped, min_chars=min_chars, max_chars=max_chars)
        if problem is not None:
            raise PydanticCustomError("audit_text", problem)
        return stripped
    return AfterValidator(check)


Reason = Annotated[str, Field(min_length=REASON_MIN_CHARS, max_length=REASON_MAX_CHARS,
                              description="Why; recorded in the audit chain (trimmed; no "
                                          "control characters)"),
                   _audit_text(REASON_MIN_CHARS, REASON_MAX_CHARS)]


class ReasonBody(BaseModel):
    reason: Reason


class GrantBody(BaseModel):
    kind: ContentKind = "proxy"
    reason: Reason


class HoldBody(BaseModel):
    reason: Reason
    case_id: str | None = Field(default=None, max_length=CASE_ID_MAX_CHARS)


class CaseBody(BaseModel):
    case_id: str = Field(min_length=1, max_length=CASE_ID_MAX_CHARS)
    reason: Reason


class NoteBody(BaseModel):
    text: Annotated[str, Field(min_length=1, max_length=NOTE_MAX_CHARS),
                    _audit_text(1, NOTE_MAX_CHARS)]


class RetentionBody(BaseModel):
    retain_until: datetime
    reason: Reason


class ExportBody(BaseModel):
    recordings: list[str] = Field(min_length=1, max_length=1000)
    reason: Reason
    include_proxies: bool = True


class RecordingSummary(BaseModel):
    id: str
    short_id: str
    station: str
    device_id: str | None
    officer_id: str | None
    recorded_start: str | None
    recorded_end: str | None
    time_source: str | None
    archived_at: str
    archive_deadline: str | None
    compliance: str
    size_bytes: int
    extension: str
    flags: list[str]
    cases: list[str]
    held: bool
    has_proxy: bool
    has_poster: bool
    duration_s: float | None


class SearchPage(BaseModel):
    items: list[RecordingSummary]
    next_cursor: str | None


class Me(BaseModel):
    name: str
    role: str
    officer_id: str | None


class CustodyEvent(BaseModel):
    writer: str
    seq: int
    time: str
    event: str
    actor: str
    recording: str | None = None
    details: dict[str, Any]
    entry_hash: str | None = None
    verified: bool
    problem: str | None


class Custody(BaseModel):
    recording: str
    verified: bool
    events: list[CustodyEvent]


class AuditRef(BaseModel):
    writer: str
    seq: int


class Grant(BaseModel):
    url: str
    expires_at: str
    audit: AuditRef


class Recorded(BaseModel):
    ok: bool = True
    audit: AuditRef
    details: dict[str, Any]


class VerifyResult(BaseModel):
    ok: bool
    problems: list[str]
    checked: list[str]
    audit: AuditRef


class AccessPage(BaseModel):
    items: list[CustodyEvent]
    next_cursor: str | None


def _ref(entry: dict[str, Any]) -> AuditRef:
    return AuditRef(writer=entry["writer"], seq=int(entry["seq"]))


# -- who is asking ------------------------------------------------------------------------

bearer = HTTPBearer(auto_error=False, description="a token from `evidence-daemon users add`")


class Gate:
    """Resolves a token to a user. Failed sign-ins are counted twice, and either count past
    ``api.failed_login_limit`` answers 429: per client address (seen through the trusted
    proxies: a brute force from one client is throttled, the other users behind the same
    proxy are not) and per token label (a leaked or revoked token replayed from many
    addresses). A valid token is refused only for its client's failures, never for its label's.
    """

    def __init__(self, node: ApiNode, by_client: FailedLogins, by_token: FailedLogins) -> None:
        self.node = node
        self.by_client = by_client
        self.by_token = by_token
        self.trusted_proxies = trusted_networks(node.config.api.trusted_proxies)

    def client(self, request: Request) -> str:
        """The address this request is counted and recorded under (``clients.py``)."""
        return client_address(request.client.host if request.client else None,
                              request.headers.getlist("x-forwarded-for"), self.trusted_proxies)

    def authenticate(self, request: Request, token: str | None) -> User:
        remote = self.client(request)
        if self.by_client.blocked(remote):
            raise Unauthorized("too many failed sign-ins from this address; wait and retry",
                               429, self.by_client.retry_after_s(remote))
        if not token:
            # Not a guess at a token, so not counted (a <video> without the session cookie
            # asks many times); still logged.
            log.info("request without a token from %s refused", remote)
            raise Unauthorized("a valid bearer token is required")
        user = self.node.users.authenticate(token)
        if user is not None:
            return user
        label = token_label(token)
        label_blocked = self.by_token.blocked(label)
        # Counted against the client even when the label is already blocked, so guesses that
        # share a label cannot go on unthrottled.
        from_client = self.by_client.failed(remote)
        with_token = self.by_token.failed(label)
        log.warning("sign-in failed from %s with token %s (not accepted; %d from this client, "
                    "%d with this token in the last %.0f s)", remote, label, from_client,
                    with_token, self.by_client.window_s)
        if label_blocked:
            raise Unauthorized("too many failed sign-ins with this token; wait and retry",
                               429, self.by_token.retry_after_s(label))
        raise Unauthorized("token not accepted (unknown or revoked)")


def current_user(request: Request,
                 credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
                 ) -> User:
    gate: Gate = request.app.state.gate
    return gate.authenticate(request, credentials.credentials if credentials else None)


CurrentUser = Annotated[User, Depends(current_user)]


# -- the app ------------------------------------------------------------------------------


def console_dir() -> Path:
    return Path(str(resources.files("evidence_daemon.api").joinpath("console")))


def create_app(node: ApiNode, *, poll: bool = True) -> FastAPI:
    """The ASGI app of one API node. ``poll`` runs the catalog poller for the app's lifetime."""
    limit, window_s = node.config.api.failed_login_limit, node.config.api.failed_login_window_s
    poller = Poller(node)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        # Packages are built here and deleted once sent; a crash can leave some behind. They
        # are copies (the archive keeps the evidence), so removing them loses nothing.
        for stale in (node.config.api.state_dir / "exports").glob("*.zip*"):
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
        # Served below behind a token like every other route; no Swagger UI (it would load
        # scripts from a CDN, which the console's CSP and offline sites forbid).
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
    )
    gate = Gate(node, FailedLogins(limit, window_s), FailedLogins(limit, window_s))
    app.state.gate = gate
    address = gate.client
    authenticate = gate.authenticate

    @app.exception_handler(EvidenceError)
    async def evidence_error(_: Request, exc: EvidenceError) -> JSONResponse:
        status = next((code for kind, code in _STATUS if isinstance(exc, kind)), 500)
        if status >= 500:
            log.error("request failed: %s", exc.message)
        return JSONResponse({"error": exc.message}, status_code=status)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        # One error shape for clients: {"error": text}, plus an itemised detail naming each
        # field and problem. FastAPI's own detail echoes each input back (a 1 MB reason came
        # back whole): never the input here.
        detail = validation_detail(exc.errors())
        problems = [f"{'.'.join(str(part) for part in error['loc'])}: {error['msg']}"
                    for error in detail]
        return JSONResponse({"error": "; ".join(problems) or "invalid request",
                             "detail": detail}, status_code=422)

    @app.exception_handler(Unauthorized)
    async def unauthorized(_: Request, exc: Unauthorized) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"}
        if exc.retry_after_s:
            headers["Retry-After"] = str(exc.retry_after_s)
        return JSONResponse({"error": exc.message}, status_code=exc.status, headers=headers)

    @app.middleware("http")
    async def security_headers(request: Request, call_next: Any) -> Response:
        response: Response = await call_next(request)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault(
            "Content-Security-Policy",
            "default-src 'self'; img-src 'self' data:; media-src 'self'; style-src 'self';"
            " script-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
        if request.url.path.startswith(API):
            response.headers.setdefault("Cache-Control", "no-store")
        return response

    def need(user: User, action: Action) -> None:
        if not allowed(user.role, action):
            raise AccessError(f"role {user.role} may not {action.value}")

    def visible(user: User, recording_id: str) -> Any:
        row = node.catalog.resolve(user, recording_id)
        if not may_see(user, row["officer_id"]):
            raise NotFoundError(f"no recording {recording_id}")
        return row

    # -- health, identity, session ------------------------------------------------------

    @app.get("/healthz", tags=["service"])
    def healthz() -> dict[str, Any]:
        return {"status": "ok", "writer": node.writer,
                "catalog": {**node.catalog.stats(), "last_poll": node.indexer.last_poll_at,
                            "last_error": poller.last_error}}

    @app.get("/metrics", include_in_schema=False)
    def metrics() -> Response:
        # For Prometheus, like /healthz without a token: counters and this node's chain health.
        return Response(generate_latest(node.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get(f"{API}/openapi.json", include_in_schema=False)
    def openapi(user: CurrentUser) -> dict[str, Any]:
        need(user, Action.ME)
        return app.openapi()

    @app.get(f"{API}/me", response_model=Me, tags=["session"])
    def me(user: CurrentUser) -> Me:
        need(user, Action.ME)
        return Me(name=user.name, role=user.role, officer_id=user.officer_id)

    @app.post(f"{API}/session", status_code=204, tags=["session"])
    def open_session(request: Request, user: CurrentUser) -> Response:
        """Set the cookie that lets this browser's media elements fetch player grants: a
        signed session naming the user (never the token), sent only to grant URLs."""
        request.session.clear()
        request.session["user"] = user.name
        return Response(status_code=204)

    @app.delete(f"{API}/session", status_code=204, tags=["session"])
    def close_session(request: Request) -> Response:
        """Forget the session (no token needed: signing out must work after a revocation).
        The cookie is only sent to grant URLs, so it is expired here explicitly."""
        request.session.clear()
        response = Response(status_code=204)
        response.delete_cookie(SESSION_COOKIE, path=f"{API}/grants", httponly=True,
                               samesite="strict")
        return response

    # -- recordings -----------------------------------------------------------------------

    @app.get(f"{API}/recordings", response_model=SearchPage, tags=["recordings"])
    def search(
        user: CurrentUser,
        officer: Annotated[str | None, Query(max_length=64)] = None,
        device: Annotated[str | None, Query(max_length=64)] = None,
        station: Annotated[str | None, Query(max_length=64)] = None,
        start_from: Annotated[str | None, Query(alias="from", max_length=64)] = None,
        start_to: Annotated[str | None, Query(alias="to", max_length=64)] = None,
        compliance: Literal["on_time", "late"] | None = None,
        case: Annotated[str | None, Query(max_length=100)] = None,
        flag: Annotated[str | None, Query(max_length=64)] = None,
        held: bool | None = None,
        id: Annotated[str | None, Query(max_length=64, pattern="^[0-9a-fA-F]{4,64}$")] = None,
        limit: Annotated[int, Query(ge=1)] = 50,
        cursor: Annotated[str | None, Query(max_length=400)] = None,
    ) -> dict[str, Any]:
        need(user, Action.READ)
        if limit > node.config.api.page_size_max:
            raise UsageError(f"limit: at most {node.config.api.page_size_max}")
        filters = SearchFilters(
            officer=officer, device=device, station=station,
            start_from=parse_instant(start_from, "from") if start_from else None,
            start_to=parse_instant(start_to, "to") if start_to else None,
            compliance=compliance, case=case, flag=flag, held=held, id_prefix=id,
        )
        items, next_cursor = node.catalog.search(user, filters, limit=limit, cursor=cursor)
        return {"items": items, "next_cursor": next_cursor}

    @app.get(f"{API}/recordings/{{recording_id}}", tags=["recordings"])
    def recording(user: CurrentUser, recording_id: str) -> dict[str, Any]:
        need(user, Action.READ)
        return node.catalog.detail(visible(user, recording_id))

    @app.get(f"{API}/recordings/{{recording_id}}/custody", response_model=Custody,
             tags=["recordings"])
    def custody(user: CurrentUser, recording_id: str) -> dict[str, Any]:
        need(user, Action.READ)
        row = visible(user, recording_id)
        events = node.catalog.events_of(row["sha256"])
        # An entry can verify (signed, chained) and still describe something wrong (a manifest
        # that does not match it): that is a problem too.
        return {"recording": row["sha256"], "events": events,
                "verified": all(event["verified"] and not event["problem"] for event in events)}

    # -- content --------------------------------------------------------------------------

    def content_target(row: Any, kind: str) -> tuple[str, int | None, str, str]:
        """(object key, size if known, media type, download name) of one kind of content."""
        sha256 = row["sha256"]
        if kind == "original":
            key = row["original_key"]
            if key != keys.original_key(sha256, row["extension"]):
                raise IntegrityError(f"catalog row of {sha256[:12]} names an unexpected key")
            extension = row["extension"] or "bin"
            media_type = _MEDIA_TYPES.get(extension, "application/octet-stream")
            return key, int(row["size_bytes"]), media_type, f"{sha256[:12]}_original.{extension}"
        if kind == "proxy":
            key = row["proxy_key"]
            if key is None:
                raise NotFoundError(f"recording {sha256[:12]} has no viewing copy (yet)")
            if key not in (keys.proxy_key(sha256, "mp4"), keys.proxy_key(sha256, "m4a")):
                raise IntegrityError(f"catalog row of {sha256[:12]} names an unexpected key")
            extension = key.rpartition(".")[2]
            return key, None, "video/mp4" if extension == "mp4" else "audio/mp4", \
                f"{sha256[:12]}_proxy.{extension}"
        key = row["poster_key"]
        if key is None:
            raise NotFoundError(f"recording {sha256[:12]} has no poster")
        if key != keys.poster_key(sha256):
            raise IntegrityError(f"catalog row of {sha256[:12]} names an unexpected key")
        return key, None, "image/jpeg", f"{sha256[:12]}_poster.jpg"

    def stored_size(row: Any, kind: str, key: str, known: int | None) -> int:
        """The size of the object to serve, checked in the archive (never only the catalog's
        word): ``ObjectMissingError`` (503) if it is gone, ``IntegrityError`` if its size is
        not the catalogued one."""
        stored = node.store.stat(key)
        stored_bytes = None if stored is None else stored.size_bytes
        problem = missing_content_problem(row["sha256"], kind, key, known, stored_bytes)
        if problem is not None or stored_bytes is None:
            raise (ObjectMissingError if stored_bytes is None else IntegrityError)(
                problem or f"{key} is not in the archive")
        return stored_bytes

    def checked_before_access(request: Request, user: User, row: Any, kind: str, key: str,
                              known: int | None, reason: str, via: str) -> int:
        """``stored_size``, and when the object cannot be served the failed attempt goes into
        the audit chain as its own ``access-failed`` event (never an ``accessed``) before the
        error is answered."""
        try:
            return stored_size(row, kind, key, known)
        except (ObjectMissingError, IntegrityError) as exc:
            entry = node.record(Event.ACCESS_FAILED, recording=row["sha256"], actor=user.actor,
                                details={"kind": kind, "key": key, "reason": reason,
                                         "via": via, "problem": exc.message,
                                         "remote": address(request)})
            raise type(exc)(f"{exc.message}; this attempt is recorded as "
                            f"{entry['writer']}#{entry['seq']}") from exc

    def stream(key: str, size: int, range_header: str | None, media_type: str,
               filename: str, *, download: bool, before_first_byte: Any) -> Response:
        try:
            byte_range = parse_range(range_header, size)
        except RangeNotSatisfiable:
            return Response(status_code=416, headers={"Content-Range": f"bytes */{size}"})
        before_first_byte(range_header if byte_range is not None else None)
        disposition = "attachment" if download else "inline"
        headers = {"Accept-Ranges": "bytes",
                   "Content-Disposition": f'{disposition}; filename="{filename}"'}
        if byte_range is None:
            offset, length, status = 0, size, 200
        else:
            offset, end = byte_range
            length, status = end - offset + 1, 206
            headers["Content-Range"] = f"bytes {offset}-{end}/{size}"
        headers["Content-Length"] = str(length)

        def body() -> Iterator[bytes]:
            if length:
                yield from node.store.iter_chunks(key, STREAM_CHUNK_BYTES, offset=offset,
                                                  length=length)

        return StreamingResponse(body(), status_code=status, media_type=media_type,
                                 headers=headers)

    @app.get(f"{API}/recordings/{{recording_id}}/content/{{kind}}", tags=["content"],
             responses={200: {"content": {"application/octet-stream": {}}},
                        206: {"description": "the requested byte range"},
                        416: {"description": "the range is outside the object"}})
    def content(
        request: Request,
        user: CurrentUser,
        recording_id: str,
        kind: ContentKind,
        reason: Annotated[str | None, Query(min_length=REASON_MIN_CHARS,
                                            max_length=REASON_MAX_CHARS)] = None,
        x_evidence_reason: Annotated[str | None, Header(min_length=REASON_MIN_CHARS,
                                                        max_length=REASON_MAX_CHARS)] = None,
        download: bool = False,
        range_header: Annotated[str | None, Header(alias="range", max_length=200)] = None,
    ) -> Response:
        need(user, Action.CONTENT)
        if reason is None and x_evidence_reason is None:
            raise UsageError("reason: say why you access this recording (query parameter "
                             "reason or header X-Evidence-Reason); it is recorded")
        why = checked_reason(reason if reason is not None else str(x_evidence_reason))
        row = visible(user, recording_id)
        key, known_size, media_type, filename = content_target(row, kind)
        size = checked_before_access(request, user, row, kind, key, known_size, why, "api")

        def record(asked_range: str | None) -> None:
            node.record(Event.ACCESSED, recording=row["sha256"], actor=user.actor, details={
                "kind": kind, "key": key, "reason": why, "via": "api", "range": asked_range,
                "remote": address(request)})

        return stream(key, size, range_header, media_type, filename, download=download,
                      before_first_byte=record)

    @app.post(f"{API}/recordings/{{recording_id}}/grants", response_model=Grant,
              status_code=201, tags=["content"])
    def grant(request: Request, user: CurrentUser, recording_id: str, body: GrantBody) -> Grant:
        """A player link: one recorded access, usable by this user for ``api.grant_ttl_s``."""
        need(user, Action.CONTENT)
        row = visible(user, recording_id)
        key, known_size, _, _ = content_target(row, body.kind)
        checked_before_access(request, user, row, body.kind, key, known_size, body.reason,
                              "player")
        grant_id = secrets.token_urlsafe(24)
        entry = node.record(Event.ACCESSED, recording=row["sha256"], actor=user.actor, details={
            "kind": body.kind, "key": key, "reason": body.reason, "via": "player",
            "range": None, "grant": grant_id[:8], "remote": address(request)})
        now = node.clock()
        expires = now + timedelta(seconds=node.config.api.grant_ttl_s)
        node.database.execute(
            "INSERT INTO grants (id, user, recording, kind, audit_seq, created_at, expires_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (grant_id, user.name, row["sha256"], body.kind, entry["seq"], format_time(now),
             format_time(expires)))
        return Grant(url=f"{API}/grants/{grant_id}", expires_at=format_time(expires),
                     audit=_ref(entry))

    @app.get(f"{API}/grants/{{grant_id}}", tags=["content"],
             responses={200: {"content": {"application/octet-stream": {}}},
                        206: {"description": "the requested byte range"},
                        416: {"description": "the range is outside the object"}})
    def grant_content(
        request: Request,
        grant_id: str,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
        download: bool = False,
        range_header: Annotated[str | None, Header(alias="range", max_length=200)] = None,
    ) -> Response:
        """Serve a grant to the user it was made for (bearer token, or the console's session)."""
        session_user = request.session.get("user") if not credentials else None
        if isinstance(session_user, str):
            found_user = node.users.active(session_user)
            if found_user is None:
                request.session.clear()
                raise Unauthorized("your session ended (token revoked); sign in again")
            user = found_user
        else:
            user = authenticate(request, credentials.credentials if credentials else None)
        if not _GRANT_ID.fullmatch(grant_id):
            raise NotFoundError("no such grant")
        found = node.database.query_one("SELECT * FROM grants WHERE id = ?", (grant_id,))
        if found is None or found["user"] != user.name:
            raise NotFoundError("no such grant")
        if datetime.fromisoformat(found["expires_at"]) <= node.clock():
            raise NotFoundError("this player link has expired; open the recording again")
        need(user, Action.CONTENT)
        row = visible(user, found["recording"])
        key, known_size, media_type, filename = content_target(row, found["kind"])
        # Its access is on record already; an object gone since is an error, not an empty 200.
        return stream(key, stored_size(row, found["kind"], key, known_size), range_header,
                      media_type, filename, download=download, before_first_byte=lambda _: None)

    # -- verification and supervisors' annotations ----------------------------------------

    @app.post(f"{API}/recordings/{{recording_id}}/verify", response_model=VerifyResult,
              tags=["recordings"])
    def verify_now(request: Request, user: CurrentUser, recording_id: str,
                   body: ReasonBody) -> VerifyResult:
        need(user, Action.VERIFY)
        row = visible(user, recording_id)
        events = node.catalog.events_of(row["sha256"])
        report = verify_recording(node.store, row["sha256"], [e for e in events if e["verified"]])
        problems = [str(problem) for problem in report.problems]
        problems += [f"{e['writer']}#{e['seq']} ({e['event']}): {e['problem']}"
                     for e in events if not e["verified"] or e["problem"]]
        checked = [row["original_key"], row["manifest_key"]] + [
            key for key in (row["proxy_key"], row["poster_key"]) if key]
        entry = node.record(Event.VERIFIED, recording=row["sha256"], actor=user.actor, details={
            "ok": not problems, "problems": problems, "checked": checked,
            "reason": body.reason, "remote": address(request)})
        return VerifyResult(ok=not problems, problems=problems, checked=checked, audit=_ref(entry))

    @app.post(f"{API}/recordings/{{recording_id}}/holds", response_model=Recorded,
              status_code=201, tags=["annotations"])
    def place_hold(user: CurrentUser, recording_id: str, body: HoldBody) -> Recorded:
        need(user, Action.ANNOTATE)
        row = visible(user, recording_id)
        case_id = None if body.case_id is None else checked_case_id(body.case_id)
        hold_id = secrets.token_hex(8)
        applied = node.store.set_legal_hold(row["original_key"], True)
        details = {"hold_id": hold_id, "reason": body.reason, "case_id": case_id,
                   "applied": applied}
        entry = node.record(Event.HOLD_PLACED, recording=row["sha256"], actor=user.actor,
                            details=details)
        return Recorded(audit=_ref(entry), details=details)

    @app.delete(f"{API}/recordings/{{recording_id}}/holds/{{hold_id}}", response_model=Recorded,
                tags=["annotations"])
    def release_hold(user: CurrentUser, recording_id: str, hold_id: str,
                     reason: Annotated[str, Query(min_length=REASON_MIN_CHARS,
                                                  max_length=REASON_MAX_CHARS)]) -> Recorded:
        need(user, Action.ANNOTATE)
        reason = checked_reason(reason)
        row = visible(user, recording_id)
        open_holds = node.catalog.open_holds(row["sha256"])
        if not _HOLD_ID.fullmatch(hold_id) or hold_id not in open_holds:
            raise NotFoundError(f"no open hold {hold_id} on recording {row['sha256'][:12]}")
        applied = False
        if open_holds == {hold_id}:  # the object stays held while any other hold is open
            applied = node.store.set_legal_hold(row["original_key"], False)
        details = {"hold_id": hold_id, "reason": reason, "applied": applied}
        entry = node.record(Event.HOLD_RELEASED, recording=row["sha256"], actor=user.actor,
                            details=details)
        return Recorded(audit=_ref(entry), details=details)

    @app.post(f"{API}/recordings/{{recording_id}}/cases", response_model=Recorded,
              status_code=201, tags=["annotations"])
    def link_case(user: CurrentUser, recording_id: str, body: CaseBody) -> Recorded:
        need(user, Action.ANNOTATE)
        row = visible(user, recording_id)
        case_id = checked_case_id(body.case_id)
        if case_id in node.catalog.detail(row)["cases"]:
            raise ConflictError(f"recording {row['sha256'][:12]} is already linked to {case_id}")
        details = {"case_id": case_id, "reason": body.reason}
        entry = node.record(Event.CASE_LINKED, recording=row["sha256"], actor=user.actor,
                            details=details)
        return Recorded(audit=_ref(entry), details=details)

    @app.delete(f"{API}/recordings/{{recording_id}}/cases/{{case_id}}", response_model=Recorded,
                tags=["annotations"])
    def unlink_case(user: CurrentUser, recording_id: str, case_id: str,
                    reason: Annotated[str, Query(min_length=REASON_MIN_CHARS,
                                                 max_length=REASON_MAX_CHARS)]) -> Recorded:
        need(user, Action.ANNOTATE)
        reason = checked_reason(reason)
        row = visible(user, recording_id)
        if case_id not in node.catalog.detail(row)["cases"]:
            raise NotFoundError(f"recording {row['sha256'][:12]} is not linked to {case_id!r}")
        details = {"case_id": case_id, "reason": reason}
        entry = node.record(Event.CASE_UNLINKED, recording=row["sha256"], actor=user.actor,
                            details=details)
        return Recorded(audit=_ref(entry), details=details)

    @app.post(f"{API}/recordings/{{recording_id}}/notes", response_model=Recorded,
              status_code=201, tags=["annotations"])
    def add_note(user: CurrentUser, recording_id: str, body: NoteBody) -> Recorded:
        need(user, Action.ANNOTATE)
        row = visible(user, recording_id)
        details = {"text": body.text}
        entry = node.record(Event.NOTE_ADDED, recording=row["sha256"], actor=user.actor,
                            details=details)
        return Recorded(audit=_ref(entry), details=details)

    @app.post(f"{API}/recordings/{{recording_id}}/retention", response_model=Recorded,
              tags=["annotations"])
    def extend_retention(user: CurrentUser, recording_id: str, body: RetentionBody) -> Recorded:
        need(user, Action.ANNOTATE)
        row = visible(user, recording_id)
        until = body.retain_until
        if until.tzinfo is None:
            until = until.replace(tzinfo=timezone.utc)
        if until <= node.clock():
            raise UsageError("retain_until: must be in the future")
        if until.year > 2200:
            raise UsageError("retain_until: later than 2200 is not a retention date")
        current = row["retain_until"]
        if current and datetime.fromisoformat(current) >= until:
            raise ConflictError(f"already retained until {current}; retention is never shortened")
        in_force = node.store.extend_retention(row["original_key"], until)
        details = {"retain_until": format_time(until), "in_force": in_force,
                   "reason": body.reason}
        entry = node.record(Event.RETENTION_EXTENDED, recording=row["sha256"], actor=user.actor,
                            details=details)
        return Recorded(audit=_ref(entry), details=details)

    # -- exports --------------------------------------------------------------------------

    @app.post(f"{API}/exports", tags=["exports"],
              responses={200: {"content": {"application/zip": {}}}})
    def export(request: Request, user: CurrentUser, body: ExportBody) -> Response:
        from .package import export_recordings

        need(user, Action.EXPORT)
        if len(body.recordings) > node.config.api.max_export_recordings:
            raise UsageError(f"recordings: at most {node.config.api.max_export_recordings} "
                             "per package")
        ids = [visible(user, recording_id)["sha256"] for recording_id in body.recordings]
        exports = node.config.api.state_dir / "exports"
        exports.mkdir(parents=True, exist_ok=True, mode=0o700)
        out = exports / f"{secrets.token_hex(16)}.zip"
        try:
            info = export_recordings(
                node.store, node.database, node.ledger, node.index_own, ids, out,
                reason=body.reason, actor=user.actor, include_proxies=body.include_proxies,
                remote=address(request), clock=node.clock, signing_key=node.private_key)
        except BaseException:
            out.unlink(missing_ok=True)
            raise
        return FileResponse(out, media_type="application/zip",
                            filename=f"evidence-{info.package_id[:12]}.zip",
                            background=BackgroundTask(out.unlink, missing_ok=True))

    # -- audit, reports, users ------------------------------------------------------------

    @app.get(f"{API}/audit/accesses", response_model=AccessPage, tags=["audit"])
    def accesses(
        user: CurrentUser,
        recording: Annotated[str | None, Query(max_length=64)] = None,
        of_user: Annotated[str | None, Query(alias="user", max_length=64)] = None,
        start_from: Annotated[str | None, Query(alias="from", max_length=64)] = None,
        start_to: Annotated[str | None, Query(alias="to", max_length=64)] = None,
        limit: Annotated[int, Query(ge=1)] = 100,
        cursor: Annotated[str | None, Query(max_length=400)] = None,
    ) -> dict[str, Any]:
        need(user, Action.AUDIT)
        if recording is None and of_user is None:
            raise UsageError("give recording=ID or user=NAME (or both)")
        if limit > node.config.api.page_size_max:
            raise UsageError(f"limit: at most {node.config.api.page_size_max}")
        sha256 = None
        if recording is not None:
            sha256 = node.catalog.resolve(user, recording)["sha256"] if allowed(
                user.role, Action.READ) else _full_id(node, recording)
        items, next_cursor = node.catalog.accesses(
            recording=sha256, actor=f"user:{of_user}" if of_user is not None else None,
            start_from=parse_instant(start_from, "from") if start_from else None,
            start_to=parse_instant(start_to, "to") if start_to else None,
            limit=limit, cursor=cursor)
        return {"items": items, "next_cursor": next_cursor}

    @app.get(f"{API}/compliance/report", tags=["reports"])
    def report(
        user: CurrentUser,
        start_from: Annotated[str | None, Query(alias="from", max_length=64)] = None,
        start_to: Annotated[str | None, Query(alias="to", max_length=64)] = None,
        station: Annotated[str | None, Query(max_length=64)] = None,
    ) -> dict[str, Any]:
        need(user, Action.REPORT)
        return node.catalog.report(
            start_from=parse_instant(start_from, "from") if start_from else None,
            start_to=parse_instant(start_to, "to") if start_to else None,
            station=station)

    @app.get(f"{API}/users", tags=["users"])
    def users(user: CurrentUser) -> list[dict[str, Any]]:
        need(user, Action.USERS)
        return node.users.list()

    # -- the web console ------------------------------------------------------------------

    console = console_dir()

    @app.get("/", include_in_schema=False)
    def index() -> Response:
        page = console / "index.html"
        if not page.is_file():
            return JSONResponse({"error": "the web console is not installed"}, status_code=404)
        return FileResponse(page, media_type="text/html")

    app.mount("/console", StaticFiles(directory=console, check_dir=False), name="console")
    app.add_middleware(
        SessionMiddleware, secret_key=load_or_create_secret(node.config.api.state_dir / "session.key"),
        session_cookie=SESSION_COOKIE, max_age=SESSION_MAX_AGE_S, path=f"{API}/grants",
        same_site="strict", https_only=node.config.api.secure_cookies)
    return app


def checked_case_id(text: str) -> str:
    """A case id as it goes into the audit chain: audit text (``reasons.py``) without '/' or
    '\\' (it appears in search filters and package paths)."""
    case_id = checked_text(text, "case_id", min_chars=1, max_chars=CASE_ID_MAX_CHARS)
    if "/" in case_id or "\\" in case_id:
        raise UsageError("case_id: no '/' or '\\'")
    return case_id


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


def _full_id(node: ApiNode, recording: str) -> str:
    """An id for audit queries by roles that cannot read recordings (admin): the full
    SHA-256 is required, and it need not be in the catalog (accesses to a recording that was
    never indexed here still show)."""
    lowered = recording.lower()
    if not re.fullmatch(r"[0-9a-f]{64}", lowered):
        raise UsageError("recording: give the full 64-digit id")
    return lowered


_MEDIA_TYPES = {
    "mp4": "video/mp4", "m4v": "video/mp4", "mov": "video/quicktime", "avi": "video/x-msvideo",
    "mkv": "video/x-matroska", "ts": "video/mp2t", "3gp": "video/3gpp", "wav": "audio/wav",
    "mp3": "audio/mpeg", "m4a": "audio/mp4", "amr": "audio/amr", "aac": "audio/aac",
    "jpg": "image/jpeg", "jpeg": "image/jpeg", "png": "image/png",
}
