"""The release policy: when a station may let go of a file whose archived copy is proven.

Two places give up a copy of evidence after archival: an inbox folder (``watch.after`` moves
the file to ``done/`` or removes it, ``dock/inbox.py``) and a docked device (the opt-in wipe,
``dock/wipe.py``). Both apply the one rule here:

    a file is released only when its ``sources`` row is ``archived`` or ``duplicate`` with a
    known SHA-256, its recording is verified in the archive (``archived_at``), the file still
    has the size and mtime it had when it was read, and a SHA-256 read from it just now equals
    the archived one.

``release_decision`` is that rule, pure, over a ``SourceRecord`` and what the caller measured;
it answers a ``Decision`` (``Verdict.RELEASE``, ``VERIFY``: everything cheap agrees, hash the
file and ask again, or ``LEAVE`` with the reason). ``release`` is the one order of the
irreversible part: the ledger event first, then the deletion or move. A crash between the two
leaves an event for a file that is still there, never a file gone without its event; a ledger
write that fails raises before anything is touched.

Never: release a file on a stale hash, on a row of another version of the file, or before its
ledger event is written.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum

from ..config import After  # the closed set is declared with its key (watch.after)
from ..state import transitions as st

ARCHIVED_STATES = frozenset({st.ARCHIVED, st.DUPLICATE})
HASH_CHUNK_BYTES = 4 * 1024 * 1024

Signature = tuple[int, int]  # (size_bytes, mtime_ns)


class Verdict(StrEnum):
    RELEASE = "release"  # the fresh hash equals the archived copy's: it may go
    VERIFY = "verify"  # everything but the content agrees: re-read the file and ask again
    LEAVE = "leave"  # keep it; the decision's reason says why


class Outcome(StrEnum):
    """What became of one file (counted by these values in a dock job's result)."""

    KEPT = "kept"  # the folder keeps its files (after = keep)
    MOVED = "moved"
    REMOVED = "removed"
    WIPED = "wiped"
    LEFT = "left"  # not released: ``Released.reason`` says why


@dataclass(frozen=True)
class SourceRecord:
    """One ``sources`` row of a file, with its recording's archival time (None: not verified)."""

    state: str
    size_bytes: int | None
    mtime_ns: int | None
    sha256: str | None
    archived_at: str | None


@dataclass(frozen=True)
class Decision:
    verdict: Verdict
    reason: str = ""


@dataclass(frozen=True)
class Released:
    outcome: Outcome
    reason: str = ""  # why it was left


GONE = "the file is gone or is not a regular file"
CHANGED = "the file changed since it was ingested (size or mtime differ)"


# -- pure decisions ----------------------------------------------------------------------------


def release_decision(
    record: SourceRecord, current: Signature | None, fresh_sha256: str | None = None
) -> Decision:
    """May the file ``record`` describes be released? Pure.

    ``current``: its (size, mtime_ns) now, None when gone or not a regular file;
    ``fresh_sha256``: the file re-read just now, None when not read yet.
    """
    if current is None:
        return Decision(Verdict.LEAVE, GONE)
    if record.state not in ARCHIVED_STATES:
        return Decision(Verdict.LEAVE, f"not archived yet (state {record.state})")
    if record.sha256 is None:
        return Decision(Verdict.LEAVE, "no archived hash on record")
    if (record.size_bytes, record.mtime_ns) != current:
        return Decision(Verdict.LEAVE, CHANGED)
    if record.archived_at is None:
        return Decision(Verdict.LEAVE, "its recording is not verified in the archive yet")
    if fresh_sha256 is None:
        return Decision(Verdict.VERIFY)
    if fresh_sha256 != record.sha256:
        return Decision(Verdict.LEAVE, "its content differs from the archived copy (SHA-256 "
                                       f"{fresh_sha256[:12]} now, {record.sha256[:12]} archived)")
    return Decision(Verdict.RELEASE)


def after_action(
    after: str,
    records: Sequence[SourceRecord],
    current: Signature | None,
    fresh_sha256: str | None = None,
) -> Decision:
    """``release_decision`` for an inbox file, whose path may have been ingested several times
    (changed and ingested again): the row of the file as it is now decides. Pure."""
    if after not in tuple(After):
        return Decision(Verdict.LEAVE, f"unknown after-archival action {after!r}")
    if after == After.KEEP:
        return Decision(Verdict.LEAVE, "the folder keeps its files (after = keep)")
    if current is None:
        return Decision(Verdict.LEAVE, GONE)
    if not records:
        return Decision(Verdict.LEAVE, "no record of this file being ingested")
    same = [record for record in records if (record.size_bytes, record.mtime_ns) == current]
    if not same:
        return Decision(Verdict.LEAVE, f"{CHANGED}; it will be ingested again")
    chosen = next((r for r in same if r.state in ARCHIVED_STATES and r.sha256), same[0])
    return release_decision(chosen, current, fresh_sha256)


# -- the action: ledger event first, then the irreversible step -------------------------------


def release(
    decision: Decision,
    *,
    record_event: Callable[[], object],
    irreversible: Callable[[], object],
    outcome: Outcome,
    verb: str,
) -> Released:
    """Carry out a decision: nothing unless it is ``RELEASE``; else ``record_event()`` (the
    ledger append) and only when that returned, ``irreversible()`` (unlink, move).

    An error from ``record_event`` propagates and nothing is touched. An ``OSError`` from the
    irreversible step leaves the file (``Outcome.LEFT``, "cannot <verb> it: ..."): its event
    then stands for a file still present, which the next release attempt finds again.
    """
    if decision.verdict is not Verdict.RELEASE:
        return Released(Outcome.LEFT, decision.reason or "its archived copy is not proven")
    record_event()
    try:
        irreversible()
    except OSError as exc:
        return Released(Outcome.LEFT, f"cannot {verb} it: {exc.strerror or exc}")
    return Released(outcome)


def hash_file(name: bytes, *, dir_fd: int | None = None) -> tuple[str, os.stat_result]:
    """SHA-256 of a regular file (never through a symbolic link), and its fstat — checked
    unchanged from before to after the read (else OSError EAGAIN)."""
    fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=dir_fd)
    try:
        before = os.fstat(fd)
        if not stat.S_ISREG(before.st_mode):
            raise OSError(errno.EINVAL, "not a regular file")
        digest = hashlib.sha256()
        while chunk := os.read(fd, HASH_CHUNK_BYTES):
            digest.update(chunk)
        after = os.fstat(fd)
    finally:
        os.close(fd)
    if (before.st_size, before.st_mtime_ns) != (after.st_size, after.st_mtime_ns):
        raise OSError(errno.EAGAIN, "it changed while being read")
    return digest.hexdigest(), after


def regular_signature(name: bytes, *, dir_fd: int | None = None) -> Signature | None:
    """(size, mtime_ns) of a regular file, not following a link; None when gone or not one."""
    try:
        info = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except OSError:
        return None
    return (info.st_size, info.st_mtime_ns) if stat.S_ISREG(info.st_mode) else None
