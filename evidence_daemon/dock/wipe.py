"""Opt-in safe wipe: delete from a device only files whose archived copy is proven.

A file is deleted only when all of these hold at the moment of deletion: its source row says
the archive holds a verified copy (``archived`` or ``duplicate``), the file on the device still
has the size and mtime it had when it was read, and a fresh SHA-256 of the file equals the
archived recording's id. Every deletion is a ledger event written *before* the unlink (a crash
between the two leaves an event for a file still present, never a deleted file without one).
Anything that does not match is left alone and reported. Off unless a dock rule says
``wipe = true``.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..custody.chain import Event
from ..custody.ledger import LedgerWriter
from ..state import transitions as st
from ..state.db import Database

log = logging.getLogger(__name__)

_CHUNK_BYTES = 4 * 1024 * 1024


@dataclass
class WipeReport:
    deleted: list[str] = field(default_factory=list)
    kept: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)


def wipe_decision(
    *, state: str, recorded: tuple[int, int, str | None], current: tuple[int, int], current_sha256: str | None
) -> str | None:
    """None when the file may be deleted, else the reason to keep it. Pure.

    ``recorded`` is (size_bytes, mtime_ns, sha256) from when the file was read; ``current`` is
    (size_bytes, mtime_ns) now; ``current_sha256`` a fresh hash of the file (None: not hashed).
    """
    if state not in (st.ARCHIVED, st.DUPLICATE):
        return f"not archived yet (state {state})"
    size_bytes, mtime_ns, sha256 = recorded
    if sha256 is None:
        return "no archived hash on record"
    if current != (size_bytes, mtime_ns):
        return "changed on the device since it was read"
    if current_sha256 is None:
        return "could not be re-read"
    if current_sha256 != sha256:
        return "content on the device differs from the archived copy"
    return None


def _hash(path: bytes) -> str | None:
    digest = hashlib.sha256()
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return None
    try:
        while chunk := os.read(fd, _CHUNK_BYTES):
            digest.update(chunk)
    except OSError:
        return None
    finally:
        os.close(fd)
    return digest.hexdigest()


def wipe_device(
    mountpoint: Path, device_id: str, database: Database, ledger: LedgerWriter, *, actor: str
) -> WipeReport:
    """Delete the verified files of ``device_id`` under ``mountpoint`` (mounted read-write)."""
    report = WipeReport()
    rows = database.query(
        "SELECT id, rel_path, rel_path_b64, size_bytes, mtime_ns, sha256, state, source_key"
        " FROM sources WHERE origin = ? AND sha256 IS NOT NULL ORDER BY id",
        (device_id,),
    )
    root = os.fsencode(mountpoint)
    for row in rows:
        relative = _raw_path(row)
        path = os.path.join(root, relative)
        try:
            info = os.lstat(path)
        except FileNotFoundError:
            continue  # deleted earlier, or by someone else
        except OSError as exc:
            report.kept.append((row["rel_path"], f"cannot stat: {exc.strerror}"))
            continue
        current = (info.st_size, info.st_mtime_ns)
        recorded = (int(row["size_bytes"]), int(row["mtime_ns"]), row["sha256"])
        # hash only when everything cheaper already agrees
        cheap = wipe_decision(state=row["state"], recorded=recorded, current=current,
                              current_sha256=row["sha256"])
        reason = cheap or wipe_decision(state=row["state"], recorded=recorded, current=current,
                                        current_sha256=_hash(path))
        if reason is not None:
            report.kept.append((row["rel_path"], reason))
            continue
        ledger.append(
            Event.WIPED, recording=row["sha256"], actor=actor, once=True,
            details={"source_key": row["source_key"], "path": row["rel_path"],
                     "device_id": device_id, "size_bytes": row["size_bytes"],
                     "verified": "size, mtime and SHA-256 re-read from the device"},
        )
        try:
            os.unlink(path)
        except OSError as exc:
            report.kept.append((row["rel_path"], f"delete failed: {exc.strerror}"))
            continue
        report.deleted.append(row["rel_path"])
    if report.deleted:
        log.info("%s: wiped %d verified file(s), kept %d", device_id, len(report.deleted), len(report.kept))
    return report


def _raw_path(row: Any) -> bytes:
    if row["rel_path_b64"]:
        return base64.b64decode(row["rel_path_b64"])
    return str(row["rel_path"]).encode("utf-8")
