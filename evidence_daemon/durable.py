"""Crash-safe files: whole writes, create-only publishing, fsync'd directories.

Everything that must survive a crash at any instant goes through here (borg's
``platform/base.py`` ``SyncFile``/``SaveFile`` is the model):

- ``write_all`` finishes a write or raises. ``os.write`` may store fewer bytes than asked —
  near a full disk, over a quota or past RLIMIT_FSIZE — and report it only in the count it
  returns; a copy that ignores the count is short yet looks complete.
- ``copy_hashing`` copies a stream while hashing it, through ``write_all``.
- ``sync_dir`` makes a name's creation or removal durable.
- ``publish_new`` moves a finished, fsync'd temp file to its final name without ever replacing
  a file that is already there (a hard link is atomic and fails on an existing name).
- ``save_new`` / ``save_replacing`` write a small file whole under a temp name in the same
  directory and publish it: a crash leaves the old file or the new one, never a short one.

What must never happen: a final name that holds fewer bytes than were written to it, or a
create-only publish that replaces someone else's file.
"""

from __future__ import annotations

import errno
import hashlib
import os
import uuid
from pathlib import Path
from typing import BinaryIO, Callable

# A write that fails with one of these means the target is out of space, not that the source
# is bad: the same write will fail for every later file too.
NO_SPACE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})

COPY_CHUNK = 4 * 1024 * 1024
TEMP_SUFFIX = ".tmp"


def write_all(fd: int, data: bytes | bytearray | memoryview) -> None:
    """Write every byte of ``data`` to ``fd`` or raise OSError (ENOSPC when the disk takes
    nothing more)."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        if written <= 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        view = view[written:]


def copy_hashing(
    source: BinaryIO, fd: int, *, chunk: int = COPY_CHUNK,
    on_chunk: Callable[[int], None] | None = None,
) -> tuple[str, int]:
    """Copy ``source`` to ``fd`` to its end; return (SHA-256 hex, bytes copied).

    ``on_chunk`` is told each chunk's size (throttles, progress) before it is written.
    """
    digest = hashlib.sha256()
    total = 0
    while True:
        block = source.read(chunk)
        if not block:
            return digest.hexdigest(), total
        if on_chunk is not None:
            on_chunk(len(block))
        digest.update(block)
        write_all(fd, block)
        total += len(block)


def sync_dir(directory: Path | str | int, *, strict: bool = True) -> None:
    """fsync a directory (a path or an open descriptor) so the names in it are durable.

    Some filesystems (FUSE, network mounts) refuse fsync on a directory; with
    ``strict=False`` that refusal is ignored and the caller's rename or link stands.
    """
    if isinstance(directory, int):
        _fsync_quietly(directory, strict)
        return
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        _fsync_quietly(fd, strict)
    finally:
        os.close(fd)


def _fsync_quietly(fd: int, strict: bool) -> None:
    try:
        os.fsync(fd)
    except OSError as exc:
        if strict or exc.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP):
            raise


def publish_new(temp: Path, target: Path) -> None:
    """Give the durable file ``temp`` the name ``target``, which must not exist yet.

    Raises FileExistsError (and removes ``temp``) when ``target`` exists; never replaces it.
    Both directories are fsync'd, so after a crash either the temp or the target remains.
    """
    try:
        os.link(temp, target)
    except FileExistsError:
        temp.unlink()
        raise
    temp.unlink()
    sync_dir(target.parent)
    if temp.parent != target.parent:
        sync_dir(temp.parent)


def temp_name(target: Path) -> Path:
    """A fresh temp file name beside ``target`` (same filesystem, so publishing is atomic)."""
    return target.with_name(f".{target.name}.{uuid.uuid4().hex}{TEMP_SUFFIX}")


def _write_temp(target: Path, data: bytes, mode: int) -> Path:
    temp = temp_name(target)
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        write_all(fd, data)
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        temp.unlink(missing_ok=True)
        raise
    os.close(fd)
    return temp


def save_new(target: Path, data: bytes, *, mode: int = 0o644) -> None:
    """Create ``target`` holding exactly ``data``; FileExistsError if it already exists."""
    publish_new(_write_temp(target, data, mode), target)


def save_replacing(target: Path, data: bytes, *, mode: int = 0o644) -> None:
    """Write ``data`` to ``target``, replacing any old content atomically (state files only,
    never evidence)."""
    temp = _write_temp(target, data, mode)
    try:
        os.replace(temp, target)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    sync_dir(target.parent)
