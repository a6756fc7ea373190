"""Inbox files after archival: keep them, move them to ``done/`` or remove them (``watch.after``).

``sources/watch.py`` reports which inbox files are ready; the dock manager ingests them with
``inbox_origin(watch)`` and then calls ``release_inbox_file`` for each. That applies the release
policy (``dock/release.py``): the file is moved or removed only when the state database says
its archived copy was verified *and* the file still has the recorded size and mtime *and* a
fresh SHA-256 of it equals the archived one, and only after its ``inbox-moved`` /
``inbox-removed`` ledger event is written. Anything else leaves the file where it is, with the
reason.

It works through directory file descriptors opened with ``O_NOFOLLOW``, so a symbolic link
planted in the inbox or in ``done/`` cannot redirect a move or a deletion out of the folder. A
name in ``done/`` is never overwritten.

Never: write into an inbox file, or move or delete one whose archived copy is unproven.
"""

from __future__ import annotations

import base64
import errno
import logging
import os
from collections.abc import Sequence

from ..config import After, WatchConfig
from ..custody.chain import Event
from ..custody.ledger import LedgerWriter
from ..durable import sync_dir
from ..ingest.pipeline import Origin
from ..ingest.scanner import display_path
from ..sources.watch import DONE_DIR, is_candidate
from ..state.db import Database
from ..state.queue import WorkQueue
from .release import (
    Decision,
    Outcome,
    Released,
    SourceRecord,
    Verdict,
    after_action,
    hash_file,
    regular_signature,
    release,
)

log = logging.getLogger(__name__)


def inbox_origin(watch: WatchConfig) -> Origin:
    """The ingest origin of a watch folder; ``inbox_records`` finds sources rows by this root."""
    return Origin(watch.path, device_id=watch.device_id or None, officer_id=watch.officer_id or None)


def done_name(name: bytes, attempt: int) -> bytes:
    """``clip.mp4``, then ``clip.1.mp4``, ``clip.2.mp4``…: a name in done/ is never reused."""
    if attempt == 0:
        return name
    stem, extension = os.path.splitext(name)
    return stem + b"." + str(attempt).encode() + extension


def inbox_records(watch: WatchConfig, relative: bytes, database: Database) -> list[SourceRecord]:
    """The sources rows of one inbox path, newest first, with their recording's archival time."""
    try:
        relative.decode("utf-8")
        b64: str | None = None
    except UnicodeDecodeError:
        b64 = base64.b64encode(relative).decode("ascii")
    rows = WorkQueue(database).at_path_with_archival(str(watch.path), display_path(relative), b64)
    return [SourceRecord(row.source.state, row.source.size_bytes, row.source.mtime_ns,
                         row.source.sha256, row.archived_at) for row in rows]


def release_inbox_file(
    watch: WatchConfig, relative: bytes, database: Database, ledger: LedgerWriter, *, actor: str
) -> Released:
    """Apply ``watch.after`` to one ingested inbox file (see the module docstring).

    A ledger event that cannot be written raises (``EvidenceError``) with the file untouched.
    """
    if watch.after == After.KEEP:
        return Released(Outcome.KEPT)
    if not is_candidate(relative, ()):
        return Released(Outcome.LEFT, f"{display_path(relative)!r} is not a path inside the folder")
    parts = relative.split(b"/")
    records = inbox_records(watch, relative, database)
    try:
        root_fd = os.open(watch.path, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as exc:
        return Released(Outcome.LEFT, f"cannot open the folder {watch.path}: {exc.strerror}")
    try:
        try:
            dir_fd = _open_dirs(root_fd, parts[:-1], create=False)
        except OSError as exc:
            return Released(Outcome.LEFT, f"cannot open its directory: {exc.strerror}")
        try:
            return _release_in(watch, root_fd, dir_fd, parts, records, ledger, actor)
        finally:
            os.close(dir_fd)
    finally:
        os.close(root_fd)


def _release_in(watch: WatchConfig, root_fd: int, dir_fd: int, parts: list[bytes],
                records: Sequence[SourceRecord], ledger: LedgerWriter, actor: str) -> Released:
    name = parts[-1]
    current = regular_signature(name, dir_fd=dir_fd)
    decision = after_action(watch.after, records, current)
    if decision.verdict is not Verdict.VERIFY:
        return Released(Outcome.LEFT, decision.reason)
    try:
        fresh_sha256, opened = hash_file(name, dir_fd=dir_fd)
    except OSError as exc:
        return Released(Outcome.LEFT, f"cannot re-read it: {exc.strerror}")
    if (opened.st_size, opened.st_mtime_ns) != current:
        return Released(Outcome.LEFT, "it changed while being verified")
    decision = after_action(watch.after, records, current, fresh_sha256)
    if decision.verdict is Verdict.RELEASE and _replaced(name, dir_fd, opened):
        decision = Decision(Verdict.LEAVE, "it was replaced while being verified")
    path = b"/".join(parts)
    if watch.after != After.MOVE:
        return _log(watch, path, release(
            decision,
            record_event=lambda: ledger.append(Event.INBOX_REMOVED, recording=None, actor=actor,
                                               details=_details(watch, path)),
            irreversible=lambda: _remove(name, dir_fd),
            outcome=Outcome.REMOVED, verb="remove"))
    if decision.verdict is not Verdict.RELEASE:
        return Released(Outcome.LEFT, decision.reason)
    try:  # before the event: a done/ that cannot be used (a planted link) leaves no event
        done_fd = _open_dirs(root_fd, [DONE_DIR, *parts[:-1]], create=True)
    except OSError as exc:
        return Released(Outcome.LEFT, f"cannot move it: {exc.strerror or exc}")
    try:
        return _log(watch, path, release(
            decision,
            record_event=lambda: ledger.append(Event.INBOX_MOVED, recording=None, actor=actor,
                                               details=_details(watch, path)),
            irreversible=lambda: _move_to_done(done_fd, dir_fd, name, opened),
            outcome=Outcome.MOVED, verb="move"))
    finally:
        os.close(done_fd)


def _details(watch: WatchConfig, path: bytes) -> dict[str, str | None]:
    return {"folder": str(watch.path), "path": display_path(path),
            "device_id": watch.device_id or None}


def _log(watch: WatchConfig, path: bytes, released: Released) -> Released:
    if released.outcome in (Outcome.MOVED, Outcome.REMOVED):
        log.info("watch folder %s: %s %s (archived copy verified)", watch.path,
                 released.outcome, display_path(path))
    return released


def _replaced(name: bytes, dir_fd: int, opened: os.stat_result) -> bool:
    try:
        now = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except OSError:
        return True
    return (now.st_dev, now.st_ino, now.st_size, now.st_mtime_ns) != (
        opened.st_dev, opened.st_ino, opened.st_size, opened.st_mtime_ns)


def _remove(name: bytes, dir_fd: int) -> None:
    os.unlink(name, dir_fd=dir_fd)
    sync_dir(dir_fd, strict=False)


def _open_dirs(root_fd: int, parts: Sequence[bytes], *, create: bool) -> int:
    """A descriptor of root/parts..., refusing symbolic links on the way."""
    fd = os.dup(root_fd)
    try:
        for part in parts:
            if create:
                try:
                    os.mkdir(part, dir_fd=fd)
                except FileExistsError:
                    pass
            child = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            os.close(fd)
            fd = child
    except BaseException:
        os.close(fd)
        raise
    return fd


def _move_to_done(done_fd: int, dir_fd: int, name: bytes, opened: os.stat_result) -> None:
    """Hard-link the file into its directory in done/ under a free name, then unlink it from
    the inbox: a name in done/ is never overwritten, and a crash between the two leaves both."""
    attempt = 0
    while True:
        candidate = done_name(name, attempt)
        try:
            os.link(name, candidate, src_dir_fd=dir_fd, dst_dir_fd=done_fd, follow_symlinks=False)
            break
        except FileExistsError:
            existing = os.stat(candidate, dir_fd=done_fd, follow_symlinks=False)
            if (existing.st_dev, existing.st_ino) == (opened.st_dev, opened.st_ino):
                break  # linked by an earlier release that stopped before the unlink
            attempt += 1
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK):
                raise
            # No hard links here (some FUSE and network filesystems): rename, after making
            # sure the name is free — only this daemon writes into done/.
            try:
                os.stat(candidate, dir_fd=done_fd, follow_symlinks=False)
            except FileNotFoundError:
                os.rename(name, candidate, src_dir_fd=dir_fd, dst_dir_fd=done_fd)
                sync_dir(done_fd, strict=False)
                sync_dir(dir_fd, strict=False)
                return
            attempt += 1
    sync_dir(done_fd, strict=False)
    os.unlink(name, dir_fd=dir_fd)
    sync_dir(dir_fd, strict=False)
