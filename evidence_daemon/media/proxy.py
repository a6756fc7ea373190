"""Viewing copies: a browser-playable proxy and a poster JPEG of each archived recording.

The original is the evidence master and is only ever *read* here: a proxy is made from the
spool copy when it is still there (hard-linked, so a release cannot pull it away mid-read),
else from a copy downloaded from the archive into ``state_dir/proxy-tmp``. Proxies are derived
and re-creatable; each one is stored create-only next to its original and described by a signed
``derived`` ledger event (its SHA-256 and size, the poster's, the ffmpeg version and the exact
arguments, with ``{input}``/``{output}`` standing for the file names).

Never delays archival: jobs (``jobs.py``, the owner of the ``proxy_jobs`` table) exist only
once ``recordings.archived_at`` is set; no job starts while files are on their way to the
archive (sources ``discovered`` or ``spooled``, touched in the last 10 minutes), and a running
ffmpeg is stopped (SIGSTOP) until they are archived; ffmpeg (``transcode.py``) runs ``nice``d
in the idle CPU and I/O classes on ``media.proxy_workers`` threads. Jobs survive restarts (a job
left ``running`` by a crash goes back to ``pending``). Failures are classified once:

- the *input* is bad (ffmpeg ran and could not decode it, or produced nothing playable): the
  same bytes give the same result, so the job ends ``unplayable`` at once and the recording is
  flagged ``unplayable`` with ffmpeg's reason (plus a ``flagged`` ledger event);
- the *environment* failed (archive away, disk full, ffmpeg killed or timed out): retried with
  exponential backoff, and after ``media.proxy_retries`` attempts the job is ``failed`` (shown
  by ``evidence-daemon proxies``, requeued by ``--retry-failed``).

This module orchestrates: ``ProxyMaker`` fetches the bytes, runs ffmpeg, checks and stores the
result and writes its event; ``ProxyWorker`` takes jobs from the queue and records outcomes.
The job states and their transitions are ``jobs.ProxyState`` and ``jobs.ProxyQueue``.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import logging
import os
import shutil
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from ..archive import keys
from ..archive.base import ArchiveStore, hash_file, hash_stored
from ..clock import Clock, utc_now
from ..config import Config
from ..custody.chain import Event
from ..custody.ledger import LedgerWriter
from ..durable import write_all
from ..errors import EvidenceError, MediaError, ObjectExistsError, StateError
from ..state.db import Database
from .jobs import BACKOFF_BASE_S, Made, ProxyJob, ProxyKind, ProxyQueue, ProxyState
from .probe import probe_file
from .transcode import (
    FfmpegRunner,
    ProxyEnvironmentError,
    ProxyInputError,
    fill,
    poster_arguments,
    proxy_arguments,
)
from ..i18n import _

if TYPE_CHECKING:
    from ..station import Station

log = logging.getLogger(__name__)

POLL_S = 5.0
POSTER_AT_FRACTION = 0.10


# -- making one proxy ---------------------------------------------------------------------

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

    def make(self, job: ProxyJob) -> Made:
        sha256 = keys.check_sha256(job.sha256)
        job_dir = self.work_dir / sha256
        shutil.rmtree(job_dir, ignore_errors=True)
        job_dir.mkdir(parents=True)
        try:
            source, source_from = self._fetch(sha256, job.extension, job_dir)
            return self._make(sha256, job.kind, job.media or {}, source, source_from, job_dir)
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
                raise ProxyEnvironmentError(_("cannot link the spool copy: {strerror}").format(
                    strerror=exc.strerror)) from exc
        original_key = keys.original_key(sha256, extension)
        digest = hashlib.sha256()
        try:
            with local.open("wb", buffering=0) as handle:
                for chunk in self.store.iter_chunks(original_key):
                    digest.update(chunk)
                    write_all(handle.fileno(), chunk)
        except OSError as exc:
            raise ProxyEnvironmentError(_("cannot download {original_key}: {strerror}").format(
                original_key=original_key, strerror=exc.strerror)) from exc
        except EvidenceError as exc:
            raise ProxyEnvironmentError(_("cannot download {original_key}: {message}").format(
                original_key=original_key, message=exc.message)) from exc
        if digest.hexdigest() != sha256:  # never make a "copy" of bytes that are not the evidence
            raise ProxyEnvironmentError(_("{original_key}: downloaded bytes do not hash to the id").format(
                original_key=original_key))
        return local, "archive"

    def _timeout_s(self, media: Mapping[str, Any]) -> float:
        duration_s = media.get("duration_s") or 0.0
        return max(600.0, 10.0 * float(duration_s))

    def _make(self, sha256: str, kind: ProxyKind, media: Mapping[str, Any], source: Path,
              source_from: str, job_dir: Path) -> Made:
        extension = "mp4" if kind == ProxyKind.VIDEO else "m4a"
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
        if kind == ProxyKind.VIDEO:
            poster = self._poster(sha256, proxy_path, media, job_dir)
            if isinstance(poster, dict):
                details["poster"] = poster
                made.poster_key, made.poster_sha256 = poster["key"], poster["sha256"]
            else:
                details["poster_error"] = poster
        self.ledger.append(Event.DERIVED, recording=sha256, actor=self.actor, details=details, once=True)
        return made

    def _check_playable(self, proxy_path: Path, kind: ProxyKind) -> None:
        try:
            summary = probe_file(proxy_path)
        except MediaError as exc:
            raise ProxyInputError(_("ffmpeg made nothing playable: {message}").format(
                message=exc.message)) from exc
        codecs = {stream["codec_name"] for stream in summary["streams"]}
        wanted = "h264" if kind == ProxyKind.VIDEO else "aac"
        if wanted not in codecs:
            raise ProxyInputError(_("no {kind} could be decoded (proxy has {codecs})").format(
                kind=kind, codecs=sorted(codecs)))

    def _store_file(self, key: str, path: Path) -> tuple[str, int]:
        sha256, size_bytes = hash_file(path)
        try:
            self.store.put_original(key, path, sha256=sha256, size_bytes=size_bytes,
                                    metadata={"sha256": sha256, "derived": "true"})
        except ObjectExistsError:
            # An earlier attempt stored it and crashed before its event: keep that one.
            return hash_stored(self.store, key)
        except EvidenceError as exc:
            raise ProxyEnvironmentError(_("cannot store {key}: {message}").format(
                key=key, message=exc.message)) from exc
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
                    poster_sha256, _size = hash_stored(self.store, key)
                except EvidenceError as exc:
                    raise ProxyEnvironmentError(_("cannot store {key}: {message}").format(
                        key=key, message=exc.message)) from exc
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
            log.warning(_("another process is making proxies for this station; not starting"))
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
                log.error(_("proxy worker: %s"), exc.message)
                worked = False
            if not worked:
                self._stop.wait(self.poll_s)

    def run_pending(self, progress: Callable[[str, ProxyState], None] | None = None,
                    ) -> dict[ProxyState, int]:
        """Process every job that is due now, on ``proxy_workers`` threads; then return."""
        if not self._acquire():
            raise StateError(_("another process (the daemon?) is making proxies for this station"))
        results: dict[ProxyState, int] = {}
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

    def step(self) -> tuple[str, ProxyState] | bool:
        """Process one due job: (recording, outcome state), or False when none is due."""
        if self.queue.ingest_active():  # archival first: start nothing while files arrive
            return False
        with self._enqueue_lock:
            self.queue.enqueue_archived()
            job = self.queue.claim()
        if job is None:
            return False
        sha256 = job.sha256
        try:
            made = self.maker.make(job)
        except ProxyInputError as exc:
            return sha256, self._unplayable(job, exc.message)
        except (ProxyEnvironmentError, OSError, EvidenceError) as exc:
            reason = exc.message if isinstance(exc, EvidenceError) else str(exc)
            if self._stop.is_set():
                self.queue.release(sha256)
                return sha256, ProxyState.PENDING
            state = self.queue.retry_later(sha256, job.attempts, reason,
                                           self.config.media.proxy_retries, self.backoff_base_s)
            log.warning(_("proxy of %s: %s (%s)"), sha256[:12], reason, state)
            return sha256, state
        self.queue.done(sha256, made)
        log.info("proxy of %s stored: %s", sha256[:12], made.proxy_key)
        return sha256, ProxyState.DONE

    def _unplayable(self, job: ProxyJob, reason: str) -> ProxyState:
        sha256 = job.sha256
        try:
            self.maker.ledger.append(
                Event.FLAGGED, recording=sha256, actor=self.maker.actor, once=True,
                details={"source_key": f"flagged:{sha256}:unplayable", "flag": "unplayable",
                         "reason": reason, "by": "proxy", "ffmpeg_version": self.maker.runner.version()})
        except EvidenceError as exc:  # archive away: the finding waits for the next attempt
            return self.queue.retry_later(sha256, job.attempts, f"{reason} (not yet recorded: "
                                          f"{exc.message})", self.config.media.proxy_retries + 1,
                                          self.backoff_base_s)
        self.queue.unplayable(sha256, reason)
        log.warning(_("recording %s is unplayable: %s"), sha256[:12], reason)
        return ProxyState.UNPLAYABLE
