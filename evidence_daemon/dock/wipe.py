"""Opt-in safe wipe: delete from a docked device only files whose archived copy is proven.

After a complete, error-free ingest of a device whose dock rule says ``wipe = true`` (off by
default), each file this device's ``sources`` rows name goes through the release policy
(``dock/release.py``): deleted only when its row is ``archived``/``duplicate``, its recording
is verified in the archive, the file on the device still has the size and mtime it had when it
was read, and a fresh SHA-256 of it equals the archived recording's id. Its ``wiped`` ledger
event is written *before* the unlink (a crash between the two leaves an event for a file still
present, never a deleted file without one); a ledger that cannot be written stops the wipe with
nothing more deleted. Anything that does not match is left alone and reported.

Never: delete a file whose archived copy is unproven, or one without its ledger event.
"""

from __future__ import annotations

import base64
import logging
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from ..custody.chain import Event
from ..custody.ledger import LedgerWriter
from ..state.db import Database
from ..state.queue import Source, WorkQueue
from .release import (
    Decision,
    Outcome,
    SourceRecord,
    Verdict,
    hash_file,
    release,
    release_decision,
)

log = logging.getLogger(__name__)

VERIFIED = "size, mtime and SHA-256 re-read from the device"


@dataclass
class WipeReport:
    deleted: list[str] = field(default_factory=list)
    kept: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)


def wipe_device(
    mountpoint: Path, device_id: str, database: Database, ledger: LedgerWriter, *, actor: str
) -> WipeReport:
    """Delete the verified files of ``device_id`` under ``mountpoint`` (mounted read-write).

    A ledger event that cannot be written raises (``EvidenceError``): that file and every one
    after it stay on the device."""
    report = WipeReport()
    rows = WorkQueue(database).of_origin_with_archival(device_id)
    root = os.fsencode(mountpoint)
    for row in rows:
        source = row.source
        path = os.path.join(root, _raw_path(source))
        try:
            info = os.lstat(path)
        except FileNotFoundError:
            continue  # deleted earlier, or by someone else
        except OSError as exc:
            report.kept.append((source.rel_path, f"cannot stat: {exc.strerror}"))
            continue
        record = SourceRecord(source.state, source.size_bytes, source.mtime_ns, source.sha256,
                              row.archived_at)
        current = (info.st_size, info.st_mtime_ns) if stat.S_ISREG(info.st_mode) else None
        decision = release_decision(record, current)
        if decision.verdict is Verdict.VERIFY:  # hash only when everything cheaper agrees
            try:
                fresh_sha256, opened = hash_file(path)
            except OSError as exc:
                decision = Decision(Verdict.LEAVE, f"cannot re-read it: {exc.strerror}")
            else:
                decision = release_decision(record, (opened.st_size, opened.st_mtime_ns),
                                            fresh_sha256)
        released = release(
            decision,
            record_event=lambda: ledger.append(
                Event.WIPED, recording=source.sha256, actor=actor, once=True,
                details={"source_key": source.source_key, "path": source.rel_path,
                         "device_id": device_id, "size_bytes": source.size_bytes,
                         "verified": VERIFIED}),
            irreversible=lambda: os.unlink(path),
            outcome=Outcome.WIPED, verb="delete",
        )
        if released.outcome is Outcome.WIPED:
            report.deleted.append(source.rel_path)
        else:
            report.kept.append((source.rel_path, released.reason))
    if report.deleted or report.kept:
        log.info("%s: wiped %d verified file(s), kept %d", device_id, len(report.deleted),
                 len(report.kept))
    for kept_path, reason in report.kept:
        log.info("%s: kept %s on the device: %s", device_id, kept_path, reason)
    return report


def _raw_path(source: Source) -> bytes:
    if source.rel_path_b64:
        return base64.b64decode(source.rel_path_b64)
    return source.rel_path.encode("utf-8")
