"""The interface every archive backend implements, and helpers shared by all of them.

A backend stores bytes under the keys of ``archive.keys`` and proves what it stored. It must
never overwrite or delete an existing key: originals, manifests, ledger entries and public keys
are all create-only. ``put_original`` returns only after the stored copy is verified.

The one thing a backend removes is a *leftover*: an unfinished write that a killed process
left behind (a temp file in the filesystem archive's staging directory, an incomplete S3
multipart upload). A leftover was never an object: nobody could read it, and removing it
cannot touch a stored key. It must never remove a write still under way.
"""

from __future__ import annotations

import hashlib
import threading
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Literal, Protocol

from ..errors import IntegrityError
from ..i18n import _

READ_CHUNK_BYTES = 4 * 1024 * 1024


class Proof(StrEnum):
    """How ``put_original`` proved the stored bytes are the original's."""

    SHA256_ETAG = "sha256+etag"  # hashed while sent, and the server's ETag is of those bytes
    READBACK = "readback"  # the stored object was read back and hashed


@dataclass(frozen=True)
class StoredObject:
    """What the archive says about one stored object."""

    key: str
    size_bytes: int
    sha256: str | None = None  # as recorded in the object's metadata, when the backend keeps it
    etag: str | None = None
    version_id: str | None = None
    verified_by: Proof | None = None  # how put_original proved the bytes
    retain_until: str | None = None  # Object Lock retain-until date (ISO 8601), when set


@dataclass(frozen=True)
class SetAside:
    """Where the bytes of a stored object that never verified went (``set_aside``)."""

    key: str  # the key it was stored under, free again for the verified copy
    location: str  # for humans and the ledger: "rejected/<key>.<tag>" or "version <id>"
    version_id: str | None = None  # S3: the version left behind (a new one replaces it)


def rejected_key(key: str, tag: str) -> str:
    """Where a set-aside object goes when the backend cannot keep it as an old version."""
    return f"rejected/{key}.{tag}"


LeftoverKind = Literal["staging", "multipart"]
LEFTOVER_KINDS: tuple[LeftoverKind, ...] = ("staging", "multipart")


@dataclass(frozen=True)
class Leftover:
    """An unfinished write removed from the archive."""

    kind: LeftoverKind  # "staging": a filesystem temp file; "multipart": an S3 upload
    name: str  # the temp file's name, or the key the upload was for
    started_at: datetime  # S3: when the upload was initiated; filesystem: last change


def is_leftover(started_at: datetime | None, *, older_than: datetime, in_flight: bool) -> bool:
    """Whether an unfinished write may be removed: begun before the cut-off and not one this
    process is still making. A write whose start is unknown is never removed.

    >>> from datetime import timezone
    >>> day = datetime(2026, 11, 26, tzinfo=timezone.utc)
    >>> is_leftover(day, older_than=day, in_flight=False)
    False
    """
    return not in_flight and started_at is not None and started_at < older_than


class InFlight:
    """The unfinished writes this store object is making now, by name (temp file or key).

    Each write registers before its temp file or upload exists and unregisters after it is
    gone, so a clean-up that lists leftovers first and asks here second never sees one of this
    process's writes as a leftover, whatever the clocks say.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._names: Counter[str] = Counter()

    @contextmanager
    def track(self, name: str) -> Iterator[None]:
        with self._lock:
            self._names[name] += 1
        try:
            yield
        finally:
            with self._lock:
                self._names[name] -= 1
                if not self._names[name]:
                    del self._names[name]

    def names(self) -> frozenset[str]:
        with self._lock:
            return frozenset(self._names)


class ArchiveStore(Protocol):
    """One archive. Implementations: ``FilesystemArchive`` and ``S3Archive``."""

    @property
    def location(self) -> str:
        """Where the archive is, for humans (``file:///srv/archive``, ``s3://host/bucket``)."""
        ...

    def check(self) -> None:
        """Raise ``StorageError`` unless the archive is reachable and writable."""
        ...

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
        """Store ``source`` under ``key`` and verify the stored bytes hash to ``sha256``.

        If ``key`` already holds an object of that size and SHA-256, return it without
        writing (re-docking the same file is a no-op). Raises ``IntegrityError`` when the
        stored bytes do not match, ``ObjectExistsError`` when the key holds something else.
        ``replacing``: the object at ``key`` was set aside (``set_aside``); write over it.
        """
        ...

    def set_aside(self, key: str, *, tag: str) -> SetAside:
        """Move the object at ``key`` out of the way so ``key`` can be written again, keeping
        every byte: only for an object no custody event names (it never verified). The
        filesystem moves it to ``rejected_key(key, tag)``; S3 keeps it as a noncurrent version
        (versioned bucket; the next ``put_original`` with ``replacing`` makes a new one) or
        copies it there first. Idempotent: a retry after a crash finds it done."""
        ...

    def put_bytes(self, key: str, data: bytes, *, content_type: str = "application/json") -> None:
        """Create ``key`` holding ``data``; ``ObjectExistsError`` if it already exists."""
        ...

    def get_bytes(self, key: str) -> bytes:
        """The whole object; ``ObjectMissingError`` if absent."""
        ...

    def iter_chunks(
        self,
        key: str,
        chunk_bytes: int = READ_CHUNK_BYTES,
        *,
        offset: int = 0,
        length: int | None = None,
    ) -> Iterator[bytes]:
        """Stream the object, or ``length`` bytes of it from ``offset`` (the caller checks the
        range against the size); ``ObjectMissingError`` if absent."""
        ...

    def stat(self, key: str) -> StoredObject | None:
        """Size and metadata of ``key``, or None when it does not exist."""
        ...

    def list_keys(self, prefix: str, *, start_after: str = "") -> Iterator[str]:
        """Keys under ``prefix``, in lexical order; only those after ``start_after`` if given
        (a watermark, so a poller does not re-read what it has seen)."""
        ...

    def set_legal_hold(self, key: str, on: bool) -> bool:
        """Put (or lift) an Object Lock legal hold on ``key``. False when the backend has no
        Object Lock (the filesystem archive): the hold then lives in the ledger only."""
        ...

    def extend_retention(self, key: str, until: datetime) -> str | None:
        """Make ``key`` retained at least until ``until`` (never shortens); the retain-until
        date now in force (ISO 8601), or None when the backend has no Object Lock."""
        ...

    def remove_leftovers(self, older_than: datetime) -> list[Leftover]:
        """Remove unfinished writes begun before ``older_than`` (aware UTC): what a process
        killed mid-write leaves. Never an object, and never a write this store object has in
        flight, whatever its age. Other processes' writes (other stations sharing the archive)
        are protected only by the cut-off, so the caller keeps it well in the past."""
        ...


def hash_chunks(chunks: Iterable[bytes]) -> tuple[str, int]:
    """SHA-256 (hex) and total size of a stream of chunks."""
    digest = hashlib.sha256()
    size_bytes = 0
    for chunk in chunks:
        digest.update(chunk)
        size_bytes += len(chunk)
    return digest.hexdigest(), size_bytes


def hash_stored(store: ArchiveStore, key: str) -> tuple[str, int]:
    """Re-read an object from the archive: (SHA-256 hex, size in bytes)."""
    return hash_chunks(store.iter_chunks(key))


def hash_file(path: Path) -> tuple[str, int]:
    """SHA-256 (hex) and size of a local file, read in reused chunks."""
    digest = hashlib.sha256()
    size_bytes = 0
    buffer = bytearray(READ_CHUNK_BYTES)  # reused: no allocation (and page faults) per chunk
    view = memoryview(buffer)
    with path.open("rb", buffering=0) as handle:
        while count := handle.readinto(buffer):
            digest.update(view[:count])
            size_bytes += count
    return digest.hexdigest(), size_bytes


def require_size(key: str, expected_bytes: int, actual_bytes: int | None) -> None:
    """``IntegrityError`` unless the stored copy has the original's size."""
    if actual_bytes != expected_bytes:
        require_match(key, f"{expected_bytes} bytes", f"{actual_bytes} bytes", "size")


def require_copy(
    key: str, *, sha256: str, size_bytes: int, read_back: tuple[str, int], how: str
) -> None:
    """``IntegrityError`` unless a stored copy read back as (SHA-256, size) is the original."""
    actual_sha256, actual_size = read_back
    require_size(key, size_bytes, actual_size)
    require_match(key, sha256, actual_sha256, how)


def require_match(key: str, expected_sha256: str, actual_sha256: str, how: str) -> None:
    if expected_sha256 != actual_sha256:
        raise IntegrityError(
            _("{key}: stored copy does not match the original ({how}: expected {expected_sha256}, "
              "archive has {actual_sha256})").format(
                  key=key, how=how, expected_sha256=expected_sha256[:12], actual_sha256=actual_sha256[:12])
        )
