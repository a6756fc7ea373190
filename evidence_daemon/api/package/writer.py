"""Writing a package file: the zip members, hashed as written and listed for package.json, in a
temp file beside the final name, fsync'd and published create-only (``durable.publish_new``).

What must never happen here: a half-written package under the final name; a package that
replaces an existing file (only an empty placeholder, as ``tempfile.mkstemp`` leaves it, may be
taken over); an original held whole in memory.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
import zipfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ... import durable
from ...errors import ConflictError, IntegrityError, StorageError
from ...i18n import _

# What link(2) fails with where the filesystem has no hard links (FAT/exFAT: a USB stick for
# the court), so create-only publishing falls back to a checked rename.
NO_HARD_LINK_ERRNOS = frozenset({errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK})


class PackageWriter:
    """Adds members to the zip, hashing each as written, and lists them for package.json."""

    def __init__(self, archive: zipfile.ZipFile, moment: datetime) -> None:
        self._zip = archive
        utc = moment.astimezone(timezone.utc)
        self._date_time = (utc.year, utc.month, utc.day, utc.hour, utc.minute, utc.second)
        self.listed: list[dict[str, Any]] = []

    def _info(self, name: str, compress_type: int) -> zipfile.ZipInfo:
        info = zipfile.ZipInfo(name, self._date_time)
        info.compress_type = compress_type
        info.external_attr = 0o100444 << 16  # a read-only regular file when extracted
        return info

    def add_bytes(self, name: str, data: bytes, *, listed: bool = True) -> None:
        info = self._info(name, zipfile.ZIP_DEFLATED)
        self._zip.writestr(info, data)
        if listed:
            self.listed.append({"name": name, "size_bytes": len(data),
                                "sha256": hashlib.sha256(data).hexdigest()})

    def add_stream(self, name: str, chunks: Iterable[bytes], *,
                   expected_size: int) -> tuple[str, int]:
        """Media are stored, not compressed (they do not shrink), in chunks: an original of
        several GB never sits in memory."""
        info = self._info(name, zipfile.ZIP_STORED)
        info.file_size = expected_size  # lets zipfile choose ZIP64 headers up front
        digest = hashlib.sha256()
        size_bytes = 0
        with self._zip.open(info, "w") as member:
            for chunk in chunks:
                size_bytes += len(chunk)
                if size_bytes > expected_size:
                    raise IntegrityError(_("{name}: the archive holds more than the "
                                           "{expected_size} bytes recorded for it").format(
                                               name=name, expected_size=expected_size))
                digest.update(chunk)
                member.write(chunk)
        sha256 = digest.hexdigest()
        self.listed.append({"name": name, "size_bytes": size_bytes, "sha256": sha256})
        return sha256, size_bytes



@contextmanager
def package_file(out: Path, moment: datetime) -> Iterator[PackageWriter]:
    """A ``PackageWriter`` over a new zip that appears at ``out`` only when the ``with`` block
    finishes: written under a temp name beside it, fsync'd, then published. On any failure no
    file is left (``StorageError`` for an OSError; others pass through)."""
    temp = durable.temp_name(out)
    try:
        with temp.open("xb") as handle:
            with zipfile.ZipFile(handle, "w", allowZip64=True) as archive:
                yield PackageWriter(archive, moment)
            # zipfile writes through a buffered file object, which completes short writes.
            handle.flush()
            os.fsync(handle.fileno())
        publish(temp, out)
    except OSError as exc:
        raise StorageError(_("cannot write the evidence package {out}: {strerror}").format(
            out=out, strerror=exc.strerror)) from exc
    finally:
        temp.unlink(missing_ok=True)


def is_placeholder(path: Path) -> bool:
    """An empty regular file, as ``tempfile.mkstemp`` leaves it: replacing it loses nothing."""
    try:
        status = os.lstat(path)
    except FileNotFoundError:
        return False
    return stat.S_ISREG(status.st_mode) and status.st_size == 0


def refuse_existing(out: Path) -> None:
    """ConflictError when ``out`` is a file (or link) that a package must not replace."""
    if (out.exists() or out.is_symlink()) and not is_placeholder(out):
        raise ConflictError(_("{out} already exists; an evidence package is never overwritten").format(
            out=out))


def publish(temp: Path, out: Path) -> None:
    """Give the durable temp file its final name; never replaces anything but an empty
    placeholder file, which is removed first (``publish_new`` then still refuses any file that
    appears in its place)."""
    refuse_existing(out)
    if is_placeholder(out):
        out.unlink()
    try:
        durable.publish_new(temp, out)
    except FileExistsError:
        raise ConflictError(_("{out} already exists; an evidence package is never overwritten").format(
            out=out)) from None
    except OSError as exc:
        if exc.errno not in NO_HARD_LINK_ERRNOS:
            raise
        _rename_without_links(temp, out)


def _rename_without_links(temp: Path, out: Path) -> None:
    """Create-only publishing where link(2) is refused: rename(2) would replace a file that
    appeared since ``refuse_existing``, so it is checked again right before (what ``durable``
    cannot offer without hard links)."""
    refuse_existing(out)
    temp.rename(out)
    durable.sync_dir(out.parent)
