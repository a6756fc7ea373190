"""Recorded access to content: which object a request may read, checked in the archive, and
the ledger entry that must exist before its first byte is sent.

The object key always comes from the catalog row of a recording the caller may see and must
be the key the storage contract gives (``archive.keys``), never text from the request. The
object is ``stat``-ed in the archive first: one that is gone, or an original whose size is not
the catalogued one, becomes an ``access-failed`` event and an error — never an ``accessed``
event followed by an empty body. What must never happen: a byte sent without its ``accessed``
event stored in this node's signed chain.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from ..archive import keys
from ..archive.base import ArchiveStore
from ..custody.chain import Event
from ..errors import IntegrityError, NotFoundError, ObjectMissingError
from .auth import User
from .catalog import missing_content_problem
from ..i18n import _

MEDIA_TYPES = {
    "mp4": "video/mp4", "m4v": "video/mp4", "mov": "video/quicktime", "avi": "video/x-msvideo",
    "mkv": "video/x-matroska", "ts": "video/mp2t", "3gp": "video/3gpp", "wav": "audio/wav",
    "mp3": "audio/mpeg", "m4a": "audio/mp4", "amr": "audio/amr", "aac": "audio/aac",
    "jpg": "image/jpeg", "jpeg": "image/jpeg", "png": "image/png",
}


class Recorder(Protocol):
    """``ApiNode.record``: append to this node's chain and index the entry at once."""

    def __call__(self, event: Event, *, recording: str | None, actor: str,
                 details: dict[str, Any]) -> dict[str, Any]: ...


@dataclass(frozen=True)
class ContentTarget:
    """One kind of a recording's content as the catalog describes it."""
    kind: str  # original | proxy | poster
    key: str
    known_size: int | None  # catalogued size (originals only)
    media_type: str
    filename: str  # the download name


def content_target(row: Any, kind: str) -> ContentTarget:
    """The object behind ``kind`` of the catalog ``row``: 404 if the recording has none,
    ``IntegrityError`` if the row names another key than the storage contract gives."""
    sha256 = row["sha256"]

    def checked(key: str, *expected: str) -> str:
        if key not in expected:
            raise IntegrityError(_("catalog row of {sha256} names an unexpected key").format(
                sha256=sha256[:12]))
        return key

    if kind == "original":
        key = checked(row["original_key"], keys.original_key(sha256, row["extension"]))
        extension = row["extension"] or "bin"
        return ContentTarget(kind, key, int(row["size_bytes"]),
                             MEDIA_TYPES.get(extension, "application/octet-stream"),
                             f"{sha256[:12]}_original.{extension}")
    if kind == "proxy":
        if row["proxy_key"] is None:
            raise NotFoundError(_("recording {sha256} has no viewing copy (yet)").format(
                sha256=sha256[:12]))
        key = checked(row["proxy_key"], keys.proxy_key(sha256, "mp4"),
                      keys.proxy_key(sha256, "m4a"))
        extension = key.rpartition(".")[2]
        return ContentTarget(kind, key, None,
                             "video/mp4" if extension == "mp4" else "audio/mp4",
                             f"{sha256[:12]}_proxy.{extension}")
    if row["poster_key"] is None:
        raise NotFoundError(_("recording {sha256} has no poster").format(sha256=sha256[:12]))
    key = checked(row["poster_key"], keys.poster_key(sha256))
    return ContentTarget(kind, key, None, "image/jpeg", f"{sha256[:12]}_poster.jpg")


class ContentAccess:
    def __init__(self, store: ArchiveStore, record: Recorder) -> None:
        self.store = store
        self.record = record

    def stored_size(self, row: Any, target: ContentTarget) -> int:
        """The size of the object to serve, checked in the archive (never only the catalog's
        word): ``ObjectMissingError`` (503) if it is gone, ``IntegrityError`` if its size is
        not the catalogued one."""
        stored = self.store.stat(target.key)
        stored_bytes = None if stored is None else stored.size_bytes
        problem = missing_content_problem(row["sha256"], target.kind, target.key,
                                          target.known_size, stored_bytes)
        if problem is not None or stored_bytes is None:
            raise (ObjectMissingError if stored_bytes is None else IntegrityError)(
                problem or f"{target.key} is not in the archive")
        return stored_bytes

    def checked_size(self, user: User, row: Any, target: ContentTarget, *, reason: str,
                     via: str, remote: str) -> int:
        """``stored_size``; when the object cannot be served the failed attempt goes into the
        audit chain as its own ``access-failed`` event (never an ``accessed``) before the
        error is answered."""
        try:
            return self.stored_size(row, target)
        except (ObjectMissingError, IntegrityError) as exc:
            entry = self.record(Event.ACCESS_FAILED, recording=row["sha256"], actor=user.actor,
                                details={"kind": target.kind, "key": target.key,
                                         "reason": reason, "via": via, "problem": exc.message,
                                         "remote": remote})
            raise type(exc)(f"{exc.message}; this attempt is recorded as "
                            f"{entry['writer']}#{entry['seq']}") from exc

    def accessed(self, user: User, row: Any, target: ContentTarget, *, reason: str, via: str,
                 remote: str, asked_range: str | None = None,
                 grant: str | None = None) -> dict[str, Any]:
        """Store the ``accessed`` event (before any byte is sent); returns the entry."""
        details: dict[str, Any] = {"kind": target.kind, "key": target.key, "reason": reason,
                                   "via": via, "range": asked_range}
        if grant is not None:
            details["grant"] = grant[:8]
        details["remote"] = remote
        return self.record(Event.ACCESSED, recording=row["sha256"], actor=user.actor,
                           details=details)
