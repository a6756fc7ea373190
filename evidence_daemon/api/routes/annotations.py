"""Supervisors' annotations: legal holds, case links, notes and retention extensions.

Each route is one call into ``annotations.Annotations`` (which resolves the recording the
caller may see, applies the change to the archive where there is one, and records it); the
answer is the ledger entry it made. Reasons given as query parameters (on DELETE, which has no
body) pass ``reasons.py`` in a dependency, before anything is looked up.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from ..auth import Action, User
from ..bodies import CaseBody, HoldBody, NoteBody, Recorded, RetentionBody
from ..gate import Node, require
from ..reasons import REASON_MAX_CHARS, REASON_MIN_CHARS, checked_reason
from . import API

router = APIRouter(prefix=f"{API}/recordings/{{recording_id}}", tags=["annotations"])
Annotator = Annotated[User, Depends(require(Action.ANNOTATE))]


def reason_query(reason: Annotated[str, Query(min_length=REASON_MIN_CHARS,
                                              max_length=REASON_MAX_CHARS)]) -> str:
    """The ``reason`` of a DELETE (which has no body), checked like a body's."""
    return checked_reason(reason)


ReasonQuery = Annotated[str, Depends(reason_query)]


@router.post("/holds", response_model=Recorded, status_code=201)
def place_hold(node: Node, user: Annotator, recording_id: str, body: HoldBody) -> Recorded:
    return node.annotations.place_hold(user, recording_id, reason=body.reason,
                                       case_id=body.case_id)


@router.delete("/holds/{hold_id}", response_model=Recorded)
def release_hold(node: Node, user: Annotator, recording_id: str, hold_id: str,
                 reason: ReasonQuery) -> Recorded:
    return node.annotations.release_hold(user, recording_id, hold_id, reason=reason)


@router.post("/cases", response_model=Recorded, status_code=201)
def link_case(node: Node, user: Annotator, recording_id: str, body: CaseBody) -> Recorded:
    return node.annotations.link_case(user, recording_id, body.case_id, reason=body.reason)


@router.delete("/cases/{case_id}", response_model=Recorded)
def unlink_case(node: Node, user: Annotator, recording_id: str, case_id: str,
                reason: ReasonQuery) -> Recorded:
    return node.annotations.unlink_case(user, recording_id, case_id, reason=reason)


@router.post("/notes", response_model=Recorded, status_code=201)
def add_note(node: Node, user: Annotator, recording_id: str, body: NoteBody) -> Recorded:
    return node.annotations.add_note(user, recording_id, body.text)


@router.post("/retention", response_model=Recorded)
def extend_retention(node: Node, user: Annotator, recording_id: str,
                     body: RetentionBody) -> Recorded:
    return node.annotations.extend_retention(user, recording_id, body.retain_until,
                                             reason=body.reason)
