"""Content: a recording's original, viewing copy or poster, directly or through a player grant.

The order is the contract (``access.py``): authorise, validate the id and the range, check the
object in the archive, store the ``accessed`` event, and only then stream. A request with a
reason is one access; a grant is one access usable for ``api.grant_ttl_s`` by the user it was
made for (bearer token, or the console's signed session cookie), so a ``<video>`` element's
many range requests are not hundreds of events. Never a byte before its event is stored.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request, Response
from fastapi.responses import StreamingResponse

from ...clock import format_time
from ...errors import UsageError
from ..access import ContentTarget, content_target
from ..auth import Action, User
from ..bodies import AuditRef, ContentKind, Grant, GrantBody
from ..gate import Credentials, Node, Remote, Unauthorized, check, gate_of, require
from ..grants import new_grant_id
from ..ranges import RangeNotSatisfiable, parse_range
from ..reasons import REASON_MAX_CHARS, REASON_MIN_CHARS, checked_reason
from ..service import ApiNode
from . import API
from ...i18n import _

# Each chunk costs a thread hop and a pass through the middleware: 2 MiB streamed 5-25 %
# faster than 1 MiB, for ~4 MB more memory a stream (benchmarks/api_range.py).
STREAM_CHUNK_BYTES = 2 * 1024 * 1024
_STREAMED: dict[int | str, dict[str, Any]] = {200: {"content": {"application/octet-stream": {}}},
             206: {"description": "the requested byte range"},
             416: {"description": "the range is outside the object"}}

router = APIRouter(prefix=API, tags=["content"])
RangeHeader = Annotated[str | None, Header(alias="range", max_length=200)]


def stream(node: ApiNode, target: ContentTarget, size: int, range_header: str | None, *,
           download: bool, before_first_byte: Callable[[str | None], object]) -> Response:
    """Answer with ``target``'s bytes (all, or the one range asked for; 416 outside it).
    ``before_first_byte`` is told the range served (None: everything) and must succeed
    before the response exists."""
    try:
        byte_range = parse_range(range_header, size)
    except RangeNotSatisfiable:
        return Response(status_code=416, headers={"Content-Range": f"bytes */{size}"})
    before_first_byte(range_header if byte_range is not None else None)
    disposition = "attachment" if download else "inline"
    headers = {"Accept-Ranges": "bytes",
               "Content-Disposition": f'{disposition}; filename="{target.filename}"'}
    if byte_range is None:
        offset, length, status = 0, size, 200
    else:
        offset, end = byte_range
        length, status = end - offset + 1, 206
        headers["Content-Range"] = f"bytes {offset}-{end}/{size}"
    headers["Content-Length"] = str(length)

    def body() -> Iterator[bytes]:
        if length:
            yield from node.store.iter_chunks(target.key, STREAM_CHUNK_BYTES, offset=offset,
                                              length=length)

    return StreamingResponse(body(), status_code=status, media_type=target.media_type,
                             headers=headers)


@router.get("/recordings/{recording_id}/content/{kind}", responses=_STREAMED)
def content(
    node: Node,
    user: Annotated[User, Depends(require(Action.CONTENT))],
    remote: Remote,
    recording_id: str,
    kind: ContentKind,
    reason: Annotated[str | None, Query(min_length=REASON_MIN_CHARS,
                                        max_length=REASON_MAX_CHARS)] = None,
    x_evidence_reason: Annotated[str | None, Header(min_length=REASON_MIN_CHARS,
                                                    max_length=REASON_MAX_CHARS)] = None,
    download: bool = False,
    range_header: RangeHeader = None,
) -> Response:
    if reason is None and x_evidence_reason is None:
        raise UsageError(_("reason: say why you access this recording (query parameter reason or "
                           "header X-Evidence-Reason); it is recorded"))
    why = checked_reason(reason if reason is not None else str(x_evidence_reason))
    row = node.catalog.visible(user, recording_id)
    target = content_target(row, kind)
    size = node.content.checked_size(user, row, target, reason=why, via="api", remote=remote)

    def record(asked_range: str | None) -> None:
        node.content.accessed(user, row, target, reason=why, via="api", remote=remote,
                              asked_range=asked_range)

    return stream(node, target, size, range_header, download=download, before_first_byte=record)


@router.post("/recordings/{recording_id}/grants", response_model=Grant, status_code=201)
def grant(node: Node, user: Annotated[User, Depends(require(Action.CONTENT))], remote: Remote,
          recording_id: str, body: GrantBody) -> Grant:
    """A player link: one recorded access, usable by this user for ``api.grant_ttl_s``."""
    row = node.catalog.visible(user, recording_id)
    target = content_target(row, body.kind)
    node.content.checked_size(user, row, target, reason=body.reason, via="player",
                              remote=remote)
    grant_id = new_grant_id()
    entry = node.content.accessed(user, row, target, reason=body.reason, via="player",
                                  remote=remote, grant=grant_id)
    expires = node.grants.add(grant_id, user=user.name, recording=row["sha256"],
                              kind=body.kind, audit_seq=int(entry["seq"]))
    return Grant(url=f"{API}/grants/{grant_id}", expires_at=format_time(expires),
                 audit=AuditRef.of(entry))


def grant_holder(request: Request, node: Node, credentials: Credentials) -> User:
    """Who fetches a grant: the bearer token's user, else the console session's (a revoked
    user's session ends here)."""
    session_user = request.session.get("user") if not credentials else None
    if isinstance(session_user, str):
        found_user = node.users.active(session_user)
        if found_user is None:
            request.session.clear()
            raise Unauthorized("your session ended (token revoked); sign in again")
        return found_user
    return gate_of(request).authenticate(request,
                                         credentials.credentials if credentials else None)


@router.get("/grants/{grant_id}", responses=_STREAMED)
def grant_content(
    node: Node,
    user: Annotated[User, Depends(grant_holder)],
    grant_id: str,
    download: bool = False,
    range_header: RangeHeader = None,
) -> Response:
    """Serve a grant to the user it was made for (bearer token, or the console's session)."""
    found = node.grants.find(grant_id, user=user.name)
    check(user, Action.CONTENT)
    row = node.catalog.visible(user, found.recording)
    target = content_target(row, found.kind)
    # Its access is on record already; an object gone since is an error, not an empty 200.
    return stream(node, target, node.content.stored_size(row, target), range_header,
                  download=download, before_first_byte=lambda _: None)
