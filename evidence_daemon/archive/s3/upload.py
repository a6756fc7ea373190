"""What an original's upload is proven with: its hashes while it is read, part by part.

Originals are uploaded while being hashed a second time, so the bytes that left the station
are proven to be the recording (SHA-256) and the bytes the server stored are proven to be the
ones sent (ETag = MD5, or MD5 of part MD5s for multipart). Pure computation and the reader the
SDK pulls from; no request is made here.

Must never: read a whole original into memory (at most ``parallel_parts + 1`` parts are held
at once), or let an upload complete whose bytes do not hash to the recording id.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO
from urllib.parse import quote, unquote

from ...failpoints import failpoint
from ..base import READ_CHUNK_BYTES
from ..link import Throttle
from ...i18n import _

MIB = 1024 * 1024
MIN_PART_SIZE_BYTES = 5 * MIB  # S3 limits for every part but the last
MAX_PART_SIZE_BYTES = 5 * 1024 * MIB

# Parts of one original in memory at once, whatever archive.part_size_mib says. minio-py reads
# each part whole, in order, in the calling thread (that is where ``UploadReader`` hashes it)
# and hands it to one of ``num_parallel_uploads`` sender threads; it blocks before reading a
# part while that many are queued or being sent, so it holds at most ``n + 1`` parts.
# 24 MiB: with two upload workers at the default 8 MiB parts (two parts in flight each), a
# multi-file ingest peaked at 151 MB with 32 MiB (three in flight), over the 150 MB target.
PART_MEMORY_BUDGET_BYTES = 24 * MIB
MAX_PARALLEL_PARTS = 3  # enough to overlap hashing, signing and the server's work on 2 cores

_METADATA_KEY = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")
# Header values must be printable ASCII; '%' is encoded too so decoding is never ambiguous.
_METADATA_SAFE = "".join(chr(c) for c in range(0x21, 0x7F) if chr(c) != "%")


def encode_metadata_value(value: str) -> str:
    """Make a user-metadata value safe for an HTTP header (percent-encoded UTF-8).

    >>> encode_metadata_value("zhen-01"), encode_metadata_value("城关 镇")
    ('zhen-01', '%E5%9F%8E%E5%85%B3%20%E9%95%87')
    """
    return quote(value, safe=_METADATA_SAFE)


def decode_metadata_value(value: str) -> str:
    """Inverse of ``encode_metadata_value``."""
    return unquote(value)


def parallel_parts(part_size_bytes: int) -> int:
    """How many parts of one file are sent at once, keeping the parts in memory (those being
    sent plus the one being read) within ``PART_MEMORY_BUDGET_BYTES``; at least one.

    >>> [parallel_parts(mib * MIB) for mib in (5, 6, 8, 12, 64)]
    [3, 3, 2, 1, 1]
    """
    return max(1, min(MAX_PARALLEL_PARTS, PART_MEMORY_BUDGET_BYTES // part_size_bytes - 1))


def _md5() -> hashlib._Hash:
    # MD5 here only reproduces the server's ETag; it proves nothing on its own.
    return hashlib.md5(usedforsecurity=False)


class UploadDigests:
    """SHA-256 of a byte stream and the ETag S3 gives it when uploaded with ``part_size``.

    A single PUT (size <= part size, as the SDK decides) has ETag = MD5 of the bytes; a
    multipart upload has ETag = MD5 of the concatenated part MD5s, then ``-<part count>``.
    """

    def __init__(self, size_bytes: int, part_size_bytes: int) -> None:
        self.multipart = size_bytes > part_size_bytes
        self.bytes_seen = 0
        self._part_size = part_size_bytes
        self._sha256 = hashlib.sha256()
        self._part_md5 = _md5()
        self._part_filled = 0
        self._part_digests: list[bytes] = []

    def update(self, data: bytes) -> None:
        self._sha256.update(data)
        self.bytes_seen += len(data)
        view = memoryview(data)
        while view:
            piece = view[: self._part_size - self._part_filled]
            self._part_md5.update(piece)
            self._part_filled += len(piece)
            view = view[len(piece):]
            if self._part_filled == self._part_size:
                self._part_digests.append(self._part_md5.digest())
                self._part_md5 = _md5()
                self._part_filled = 0

    def sha256(self) -> str:
        return self._sha256.hexdigest()

    def etag(self) -> str:
        digests = list(self._part_digests)
        if self._part_filled or not digests:
            digests.append(self._part_md5.digest())
        if not self.multipart:
            return digests[0].hex()
        return f"{md5_of(b''.join(digests))}-{len(digests)}"


def md5_of(data: bytes) -> str:
    digest = _md5()
    digest.update(data)
    return digest.hexdigest()


class SourceMismatch(Exception):
    """The file being uploaded does not hash to the recording id (raised from ``read``)."""


@dataclass(eq=False)
class UploadReader:
    """The file handle given to ``put_object``: hashes what the SDK reads, part by part.

    The SDK reads exactly ``part_size`` bytes per part for a known length, in order and in the
    calling thread even when parts are sent in parallel (minio 7.2.20 ``put_object``: only the
    sending is handed to its thread pool), so the digests see the file's bytes in order. It
    completes a multipart upload only after the last read, so raising from ``read`` at the last
    byte aborts the upload (the SDK aborts a multipart upload) before a wrong object can be
    published. Parts already handed to the pool may still be sent meanwhile; they belong to
    the aborted upload and never become an object. (The SDK then leaves that pool's idle
    daemon threads behind: only a source that changed or cannot be read does that.)
    """

    handle: BinaryIO
    size_bytes: int
    digests: UploadDigests
    sha256: str
    part_size_bytes: int
    throttle: Throttle | None = None
    _failpoint_passed: bool = field(default=False, init=False)

    def read(self, size: int = -1) -> bytes:
        remaining = self.size_bytes - self.digests.bytes_seen
        if remaining <= 0:
            return b""
        data = self.handle.read(remaining if size < 0 else min(size, remaining))
        if not data:
            raise SourceMismatch(
                f"file ended after {self.digests.bytes_seen} of {self.size_bytes} bytes"
            )
        if self.throttle is not None:  # the SDK sends what it read: pace the reading
            self.throttle.take(len(data))
        self.digests.update(data)
        done = self.digests.bytes_seen == self.size_bytes
        # Mid-upload: a single PUT before it is sent; a multipart upload once its first part
        # is handed over to be sent (the upload exists by then), so a kill leaves it unfinished.
        mid_upload = (self.digests.bytes_seen > self.part_size_bytes
                      if self.digests.multipart else done)
        if mid_upload and not self._failpoint_passed:
            self._failpoint_passed = True
            failpoint("archive.mid_upload")
        if done and self.digests.sha256() != self.sha256:
            raise SourceMismatch(f"file now hashes to {self.digests.sha256()[:12]}")
        return data


def local_digests(source: Path, size_bytes: int, part_size_bytes: int) -> UploadDigests:
    digests = UploadDigests(size_bytes, part_size_bytes)
    with source.open("rb", buffering=0) as handle:
        while chunk := handle.read(READ_CHUNK_BYTES):
            digests.update(chunk)
    return digests


def user_metadata(metadata: Mapping[str, str], sha256: str) -> dict[str, str]:
    """User metadata for an original, keyed without the ``x-amz-meta-`` prefix."""
    result: dict[str, str] = {}
    for name, value in metadata.items():
        key = name.lower().removeprefix("x-amz-meta-")
        if not _METADATA_KEY.match(key):
            raise ValueError(_("unsuitable metadata key {name!r}").format(name=name))
        result[key] = encode_metadata_value(str(value))
    if result.setdefault("sha256", sha256) != sha256:
        raise ValueError(_("metadata sha256 {sha256} is not the recording's").format(
            sha256=result['sha256'][:12]))
    return result
