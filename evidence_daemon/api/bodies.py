"""The API's request and response bodies (pydantic): what a client may send and gets back.

Every text a person sends to be kept in the audit chain is checked here by ``reasons.py`` as
the body is parsed, so a route never sees an unchecked reason or note; a validation error
names the field and never quotes the value. Plain models only: no I/O, no routes.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, Field
from pydantic_core import PydanticCustomError

from .reasons import (
    CASE_ID_MAX_CHARS,
    NOTE_MAX_CHARS,
    REASON_MAX_CHARS,
    REASON_MIN_CHARS,
    text_problem,
)

ContentKind = Literal["original", "proxy", "poster"]


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


# -- requests ------------------------------------------------------------------------------

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


NoteText = Annotated[str, Field(min_length=1, max_length=NOTE_MAX_CHARS),
                     _audit_text(1, NOTE_MAX_CHARS)]


class NoteBody(BaseModel):
    text: NoteText


class RetentionBody(BaseModel):
    retain_until: datetime
    reason: Reason


class ExportBody(BaseModel):
    recordings: list[str] = Field(min_length=1, max_length=1000)
    reason: Reason
    include_proxies: bool = True


# -- responses -----------------------------------------------------------------------------

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

    @classmethod
    def of(cls, entry: dict[str, Any]) -> AuditRef:
        """The reference to a ledger entry this node just appended."""
        return cls(writer=entry["writer"], seq=int(entry["seq"]))


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
