"""Recordings: search, one recording's detail and custody timeline, and verifying it now.

Reading routes show only what the catalog holds about recordings the caller may see (an
officer's queries carry their officer id; anything else is 404, so ids cannot be probed).
Verifying re-reads the archive and is itself recorded (a ``verified`` event).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query

from ...custody.chain import Event
from ...custody.verify import verify_recording
from ...errors import UsageError
from ..auth import Action, User
from ..bodies import AuditRef, Custody, ReasonBody, SearchPage, VerifyResult
from ..catalog import SearchFilters, parse_instant
from ..gate import Node, Remote, require
from . import API
from ...i18n import _

router = APIRouter(prefix=f"{API}/recordings", tags=["recordings"])
Reader = Annotated[User, Depends(require(Action.READ))]


def page_limit(node: Node, limit: int) -> int:
    if limit > node.config.api.page_size_max:
        raise UsageError(_("limit: at most {page_size_max}").format(
            page_size_max=node.config.api.page_size_max))
    return limit


def optional_instant(text: str | None, what: str) -> str | None:
    return parse_instant(text, what) if text else None


@router.get("", response_model=SearchPage)
def search(
    node: Node,
    user: Reader,
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
    limit = page_limit(node, limit)
    filters = SearchFilters(
        officer=officer, device=device, station=station,
        start_from=optional_instant(start_from, "from"),
        start_to=optional_instant(start_to, "to"),
        compliance=compliance, case=case, flag=flag, held=held, id_prefix=id,
    )
    items, next_cursor = node.catalog.search(user, filters, limit=limit, cursor=cursor)
    return {"items": items, "next_cursor": next_cursor}


@router.get("/{recording_id}")
def recording(node: Node, user: Reader, recording_id: str) -> dict[str, Any]:
    return node.catalog.detail(node.catalog.visible(user, recording_id))


@router.get("/{recording_id}/custody", response_model=Custody)
def custody(node: Node, user: Reader, recording_id: str) -> dict[str, Any]:
    row = node.catalog.visible(user, recording_id)
    events = node.catalog.events_of(row["sha256"])
    # An entry can verify (signed, chained) and still describe something wrong (a manifest
    # that does not match it): that is a problem too.
    return {"recording": row["sha256"], "events": events,
            "verified": all(event["verified"] and not event["problem"] for event in events)}


@router.post("/{recording_id}/verify", response_model=VerifyResult)
def verify_now(node: Node, user: Annotated[User, Depends(require(Action.VERIFY))],
               remote: Remote, recording_id: str, body: ReasonBody) -> VerifyResult:
    row = node.catalog.visible(user, recording_id)
    events = node.catalog.events_of(row["sha256"])
    report = verify_recording(node.store, row["sha256"], [e for e in events if e["verified"]])
    problems = [str(problem) for problem in report.problems]
    problems += [f"{e['writer']}#{e['seq']} ({e['event']}): {e['problem']}"
                 for e in events if not e["verified"] or e["problem"]]
    checked = [row["original_key"], row["manifest_key"]] + [
        key for key in (row["proxy_key"], row["poster_key"]) if key]
    entry = node.record(Event.VERIFIED, recording=row["sha256"], actor=user.actor, details={
        "ok": not problems, "problems": problems, "checked": checked,
        "reason": body.reason, "remote": remote})
    return VerifyResult(ok=not problems, problems=problems, checked=checked,
                        audit=AuditRef.of(entry))
