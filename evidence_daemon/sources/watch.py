"""Watched inbox folders (watchdog/inotify): files that arrive are reported once ready.

Fixed recorders (interrogation rooms) and terminals that sync over Wi-Fi drop their files into
configured inbox folders. ``WatchFolders`` reports, per folder, the batch of relative paths that
became *ready* (``on_ready(watch, paths)``, the dock manager's ``inbox_ready``). This module
knows nothing of ingest or of what happens to a file afterwards: the dock manager ingests the
batch and its release policy (``dock/inbox.py``, ``dock/release.py``) keeps, moves to ``done/``
or removes each file.

When is a file ready? A writer must have let go of it, and it must have stayed put:

- "let go" (``closed``) is seen as a close after writing (inotify ``IN_CLOSE_WRITE``), a rename
  into place (rsync, Syncthing and most sync tools write a temp name and rename it), or a whole
  directory moved in. A later write clears it again (Samba and some terminals close and reopen).
- "stayed put" is: the file's (size, mtime_ns), stat'ed by ``poll()``, unchanged and no event
  about it for ``stable_s``.
- A file whose writer was never seen letting go — already there at start-up, found by the
  periodic rescan after missed events, or written by something whose close inotify does not see
  (NFS) — is taken after the longer ``unclosed_s`` of stability instead, so a writer that merely
  stalls for ``stable_s`` mid-upload does not get a half file archived.

Each path is reported once until it changes again. Junk (``ingest.skip``), the temp names of
sync tools, directories, symbolic links, special files and everything under the folder's
``done/`` area are never reported.

This module never writes into, moves or deletes a file in an inbox; it only reads names and
stats (``done/`` is the release policy's area, never reported).
"""

from __future__ import annotations

import errno
import fnmatch
import logging
import os
import re
import stat
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from watchdog.events import (
    DirDeletedEvent,
    DirMovedEvent,
    FileAttribEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver

from ..config import DEFAULT_SKIP, WatchConfig
from ..errors import ConfigError, DeviceError
from ..ingest.scanner import display_path, is_junk
from ..i18n import _

log = logging.getLogger(__name__)

DONE_DIR = b"done"

ReadyCallback = Callable[[WatchConfig, list[bytes]], None]
Signature = tuple[int, int]  # (size_bytes, mtime_ns)

# Names that sync tools, editors and office suites use while a file is still being written.
# Matched against every component of a path, lower-cased (Windows terminals write ".TMP").
TEMP_PATTERNS = (
    "*.part", "*.partial", "*.filepart", "*.crdownload", "*.tmp", "*.temp", "*.!sync",
    ".~*", "~$*", ".*.swp", ".*.swx", ".syncthing.*", ".rsync-partial",
)
# rsync writes ".<name>.<6 random characters>" next to the target and renames it when done.
_RSYNC_TEMP = re.compile(rb"^\..+\.[A-Za-z0-9]{6}$")


# -- pure decisions ----------------------------------------------------------------------------


def is_temporary(name: bytes) -> bool:
    """A temp name a sync tool or editor writes before the real one appears."""
    if _RSYNC_TEMP.match(name):
        return True
    lowered = display_path(name).lower()
    return any(fnmatch.fnmatchcase(lowered, pattern) for pattern in TEMP_PATTERNS)


def is_candidate(relative: bytes, skip: Sequence[str] = DEFAULT_SKIP) -> bool:
    """Whether a path relative to a watch folder may ever be reported (by name alone)."""
    parts = relative.split(b"/")
    if relative.startswith(b"/") or any(part in (b"", b".", b"..") for part in parts):
        return False
    if parts[0] == DONE_DIR:
        return False
    return not any(is_junk(display_path(part), skip) or is_temporary(part) for part in parts)


def unclosed_quiet_s(stable_s: float) -> float:
    """How long a file nobody was seen closing must stay unchanged: 3 x stable_s, at least 30 s."""
    return max(3 * stable_s, 30.0)


def poll_period_s(stable_s: float) -> float:
    return max(min(stable_s / 2, 1.0), 0.05)


@dataclass
class _Pending:
    closed: bool  # the writer was seen letting go since the last write
    event_at: float  # last event about the file
    signature: Signature | None = None  # last (size, mtime_ns) stat'ed
    since: float = 0.0  # when that signature was first seen


class Readiness:
    """Which files of one folder are ready, from events and stats at given times. Pure: the
    caller brings the clock readings and the stat results; nothing here touches the disk.

    Events: ``written`` (content changed, or a new file), ``touched`` (metadata only),
    ``closed`` (close after write, renamed into place), ``gone`` / ``gone_tree``. Stats:
    ``observe`` for pending files, ``found`` for files a directory scan came across.
    ``take_ready`` returns the paths ready now, each once until it changes again.
    """

    def __init__(self, stable_s: float, unclosed_s: float | None = None) -> None:
        self.stable_s = stable_s
        self.unclosed_s = unclosed_quiet_s(stable_s) if unclosed_s is None else unclosed_s
        self._pending: dict[bytes, _Pending] = {}
        self._reported: dict[bytes, Signature] = {}

    def written(self, path: bytes, now: float) -> None:
        self._activity(path, now, closed=False)

    def touched(self, path: bytes, now: float) -> None:
        # rsync --inplace and cp -p set the mtime after closing: activity, not a new write.
        self._activity(path, now, closed=None)

    def closed(self, path: bytes, now: float) -> None:
        self._activity(path, now, closed=True)

    def _activity(self, path: bytes, now: float, *, closed: bool | None) -> None:
        """An event about ``path``: ``closed`` is what it says of the writer (None: nothing)."""
        entry = self._pending.get(path)
        if entry is None:
            self._pending[path] = _Pending(closed=bool(closed), event_at=now)
            return
        if closed is not None:
            entry.closed = closed
        entry.event_at = now

    def gone(self, path: bytes) -> None:
        self._pending.pop(path, None)
        self._reported.pop(path, None)

    def gone_tree(self, directory: bytes) -> None:
        prefix = directory + b"/"
        for table in (self._pending, self._reported):
            for path in [path for path in table if path.startswith(prefix)]:
                del table[path]

    def observe(self, path: bytes, size_bytes: int, mtime_ns: int, now: float) -> None:
        """A stat of a pending file."""
        entry = self._pending.get(path)
        if entry is not None and entry.signature != (size_bytes, mtime_ns):
            entry.signature = (size_bytes, mtime_ns)
            entry.since = now

    def found(self, path: bytes, size_bytes: int, mtime_ns: int, now: float) -> None:
        """A file a scan came across (start-up, rescan): pending unless known as it is."""
        if path in self._pending or self._reported.get(path) == (size_bytes, mtime_ns):
            return
        self._pending[path] = _Pending(
            closed=False, event_at=now, signature=(size_bytes, mtime_ns), since=now
        )

    def pending(self) -> list[bytes]:
        return sorted(self._pending)

    def take_ready(self, now: float) -> list[bytes]:
        ready = []
        for path, entry in sorted(self._pending.items()):
            if entry.signature is None:
                continue
            quiet_s = now - max(entry.event_at, entry.since)
            if quiet_s < (self.stable_s if entry.closed else self.unclosed_s):
                continue
            del self._pending[path]
            if self._reported.get(path) == entry.signature:
                continue  # an event without a change (metadata, our own reads)
            self._reported[path] = entry.signature
            ready.append(path)
        return ready

    def retry(self, paths: Sequence[bytes], now: float) -> None:
        """Report these again after another ``stable_s`` (their handler failed)."""
        for path in paths:
            signature = self._reported.pop(path, None)
            self._pending[path] = _Pending(
                closed=True, event_at=now, signature=signature, since=now
            )

    def prune(self, present: set[bytes]) -> None:
        """Forget reported files a full scan no longer finds (their delete event was missed)."""
        for path in [path for path in self._reported if path not in present]:
            del self._reported[path]


# -- watching ----------------------------------------------------------------------------------


def default_observer() -> BaseObserver:
    """inotify with "full" move events, so a file renamed in from outside the folder is told
    apart from one being created (and written) there; elsewhere the platform's observer."""
    try:
        from watchdog.observers.inotify import InotifyObserver
    except ImportError:  # not Linux
        return Observer()
    return InotifyObserver(generate_full_events=True)


class _FolderHandler(FileSystemEventHandler):
    def __init__(self, folders: WatchFolders, index: int) -> None:
        self._folders = folders
        self._index = index

    def on_any_event(self, event: FileSystemEvent) -> None:
        self._folders._on_event(self._index, event)


class WatchFolders:
    """Watches inbox folders and reports files that became ready, batch by batch, per folder.

    ``on_ready(watch, relative_paths)`` runs on this object's poll thread; while it runs the
    folders are not polled (events are still collected), so it may ingest directly or hand the
    batch to a worker. If it raises, the batch is reported again after ``stable_s``.

    ``skip``: junk names (``ingest.skip``); ``unclosed_s``: the quiet period for files nobody
    was seen closing (default ``unclosed_quiet_s(stable_s)``); ``rescan_s``: how often every
    folder is walked again, for events the kernel dropped (inotify queue overflow).
    """

    def __init__(
        self,
        watches: Sequence[WatchConfig],
        on_ready: ReadyCallback,
        *,
        clock: Callable[[], float] = time.monotonic,
        observer_factory: Callable[[], BaseObserver] = default_observer,
        skip: Sequence[str] = DEFAULT_SKIP,
        unclosed_s: float | None = None,
        rescan_s: float = 300.0,
    ) -> None:
        self.watches = tuple(watches)
        self._on_ready = on_ready
        self._clock = clock
        self._observer_factory = observer_factory
        self._skip = tuple(skip)
        self._rescan_s = rescan_s
        self._roots = [os.fsencode(watch.path) for watch in self.watches]
        self._readiness = [Readiness(watch.stable_s, unclosed_s) for watch in self.watches]
        self._lock = threading.Lock()  # guards the Readiness tables (events vs poll)
        self._poll_lock = threading.Lock()  # one poll at a time
        self._stopping = threading.Event()
        self._observer: BaseObserver | None = None
        self._thread: threading.Thread | None = None
        self._next_rescan = 0.0
        self._period_s = min((poll_period_s(w.stable_s) for w in self.watches), default=1.0)

    def start(self) -> None:
        """Check the folders, start watching them, then take stock of what is already there.

        A missing inbox is a ``ConfigError`` naming the key: it is never created, because a
        typo or a share that failed to mount would otherwise be watched, empty, forever.
        """
        self.check_folders()
        observer = self._observer_factory()
        for index, watch in enumerate(self.watches):
            observer.schedule(_FolderHandler(self, index), os.fsdecode(self._roots[index]),
                              recursive=True)
        try:
            observer.start()
        except OSError as exc:
            observer.stop()
            raise DeviceError(
                _("cannot watch the inbox folders: {error}").format(error=exc.strerror or exc)
                + (_(" (raise fs.inotify.max_user_watches)") if exc.errno == errno.ENOSPC else "")
            ) from exc
        self._observer = observer
        # After the watches are in place, so a file arriving meanwhile is seen by one or both.
        self.rescan()
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name="watch-folders", daemon=True)
        self._thread.start()

    def check_folders(self) -> None:
        real: list[str] = []
        for index, watch in enumerate(self.watches):
            if not watch.path.is_dir():
                what = _("is not a directory") if watch.path.exists() else _("does not exist")
                raise ConfigError(
                    _("watch[{index}].path: inbox {path} {what}; create it (or mount its share) "
                      "first — it is not created automatically").format(
                          index=index, path=watch.path, what=what)
                )
            real.append(os.path.realpath(watch.path))
        for index, path in enumerate(real):
            for other_index, other in enumerate(real):
                if index != other_index and (path == other or path.startswith(other + os.sep)):
                    raise ConfigError(
                        _("watch[{index}].path: {path} lies inside watch[{other_index}].path "
                          "{path2}; a file would be claimed by both").format(
                              index=index, path=self.watches[index].path, other_index=other_index, path2=self.watches[other_index].path)
                    )

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._observer is not None:
            self._observer.stop()
            self._observer.join()
            self._observer = None

    def _run(self) -> None:
        while not self._stopping.wait(self._period_s):
            try:
                self.poll()
            except Exception:  # the thread must outlive a bad poll, or the inbox goes deaf
                log.exception(_("watch folders: poll failed; retrying"))

    # -- events (observer thread) -------------------------------------------------------------

    def _relative(self, index: int, path: bytes | str) -> bytes | None:
        if not path:
            return None
        raw = os.fsencode(path)
        root = self._roots[index].rstrip(b"/")
        if not raw.startswith(root + b"/"):
            return None
        return raw[len(root) + 1:]

    def _on_event(self, index: int, event: FileSystemEvent) -> None:
        source = self._relative(index, event.src_path)
        target = self._relative(index, event.dest_path)
        now = self._clock()
        readiness = self._readiness[index]
        with self._lock:
            if isinstance(event, (DirDeletedEvent, DirMovedEvent)):
                if source is not None:
                    readiness.gone_tree(source)
                return  # files of a moved directory come as their own (synthetic) events
            if event.is_directory:
                return
            if isinstance(event, (FileDeletedEvent, FileMovedEvent)):
                if source is not None:
                    readiness.gone(source)
                if target is not None and is_candidate(target, self._skip):
                    readiness.closed(target, now)  # renamed into place: the writer is done
                return
            if source is None or not is_candidate(source, self._skip):
                return
            if isinstance(event, FileClosedEvent):
                readiness.closed(source, now)
            elif isinstance(event, FileCreatedEvent) and event.is_synthetic:
                readiness.closed(source, now)  # inside a directory moved in whole
            elif isinstance(event, (FileCreatedEvent, FileModifiedEvent)):
                readiness.written(source, now)
            elif isinstance(event, FileAttribEvent):
                readiness.touched(source, now)
            # opened / closed-without-writing: readers (ingest itself), not writers

    # -- polling (poll thread, or tests) ------------------------------------------------------

    def poll(self) -> None:
        """Stat pending files, report the batches that became ready, rescan when due."""
        with self._poll_lock:
            if self._clock() >= self._next_rescan:
                self.rescan()
            for index, watch in enumerate(self.watches):
                readiness = self._readiness[index]
                with self._lock:
                    paths = readiness.pending()
                signatures = {path: self._stat(index, path) for path in paths}
                now = self._clock()
                with self._lock:
                    for path, signature in signatures.items():
                        if signature is None:
                            readiness.gone(path)
                        else:
                            readiness.observe(path, *signature, now)
                    ready = readiness.take_ready(now)
                if not ready:
                    continue
                try:
                    self._on_ready(watch, ready)
                except Exception:
                    log.exception(_("watch folder %s: handling %d ready file(s) failed; retrying "
                                    "in %.1f s"), watch.path, len(ready), watch.stable_s)
                    with self._lock:
                        readiness.retry(ready, self._clock())

    def rescan(self) -> None:
        """Take stock of every folder: files already there, or whose events were missed."""
        for index, root in enumerate(self._roots):
            found = dict(_walk(root, self._skip))
            now = self._clock()
            with self._lock:
                for path, (size_bytes, mtime_ns) in found.items():
                    self._readiness[index].found(path, size_bytes, mtime_ns, now)
                self._readiness[index].prune(set(found))
        self._next_rescan = self._clock() + self._rescan_s

    def _stat(self, index: int, relative: bytes) -> Signature | None:
        """(size, mtime_ns) of a regular file; None when gone, a link, a directory, special."""
        try:
            info = os.lstat(os.path.join(self._roots[index], relative))
        except OSError:
            return None
        if not stat.S_ISREG(info.st_mode):
            if stat.S_ISLNK(info.st_mode):
                log.info("watch folder: %s is a symbolic link; links are never followed",
                         display_path(relative))
            return None
        return info.st_size, info.st_mtime_ns


def _walk(root: bytes, skip: Sequence[str]) -> Iterator[tuple[bytes, Signature]]:
    """Regular files under ``root`` that may be reported, never following links, not done/."""
    stack = [b""]
    while stack:
        relative_dir = stack.pop()
        try:
            with os.scandir(os.path.join(root, relative_dir) if relative_dir else root) as entries:
                listed = list(entries)
        except OSError as exc:
            log.warning(_("watch folder %s: cannot list %s: %s"), display_path(root),
                        display_path(relative_dir or b"."), exc.strerror)
            continue
        for entry in listed:
            relative = os.path.join(relative_dir, entry.name) if relative_dir else entry.name
            if not is_candidate(relative, skip):
                continue
            try:
                if entry.is_dir(follow_symlinks=False):
                    stack.append(relative)
                elif entry.is_file(follow_symlinks=False):
                    info = entry.stat(follow_symlinks=False)
                    yield relative, (info.st_size, info.st_mtime_ns)
            except OSError:
                continue  # vanished while listed: its delete event says so
