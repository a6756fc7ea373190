"""The proxy job queue: the one owner of the ``proxy_jobs`` table.

One job per archived recording says whether its viewing copy is still to be made, being made,
made, or why not. Every read and write of ``proxy_jobs`` is here; ``proxy.py`` runs ffmpeg and
calls this queue for each step. What it needs of a recording it asks ``state.catalog.Catalog``
(which also flags an unplayable one, inside this queue's transaction), and whether ingest is
busy ``state.queue.WorkQueue``. The pure decisions (a new job's state, the retry backoff) sit
beside the SQL.

Job states (``ProxyState``; the values are stored, never rename them)::

    pending -> running -> done | unplayable | failed | pending (retry, after a backoff)
    skipped     nothing to view (still image, empty file, no media facts)
    unplayable  ffmpeg (or ffprobe at ingest) could not decode the bytes; the recording is flagged

What must never happen: a job created before its recording is archived (proxies never delay
archival); a job lost by a crash (one left ``running`` goes back to ``pending`` in ``recover``);
a failure retried forever (after ``retries`` attempts the job is ``failed`` until
``retry_failed``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from enum import StrEnum
from typing import Any

from ..clock import Clock, format_time, utc_now
from ..i18n import untranslated
from ..state.catalog import Catalog
from ..state.db import Database
from ..state.queue import WorkQueue


class ProxyState(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    UNPLAYABLE = "unplayable"
    SKIPPED = "skipped"


class ProxyKind(StrEnum):
    """What the proxy of a recording is: an H.264 video or an AAC audio file."""

    VIDEO = "video"
    AUDIO = "audio"


BACKOFF_BASE_S = 60.0
BACKOFF_MAX_S = 3600.0
# A source pending for longer than this without progress (archive away, a crash) no longer
# holds proxies back.
INGEST_ACTIVE_WINDOW_S = 600.0
# Image demuxers: a "video" stream in these is one still picture, which needs no proxy.
STILL_FORMATS = frozenset({"image2", "jpeg_pipe", "png_pipe", "bmp_pipe", "gif", "webp_pipe",
                           "tiff_pipe", "heif"})


@dataclass(frozen=True)
class ProxyJob:
    """A claimed job: what the proxy maker needs to know about the recording."""

    sha256: str
    kind: ProxyKind
    attempts: int  # including this one
    extension: str
    size_bytes: int
    media: Mapping[str, Any] | None


@dataclass
class Made:
    """What a finished job stored: the proxy (and poster) keys and hashes."""

    proxy_key: str
    proxy_sha256: str
    proxy_size_bytes: int
    poster_key: str | None = None
    poster_sha256: str | None = None
    details: dict[str, Any] = field(default_factory=dict)


# -- pure decisions -----------------------------------------------------------------------

def proxy_kind(media: Mapping[str, Any] | None) -> ProxyKind | None:
    """``video``, ``audio`` or None (nothing to view: no media facts, or a still image)."""
    if not media:
        return None
    streams = media.get("streams") or []
    types = {stream.get("codec_type") for stream in streams if isinstance(stream, Mapping)}
    if "video" in types and media.get("format_name") not in STILL_FORMATS:
        return ProxyKind.VIDEO
    if "audio" in types:
        return ProxyKind.AUDIO
    return None


def initial_job(media: Mapping[str, Any] | None,
                flag_reasons: Mapping[str, str]) -> tuple[ProxyState, ProxyKind | None, str | None]:
    """(state, kind, reason) of a new job for an archived recording."""
    if media is None:
        if "unplayable" in flag_reasons:
            return ProxyState.UNPLAYABLE, None, flag_reasons["unplayable"]
        if "empty" in flag_reasons:
            return ProxyState.SKIPPED, None, "empty file: nothing to view"
        return ProxyState.SKIPPED, None, "no media facts (ffprobe was not run at ingest)"
    kind = proxy_kind(media)
    if kind is None:
        return ProxyState.SKIPPED, None, "still image or no audio/video stream: viewed as is, no proxy"
    return ProxyState.PENDING, kind, None


def backoff_s(attempts: int, base_s: float = BACKOFF_BASE_S, max_s: float = BACKOFF_MAX_S) -> float:
    """Wait before attempt ``attempts + 1``: base, 2 x base, 4 x base, ... capped at ``max_s``."""
    return float(min(max_s, base_s * 2 ** max(attempts - 1, 0)))


def after_failure(attempts: int, retries: int) -> ProxyState:
    """A failed attempt is retried until ``retries`` attempts were made; then the job fails."""
    return ProxyState.FAILED if attempts >= retries else ProxyState.PENDING


# -- the queue (SQLite) -------------------------------------------------------------------

@dataclass
class ProxyQueue:
    database: Database
    clock: Clock = utc_now
    catalog: Catalog = field(init=False)

    def __post_init__(self) -> None:
        self.catalog = Catalog(self.database)

    def enqueue_archived(self) -> int:
        """A job for every archived recording that has none yet; returns how many."""
        recordings = self.catalog.archived_without_proxy_job()
        now = format_time(self.clock())
        for recording in recordings:
            state, kind, reason = initial_job(recording.media, recording.flag_reasons)
            self.database.execute(
                "INSERT OR IGNORE INTO proxy_jobs (sha256, state, kind, last_error, created_at,"
                " updated_at) VALUES (?, ?, ?, ?, ?, ?)",
                (recording.sha256, state, kind, reason, now, now))
        return len(recordings)

    def ingest_active(self, window_s: float = INGEST_ACTIVE_WINDOW_S) -> bool:
        """Files are being copied or archived right now (a source still on its way to the
        archive, touched within ``window_s``): proxies wait, so ingest never shares the CPU."""
        since = format_time(self.clock() - timedelta(seconds=window_s))
        return WorkQueue(self.database).in_flight_since(since)

    def recover(self) -> int:
        """Jobs left ``running`` by a crash go back to ``pending``."""
        return self.database.execute(
            "UPDATE proxy_jobs SET state = ?, updated_at = ? WHERE state = ?",
            (ProxyState.PENDING, format_time(self.clock()), ProxyState.RUNNING))

    def claim(self) -> ProxyJob | None:
        """The oldest due job, now ``running`` with its attempt counted; None when none is due."""
        now = format_time(self.clock())
        due = self.database.scalar(
            "SELECT 1 FROM proxy_jobs WHERE state = ? AND (next_attempt_at IS NULL OR"
            " next_attempt_at <= ?) LIMIT 1", (ProxyState.PENDING, now))
        if due is None:  # the usual case while polling: no write lock taken
            return None
        with self.database.transaction() as conn:
            row = conn.execute(
                "SELECT sha256, kind, attempts FROM proxy_jobs"
                " WHERE state = ? AND (next_attempt_at IS NULL OR next_attempt_at <= ?)"
                " ORDER BY created_at, sha256 LIMIT 1", (ProxyState.PENDING, now)).fetchone()
            if row is None:
                return None
            conn.execute("UPDATE proxy_jobs SET state = ?, attempts = attempts + 1, updated_at = ?"
                         " WHERE sha256 = ?", (ProxyState.RUNNING, now, row["sha256"]))
        # Read after the claim: a recording's extension, size and media facts never change, and
        # a job cannot exist without its recording (a foreign key).
        recording = self.catalog.get(row["sha256"])
        assert recording is not None, "kept by the foreign key"
        return ProxyJob(sha256=recording.sha256, kind=ProxyKind(row["kind"]),
                        attempts=int(row["attempts"]) + 1, extension=recording.extension,
                        size_bytes=recording.size_bytes, media=recording.media)

    def done(self, sha256: str, made: Made) -> None:
        self.database.execute(
            "UPDATE proxy_jobs SET state = ?, last_error = NULL, next_attempt_at = NULL,"
            " proxy_key = ?, proxy_sha256 = ?, proxy_size_bytes = ?, poster_key = ?,"
            " poster_sha256 = ?, updated_at = ? WHERE sha256 = ?",
            (ProxyState.DONE, made.proxy_key, made.proxy_sha256, made.proxy_size_bytes,
             made.poster_key, made.poster_sha256, format_time(self.clock()), sha256))

    def unplayable(self, sha256: str, reason: str) -> None:
        """Job ``unplayable``; the recording flagged with the reason (one transaction)."""
        reason = untranslated(reason)  # stored reasons are English (i18n)
        now = format_time(self.clock())
        with self.database.transaction() as conn:
            Catalog.flag_in(conn, sha256, "unplayable", reason)
            conn.execute("UPDATE proxy_jobs SET state = ?, last_error = ?, next_attempt_at = NULL,"
                         " updated_at = ? WHERE sha256 = ?",
                         (ProxyState.UNPLAYABLE, reason, now, sha256))

    def retry_later(self, sha256: str, attempts: int, reason: str, retries: int,
                    base_s: float = BACKOFF_BASE_S) -> ProxyState:
        """Record a failed attempt: ``pending`` again after a backoff, or ``failed``."""
        reason = untranslated(reason)
        now = self.clock()
        state = after_failure(attempts, retries)
        next_at = (format_time(now + timedelta(seconds=backoff_s(attempts, base_s)))
                   if state is ProxyState.PENDING else None)
        self.database.execute(
            "UPDATE proxy_jobs SET state = ?, last_error = ?, next_attempt_at = ?, updated_at = ?"
            " WHERE sha256 = ?", (state, reason, next_at, format_time(now), sha256))
        return state

    def release(self, sha256: str) -> None:
        """Stopped mid-job: back to pending, the attempt not counted."""
        self.database.execute(
            "UPDATE proxy_jobs SET state = ?, attempts = MAX(attempts - 1, 0), updated_at = ?"
            " WHERE sha256 = ? AND state = ?",
            (ProxyState.PENDING, format_time(self.clock()), sha256, ProxyState.RUNNING))

    def retry_failed(self) -> int:
        return self.database.execute(
            "UPDATE proxy_jobs SET state = ?, attempts = 0, next_attempt_at = NULL, updated_at = ?"
            " WHERE state = ?", (ProxyState.PENDING, format_time(self.clock()), ProxyState.FAILED))

    def report(self) -> dict[str, Any]:
        """Counts by state and the jobs that need a person, in the ``proxies --json`` contract."""
        counts = {str(state): 0 for state in ProxyState}
        for row in self.database.query("SELECT state, COUNT(*) AS n FROM proxy_jobs GROUP BY state"):
            counts[row["state"]] = int(row["n"])
        waiting = self.catalog.count_archived_without_proxy_job()
        counts[ProxyState.PENDING] += waiting  # archived, job not created yet: as good as pending
        problems = [dict(row) for row in self.database.query(
            "SELECT sha256, state, attempts, last_error AS reason, next_attempt_at, updated_at"
            " FROM proxy_jobs WHERE state IN (?, ?) OR (state = ? AND last_error IS NOT NULL)"
            " ORDER BY updated_at", (ProxyState.FAILED, ProxyState.UNPLAYABLE, ProxyState.PENDING))]
        return {"counts": counts, "problems": problems}
