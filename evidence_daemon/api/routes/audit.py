"""Oversight: who accessed or exported what, the compliance report, and the user list.

Admins run the service and may audit accesses without reading recordings: for them a
recording is named by its full SHA-256 and need not be in the catalog.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from ...errors import UsageError
from ..auth import Action, User, allowed
from ..bodies import AccessPage
from ..gate import Node, require
from ..service import ApiNode
from . import API
from .recordings import optional_instant, page_limit
from ...i18n import _

router = APIRouter(prefix=API)
From = Annotated[str | None, Query(alias="from", max_length=64)]
To = Annotated[str | None, Query(alias="to", max_length=64)]


def audited_recording(node: ApiNode, user: User, recording: str) -> str:
    """The SHA-256 an audit query is about: resolved like any id for roles that read
    recordings; for the others (admin) the full SHA-256 is required, and it need not be in
    the catalog (accesses to a recording never indexed here still show)."""
    if allowed(user.role, Action.READ):
        sha256: str = node.catalog.resolve(user, recording)["sha256"]
        return sha256
    lowered = recording.lower()
    if not re.fullmatch(r"[0-9a-f]{64}", lowered):
        raise UsageError(_("recording: give the full 64-digit id"))
    return lowered


@router.get("/audit/accesses", response_model=AccessPage, tags=["audit"])
def accesses(
    node: Node,
    user: Annotated[User, Depends(require(Action.AUDIT))],
    recording: Annotated[str | None, Query(max_length=64)] = None,
    of_user: Annotated[str | None, Query(alias="user", max_length=64)] = None,
    start_from: From = None,
    start_to: To = None,
    limit: Annotated[int, Query(ge=1)] = 100,
    cursor: Annotated[str | None, Query(max_length=400)] = None,
) -> dict[str, Any]:
    if recording is None and of_user is None:
        raise UsageError(_("give recording=ID or user=NAME (or both)"))
    limit = page_limit(node, limit)
    items, next_cursor = node.catalog.accesses(
        recording=None if recording is None else audited_recording(node, user, recording),
        actor=f"user:{of_user}" if of_user is not None else None,
        start_from=optional_instant(start_from, "from"),
        start_to=optional_instant(start_to, "to"),
        limit=limit, cursor=cursor)
    return {"items": items, "next_cursor": next_cursor}


@router.get("/compliance/report", tags=["reports"],
            dependencies=[Depends(require(Action.REPORT))])
def report(node: Node, start_from: From = None, start_to: To = None,
           station: Annotated[str | None, Query(max_length=64)] = None) -> dict[str, Any]:
    return node.catalog.report(start_from=optional_instant(start_from, "from"),
                               start_to=optional_instant(start_to, "to"), station=station)


@router.get("/users", tags=["users"], dependencies=[Depends(require(Action.USERS))])
def users(node: Node) -> list[dict[str, Any]]:
    return node.users.list()
