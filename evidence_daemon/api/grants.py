"""Player grants: the ``grants`` table, one recorded access usable for ``api.grant_ttl_s``.

A ``<video>`` element fetches many ranges and cannot send headers, so the console asks once
(one ``accessed`` event) and gets a link. This module is the only one that writes or reads
``grants``. What must never happen: a grant served to anyone but the user it was made for,
after it expired, or by an id that is not one this module issued (every refusal is the same
404, so grants cannot be probed).
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from ..clock import Clock, format_time, parse_time
from ..errors import NotFoundError
from ..state.db import Database
from ..i18n import _

_GRANT_ID = re.compile(r"^[A-Za-z0-9_-]{20,64}$")


@dataclass(frozen=True)
class StoredGrant:
    recording: str  # SHA-256
    kind: str  # original | proxy | poster


def new_grant_id() -> str:
    """Random and URL-safe; its first 8 characters go into the ``accessed`` event."""
    return secrets.token_urlsafe(24)


class Grants:
    def __init__(self, database: Database, *, clock: Clock, ttl_s: float) -> None:
        self.database = database
        self.clock = clock
        self.ttl_s = ttl_s

    def add(self, grant_id: str, *, user: str, recording: str, kind: str,
            audit_seq: int) -> datetime:
        """Store a grant whose ``accessed`` event is ``audit_seq``; returns when it expires."""
        now = self.clock()
        expires = now + timedelta(seconds=self.ttl_s)
        self.database.execute(
            "INSERT INTO grants (id, user, recording, kind, audit_seq, created_at, expires_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (grant_id, user, recording, kind, audit_seq, format_time(now), format_time(expires)))
        return expires

    def find(self, grant_id: str, *, user: str) -> StoredGrant:
        """The unexpired grant ``grant_id`` made for ``user``; 404 for anything else."""
        if not _GRANT_ID.fullmatch(grant_id):
            raise NotFoundError(_("no such grant"))
        found = self.database.query_one("SELECT * FROM grants WHERE id = ?", (grant_id,))
        if found is None or found["user"] != user:
            raise NotFoundError(_("no such grant"))
        if parse_time(found["expires_at"]) <= self.clock():
            raise NotFoundError(_("this player link has expired; open the recording again"))
        return StoredGrant(recording=found["recording"], kind=found["kind"])
