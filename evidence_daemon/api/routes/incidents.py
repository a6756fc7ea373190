"""Incidents from dispatch records and their footage coverage; supervisors' review samples.

Importing (supervisors, admins) sends the dispatch system's CSV or JSON export as the request
body; the good rows load, the bad ones come back by line. Coverage is read from what the node
stored (``incidents.IncidentBook``), so listing is an indexed query. A suggested recording is
confirmed as a case link (the incident id is the case id) or removed from the incident, each
a signed event; review samples are drawn, read and marked through ``reviews.ReviewBook``.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field

from ...clock import format_time
from ...errors import UsageError
from ...incidents.coverage import Coverage
from ...incidents.report import coverage_rows
from ...incidents.sampling import SamplePeriod
from ..auth import Action, User
from ..bodies import NoteText, Reason, Recorded
from ..catalog import parse_instant
from ..gate import Node, require
from ..incidents import import_dispatch
from . import API
from .annotations import ReasonQuery
from ...i18n import _

router = APIRouter(prefix=API, tags=["incidents"])
Importer = Annotated[User, Depends(require(Action.INCIDENTS))]
Reader = Annotated[User, Depends(require(Action.REPORT))]
Annotator = Annotated[User, Depends(require(Action.ANNOTATE))]
Reviewer = Annotated[User, Depends(require(Action.REVIEW))]
MAX_IMPORT_BYTES = 50 * 1024 * 1024


@router.post("/incidents", status_code=201)
async def import_incidents(node: Node, user: Importer, request: Request,
                           name: Annotated[str, Query(max_length=200)] = "api") -> dict[str, Any]:
    data = await request.body()
    if len(data) > MAX_IMPORT_BYTES:
        raise UsageError(_("a dispatch export may be at most {MAX_IMPORT_BYTES} MiB; split it").format(
            MAX_IMPORT_BYTES=MAX_IMPORT_BYTES // 2 ** 20))
    result = import_dispatch(node.incidents, node.store, node.record, data, name=name,
                             actor=user.actor, zone=ZoneInfo(node.config.station.timezone),
                             now=node.clock())
    return {"document": result.document, "audit_seq": result.seq, **result.counts,
            "problems": [{"line": p.line, "reason": p.reason} for p in result.problems]}


@router.get("/incidents")
def list_incidents(
        node: Node, user: Reader,
        coverage: Coverage | None = None, officer: str | None = None,
        ended_from: Annotated[str | None, Query(alias="from")] = None,
        ended_to: Annotated[str | None, Query(alias="to")] = None,
        cursor: str | None = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 50) -> dict[str, Any]:
    after = None
    if cursor:
        end, _bar, incident_id = cursor.partition("|")
        if not incident_id:
            raise UsageError(_("cursor: give the next_cursor of the previous page"))
        after = (end, incident_id)
    rows = node.incidents.page(
        state=coverage, officer=officer,
        ended_after=parse_instant(ended_from, "from") if ended_from else None,
        ended_before=parse_instant(ended_to, "to") if ended_to else None,
        after=after, limit=limit)
    last = rows[-1] if len(rows) == limit else None
    return {"items": [row.to_json() for row in rows],
            "counts": {str(state): n for state, n in node.incidents.counts().items()},
            "next_cursor": (f"{format_time(last.incident.end)}|{last.incident.incident_id}"
                            if last is not None else None)}


@router.get("/incidents/coverage")
def coverage_report(node: Node, user: Reader, by: str = "officer",
                    period_from: Annotated[str, Query(alias="from")] = "1970-01-01T00:00:00+00:00",
                    period_to: Annotated[str, Query(alias="to")] = "9999-01-01T00:00:00+00:00",
                    ) -> dict[str, Any]:
    start = datetime.fromisoformat(parse_instant(period_from, "from"))
    end = datetime.fromisoformat(parse_instant(period_to, "to"))
    try:
        rows = coverage_rows(node.incidents.ended_between(start, end), by=by)
    except ValueError as exc:
        raise UsageError(_("by: {exc}").format(exc=exc)) from None
    return {"by": by, "from": start.isoformat(), "to": end.isoformat(), "groups": rows}


@router.get("/incidents/{incident_id}")
def incident_detail(node: Node, user: Reader, incident_id: str) -> dict[str, Any]:
    return node.incidents.page_one(incident_id).to_json()


class LinkBody(BaseModel):
    recording: str = Field(min_length=12, max_length=64)
    reason: Reason


@router.post("/incidents/{incident_id}/links", response_model=Recorded, status_code=201)
def confirm_link(node: Node, user: Annotator, incident_id: str, body: LinkBody) -> Recorded:
    """Confirm a suggested recording: a case link with the incident id as the case id."""
    incident = node.incidents.page_one(incident_id)
    row = node.catalog.visible(user, body.recording)
    if row["sha256"] not in incident.recordings:
        raise UsageError(_("recording {sha256} is not suggested for incident {incident_id}; link "
                           "it as a case from the recording instead").format(
                               sha256=row['sha256'][:12], incident_id=incident_id))
    return node.annotations.link_case(user, row["sha256"], incident_id, reason=body.reason)


@router.delete("/incidents/{incident_id}/links/{recording}")
def remove_link(node: Node, user: Annotator, incident_id: str, recording: str,
                reason: ReasonQuery) -> dict[str, Any]:
    row = node.catalog.visible(user, recording)
    entry = node.incidents.remove_suggestion(node.record, incident_id, row["sha256"],
                                             actor=user.actor, reason=reason)
    node.incidents.refresh(node.clock(), incident_ids=[incident_id])
    return {"ok": True, "audit": {"writer": entry["writer"], "seq": entry["seq"]}}


class SampleBody(BaseModel):
    period_from: datetime = Field(alias="from")
    period_to: datetime = Field(alias="to")
    per_officer: int = Field(ge=1, le=1000)


class ReviewBody(BaseModel):
    note: NoteText


@router.post("/reviews", status_code=201)
def draw_sample(node: Node, user: Reviewer, body: SampleBody) -> dict[str, Any]:
    try:
        period = SamplePeriod(_aware(body.period_from), _aware(body.period_to), body.per_officer)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    return node.reviews.sample(period, actor=user.actor, now=node.clock()).to_json()


@router.get("/reviews")
def list_samples(node: Node, user: Reader) -> dict[str, Any]:
    return {"samples": [{k: v for k, v in sample.to_json().items() if k != "items"}
                        for sample in node.reviews.samples()],
            "completion": node.reviews.completion()}


@router.get("/reviews/{sample_id}")
def sample_detail(node: Node, user: Reader, sample_id: str) -> dict[str, Any]:
    return node.reviews.get(sample_id).to_json()


@router.post("/reviews/{sample_id}/items/{recording}")
def mark_reviewed(node: Node, user: Reviewer, sample_id: str, recording: str,
                  body: ReviewBody) -> dict[str, Any]:
    row = node.catalog.visible(user, recording)
    item = node.reviews.mark_reviewed(sample_id, row["sha256"], actor=user.actor, note=body.note)
    return {"sha256": item.sha256, "officer_id": item.officer_id, "supervisor": item.supervisor,
            "reviewed_at": item.reviewed_at, "note": item.note}


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=timezone.utc)
