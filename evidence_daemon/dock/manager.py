"""The dock manager: what happens, unattended, when a device is docked or an inbox file is ready.

Subscribes to the sources' events (``device_added``, ``device_removed``, ``inbox_ready``) and
runs one job per docked device or ready inbox batch, every docked device at once unless the operator limits it
(``dock.max_concurrent_devices``; each device holds a few MB, see README "Memory")::

    settle -> mount read-only -> survey -> register the dock -> spool -> [opt-in wipe] -> unmount

The device is released (unmounted, its job done) once every file it gave is durable in the
spool (copied, hashed, fsync'd); the uploads go on in the ingest pipeline's upload stage,
beside every other device's, earliest deadline first. Only a device whose rule asks for the
wipe waits until every file is archived.

Settling is waiting until the device can be read (``sources/readiness.py``: its node opens and
reads), for at most ``dock.settle_s``: a ready card is mounted at once.

An inbox batch is ingested, then each file is kept, moved to ``done/`` or removed by the
release policy (``dock/inbox.py`` over ``dock/release.py``); the wipe uses the same policy.

The survey counts the files for the progress bar and finds the newest file time on the device:
with the dock time it gives the device's apparent clock offset, kept in the dock's record.

A device pulled mid-copy leaves its unread files as they were: the partial file is never
archived (its copy fails its size/mtime check or a read error) and the rest is taken at the
next dock — also when that dock comes while the pulled job is still ending: a re-dock is never
taken for udev repeating itself, and never served beside its last job (one mountpoint each).
Every collaborator comes in through the constructor.
"""

from __future__ import annotations

import glob
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol

from ..config import After, Config, WatchConfig
from ..custody.ledger import LedgerWriter
from ..devices.registry import DeviceIdentity
from ..errors import EvidenceError
from ..failpoints import failpoint
from ..ingest.outcomes import Progress
from ..ingest.pipeline import Ingestor, Origin, Summary
from ..ingest.scanner import FILE, display_path, scan_tree
from ..sources.readiness import Readiness, wait_until_ready
from ..sources.rules import DeviceInfo, DockMatch, device_identity, match_device
from ..state.db import Database
from .inbox import inbox_origin, release_inbox_file
from .release import Outcome
from .wipe import wipe_device
from ..i18n import _

log = logging.getLogger(__name__)

# ``dock.max_concurrent_devices = 0``: a pool this wide never makes a docked device wait (a
# collection station has at most a few dozen ports; threads are only made when needed).
UNLIMITED_DEVICES = 1024


class MounterLike(Protocol):
    def mount(self, info: DeviceInfo, identity: str, match: DockMatch) -> Path: ...

    def unmount(self, mountpoint: Path) -> None: ...

    def remount_writable(self, mountpoint: Path, info: DeviceInfo) -> None: ...


# (device, the most to wait in seconds, stop) -> whether and when it became ready
ReadinessWait = Callable[[DeviceInfo, float, threading.Event], Readiness]


class RegistryLike(Protocol):
    def docked(self, identity: DeviceIdentity, *, newest_file_time: datetime | None = None) -> None: ...


class JobKind(StrEnum):
    DEVICE = "device"
    INBOX = "inbox"


class JobState(StrEnum):
    """A dock job's state, as ``status`` and the status file show it."""

    WAITING = "waiting"
    SETTLING = "settling"
    MOUNTING = "mounting"
    INGESTING = "ingesting"
    WIPING = "wiping"
    DONE = "done"
    INCOMPLETE = "incomplete"  # something was not read or not archived: no wipe, next dock
    FAILED = "failed"


ENDED = frozenset({JobState.DONE, JobState.INCOMPLETE, JobState.FAILED})


@dataclass
class DockJob:
    """One docked device (or inbox batch) and its progress, as ``status`` shows it."""

    name: str
    kind: JobKind
    model: str = ""
    devnode: str = ""
    state: JobState = JobState.WAITING
    mountpoint: str = ""
    files_total: int = 0
    bytes_total: int = 0
    files_done: int = 0
    bytes_done: int = 0
    current_file: str = ""
    started_at: float = field(default_factory=time.time)
    finished_at: float | None = None
    removed: bool = False
    error: str = ""
    result: dict[str, int] = field(default_factory=dict)

    @property
    def key(self) -> str:
        """What makes two events the same device: its node, else (MTP) its identity."""
        return self.devnode or self.name

    def on_progress(self, event: Progress, info: dict[str, Any]) -> None:
        if event == Progress.COPYING:
            if self.current_file:
                self.files_done += 1
            self.current_file = info["path"]
        elif event == Progress.BYTES:
            self.bytes_done += info["count"]
        elif event == Progress.DONE and self.current_file:
            self.files_done += 1
            self.current_file = ""

    def snapshot(self) -> dict[str, Any]:
        elapsed_s = max((self.finished_at or time.time()) - self.started_at, 1e-6)
        return {
            "name": self.name, "kind": str(self.kind), "model": self.model, "devnode": self.devnode,
            "state": str(self.state), "mountpoint": self.mountpoint,
            "files_done": self.files_done, "files_total": self.files_total,
            "bytes_done": self.bytes_done, "bytes_total": self.bytes_total,
            "current_file": self.current_file, "rate_bytes_per_s": int(self.bytes_done / elapsed_s),
            "started_at": self.started_at, "finished_at": self.finished_at,
            "removed": self.removed, "error": self.error, "result": self.result,
        }


@dataclass(frozen=True)
class TreeSurvey:
    files: int  # the progress bar's 100 %
    size_bytes: int
    newest_mtime: datetime | None  # the newest file's modification time (None: no files)


def survey_tree(root: Path, skip: Sequence[str]) -> TreeSurvey:
    """The files under ``root`` that ingest would take (the scanner's own walk, links not
    followed, junk in ``skip`` left out): a FUSE label file or a PC's ``System Volume
    Information`` says nothing about the recorder's clock."""
    files = total = 0
    newest_ns: int | None = None
    for found in scan_tree(os.fsencode(root), skip):
        if found.kind != FILE:
            continue
        files += 1
        total += found.size_bytes
        if found.mtime_ns is not None and (newest_ns is None or found.mtime_ns > newest_ns):
            newest_ns = found.mtime_ns
    newest = datetime.fromtimestamp(newest_ns / 1e9, tz=timezone.utc) if newest_ns is not None else None
    return TreeSurvey(files, total, newest)


class DockManager:
    def __init__(
        self,
        config: Config,
        ingestor: Ingestor,
        registry: RegistryLike,
        mounter: MounterLike,
        database: Database,
        ledger: LedgerWriter,
        *,
        stop: threading.Event | None = None,
        wait_ready: ReadinessWait = wait_until_ready,
    ) -> None:
        self.config = config
        self.wait_ready = wait_ready
        self.ingestor = ingestor
        self.registry = registry
        self.mounter = mounter
        self.database = database
        self.ledger = ledger
        self.stop = stop or threading.Event()
        self.actor = f"station:{config.station.id}"
        self._pool = ThreadPoolExecutor(
            max_workers=config.dock.max_concurrent_devices or UNLIMITED_DEVICES,
            thread_name_prefix="dock",
        )
        self._lock = threading.Lock()
        self._active: dict[str, DockJob] = {}  # devnode -> its newest job, while it runs
        self._serving: dict[str, threading.Lock] = {}  # device identity -> held while served
        self._jobs: list[DockJob] = []  # recent jobs, newest last, for status
        self._futures: list[Future[None]] = []

    # -- events from the sources ------------------------------------------------------------

    def device_added(self, info: DeviceInfo) -> None:
        match = match_device(info, self.config.dock.rules)
        if match is None:
            if self.config.dock.ignore_unknown:
                log.info("ignoring %s (%s, label %r): no dock rule matches", info.devnode,
                         info.fs_type, info.fs_label)
                return
            match = DockMatch(role="recorder", model="unknown", rule=None)
        identity = device_identity(info, match)
        if identity is None:
            log.warning(_("ignoring %s: no USB serial and no filesystem UUID to identify it"),
                        info.devnode)
            return
        job = DockJob(name=identity, kind=JobKind.DEVICE, model=match.model, devnode=info.devnode or "")
        with self._lock:
            serving = self._active.get(job.key)
            if serving is not None and not serving.removed:
                return  # already being served (udev repeats itself)
            # A device pulled while its job still ends and docked again on the same node is a
            # new dock: it gets its own job, which waits for the last one (_serve_device).
            self._active[job.key] = job
            self._remember(job)
        log.info("docked: %s (%s %s) on %s", identity, match.role, match.model, info.devnode)
        self._submit(self._serve_device, info, match, job)

    def device_removed(self, info: DeviceInfo) -> None:
        with self._lock:
            job = next((j for j in self._active.values() if j.devnode == (info.devnode or "")), None)
        if job is not None and job.state not in ENDED:
            job.removed = True
            log.warning(_("%s was removed while %s; what was not yet read stays on the device "
                          "until its next dock"), job.name, job.state)

    def inbox_ready(self, watch: WatchConfig, paths: list[bytes]) -> None:
        name = watch.device_id or str(watch.path)
        job = DockJob(name=name, kind=JobKind.INBOX, model="inbox", files_total=len(paths))
        with self._lock:
            self._remember(job)
        self._submit(self._serve_inbox, watch, paths, job)

    # -- jobs ---------------------------------------------------------------------------

    def _submit(self, function: Callable[..., None], *args: Any) -> None:
        future = self._pool.submit(function, *args)
        with self._lock:
            self._futures = [f for f in self._futures if not f.done()] + [future]

    def _remember(self, job: DockJob) -> None:
        self._jobs = [j for j in self._jobs if j.finished_at is None or time.time() - j.finished_at < 3600]
        self._jobs.append(job)

    def _serve_device(self, info: DeviceInfo, match: DockMatch, job: DockJob) -> None:
        """One job per device at a time: a re-dock waits until its last job has unmounted."""
        with self._lock:
            serving = self._serving.setdefault(job.name, threading.Lock())
        with serving:
            self._serve_device_now(info, match, job)

    def _serve_device_now(self, info: DeviceInfo, match: DockMatch, job: DockJob) -> None:
        mountpoint: Path | None = None
        try:
            job.state = JobState.SETTLING
            readiness = self.wait_ready(info, self.config.dock.settle_s, self.stop)
            if self.stop.is_set() or job.removed:
                job.state = JobState.INCOMPLETE
                return
            if not readiness.ready:  # the mount says what is wrong, if anything is
                log.warning(_("%s: not ready after %.1f s (%s); mounting anyway"), job.name,
                            readiness.waited_s, readiness.reason)
            job.state = JobState.MOUNTING
            mountpoint = self.mounter.mount(info, job.name, match)
            job.mountpoint = str(mountpoint)
            skip = fuse_artifacts(mountpoint, info)
            survey = survey_tree(mountpoint, (*self.config.ingest.skip, *skip))
            job.files_total, job.bytes_total = survey.files, survey.size_bytes
            self.registry.docked(DeviceIdentity(
                device_id=job.name, model=match.model, role=match.role, serial=info.serial,
                fs_uuid=info.fs_uuid, fs_label=info.fs_label,
            ), newest_file_time=survey.newest_mtime)
            job.state = JobState.INGESTING
            wipe = match.rule is not None and match.rule.wipe
            # Released once every file is durable in the spool; the uploads go on in the
            # station's upload stage. A wipe needs every file archived first: that job waits.
            summary = self.ingestor.ingest(
                Origin(mountpoint, device_id=job.name), progress=job.on_progress, stop=self.stop,
                skip=skip, release_spooled=not wipe,
            )
            job.result = dict(summary.counts)
            complete = summary.ok and not job.removed and not self.stop.is_set() and not _unread(summary)
            if complete and wipe:
                job.state = JobState.WIPING
                self.mounter.remount_writable(mountpoint, info)
                report = wipe_device(mountpoint, job.name, self.database, self.ledger, actor=self.actor)
                job.result["wiped"] = len(report.deleted)
                job.result["kept on device"] = len(report.kept)
            job.state = JobState.DONE if complete else JobState.INCOMPLETE
            log.info("%s: %s %s", job.name, job.state, _describe(summary))
        except EvidenceError as exc:
            job.state, job.error = JobState.FAILED, exc.untranslated  # status JSON
            log.error("%s: %s", job.name, exc.message)
        except Exception:  # a bug must not kill the dock: log it with the device's name
            job.state, job.error = JobState.FAILED, "internal error (see the log)"
            log.exception(_("%s: unexpected error"), job.name)
        finally:
            if mountpoint is not None:
                try:
                    self.mounter.unmount(mountpoint)
                except EvidenceError as exc:
                    log.error("%s: %s", job.name, exc.message)
            job.finished_at = time.time()
            job.current_file = ""
            with self._lock:
                if self._active.get(job.key) is job:
                    del self._active[job.key]
            failpoint("dock.released")

    def _serve_inbox(self, watch: WatchConfig, paths: list[bytes], job: DockJob) -> None:
        try:
            job.state = JobState.INGESTING
            summary = self.ingestor.ingest(
                inbox_origin(watch), paths=paths, progress=job.on_progress, stop=self.stop,
            )
            job.result = dict(summary.counts)
            if watch.after != After.KEEP:
                for relative in paths:
                    released = release_inbox_file(watch, relative, self.database, self.ledger,
                                                  actor=self.actor)
                    outcome = released.outcome.value
                    job.result[outcome] = job.result.get(outcome, 0) + 1
                    if released.outcome is Outcome.LEFT:
                        log.info("inbox %s: left %s: %s", watch.path, display_path(relative),
                                 released.reason)
            job.state = JobState.DONE if summary.ok else JobState.INCOMPLETE
        except EvidenceError as exc:
            job.state, job.error = JobState.FAILED, exc.untranslated  # status JSON
            log.error(_("inbox %s: %s"), watch.path, exc.message)
        except Exception:
            job.state, job.error = JobState.FAILED, "internal error (see the log)"
            log.exception(_("inbox %s: unexpected error"), watch.path)
        finally:
            job.finished_at = time.time()

    # -- status and shutdown ------------------------------------------------------------

    def snapshot(self) -> list[dict[str, Any]]:
        with self._lock:
            return [job.snapshot() for job in self._jobs]

    @property
    def busy(self) -> bool:
        """A job runs, or uploads of released devices are still under way."""
        with self._lock:
            if any(not future.done() for future in self._futures):
                return True
        return self.ingestor.uploading > 0

    def shutdown(self) -> None:
        """Stop starting files; wait for in-flight ones to be made durable, and for the
        uploads in flight; what else waits for the archive stays spooled for the next start."""
        self.stop.set()
        self._pool.shutdown(wait=True)
        self.ingestor.stop_uploads()


def fuse_artifacts(mountpoint: Path, info: DeviceInfo) -> tuple[str, ...]:
    """Names a FUSE driver invents: fusefat shows the volume label as a 0-byte file at the
    root. It is not on the card as a file, so it is not evidence; leave it out."""
    if not info.fs_label:
        return ()
    try:
        entries = os.listdir(mountpoint)
    except OSError:
        return ()
    label_names = fat_label_names(info.fs_label)
    return tuple(
        glob.escape(name) for name in entries
        if name.strip().upper() in label_names
        and os.path.isfile(mountpoint / name) and os.path.getsize(mountpoint / name) == 0
    )


def fat_label_names(label: str) -> frozenset[str]:
    """The names (upper case) under which a FAT volume label can show up as a file.

    The label is an 11-character directory entry, like an 8.3 name: fusefat lists
    ``BODYCAM000`` as ``BODYCAM0.00`` and ``POLICE CAM1`` as ``POLICEC.AM1`` (it drops every
    space; other drivers only trailing ones). Labels of up to 8 characters without a space read
    the same every way.
    """
    padded = label.strip().upper().ljust(11)[:11]
    names = {label.strip().upper()}
    for base, extension in ((padded[:8].rstrip(), padded[8:].rstrip()),
                            (padded[:8].replace(" ", ""), padded[8:].replace(" ", ""))):
        names.add(f"{base}.{extension}" if extension else base)
    return frozenset(names)


def _unread(summary: Summary) -> bool:
    return bool(summary.counts.get("failed") or summary.counts.get("not started (stopping)"))


def _describe(summary: Summary) -> str:
    return ", ".join(f"{count} {name}" for name, count in sorted(summary.counts.items())) or "nothing new"
