"""The archived form of an incident import. Pure.

Each import of dispatch records is kept in the archive as one create-only JSON document,
``dispatch/<sha256>.json`` (the SHA-256 of the document itself), and the API node signs an
``incidents-imported`` ledger event naming that hash. The incidents an auditor sees are thus
derived from the archive like the catalog is: a lost API database is rebuilt by reindexing,
and nobody can change an imported incident after the fact without the chain showing it.
A later import of the same incident id replaces its details (a dispatch record corrected);
the earlier document stays, so the history of each incident is kept.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ..custody.canonical import canonical_json
from .records import Incident
from ..i18n import _

DOCUMENT_FORMAT = "evidence-daemon dispatch import 1"
PREFIX = "dispatch/"


@dataclass(frozen=True)
class ImportDocument:
    source_name: str  # the file name given (or "api")
    source_sha256: str  # of the bytes as uploaded, so the original export can be matched
    imported_by: str  # the actor, e.g. "user:alice"
    incidents: tuple[Incident, ...]
    rejected_rows: int = 0

    def to_bytes(self) -> bytes:
        return canonical_json({
            "format": DOCUMENT_FORMAT, "source_name": self.source_name,
            "source_sha256": self.source_sha256, "imported_by": self.imported_by,
            "rejected_rows": self.rejected_rows,
            "incidents": [incident.to_json() for incident in self.incidents],
        })

    @classmethod
    def from_bytes(cls, data: bytes) -> ImportDocument:
        """Read an archived document back; ValueError naming what is wrong."""
        try:
            raw: Any = json.loads(data)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ValueError(_("dispatch document is not JSON: {exc}").format(exc=exc)) from None
        if not isinstance(raw, dict) or raw.get("format") != DOCUMENT_FORMAT:
            raise ValueError(_("not a dispatch import document (format {value!r})").format(
                value=raw.get('format') if isinstance(raw, dict) else None))
        try:
            incidents = tuple(_incident(item) for item in raw["incidents"])
            return cls(str(raw["source_name"]), str(raw["source_sha256"]),
                       str(raw["imported_by"]), incidents, int(raw.get("rejected_rows", 0)))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(_("dispatch document field missing or malformed: {exc}").format(
                exc=exc)) from None


def _incident(item: dict[str, Any]) -> Incident:
    return Incident(str(item["incident_id"]), tuple(str(o) for o in item["officers"]),
                    datetime.fromisoformat(item["start"]), datetime.fromisoformat(item["end"]),
                    str(item.get("type", "")), str(item.get("place", "")),
                    str(item.get("station", "")))


def document_key(data: bytes) -> str:
    return f"{PREFIX}{hashlib.sha256(data).hexdigest()}.json"


def import_details(document: ImportDocument, key: str, ids: Sequence[str]) -> dict[str, Any]:
    """The ``incidents-imported`` event's details: which document, how many, which ids."""
    return {"document": key, "source_name": document.source_name,
            "source_sha256": document.source_sha256, "incidents": len(document.incidents),
            "rejected_rows": document.rejected_rows,
            "ids_sha256": hashlib.sha256("\n".join(sorted(ids)).encode()).hexdigest()}
