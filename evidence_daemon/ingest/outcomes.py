"""What one ingest run reports: per-file outcomes, the run's summary, and the metrics hook.

Plain values shared by the pipeline, the CLI, the dock manager and the daemon's status. An
outcome is counted once per file per run; ``Summary.ok`` is true only when every file of the
run is proven in the archive — a summary must never call a run good that left a file behind.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol

from ..state import transitions as st
from .scanner import Found


class IngestMetrics(Protocol):
    """What the pipeline reports for monitoring (``metrics.station.PipelineMetrics``).

    Called from the copy thread and the upload workers; implementations must be thread-safe
    and must never raise.
    """

    def file_finished(self, result: str, size_bytes: int) -> None:
        """A source reached ``result`` (archived, duplicate, failed, skipped)."""

    def upload_failed(self) -> None:
        """An upload attempt failed because the archive was unreachable."""

    def recording_archived(self, *, duration_s: float, late: bool) -> None:
        """A recording's original was stored and verified, taking ``duration_s``."""


class NoMetrics:
    """The default: nobody is watching."""

    def file_finished(self, result: str, size_bytes: int) -> None:
        pass

    def upload_failed(self) -> None:
        pass

    def recording_archived(self, *, duration_s: float, late: bool) -> None:
        pass


class Progress(StrEnum):
    """What an ingest run tells its ``progress`` callback (the CLI's progress line, a docked
    device's job in ``status``)."""

    COPYING = "copying"  # {"path", "size_bytes"}: a file's copy into the spool begins
    BYTES = "bytes"  # {"count"}: that many more bytes copied
    UPLOADING = "uploading"  # {"path", "size_bytes"}: a recording's upload begins
    DONE = "done"  # {"summary"}: the run is over


ProgressCallback = Callable[[Progress, dict[str, Any]], None]


class Outcome(StrEnum):
    """What happened to one file in one run, beside the source states of ``state.transitions``
    (archived, duplicate, failed, skipped). Each file of a run is counted exactly once. The
    values are shown to operators and kept in the daemon's status file."""

    ALREADY_ARCHIVED = "already archived"  # archived by an earlier run of this station
    ALREADY_IN_ARCHIVE = "already in the archive"  # found verified in the archive (state rebuilt)
    RETRY_LATER = "retry later"  # the archive is up but this copy did not verify
    SPOOL_FULL = "spool full"  # not copied: no space in the spool; still on the device
    NOT_STARTED = "not started (stopping)"
    # durable in the spool and handed to the station's upload stage; the device is released
    UPLOADING = "spooled, uploading"


ALREADY_ARCHIVED = Outcome.ALREADY_ARCHIVED
ALREADY_IN_ARCHIVE = Outcome.ALREADY_IN_ARCHIVE
RETRY_LATER = Outcome.RETRY_LATER
SPOOL_FULL = Outcome.SPOOL_FULL
NOT_STARTED = Outcome.NOT_STARTED
UPLOADING = Outcome.UPLOADING
# Outcomes that leave a file's bytes outside the archive and outside the spool (still on the
# source). A file whose stored copy did not verify (RETRY_LATER) stays spooled: ``pending``.
UNREAD_OUTCOMES: tuple[str, ...] = (st.FAILED, SPOOL_FULL, NOT_STARTED)


@dataclass
class Summary:
    """What one ingest run did, for the CLI and the daemon's status."""

    counts: Counter[str] = field(default_factory=Counter)
    bytes_copied: int = 0
    problems: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    archive_error: str | None = None
    pending: int = 0  # in the spool, not yet archived (archive away, or a copy to retry)
    spool_error: str | None = None  # the spool filled up: why the run stopped copying

    @property
    def not_archived(self) -> int:
        """Files of this run whose bytes are not proven in the archive: each is listed."""
        return self.pending + sum(self.counts[outcome] for outcome in UNREAD_OUTCOMES)

    @property
    def waiting_for_archive(self) -> int:
        """Spooled files that only wait for the archive (not counted under another outcome)."""
        return max(0, self.pending - self.counts[RETRY_LATER])

    @property
    def ok(self) -> bool:
        return self.archive_error is None and self.not_archived == 0


@dataclass(frozen=True)
class Origin:
    """Who the files belong to: the docked device, and defaults for officer attribution."""

    root: Path
    device_id: str | None = None
    officer_id: str | None = None

    @property
    def name(self) -> str:
        return self.device_id or str(self.root)


def source_key(origin: str, found: Found) -> str:
    raw = b"\0".join(
        [origin.encode("utf-8", "surrogateescape"), found.rel_path,
         str(found.size_bytes).encode(), str(found.mtime_ns).encode()]
    )
    return hashlib.sha256(raw).hexdigest()[:32]
