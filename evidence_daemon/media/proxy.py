"""Viewing copies: a browser-playable proxy and a poster JPEG of each archived recording.

The original is the evidence master and is only ever *read* here: a proxy is made from the
spool copy when it is still there (hard-linked, so a release cannot pull it away mid-read),
else from a copy downloaded from the archive into ``state_dir/proxy-tmp``. Proxies are derived
and re-creatable; each one is stored create-only next to its original and described by a signed
``derived`` ledger event (its SHA-256 and size, the poster's, the ffmpeg version and the exact
arguments, with ``{input}``/``{output}`` standing for the file names).

Never delays archival: jobs are picked up from SQLite only after ``recordings.archived_at`` is
set; no job starts while files are on their way to the archive (sources ``discovered`` or
``spooled``, touched in the last 10 minutes), and a running ffmpeg is stopped (SIGSTOP) until
they are archived; ffmpeg runs ``nice``d in the idle CPU and I/O classes on
``media.proxy_workers`` threads. Jobs survive restarts (a job left ``running`` by a crash goes
back to ``pending``). Failures are classified once:

- the *input* is bad (ffmpeg ran and could not decode it, or produced nothing playable): the
  same bytes give the same result, so the job ends ``unplayable`` at once and the recording is
  flagged ``unplayable`` with ffmpeg's reason (plus a ``flagged`` ledger event);
- the *environment* failed (archive away, disk full, ffmpeg killed or timed out): retried with
  exponential backoff, and after ``media.proxy_retries`` attempts the job is ``failed`` (shown
  by ``evidence-daemon proxies``, requeued by ``--retry-failed``).

Job states: pending -> running -> done | unplayable | failed | pending (retry); recordings with
nothing to view (still images, empty files) are ``skipped``; recordings ffprobe could not read
at ingest are ``unplayable`` with the ingest reason, without running ffmpeg again.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import logging
import os
import shutil
import signal
import subprocess
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import ffmpeg  # ffmpeg-python: builds the argument lists

from ..archive import keys
from ..archive.base import ArchiveStore, hash_file, hash_stored
from ..config import Config, MediaConfig
from ..custody.chain import Event
from ..custody.ledger import LedgerWriter
from ..clock import Clock, format_time, utc_now
from ..errors import EvidenceError, MediaError, ObjectExistsError, StateError
from ..state.db import Database
from .probe import error_reason, probe_file

if TYPE_CHECKING:
    from ..station import Station

log = logging.getLogger(__name__)

PENDING, RUNNING, DONE, FAILED, UNPLAYABLE, SKIPPED = (
    "pending", "running", "done", "failed", "unplayable", "skipped")
STATES = (PENDING, RUNNING, DONE, FAILED, UNPLAYABLE, SKIPPED)

BACKOFF_BASE_S = 60.0
BACKOFF_MAX_S = 3600.0
POLL_S = 5.0
PAUSE_CHECK_S = 0.5
# A source pending for longer than this without progress (archive away, a crash) no longer
# holds proxies back.
INGEST_ACTIVE_WINDOW_S = 600.0
POSTER_AT_FRACTION = 0.10
# Image demuxers: a "video" stream in these is one still picture, which needs no proxy.
STILL_FORMATS = frozenset({"image2", "jpeg_pipe", "png_pipe", "bmp_pipe", "gif", "webp_pipe",
                           "tiff_pipe", "heif"})
# ffmpeg reasons that describe this machine, not the recording: worth retrying.
ENVIRONMENT_MARKERS = ("no space left", "cannot allocate memory", "permission denied",
                       "no such file or directory", "resource temporarily unavailable",
                       "input/output error", "read-only file system")
INPUT_PLACEHOLDER = "{input}"
OUTPUT_PLACEHOLDER = "{output}"


class ProxyInputError(MediaError):
    """ffmpeg could not make a playable copy of these bytes: the recording is unplayable."""


class ProxyEnvironmentError(MediaError):
    """The proxy could not be made for a reason outside the recording: retry later."""


# -- pure decisions -----------------------------------------------------------------------

def proxy_kind(media: Mapping[str, Any] | None) -> str | None:
    """``"video"``, ``"audio"`` or None (nothing to view: no media facts, or a still image)."""
    if not media:
        return None
    streams = media.get("streams") or []
    types = {stream.get("codec_type") for stream in streams if isinstance(stream, Mapping)}
    if "video" in types and media.get("format_name") not in STILL_FORMATS:
        return "video"
    if "audio" in types:
        return "audio"
    return None


def initial_job(media: Mapping[str, Any] | None, flag_reasons: Mapping[str, str]) -> tuple[str, str | None, str | None]:
    """(state, kind, reason) of a new job for an archived recording."""
    if media is None:
        if "unplayable" in flag_reasons:
            return UNPLAYABLE, None, flag_reasons["unplayable"]
        if "empty" in flag_reasons:
            return SKIPPED, None, "empty file: nothing to view"
        return SKIPPED, None, "no media facts (ffprobe was not run at ingest)"
    kind = proxy_kind(media)
    if kind is None:
        return SKIPPED, None, "still image or no audio/video stream: viewed as is, no proxy"
    return PENDING, kind, None


def backoff_s(attempts: int, base_s: float = BACKOFF_BASE_S, max_s: float = BACKOFF_MAX_S) -> float:
    """Wait before attempt ``attempts + 1``: base, 2 x base, 4 x base, ... capped at ``max_s``."""
    return float(min(max_s, base_s * 2 ** max(attempts - 1, 0)))


def is_input_failure(returncode: int, reason: str) -> bool:
    """ffmpeg exited with an error about the recording (not killed, not a machine problem)."""
    if returncode < 0:  # killed by a signal: stopped, or out of memory
        return False
    lowered = reason.lower()
    return not any(marker in lowered for marker in ENVIRONMENT_MARKERS)


def scale_filter(max_width: int, max_height: int) -> str:
    """Fit inside max_width x max_height, keep the aspect ratio, never enlarge, even sizes."""
    return (f"scale=w='min({max_width},iw)':h='min({max_height},ih)'"
            ":force_original_aspect_ratio=decrease:force_divisible_by=2")


def proxy_arguments(kind: str, settings: MediaConfig) -> list[str]:
    """ffmpeg's arguments (after the program name) for a proxy, with placeholders for files."""
    audio = {"c:a": "aac", "b:a": f"{settings.proxy_audio_kbps}k", "ac": 2}
    output: dict[str, Any]
    if kind == "video":
        video_kbps = settings.proxy_video_kbps
        output = {
            "vf": scale_filter(settings.proxy_max_width, settings.proxy_max_height),
            "c:v": "libx264", "preset": "veryfast", "crf": 23, "profile:v": "high",
            "pix_fmt": "yuv420p", "maxrate": f"{video_kbps}k", "bufsize": f"{2 * video_kbps}k",
            **audio, "sn": None, "dn": None, "map_metadata": 0, "movflags": "+faststart",
            "f": "mp4",
        }
    elif kind == "audio":
        output = {**audio, "vn": None, "sn": None, "dn": None, "map_metadata": 0,
                  "movflags": "+faststart", "f": "ipod"}
    else:
        raise ValueError(f"no proxy for kind {kind!r}")
    stream = ffmpeg.input(INPUT_PLACEHOLDER, protocol_whitelist="file").output(
        OUTPUT_PLACEHOLDER, **output)
    return ["-hide_banner", "-nostdin", "-v", "error", "-y", *stream.get_args()]


def poster_arguments(at_s: float, max_width: int, max_height: int) -> list[str]:
    """ffmpeg's arguments for one JPEG frame at ``at_s`` seconds of the (proxy) input."""
    stream = ffmpeg.input(INPUT_PLACEHOLDER, ss=f"{at_s:.3f}", protocol_whitelist="file").output(
        OUTPUT_PLACEHOLDER, vf=scale_filter(max_width, max_height), **{"frames:v": 1, "q:v": 3},
        update=1, f="image2")
    return ["-hide_banner", "-nostdin", "-v", "error", "-y", *stream.get_args()]


def priority_prefix(niceness: int, which: Callable[[str], str | None]) -> list[str]:
    """Commands that lower ffmpeg's priority so ingest never waits for it: ``nice``, then the
    idle CPU scheduling class (``chrt --idle``: runs only on otherwise idle CPU time) and the
    idle I/O class (``ionice -c 3``), each when installed. ``niceness`` 0 means none at all."""
    if niceness <= 0:
        return []
    prefix = ["nice", "-n", str(niceness)] if which("nice") else []
    if which("chrt"):
        prefix += ["chrt", "--idle", "0"]
    if which("ionice"):
        prefix += ["ionice", "-c", "3"]
    return prefix


def fill(arguments: list[str], input_path: Path, output_path: Path) -> list[str]:
    return [f"file:{input_path}" if arg == INPUT_PLACEHOLDER else
            f"file:{output_path}" if arg == OUTPUT_PLACEHOLDER else arg for arg in arguments]


# -- running ffmpeg -----------------------------------------------------------------------

class FfmpegRunner:
    """Runs ffmpeg ``nice``d, with a timeout; ``stop()`` ends the ones running."""

    def __init__(self, ffmpeg_cmd: str = "ffmpeg", *, niceness: int = 10) -> None:
        self.ffmpeg_cmd = ffmpeg_cmd
        self.niceness = niceness
        self._running: set[subprocess.Popen[bytes]] = set()
        self._lock = threading.Lock()
        self._stopped = False
        self._version: str | None = None

    def version(self) -> str:
        if self._version is None:
            try:
                completed = subprocess.run([self.ffmpeg_cmd, "-version"], capture_output=True,
                                           timeout=30, check=False)
            except (OSError, subprocess.TimeoutExpired) as exc:
                raise ProxyEnvironmentError(f"cannot run {self.ffmpeg_cmd}: {exc}") from exc
            first = completed.stdout.decode("utf-8", "replace").splitlines()
            self._version = first[0].strip() if first else "unknown"
        return self._version

    def run(self, arguments: list[str], timeout_s: float,
            pause_while: Callable[[], bool] | None = None) -> None:
        """Raise ``ProxyInputError`` or ``ProxyEnvironmentError`` when ffmpeg fails.

        While ``pause_while()`` is true (checked every ``PAUSE_CHECK_S``) ffmpeg is stopped
        (SIGSTOP) and continued after; paused time does not count towards ``timeout_s``.
        """
        command = [*priority_prefix(self.niceness, shutil.which), self.ffmpeg_cmd, *arguments]
        with self._lock:
            if self._stopped:
                raise ProxyEnvironmentError("stopping")
            try:
                process = subprocess.Popen(command, stdin=subprocess.DEVNULL,
                                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            except OSError as exc:
                raise ProxyEnvironmentError(f"cannot run {self.ffmpeg_cmd}: {exc.strerror}") from exc
            self._running.add(process)
        active_s, paused = 0.0, False
        try:
            while True:
                try:
                    _, stderr = process.communicate(timeout=PAUSE_CHECK_S)
                    break
                except subprocess.TimeoutExpired:
                    pass
                active_s += 0.0 if paused else PAUSE_CHECK_S
                if active_s > timeout_s:
                    process.kill()
                    process.communicate()
                    raise ProxyEnvironmentError(f"ffmpeg did not finish within {timeout_s:g} s")
                busy = _safely(pause_while)
                if busy != paused:
                    process.send_signal(signal.SIGSTOP if busy else signal.SIGCONT)
                    paused = busy
        finally:
            if paused and process.poll() is None:
                process.send_signal(signal.SIGCONT)
            with self._lock:
                self._running.discard(process)
        if process.returncode != 0:
            reason = error_reason(stderr) or f"ffmpeg failed with exit status {process.returncode}"
            if is_input_failure(process.returncode, reason):
                raise ProxyInputError(reason)
            raise ProxyEnvironmentError(reason)

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
            for process in self._running:
                process.terminate()
                process.send_signal(signal.SIGCONT)  # a paused ffmpeg must see its SIGTERM


def _safely(check: Callable[[], bool] | None) -> bool:
    if check is None:
        return False
    try:
        return check()
    except EvidenceError as exc:  # cannot tell: let ffmpeg run rather than stall forever
        log.warning("proxy worker: %s", exc.message)
        return False


# -- the queue (SQLite) -------------------------------------------------------------------

@dataclass
class ProxyQueue:
    database: Database
    clock: Clock = utc_now

    def enqueue_archived(self) -> int:
        """A job for every archived recording that has none yet; returns how many."""
        rows = self.database.query(
            "SELECT r.sha256, r.media, r.flag_reasons FROM recordings r"
            " LEFT JOIN proxy_jobs j ON j.sha256 = r.sha256"
            " WHERE r.archived_at IS NOT NULL AND j.sha256 IS NULL")
        now = format_time(self.clock())
        for row in rows:
            state, kind, reason = initial_job(
                json.loads(row["media"]) if row["media"] else None, json.loads(row["flag_reasons"]))
            self.database.execute(
                "INSERT OR IGNORE INTO proxy_jobs (sha256, state, kind, last_error, created_at,"
                " updated_at) VALUES (?, ?, ?, ?, ?, ?)", (row["sha256"], state, kind, reason, now, now))
        return len(rows)

    def ingest_active(self, window_s: float = INGEST_ACTIVE_WINDOW_S) -> bool:
        """Files are being copied or archived right now (a source still on its way to the
        archive, touched within ``window_s``): proxies wait, so ingest never shares the CPU."""
        since = format_time(self.clock() - timedelta(seconds=window_s))
        return self.database.scalar(
            "SELECT 1 FROM sources WHERE state IN ('discovered', 'spooled') AND updated_at >= ?"
            " LIMIT 1", (since,)) is not None

    def recover(self) -> int:
        """Jobs left ``running`` by a crash go back to ``pending``."""
        return self.database.execute(
            "UPDATE proxy_jobs SET state = ?, updated_at = ? WHERE state = ?",
            (PENDING, format_time(self.clock()), RUNNING))

    def claim(self) -> dict[str, Any] | None:
        now = format_time(self.clock())
        due = self.database.scalar(
            "SELECT 1 FROM proxy_jobs WHERE state = ? AND (next_attempt_at IS NULL OR"
            " next_attempt_at <= ?) LIMIT 1", (PENDING, now))
        if due is None:  # the usual case while polling: no write lock taken
            return None
        with self.database.transaction() as conn:
            row = conn.execute(
                "SELECT j.sha256, j.kind, j.attempts, r.extension, r.size_bytes, r.media"
                " FROM proxy_jobs j JOIN recordings r ON r.sha256 = j.sha256"
                " WHERE j.state = ? AND (j.next_attempt_at IS NULL OR j.next_attempt_at <= ?)"
                " ORDER BY j.created_at, j.sha256 LIMIT 1", (PENDING, now)).fetchone()
            if row is None:
                return None
            conn.execute("UPDATE proxy_jobs SET state = ?, attempts = attempts + 1, updated_at = ?"
                         " WHERE sha256 = ?", (RUNNING, now, row["sha256"]))
        job = dict(row)
        job["attempts"] += 1
        job["media"] = json.loads(row["media"]) if row["media"] else None
        return job

    def done(self, sha256: str, made: Made) -> None:
        self.database.execute(
            "UPDATE proxy_jobs SET state = ?, last_error = NULL, next_attempt_at = NULL,"
            " proxy_key = ?, proxy_sha256 = ?, proxy_size_bytes = ?, poster_key = ?,"
            " poster_sha256 = ?, updated_at = ? WHERE sha256 = ?",
            (DONE, made.proxy_key, made.proxy_sha256, made.proxy_size_bytes, made.poster_key,
             made.poster_sha256, format_time(self.clock()), sha256))

    def unplayable(self, sha256: str, reason: str) -> None:
        """Job ``unplayable``; the recording flagged with the reason (one transaction)."""
        now = format_time(self.clock())
        with self.database.transaction() as conn:
            row = conn.execute("SELECT flag_reasons FROM recordings WHERE sha256 = ?",
                               (sha256,)).fetchone()
            reasons = json.loads(row["flag_reasons"]) if row else {}
            reasons.setdefault("unplayable", reason)
            conn.execute("UPDATE recordings SET flags = ?, flag_reasons = ? WHERE sha256 = ?",
                         (json.dumps(sorted(reasons)), json.dumps(reasons, ensure_ascii=False), sha256))
            conn.execute("UPDATE proxy_jobs SET state = ?, last_error = ?, next_attempt_at = NULL,"
                         " updated_at = ? WHERE sha256 = ?", (UNPLAYABLE, reason, now, sha256))

    def retry_later(self, sha256: str, attempts: int, reason: str, retries: int,
                    base_s: float = BACKOFF_BASE_S) -> str:
        now = self.clock()
        if attempts >= retries:
            state, next_at = FAILED, None
        else:
            state, next_at = PENDING, format_time(now + timedelta(seconds=backoff_s(attempts, base_s)))
        self.database.execute(
            "UPDATE proxy_jobs SET state = ?, last_error = ?, next_attempt_at = ?, updated_at = ?"
            " WHERE sha256 = ?", (state, reason, next_at, format_time(now), sha256))
        return state

    def release(self, sha256: str) -> None:
        """Stopped mid-job: back to pending, the attempt not counted."""
        self.database.execute(
            "UPDATE proxy_jobs SET state = ?, attempts = MAX(attempts - 1, 0), updated_at = ?"
            " WHERE sha256 = ? AND state = ?", (PENDING, format_time(self.clock()), sha256, RUNNING))

    def retry_failed(self) -> int:
        return self.database.execute(
            "UPDATE proxy_jobs SET state = ?, attempts = 0, next_attempt_at = NULL, updated_at = ?"
            " WHERE state = ?", (PENDING, format_time(self.clock()), FAILED))

    def report(self) -> dict[str, Any]:
        counts = {state: 0 for state in STATES}
        for row in self.database.query("SELECT state, COUNT(*) AS n FROM proxy_jobs GROUP BY state"):
            counts[row["state"]] = int(row["n"])
        waiting = int(self.database.scalar(
            "SELECT COUNT(*) FROM recordings r LEFT JOIN proxy_jobs j ON j.sha256 = r.sha256"
            " WHERE r.archived_at IS NOT NULL AND j.sha256 IS NULL"))
        counts[PENDING] += waiting  # archived, job not created yet: as good as pending
        problems = [dict(row) for row in self.database.query(
            "SELECT sha256, state, attempts, last_error AS reason, next_attempt_at, updated_at"
            " FROM proxy_jobs WHERE state IN (?, ?) OR (state = ? AND last_error IS NOT NULL)"
            " ORDER BY updated_at", (FAILED, UNPLAYABLE, PENDING))]
        return {"counts": counts, "problems": problems}


# -- making one proxy ---------------------------------------------------------------------

@dataclass
class Made:
    proxy_key: str
    proxy_sha256: str
    proxy_size_bytes: int
    poster_key: str | None = None
    poster_sha256: str | None = None
    details: dict[str, Any] = field(default_factory=dict)



class ProxyMaker:
    """Makes, checks and stores the proxy (and poster) of one recording; writes its event."""

    def __init__(self, config: Config, store: ArchiveStore, ledger: LedgerWriter,
                 runner: FfmpegRunner, *, work_dir: Path,
                 pause_while: Callable[[], bool] | None = None) -> None:
        self.settings = config.media
        self.spool_objects = config.spool_dir / "objects"
        self.store = store
        self.ledger = ledger
        self.runner = runner
        self.work_dir = work_dir
        self.pause_while = pause_while
        self.actor = f"station:{config.station.id}"

    def make(self, job: Mapping[str, Any]) -> Made:
        sha256 = keys.check_sha256(job["sha256"])
        job_dir = self.work_dir / sha256
        shutil.rmtree(job_dir, ignore_errors=True)
        job_dir.mkdir(parents=True)
        try:
            source, source_from = self._fetch(sha256, job["extension"], job_dir)
            return self._make(sha256, job["kind"], job["media"] or {}, source, source_from, job_dir)
        finally:
            shutil.rmtree(job_dir, ignore_errors=True)

    def _fetch(self, sha256: str, extension: str, job_dir: Path) -> tuple[Path, str]:
        """A private name for the original's bytes: the spool copy linked, else a download."""
        local = job_dir / "original"
        try:
            os.link(self.spool_objects / sha256, local)
            return local, "spool"
        except OSError as exc:
            if exc.errno not in (errno.ENOENT, errno.EXDEV, errno.EPERM, errno.EMLINK):
                raise ProxyEnvironmentError(f"cannot link the spool copy: {exc.strerror}") from exc
        original_key = keys.original_key(sha256, extension)
        digest = hashlib.sha256()
        try:
            with local.open("wb") as handle:
                for chunk in self.store.iter_chunks(original_key):
                    digest.update(chunk)
                    handle.write(chunk)
        except OSError as exc:
            raise ProxyEnvironmentError(f"cannot download {original_key}: {exc.strerror}") from exc
        except EvidenceError as exc:
            raise ProxyEnvironmentError(f"cannot download {original_key}: {exc.message}") from exc
        if digest.hexdigest() != sha256:  # never make a "copy" of bytes that are not the evidence
            raise ProxyEnvironmentError(f"{original_key}: downloaded bytes do not hash to the id")
        return local, "archive"

    def _timeout_s(self, media: Mapping[str, Any]) -> float:
        duration_s = media.get("duration_s") or 0.0
        return max(600.0, 10.0 * float(duration_s))

    def _make(self, sha256: str, kind: str, media: Mapping[str, Any], source: Path,
              source_from: str, job_dir: Path) -> Made:
        extension = "mp4" if kind == "video" else "m4a"
        proxy_path = job_dir / f"proxy.{extension}"
        arguments = proxy_arguments(kind, self.settings)
        self.runner.run(fill(arguments, source, proxy_path), self._timeout_s(media),
                        self.pause_while)
        self._check_playable(proxy_path, kind)
        proxy_key = keys.proxy_key(sha256, extension)
        proxy_sha256, proxy_size = self._store_file(proxy_key, proxy_path)
        details: dict[str, Any] = {
            "source_key": f"derived:{sha256}:proxy",
            "kind": kind,
            "derived_from": "original",
            "read_from": source_from,
            "ffmpeg_version": self.runner.version(),
            "proxy": {"key": proxy_key, "sha256": proxy_sha256, "size_bytes": proxy_size,
                      "arguments": arguments},
            "poster": None,
        }
        made = Made(proxy_key, proxy_sha256, proxy_size, details=details)
        if kind == "video":
            poster = self._poster(sha256, proxy_path, media, job_dir)
            if isinstance(poster, dict):
                details["poster"] = poster
                made.poster_key, made.poster_sha256 = poster["key"], poster["sha256"]
            else:
                details["poster_error"] = poster
        self.ledger.append(Event.DERIVED, recording=sha256, actor=self.actor, details=details, once=True)
        return made

    def _check_playable(self, proxy_path: Path, kind: str) -> None:
        try:
            summary = probe_file(proxy_path)
        except MediaError as exc:
            raise ProxyInputError(f"ffmpeg made nothing playable: {exc.message}") from exc
        codecs = {stream["codec_name"] for stream in summary["streams"]}
        wanted = "h264" if kind == "video" else "aac"
        if wanted not in codecs:
            raise ProxyInputError(f"no {kind} could be decoded (proxy has {sorted(codecs)})")

    def _store_file(self, key: str, path: Path) -> tuple[str, int]:
        sha256, size_bytes = hash_file(path)
        try:
            self.store.put_original(key, path, sha256=sha256, size_bytes=size_bytes,
                                    metadata={"sha256": sha256, "derived": "true"})
        except ObjectExistsError:
            # An earlier attempt stored it and crashed before its event: keep that one.
            return hash_stored(self.store, key)
        except EvidenceError as exc:
            raise ProxyEnvironmentError(f"cannot store {key}: {exc.message}") from exc
        return sha256, size_bytes

    def _poster(self, sha256: str, proxy_path: Path, media: Mapping[str, Any],
                job_dir: Path) -> dict[str, Any] | str:
        poster_path = job_dir / "poster.jpg"
        duration_s = float(media.get("duration_s") or 0.0)
        reason = "no frame"
        for at_s in dict.fromkeys((round(duration_s * POSTER_AT_FRACTION, 3), 0.0)):
            arguments = poster_arguments(at_s, self.settings.proxy_max_width,
                                         self.settings.proxy_max_height)
            poster_path.unlink(missing_ok=True)
            try:
                self.runner.run(fill(arguments, proxy_path, poster_path), 300.0, self.pause_while)
            except ProxyInputError as exc:
                reason = exc.message
                continue
            if poster_path.exists() and poster_path.stat().st_size > 0:
                key = keys.poster_key(sha256)
                data = poster_path.read_bytes()
                poster_sha256 = hashlib.sha256(data).hexdigest()
                try:
                    self.store.put_bytes(key, data, content_type="image/jpeg")
                except ObjectExistsError:
                    poster_sha256, _ = hash_stored(self.store, key)
                except EvidenceError as exc:
                    raise ProxyEnvironmentError(f"cannot store {key}: {exc.message}") from exc
                return {"key": key, "sha256": poster_sha256, "size_bytes": len(data),
                        "at_s": at_s, "derived_from": "proxy", "arguments": arguments}
        return reason


# -- the worker ---------------------------------------------------------------------------

class ProxyWorker:
    """Background proxy making for ``run`` (``start``/``stop``), or ``run_pending`` in the
    foreground. One process per station makes proxies: ``state_dir/proxy.lock``."""

    def __init__(self, config: Config, database: Database, maker: ProxyMaker,
                 *, clock: Clock = utc_now, poll_s: float = POLL_S,
                 backoff_base_s: float = BACKOFF_BASE_S) -> None:
        self.config = config
        self.queue = ProxyQueue(database, clock)
        self.maker = maker
        self.poll_s = poll_s
        self.backoff_base_s = backoff_base_s
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._lock_handle: TextIO | None = None
        self._enqueue_lock = threading.Lock()

    @classmethod
    def from_station(cls, station: Station, **kwargs: Any) -> ProxyWorker:
        config = station.config
        runner = FfmpegRunner(config.media.ffmpeg, niceness=config.media.proxy_nice)
        queue = ProxyQueue(station.database, station.clock)
        maker = ProxyMaker(config, station.store, station.ledger, runner,
                           work_dir=config.station.state_dir / "proxy-tmp",
                           pause_while=queue.ingest_active)
        return cls(config, station.database, maker, clock=station.clock, **kwargs)

    def _acquire(self) -> bool:
        path = self.config.station.state_dir / "proxy.lock"
        handle = path.open("a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            return False
        self._lock_handle = handle
        self.queue.recover()
        shutil.rmtree(self.maker.work_dir, ignore_errors=True)
        return True

    def _release_lock(self) -> None:
        if self._lock_handle is not None:
            self._lock_handle.close()
            self._lock_handle = None

    # daemon Source protocol
    def start(self) -> None:
        if not self.config.media.proxy:
            log.info("proxies are off (media.proxy = false)")
            return
        if not self._acquire():
            log.warning("another process is making proxies for this station; not starting")
            return
        for number in range(max(1, self.config.media.proxy_workers)):
            thread = threading.Thread(target=self._loop, name=f"proxy-{number}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self._stop.set()
        self.maker.runner.stop()
        for thread in self._threads:
            thread.join(timeout=30)
        self._threads.clear()
        self._release_lock()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                worked = self.step()
            except EvidenceError as exc:  # the database itself failed: wait, try again
                log.error("proxy worker: %s", exc.message)
                worked = False
            if not worked:
                self._stop.wait(self.poll_s)

    def run_pending(self, progress: Callable[[str, str], None] | None = None) -> dict[str, int]:
        """Process every job that is due now, on ``proxy_workers`` threads; then return."""
        if not self._acquire():
            raise StateError("another process (the daemon?) is making proxies for this station")
        results: dict[str, int] = {}
        results_lock = threading.Lock()

        def work() -> None:
            while isinstance(outcome := self.step(), tuple):
                with results_lock:
                    results[outcome[1]] = results.get(outcome[1], 0) + 1
                if progress:
                    progress(*outcome)

        try:
            threads = [threading.Thread(target=work, name=f"proxy-{n}")
                       for n in range(max(1, self.config.media.proxy_workers))]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        finally:
            self._release_lock()
        return results

    def step(self) -> tuple[str, str] | bool:
        """Process one due job: (recording, outcome state), or False when none is due."""
        if self.queue.ingest_active():  # archival first: start nothing while files arrive
            return False
        with self._enqueue_lock:
            self.queue.enqueue_archived()
            job = self.queue.claim()
        if job is None:
            return False
        sha256 = job["sha256"]
        try:
            made = self.maker.make(job)
        except ProxyInputError as exc:
            return sha256, self._unplayable(job, exc.message)
        except (ProxyEnvironmentError, OSError, EvidenceError) as exc:
            reason = exc.message if isinstance(exc, EvidenceError) else str(exc)
            if self._stop.is_set():
                self.queue.release(sha256)
                return sha256, PENDING
            state = self.queue.retry_later(sha256, job["attempts"], reason,
                                           self.config.media.proxy_retries, self.backoff_base_s)
            log.warning("proxy of %s: %s (%s)", sha256[:12], reason, state)
            return sha256, state
        self.queue.done(sha256, made)
        log.info("proxy of %s stored: %s", sha256[:12], made.proxy_key)
        return sha256, DONE

    def _unplayable(self, job: Mapping[str, Any], reason: str) -> str:
        sha256 = job["sha256"]
        try:
            self.maker.ledger.append(
                Event.FLAGGED, recording=sha256, actor=self.maker.actor, once=True,
                details={"source_key": f"flagged:{sha256}:unplayable", "flag": "unplayable",
                         "reason": reason, "by": "proxy", "ffmpeg_version": self.maker.runner.version()})
        except EvidenceError as exc:  # archive away: the finding waits for the next attempt
            return self.queue.retry_later(sha256, job["attempts"], f"{reason} (not yet recorded: "
                                          f"{exc.message})", self.config.media.proxy_retries + 1,
                                          self.backoff_base_s)
        self.queue.unplayable(sha256, reason)
        log.warning("recording %s is unplayable: %s", sha256[:12], reason)
        return UNPLAYABLE
