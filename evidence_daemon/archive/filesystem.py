"""The filesystem archive: the storage contract laid out under one directory.

The embedded default for a single station and the demo. Every write is crash-safe (temp file in
the target directory, fsync, rename, fsync the directory) and create-only; originals are made
read-only (0444). When the spool is on the same filesystem an original is stored by hard link,
which costs no second copy; the copy is re-read and hashed before it is published under its key.

Temp files live in ``.staging/`` as ``<uuid>.tmp``; a process killed mid-write leaves its temp
file there, and ``remove_leftovers`` removes those — nothing outside ``.staging/``, ever.
"""

from __future__ import annotations

import errno
import os
import stat as stat_module
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

from .. import durable
from ..errors import IntegrityError, ObjectExistsError, ObjectMissingError, StorageError
from ..failpoints import failpoint
from .base import (
    READ_CHUNK_BYTES,
    InFlight,
    Leftover,
    Proof,
    SetAside,
    StoredObject,
    hash_file,
    is_leftover,
    rejected_key,
    require_copy,
)
from .link import Throttle
from ..i18n import _

_STAGING = ".staging"



class FilesystemArchive:
    """``ArchiveStore`` on a local or mounted directory."""

    def __init__(self, root: Path, *, throttle: Throttle | None = None) -> None:
        self.root = Path(root)
        self._in_flight = InFlight()
        self._throttle = throttle  # archive.max_upload_mbps, for an archive on a NAS

    @property
    def location(self) -> str:
        return self.root.resolve().as_uri()

    def check(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            (self.root / _STAGING).mkdir(exist_ok=True)
        except OSError as exc:
            raise StorageError(_("archive {root} is not writable: {strerror}").format(
                root=self.root, strerror=exc.strerror)) from exc
        if not os.access(self.root, os.W_OK):
            raise StorageError(_("archive {root} is not writable").format(root=self.root))

    def _path(self, key: str) -> Path:
        # Keys come from archive.keys, but refuse anything that could leave the root anyway.
        parts = key.split("/")
        if not key or any(part in ("", ".", "..") for part in parts) or key.startswith(_STAGING):
            raise StorageError(_("refusing unsafe archive key {key!r}").format(key=key))
        return self.root.joinpath(*parts)

    @contextmanager
    def _staging_file(self) -> Iterator[Path]:
        """A fresh temp file name in ``.staging/``, known to be in flight while in use."""
        staging = self.root / _STAGING
        try:
            staging.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(_("archive {root} is not writable: {strerror}").format(
                root=self.root, strerror=exc.strerror)) from exc
        name = f"{uuid.uuid4().hex}{durable.TEMP_SUFFIX}"
        with self._in_flight.track(name):
            yield staging / name

    def _publish(self, temp: Path, target: Path) -> None:
        """Move a durable temp file to ``target`` without ever replacing an existing file."""
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            durable.publish_new(temp, target)
        except FileExistsError:
            raise ObjectExistsError(_("{relative_to} already exists").format(
                relative_to=target.relative_to(self.root))) from None

    def put_original(
        self,
        key: str,
        source: Path,
        *,
        sha256: str,
        size_bytes: int,
        metadata: Mapping[str, str],
        replacing: SetAside | None = None,
    ) -> StoredObject:
        target = self._path(key)
        existing = self.stat(key)
        if existing is not None:
            try:
                return self._verify(key, target, sha256, size_bytes)
            except IntegrityError as exc:
                raise ObjectExistsError(
                    _("{key} already holds different content; it is never overwritten ({message})").format(
                        key=key, message=exc.message)
                ) from exc
        with self._staging_file() as temp:
            try:
                try:
                    os.link(source, temp)
                except OSError as exc:
                    if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP):
                        raise
                    self._copy(source, temp)
                os.chmod(temp, 0o444)
                # Proven before it is published: a copy that does not hash to the id never
                # appears under the recording's name (where it would block the key).
                stored = self._verify(key, temp, sha256, size_bytes)
                self._publish(temp, target)
            except ObjectExistsError:
                # written meanwhile by another worker: verify what is there
                return self._verify(key, target, sha256, size_bytes)
            except OSError as exc:
                temp.unlink(missing_ok=True)
                raise StorageError(_("cannot store {key} in {root}: {strerror}").format(
                    key=key, root=self.root, strerror=exc.strerror)) from exc
            except BaseException:
                temp.unlink(missing_ok=True)
                raise
        return stored

    def set_aside(self, key: str, *, tag: str) -> SetAside:
        target = self._path(key)
        destination = self._path(rejected_key(key, tag))
        try:
            destination.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(target, destination)  # never replaces: a rejected name is written once
            except FileExistsError:
                if not os.path.samefile(target, destination):
                    raise StorageError(
                        _("cannot set {key} aside: {relative_to} already holds other bytes").format(
                            key=key, relative_to=destination.relative_to(self.root))
                    ) from None
            except FileNotFoundError:
                if destination.exists():  # moved by an attempt that died before saying so
                    return SetAside(key, destination.relative_to(self.root).as_posix())
                raise ObjectMissingError(_("{key} is not in the archive {root}").format(
                    key=key, root=self.root)) from None
            durable.sync_dir(destination.parent)
            target.unlink()
            durable.sync_dir(target.parent)
        except OSError as exc:
            raise StorageError(_("cannot set {key} aside in {root}: {strerror}").format(
                key=key, root=self.root, strerror=exc.strerror)) from exc
        return SetAside(key, destination.relative_to(self.root).as_posix())

    def _copy(self, source: Path, temp: Path) -> None:
        """Copy ``source`` to the new file ``temp`` whole (never a short write) and fsync it."""
        started = False

        def on_chunk(size: int) -> None:
            nonlocal started
            if self._throttle is not None:
                self._throttle.take(size)
            if not started:  # the temp file exists, the copy has begun
                started = True
                failpoint("archive.mid_upload")

        with source.open("rb", buffering=0) as reader, temp.open("xb", buffering=0) as writer:
            durable.copy_hashing(reader, writer.fileno(), chunk=READ_CHUNK_BYTES,
                                 on_chunk=on_chunk)
            os.fsync(writer.fileno())

    def _verify(self, key: str, target: Path, sha256: str, size_bytes: int) -> StoredObject:
        """Read the file at ``target`` back and prove it is the original."""
        try:
            read_back = hash_file(target)
        except OSError as exc:
            raise StorageError(_("cannot read back {key}: {strerror}").format(
                key=key, strerror=exc.strerror)) from exc
        require_copy(key, sha256=sha256, size_bytes=size_bytes, read_back=read_back,
                     how="SHA-256 of the stored file")
        return StoredObject(key=key, size_bytes=size_bytes, sha256=sha256,
                            verified_by=Proof.READBACK)

    def put_bytes(self, key: str, data: bytes, *, content_type: str = "application/json") -> None:
        target = self._path(key)
        if target.exists():
            raise ObjectExistsError(_("{key} already exists in {root}").format(
                key=key, root=self.root))
        with self._staging_file() as temp:
            try:
                with temp.open("xb", buffering=0) as handle:
                    durable.write_all(handle.fileno(), data)
                    os.fsync(handle.fileno())
                os.chmod(temp, 0o444)
                self._publish(temp, target)
            except OSError as exc:
                temp.unlink(missing_ok=True)
                raise StorageError(_("cannot write {key} in {root}: {strerror}").format(
                    key=key, root=self.root, strerror=exc.strerror)) from exc

    def get_bytes(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            raise ObjectMissingError(_("{key} is not in the archive {root}").format(
                key=key, root=self.root)) from None
        except OSError as exc:
            raise StorageError(_("cannot read {key}: {strerror}").format(
                key=key, strerror=exc.strerror)) from exc

    def iter_chunks(
        self,
        key: str,
        chunk_bytes: int = READ_CHUNK_BYTES,
        *,
        offset: int = 0,
        length: int | None = None,
    ) -> Iterator[bytes]:
        path = self._path(key)
        try:
            handle = path.open("rb", buffering=0)
        except FileNotFoundError:
            raise ObjectMissingError(_("{key} is not in the archive {root}").format(
                key=key, root=self.root)) from None
        except OSError as exc:
            raise StorageError(_("cannot read {key}: {strerror}").format(
                key=key, strerror=exc.strerror)) from exc
        with handle:
            if offset:
                handle.seek(offset)
            remaining = length
            while remaining is None or remaining > 0:
                chunk = handle.read(chunk_bytes if remaining is None else min(chunk_bytes, remaining))
                if not chunk:
                    break
                if remaining is not None:
                    remaining -= len(chunk)
                yield chunk

    def stat(self, key: str) -> StoredObject | None:
        try:
            info = self._path(key).stat()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StorageError(_("cannot stat {key}: {strerror}").format(
                key=key, strerror=exc.strerror)) from exc
        if not stat_module.S_ISREG(info.st_mode):
            raise StorageError(_("{key} in {root} is not a regular file").format(
                key=key, root=self.root))
        return StoredObject(key=key, size_bytes=info.st_size)

    def set_legal_hold(self, key: str, on: bool) -> bool:
        if self.stat(key) is None:
            raise ObjectMissingError(_("{key} is not in the archive {root}").format(
                key=key, root=self.root))
        return False  # a directory has no Object Lock: the hold is the ledger event

    def extend_retention(self, key: str, until: datetime) -> str | None:
        if self.stat(key) is None:
            raise ObjectMissingError(_("{key} is not in the archive {root}").format(
                key=key, root=self.root))
        return None

    def remove_leftovers(self, older_than: datetime) -> list[Leftover]:
        """Unlink ``.staging/*.tmp`` files last changed before ``older_than``.

        Age is the later of mtime and ctime: an original hard-linked from the spool keeps the
        spool copy's (possibly old) mtime, but linking and chmod set the ctime, and a copy in
        progress changes both with every chunk. Only names, never a file's content, are removed:
        a temp hard-linked from the spool leaves the spool copy untouched.
        """
        staging = self.root / _STAGING
        try:
            entries = list(os.scandir(staging))
        except (FileNotFoundError, NotADirectoryError):
            return []
        except OSError as exc:
            raise StorageError(_("cannot list {staging}: {strerror}").format(
                staging=staging, strerror=exc.strerror)) from exc
        in_flight = self._in_flight.names()  # after listing: see InFlight
        removed: list[Leftover] = []
        for entry in entries:
            if not entry.name.endswith(durable.TEMP_SUFFIX):
                continue
            try:
                info = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue  # finished meanwhile
            except OSError as exc:
                raise StorageError(_("cannot stat {path}: {strerror}").format(
                    path=entry.path, strerror=exc.strerror)) from exc
            if not stat_module.S_ISREG(info.st_mode):
                continue
            changed = datetime.fromtimestamp(max(info.st_mtime, info.st_ctime), timezone.utc)
            if not is_leftover(changed, older_than=older_than,
                               in_flight=entry.name in in_flight):
                continue
            try:
                os.unlink(entry.path)
            except FileNotFoundError:
                continue
            except OSError as exc:
                raise StorageError(_("cannot remove {path}: {strerror}").format(
                    path=entry.path, strerror=exc.strerror)) from exc
            removed.append(Leftover("staging", entry.name, changed))
        if removed:
            durable.sync_dir(staging)
        return removed

    def list_keys(self, prefix: str, *, start_after: str = "") -> Iterator[str]:
        # Walk only the directory the prefix names; keys are '/'-separated paths.
        directory, _, _ = prefix.rpartition("/")
        start = self.root.joinpath(*directory.split("/")) if directory else self.root
        if not start.is_dir():
            return
        found: list[str] = []
        for dirpath, dirnames, filenames in os.walk(start):
            relative = Path(dirpath).relative_to(self.root).as_posix()
            if relative == ".":
                dirnames[:] = [name for name in dirnames if name != _STAGING]
                relative = ""
            for name in filenames:
                key = f"{relative}/{name}" if relative else name
                if key.startswith(prefix) and key > start_after:
                    found.append(key)
        yield from sorted(found)
