"""The spool: a durable local copy of every file read from a device, named by its SHA-256.

Each source is read exactly once: the bytes are hashed (SHA-256, and SM3 when asked) while they
are written to ``incoming/<source-id>.part`` (``copy_in``); ``make_durable`` then fsyncs the
copy, renames it to ``objects/<sha256>`` and fsyncs the directory. Only then may the work queue
say ``spooled``. A ``.part`` file is never evidence — its source is still on the device — so
partial copies left by a crash are removed at start. ``objects/`` files are removed only once
the archive holds a verified copy (``release``).
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import hashes

from ..archive.base import hash_file
from ..durable import NO_SPACE_ERRNOS, sync_dir, write_all
from ..errors import IngestError
from ..failpoints import failpoint
from ..i18n import _


class SpoolFullError(IngestError):
    """The spool cannot take the copy: no space left (the source file is not to blame)."""


@dataclass(frozen=True)
class Copied:
    """A source's bytes written to ``incoming/`` and hashed, not yet durable."""

    sha256: str
    sm3: str | None
    size_bytes: int
    part: Path


class Spool:
    def __init__(
        self,
        root: Path,
        *,
        chunk_bytes: int = 4 * 1024 * 1024,
        hash_sm3: bool = False,
        read: Callable[[int, list[bytearray]], int] = os.readv,
        write: Callable[[int, memoryview], None] = write_all,
    ) -> None:
        """``read`` and ``write`` are the device read and the spool write (tests slow them)."""
        self.root = root
        self._read = read
        self._write = write
        self.chunk_bytes = chunk_bytes
        self.hash_sm3 = hash_sm3
        self.incoming = root / "incoming"
        self.objects = root / "objects"

    def prepare(self) -> int:
        """Create the spool and drop partial copies from an interrupted run; returns how many."""
        self.incoming.mkdir(parents=True, exist_ok=True)
        self.objects.mkdir(parents=True, exist_ok=True)
        removed = 0
        for partial in self.incoming.glob("*.part"):
            partial.unlink()
            removed += 1
        return removed

    def path_for(self, sha256: str) -> Path:
        return self.objects / sha256

    def copy_in(
        self,
        source: bytes,
        source_id: int,
        *,
        expected_size: int,
        expected_mtime_ns: int,
        on_bytes: Callable[[int], None] | None = None,
    ) -> Copied:
        """Copy ``source`` into ``incoming/``, hashing as it reads. Raises IngestError with a
        reason. The copy is not durable until ``make_durable``."""
        try:
            # O_NOFOLLOW: a name swapped for a symlink after the scan is refused, not followed.
            # O_NONBLOCK: a name swapped for a FIFO cannot hang the station.
            fd = os.open(source, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise IngestError(_("became a symbolic link after it was found; not followed")) from exc
            raise IngestError(_("cannot open: {strerror}").format(strerror=exc.strerror)) from exc
        part = self.incoming / f"{source_id}.part"
        size_bytes = 0
        try:
            before = os.fstat(fd)
            if not stat.S_ISREG(before.st_mode):
                raise IngestError(_("is no longer a regular file"))
            sha256 = hashlib.sha256()
            sm3 = hashes.Hash(hashes.SM3()) if self.hash_sm3 else None
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_SEQUENTIAL)

            def hash_chunk(chunk: memoryview) -> None:
                sha256.update(chunk)
                if sm3 is not None:
                    sm3.update(chunk)

            # Read-ahead: this thread only reads from the device; the chunk it read last is
            # written to the spool and hashed on two helper threads meanwhile (os.readv,
            # os.write and hashlib release the GIL), so the device is never idle while the
            # spool's disk takes a write. Two buffers, reused: the one being read into and the
            # one being written and hashed; chunk n+1 is handed over only once chunk n is
            # written and hashed, so chunks are hashed and written strictly in order and memory
            # stays two buffers a device. No buffer is larger than the file, and the chunk
            # that reaches the file's end is stored right here: a small file costs neither
            # 8 MiB of zeroed pages nor a thread.
            buffer_bytes = max(64 * 1024, min(self.chunk_bytes, expected_size + 1))
            buffers = (bytearray(buffer_bytes), bytearray(buffer_bytes))
            with part.open("wb", buffering=0) as writer:
                target = writer.fileno()

                def store(chunk: memoryview) -> None:
                    hash_chunk(chunk)
                    self._write(target, chunk)

                helpers: ThreadPoolExecutor | None = None
                try:
                    storing: tuple[Future[None], ...] = ()  # chunk n, while n+1 is read
                    stored_bytes = 0
                    turn = 0
                    while True:
                        buffer = buffers[turn]
                        turn ^= 1
                        try:
                            count = self._read(fd, [buffer])
                        except OSError as exc:
                            raise IngestError(
                                _("read failed after {size_bytes} bytes: {strerror}").format(
                                    size_bytes=size_bytes, strerror=exc.strerror)
                            ) from exc
                        for step in storing:
                            step.result()  # a failed write raises here (OSError, as inline)
                        if storing:
                            storing = ()
                            self._stored(stored_bytes, on_bytes)
                        if not count:
                            break
                        chunk = memoryview(buffer)[:count]
                        size_bytes += count
                        if size_bytes >= expected_size:
                            store(chunk)
                            self._stored(count, on_bytes)
                        else:
                            if helpers is None:
                                helpers = ThreadPoolExecutor(max_workers=2, thread_name_prefix="spool")
                            storing = (helpers.submit(hash_chunk, chunk),
                                       helpers.submit(self._write, target, chunk))
                            stored_bytes = count
                finally:
                    # Before the spool file closes: no write may outlive its descriptor.
                    if helpers is not None:
                        helpers.shutdown(wait=True)
            after = os.fstat(fd)
            if (
                size_bytes != after.st_size
                or after.st_mtime_ns != before.st_mtime_ns
                or size_bytes != expected_size
                or after.st_mtime_ns != expected_mtime_ns
            ):
                raise IngestError(
                    _("changed while being read (expected {expected_size} bytes, read "
                      "{size_bytes}); it will be read again next time").format(
                          expected_size=expected_size, size_bytes=size_bytes)
                )
            return Copied(sha256.hexdigest(), sm3.finalize().hex() if sm3 else None, size_bytes, part)
        except OSError as exc:
            part.unlink(missing_ok=True)
            if exc.errno in NO_SPACE_ERRNOS:
                raise SpoolFullError(
                    _("the spool {root} is full ({strerror}) after {size_bytes} of "
                      "{expected_size} bytes; the file stays on the device and is read again").format(
                          root=self.root, strerror=exc.strerror, size_bytes=size_bytes, expected_size=expected_size)
                ) from exc
            raise IngestError(_("cannot write the spool copy in {root}: {strerror}").format(
                root=self.root, strerror=exc.strerror)) from exc
        except BaseException:
            part.unlink(missing_ok=True)
            raise
        finally:
            os.close(fd)

    @staticmethod
    def _stored(count: int, on_bytes: Callable[[int], None] | None) -> None:
        """A chunk is written and hashed: progress, and the crash tests' mid-copy point."""
        if on_bytes is not None:
            on_bytes(count)
        failpoint("ingest.mid_copy")

    def make_durable(self, copied: Copied) -> Path:
        """fsync the copy and move it to ``objects/<sha256>``; returns that path.

        Separate from ``copy_in`` so the pipeline can flush file n (the disk's write-back is
        the slow part of a copy) while it reads file n+1.
        """
        target = self.path_for(copied.sha256)
        try:
            fd = os.open(copied.part, os.O_RDONLY)
            try:
                os.fsync(fd)  # flushes the inode's data, whichever descriptor wrote it
            finally:
                os.close(fd)
            os.chmod(copied.part, 0o444)
            os.replace(copied.part, target)  # same content by definition: replacing loses nothing
            sync_dir(self.objects)
        except OSError as exc:
            copied.part.unlink(missing_ok=True)
            if exc.errno in NO_SPACE_ERRNOS:
                raise SpoolFullError(
                    _("the spool {root} is full ({strerror}); the file is read again").format(
                        root=self.root, strerror=exc.strerror)
                ) from exc
            raise IngestError(_("cannot make the spool copy durable in {root}: {strerror}").format(
                root=self.root, strerror=exc.strerror)) from exc
        failpoint("ingest.after_spool")
        return target

    def check(self, sha256: str, size_bytes: int) -> str | None:
        """Why the spool copy of ``sha256`` cannot be archived (missing, wrong size, wrong
        hash), or None when it is whole. Reads the whole copy: for when a stored copy failed."""
        path = self.path_for(sha256)
        try:
            actual_sha256, actual_size = hash_file(path)
        except FileNotFoundError:
            return "the spool copy is missing"
        except OSError as exc:
            return f"the spool copy cannot be read: {exc.strerror}"
        if actual_size != size_bytes:
            return f"the spool copy is damaged ({actual_size} of {size_bytes} bytes)"
        if actual_sha256 != sha256:
            return f"the spool copy is damaged (it hashes to {actual_sha256[:12]})"
        return None

    def discard_damaged(self, sha256: str) -> None:
        """Drop a spool copy that does not hash to its name. It is no evidence (its bytes are
        not the recording's) and its source is still on the device, to be read again."""
        self.path_for(sha256).unlink(missing_ok=True)

    def release(self, sha256: str) -> None:
        """Drop the spool copy of a recording whose archived copy is verified."""
        self.path_for(sha256).unlink(missing_ok=True)
