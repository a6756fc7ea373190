"""The S3 archive: the storage contract in a MinIO (or any S3) bucket, through the ``minio`` SDK.

This is the production backend. Originals are uploaded while being hashed a second time, so
the bytes that left the station are proven to be the recording (SHA-256) and the bytes the
server stored are proven to be the ones sent (ETag = MD5, or MD5 of part MD5s for multipart),
or, when ETags prove nothing (SSE-S3, ``verify = "readback"``), the stored object is read back
and hashed. Originals get Object Lock retention (COMPLIANCE): from the bucket's default rule
when it has a sufficient one, else set on each object after upload.

This module must never overwrite, delete or shorten the retention of anything in the bucket;
every write is create-only. The one removal is ``remove_leftovers``: aborting incomplete
multipart uploads under ``recordings/`` that a killed process left (their parts are billed and
kept for ever otherwise). An abort cannot touch an object — a completed upload answers
NoSuchUpload — and Object Lock never blocks it: it protects object versions, and an unfinished
upload has none. It must never read a whole original into memory (at most
``parallel_parts + 1`` parts are held at once, see ``parallel_parts``), never publish an object
whose bytes do not hash to the recording id, and never put the secret key in a message or a
log line.

Errors from the SDK and urllib3 are translated here, once: transient ones (connection errors,
timeouts, 5xx) are retried with exponential backoff and jitter (tenacity) and then reported as
``StorageError("archive s3://host/bucket unreachable: ...")``; refusals (AccessDenied,
NoSuchBucket, ...) are reported at once.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import mimetypes
import os
import re
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, TypeVar
from urllib.parse import quote, unquote

import certifi
import urllib3
from minio import Minio
from minio.commonconfig import COMPLIANCE, CopySource
from minio.datatypes import Object, Upload
from minio.error import InvalidResponseError, MinioException, S3Error, ServerError
from minio.objectlockconfig import YEARS
from minio.retention import Retention
from minio.sse import SseS3
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_random_exponential,
)

from ..errors import (
    ConfigError,
    IntegrityError,
    ObjectExistsError,
    ObjectMissingError,
    StorageError,
)
from ..failpoints import failpoint
from ..http_errors import describe
from . import keys
from .base import (
    READ_CHUNK_BYTES,
    InFlight,
    Leftover,
    SetAside,
    StoredObject,
    is_leftover,
    rejected_key,
    require_match,
)
from .link import Throttle

if TYPE_CHECKING:
    from minio.helpers import ObjectWriteResult

    from ..config import ArchiveConfig

logger = logging.getLogger("evidence_daemon.archive.s3")

MIB = 1024 * 1024
MIN_PART_SIZE_BYTES = 5 * MIB  # S3 limits for every part but the last
MAX_PART_SIZE_BYTES = 5 * 1024 * MIB

_T = TypeVar("_T")

# Parts of one original in memory at once, whatever archive.part_size_mib says. minio-py reads
# each part whole, in order, in the calling thread (that is where ``_UploadReader`` hashes it)
# and hands it to one of ``num_parallel_uploads`` sender threads; it blocks before reading a
# part while that many are queued or being sent, so it holds at most ``n + 1`` parts.
# 24 MiB: with two upload workers at the default 8 MiB parts (two parts in flight each), a
# multi-file ingest peaked at 151 MB with 32 MiB (three in flight), over the 150 MB target.
PART_MEMORY_BUDGET_BYTES = 24 * MIB
MAX_PARALLEL_PARTS = 3  # enough to overlap hashing, signing and the server's work on 2 cores

# How the bucket protects originals, decided once from its Object Lock configuration.
_LOCK_BY_BUCKET_DEFAULT = "bucket-default"  # a COMPLIANCE default rule at least as long as ours
_LOCK_PER_OBJECT = "per-object"  # lock enabled: set COMPLIANCE retention on each original
_LOCK_OFF = "off"  # no Object Lock on the bucket (allowed only if not required)

# S3 error codes worth retrying even when a proxy answers them with a 4xx status.
_TRANSIENT_CODES = frozenset(
    {
        "InternalError",
        "RequestTimeout",
        "ServiceUnavailable",
        "SlowDown",
        "XMinioServerNotInitialized",
        "XMinioReadQuorum",
        "XMinioWriteQuorum",
    }
)
_CREDENTIAL_CODES = frozenset(
    {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken"}
)

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


class _UploadDigests:
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
        return f"{_md5_of(b''.join(digests))}-{len(digests)}"


def _md5_of(data: bytes) -> str:
    digest = _md5()
    digest.update(data)
    return digest.hexdigest()


class _SourceMismatch(Exception):
    """The file being uploaded does not hash to the recording id (raised from ``read``)."""


class _UploadReader:
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

    def __init__(
        self,
        handle: BinaryIO,
        size_bytes: int,
        digests: _UploadDigests,
        sha256: str,
        part_size_bytes: int,
        throttle: Throttle | None = None,
    ) -> None:
        self._handle = handle
        self._throttle = throttle
        self._size_bytes = size_bytes
        self._digests = digests
        self._sha256 = sha256
        self._part_size_bytes = part_size_bytes
        self._failpoint_passed = False

    def read(self, size: int = -1) -> bytes:
        remaining = self._size_bytes - self._digests.bytes_seen
        if remaining <= 0:
            return b""
        data = self._handle.read(remaining if size < 0 else min(size, remaining))
        if not data:
            raise _SourceMismatch(
                f"file ended after {self._digests.bytes_seen} of {self._size_bytes} bytes"
            )
        if self._throttle is not None:  # the SDK sends what it read: pace the reading
            self._throttle.take(len(data))
        self._digests.update(data)
        done = self._digests.bytes_seen == self._size_bytes
        # Mid-upload: a single PUT before it is sent; a multipart upload once its first part
        # is handed over to be sent (the upload exists by then), so a kill leaves it unfinished.
        mid_upload = (self._digests.bytes_seen > self._part_size_bytes
                      if self._digests.multipart else done)
        if mid_upload and not self._failpoint_passed:
            self._failpoint_passed = True
            failpoint("archive.mid_upload")
        if done and self._digests.sha256() != self._sha256:
            raise _SourceMismatch(f"file now hashes to {self._digests.sha256()[:12]}")
        return data


def _local_digests(source: Path, size_bytes: int, part_size_bytes: int) -> _UploadDigests:
    digests = _UploadDigests(size_bytes, part_size_bytes)
    with source.open("rb", buffering=0) as handle:
        while chunk := handle.read(READ_CHUNK_BYTES):
            digests.update(chunk)
    return digests


def _http_status(exc: BaseException) -> int | None:
    if isinstance(exc, S3Error):
        return int(exc.response.status)
    if isinstance(exc, ServerError):
        return exc.status_code
    if isinstance(exc, InvalidResponseError):
        # A non-XML answer, typically a proxy's 502/503 page; the SDK keeps the code private.
        code = getattr(exc, "_code", None)
        return code if isinstance(code, int) else None
    return None


def is_transient(exc: BaseException) -> bool:
    """Whether trying the same request again later may succeed."""
    if isinstance(exc, urllib3.exceptions.SSLError):
        return False  # certificate or TLS configuration: retrying only delays the real error
    if isinstance(exc, (urllib3.exceptions.HTTPError, ConnectionError, TimeoutError)):
        return True
    if isinstance(exc, S3Error) and exc.code in _TRANSIENT_CODES:
        return True
    status = _http_status(exc)
    return status is not None and status >= 500


def _describe(exc: BaseException) -> str:
    """A short reason for a human, with the S3 error code when the server gave one."""
    if isinstance(exc, S3Error):
        return f"{exc.code}: {exc.message}" if exc.message else str(exc.code)
    return describe(exc)


def _parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def _iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat(timespec="seconds")


def _header(info: Object, name: str) -> str | None:
    value = info.metadata.get(name) if info.metadata is not None else None
    return str(value) if value is not None else None


@dataclass(frozen=True)
class _Retention:
    mode: str | None
    retain_until: datetime | None


def _retention_of(info: Object) -> _Retention:
    # HEAD answers carry the retention to callers allowed to read it (MinIO and S3 alike).
    return _Retention(
        mode=_header(info, "x-amz-object-lock-mode"),
        retain_until=_parse_time(_header(info, "x-amz-object-lock-retain-until-date")),
    )


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


class S3Archive:
    """``ArchiveStore`` on one bucket of a MinIO/S3 server."""

    def __init__(
        self,
        client: Minio,
        bucket: str,
        *,
        part_size_bytes: int = 8 * MIB,
        retention_days: int = 180,
        require_object_lock: bool = False,
        sse: str = "",
        verify: str = "stream",
        retries: int = 5,
        endpoint: str | None = None,
        backoff_s: float = 0.5,
        backoff_max_s: float = 30.0,
        clock: Callable[[], datetime] = _utcnow,
        throttle: Throttle | None = None,
    ) -> None:
        if not MIN_PART_SIZE_BYTES <= part_size_bytes <= MAX_PART_SIZE_BYTES:
            raise ValueError(f"part size must be 5 MiB to 5 GiB, got {part_size_bytes} bytes")
        if sse not in ("", "s3"):
            raise ValueError(f"sse must be '' or 's3', got {sse!r}")
        if verify not in ("stream", "readback"):
            raise ValueError(f"verify must be 'etag' or 'readback', got {verify!r}")
        if retention_days < 1:
            raise ValueError("retention_days must be at least 1")
        self.client = client
        self.bucket = bucket
        self.part_size_bytes = part_size_bytes
        self.retention_days = retention_days
        self.require_object_lock = require_object_lock
        self.sse = sse
        self.verify = verify
        # ``retries`` counts attempts, so 0 and 1 both mean "try once".
        self.attempts = max(1, retries)
        self._endpoint = endpoint or _client_host(client)
        self._backoff_s = backoff_s
        self._backoff_max_s = backoff_max_s
        self._clock = clock
        self._lock_policy_value: str | None = None
        self._lock_policy_mutex = threading.Lock()
        self._warned_no_lock = False
        self._in_flight = InFlight()  # keys being uploaded now: never aborted as leftovers
        self._throttle = throttle  # archive.max_upload_mbps, shared by every upload

    @classmethod
    def from_config(
        cls,
        config: ArchiveConfig,
        *,
        connect_timeout_s: float = 5.0,
        read_timeout_s: float = 120.0,
    ) -> S3Archive:
        """Build the client and the archive from ``[archive]`` configuration."""
        endpoint, secure = config.endpoint, config.secure
        for scheme in ("http://", "https://"):
            if endpoint.startswith(scheme):  # a URL names its scheme: believe it
                endpoint, secure = endpoint[len(scheme):], scheme == "https://"
        endpoint = endpoint.rstrip("/")
        # Our own pool: short connect timeout so a dead endpoint fails in seconds, and no
        # urllib3-level retries, so tenacity is the only retry layer (no multiplied waits).
        http_client = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=connect_timeout_s, read=read_timeout_s),
            maxsize=10,
            cert_reqs="CERT_REQUIRED",
            ca_certs=config.ca_file or os.environ.get("SSL_CERT_FILE") or certifi.where(),
            retries=False,
        )
        try:
            client = Minio(
                endpoint,
                access_key=config.access_key or None,
                secret_key=config.secret_key or None,
                secure=secure,
                region=config.region or None,
                http_client=http_client,
            )
        except ValueError as exc:
            raise ConfigError(
                f"archive.endpoint: {config.endpoint!r} is not usable: {exc}"
            ) from exc
        return cls(
            client,
            config.bucket,
            part_size_bytes=config.part_size_mib * MIB,
            retention_days=config.retention_days,
            require_object_lock=config.require_object_lock,
            sse=config.sse,
            verify=config.verify,
            retries=config.retries,
            endpoint=endpoint,
            throttle=Throttle.from_mbps(config.max_upload_mbps),
        )

    @property
    def location(self) -> str:
        return f"s3://{self._endpoint}/{self.bucket}"

    # -- retries and error translation -------------------------------------------------

    def _call(self, what: str, operation: Callable[[], _T], *, key: str | None = None) -> _T:
        """Run one SDK operation with retries; translate its final failure once."""
        retrying = Retrying(
            stop=stop_after_attempt(self.attempts),
            wait=wait_random_exponential(multiplier=self._backoff_s, max=self._backoff_max_s),
            retry=retry_if_exception(is_transient),
            before_sleep=self._log_retry(what),
            reraise=True,
        )
        try:
            return retrying(operation)
        except (MinioException, urllib3.exceptions.HTTPError, ConnectionError, TimeoutError) as exc:
            raise self._translate(exc, what, key) from exc

    def _log_retry(self, what: str) -> Callable[[RetryCallState], None]:
        def log(state: RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome is not None else None
            delay = state.next_action.sleep if state.next_action is not None else 0.0
            logger.warning(
                "archive %s: %s failed (attempt %d of %d: %s); retrying in %.1f s",
                self.location, what, state.attempt_number, self.attempts,
                _describe(exc) if exc is not None else "?", delay,
            )

        return log

    def _translate(self, exc: BaseException, what: str, key: str | None) -> StorageError:
        code = exc.code if isinstance(exc, S3Error) else None
        if code in ("NoSuchKey", "NoSuchVersion") and key is not None:
            return ObjectMissingError(f"{key} is not in the archive {self.location}")
        if code == "NoSuchBucket":
            return StorageError(
                f"archive {self.location}: bucket {self.bucket!r} does not exist"
            )
        if code in _CREDENTIAL_CODES:
            return StorageError(
                f"archive {self.location} refused to {what}: {_describe(exc)} (check "
                "archive.access_key, the secret key and the bucket policy)"
            )
        if isinstance(exc, urllib3.exceptions.SSLError):
            return StorageError(f"archive {self.location}: TLS failed: {exc}")
        if is_transient(exc):
            tries = f" after {self.attempts} attempts" if self.attempts > 1 else ""
            return StorageError(
                f"archive {self.location} unreachable: {what}: {_describe(exc)}{tries}"
            )
        return StorageError(f"archive {self.location} refused to {what}: {_describe(exc)}")

    # -- bucket ------------------------------------------------------------------------

    def check(self) -> None:
        """Bucket reachable and present, Object Lock as required and versioning not suspended
        (see ``_read_lock_policy``).

        Write access is not probed: every probe object would stay in a locked bucket forever.
        """
        exists = self._call("check the bucket", lambda: self.client.bucket_exists(self.bucket))
        if not exists:
            raise StorageError(
                f"archive {self.location}: bucket {self.bucket!r} does not exist (create it "
                "with Object Lock enabled, e.g. `mc mb --with-lock`)"
            )
        with self._lock_policy_mutex:
            self._lock_policy_value = None  # check() re-reads the configuration
        self._lock_policy()

    def ensure_bucket(self, *, object_lock: bool = True) -> None:
        """Create the bucket if it is missing (tests, the demo, first set-up)."""

        def make() -> None:
            if self.client.bucket_exists(self.bucket):
                return
            try:
                self.client.make_bucket(self.bucket, object_lock=object_lock)
            except S3Error as exc:
                if exc.code != "BucketAlreadyOwnedByYou":  # created meanwhile by us: fine
                    raise

        self._call("create the bucket", make)
        with self._lock_policy_mutex:
            self._lock_policy_value = None

    def _lock_policy(self) -> str:
        with self._lock_policy_mutex:
            if self._lock_policy_value is None:
                self._lock_policy_value = self._read_lock_policy()
            return self._lock_policy_value

    def _read_lock_policy(self) -> str:
        def read() -> str:
            try:
                config = self.client.get_object_lock_config(self.bucket)
            except S3Error as exc:
                if exc.code == "ObjectLockConfigurationNotFoundError":
                    return _LOCK_OFF
                raise
            if config.mode is None or config.duration is None:
                return _LOCK_PER_OBJECT
            days = config.duration * (365 if config.duration_unit == YEARS else 1)
            if config.mode == COMPLIANCE and days >= self.retention_days:
                return _LOCK_BY_BUCKET_DEFAULT
            # A GOVERNANCE or shorter default can be bypassed or run out early: extend it.
            logger.info(
                "archive %s: bucket default retention is %s %d days; setting COMPLIANCE "
                "%d days on each original instead",
                self.location, config.mode, days, self.retention_days,
            )
            return _LOCK_PER_OBJECT

        policy = self._call("read the Object Lock configuration", read)
        if self._versioning_status() == "Suspended":
            # Each new object would replace the unversioned "null" version of its key in place,
            # and set_aside could keep nothing: the old bytes would be gone for good.
            raise StorageError(
                f"archive {self.location}: versioning is suspended on bucket {self.bucket!r}; "
                "an upload could replace a stored object for good (enable versioning again, "
                "or better, use a bucket with Object Lock)"
            )
        if policy == _LOCK_OFF:
            if self.require_object_lock:
                raise StorageError(
                    f"archive {self.location}: bucket {self.bucket!r} has no Object Lock, but "
                    "archive.require_object_lock is set; originals could be deleted or "
                    "overwritten (recreate the bucket with Object Lock enabled)"
                )
            if not self._warned_no_lock:
                self._warned_no_lock = True
                logger.warning(
                    "archive %s: bucket %r has no Object Lock; originals are not protected "
                    "from deletion or overwrite by the storage itself",
                    self.location, self.bucket,
                )
        return policy

    # -- originals ---------------------------------------------------------------------

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
        user_metadata = _user_metadata(metadata, sha256)
        self._lock_policy()  # fail before uploading if the bucket is not acceptable
        existing = self._head(key)
        if existing is not None and not (
            replacing is not None and replacing.key == key
            and (replacing.version_id is None or replacing.version_id == existing.version_id)
        ):
            return self._accept_existing(key, source, existing, sha256, size_bytes)

        headers: dict[str, str] = dict(user_metadata)
        if size_bytes <= self.part_size_bytes:
            # A single PUT carries the SHA-256 the server must check (MinIO verifies it; a
            # lock-enabled bucket demands some checksum). Multipart cannot: the SDK sends no
            # per-part checksums, so there the ETag comparison below does the proving.
            headers["x-amz-sdk-checksum-algorithm"] = "SHA256"
            headers["x-amz-checksum-sha256"] = base64.b64encode(bytes.fromhex(sha256)).decode()
        content_type = mimetypes.guess_type(key)[0] or "application/octet-stream"

        def upload() -> tuple[ObjectWriteResult, _UploadDigests]:
            digests = _UploadDigests(size_bytes, self.part_size_bytes)
            with source.open("rb", buffering=0) as handle:
                reader = _UploadReader(handle, size_bytes, digests, sha256, self.part_size_bytes,
                                       self._throttle)
                result = self.client.put_object(
                    self.bucket,
                    key,
                    reader,  # type: ignore[arg-type]  # has the read() the SDK calls
                    size_bytes,
                    content_type=content_type,
                    metadata=dict(headers),
                    sse=SseS3() if self.sse == "s3" else None,
                    part_size=self.part_size_bytes,
                    num_parallel_uploads=parallel_parts(self.part_size_bytes),
                )
            return result, digests

        try:
            with self._in_flight.track(key):
                result, digests = self._call(f"store {key}", upload, key=key)
        except _SourceMismatch as exc:
            raise IntegrityError(
                f"{source} does not hash to {sha256[:12]} any more ({exc}); nothing was "
                f"stored under {key}"
            ) from exc
        except OSError as exc:
            raise StorageError(f"cannot read {source} to store {key}: {exc.strerror}") from exc

        stored = self._head(key, result.version_id)
        if stored is None:
            raise StorageError(f"archive {self.location}: {key} vanished right after upload")
        if stored.size != size_bytes:
            require_match(key, f"{size_bytes} bytes", f"{stored.size} bytes", "size")
        # Ceph RGW 16 answers a completed multipart upload with an empty <ETag>; the HEAD of
        # the same version carries the ETag the server computed, which proves as much.
        etag = (result.etag or stored.etag or "").strip('"').lower()
        if self.verify == "stream" and not self.sse and etag == digests.etag():
            verified_by = "sha256+etag"
        else:
            if self.verify == "stream" and not self.sse:
                logger.warning(
                    "archive %s: %s: ETag %s is not the expected %s; reading it back",
                    self.location, key, etag, digests.etag(),
                )
            self._read_back(key, result.version_id, sha256, size_bytes)
            verified_by = "readback"
        retain_until = self._ensure_retention(key, stored)
        return StoredObject(
            key=key,
            size_bytes=size_bytes,
            sha256=sha256,
            etag=etag or None,
            version_id=result.version_id,
            verified_by=verified_by,
            retain_until=retain_until,
        )

    def set_aside(self, key: str, *, tag: str) -> SetAside:
        existing = self._head(key)
        if existing is None:
            raise ObjectMissingError(f"{key} is not in the archive {self.location}")
        if self._versioned():
            # The version stays (Object Lock may forbid its deletion anyway); the next upload
            # makes a new current version and the ledger names this one.
            return SetAside(key, f"version {existing.version_id}", existing.version_id)
        # No versioning: the upload would destroy these bytes, so copy them aside first.
        destination = rejected_key(key, tag)
        if self._head(destination) is None:
            source = CopySource(self.bucket, key)
            self._call(f"copy {key} aside", lambda: self.client.copy_object(
                self.bucket, destination, source), key=key)
        return SetAside(key, destination)

    def _versioned(self) -> bool:
        return self._versioning_status() == "Enabled"

    def _versioning_status(self) -> str:
        """``Enabled``, ``Suspended``, or ``Off`` (never enabled)."""
        config = self._call("read the bucket versioning",
                            lambda: self.client.get_bucket_versioning(self.bucket))
        return str(config.status or "Off")

    def _accept_existing(
        self, key: str, source: Path, existing: Object, sha256: str, size_bytes: int
    ) -> StoredObject:
        """Re-docking the same file: prove what is there instead of writing again."""
        stored_sha256 = _header(existing, "x-amz-meta-sha256")
        if stored_sha256 is not None and stored_sha256 != sha256:
            raise ObjectExistsError(
                f"{key} already holds a different object in {self.location} (SHA-256 "
                f"{stored_sha256[:12]}, not {sha256[:12]})"
            )
        if existing.size != size_bytes:
            if stored_sha256 is None:
                raise ObjectExistsError(
                    f"{key} already holds a different object in {self.location} "
                    f"({existing.size} bytes, not {size_bytes})"
                )
            require_match(key, f"{size_bytes} bytes", f"{existing.size} bytes", "size")
        etag = (existing.etag or "").strip('"').lower()
        verified_by = "readback"
        if self.verify == "stream" and not self.sse and stored_sha256 is not None:
            try:
                local = _local_digests(source, size_bytes, self.part_size_bytes)
            except OSError as exc:
                raise StorageError(f"cannot read {source} to verify {key}: {exc.strerror}") from exc
            if local.sha256() != sha256:
                raise IntegrityError(f"{source} does not hash to {sha256[:12]} any more")
            if etag == local.etag():
                verified_by = "sha256+etag"
        if verified_by == "readback":
            # Also the way out when the object was uploaded with another part size.
            try:
                self._read_back(key, existing.version_id, sha256, size_bytes)
            except IntegrityError:
                if stored_sha256 is None:
                    raise ObjectExistsError(
                        f"{key} already holds a different object in {self.location}"
                    ) from None
                raise
        return StoredObject(
            key=key,
            size_bytes=size_bytes,
            sha256=sha256,
            etag=etag or None,
            version_id=existing.version_id,
            verified_by=verified_by,
            retain_until=self._ensure_retention(key, existing),
        )

    def _read_back(self, key: str, version_id: str | None, sha256: str, size_bytes: int) -> None:
        digest = hashlib.sha256()
        actual_size = 0
        for chunk in self._iter_object(key, version_id, READ_CHUNK_BYTES):
            digest.update(chunk)
            actual_size += len(chunk)
        if actual_size != size_bytes:
            require_match(key, f"{size_bytes} bytes", f"{actual_size} bytes", "size")
        require_match(key, sha256, digest.hexdigest(), "SHA-256 of the stored object")

    def _ensure_retention(self, key: str, info: Object) -> str | None:
        """Make sure an original is under COMPLIANCE retention; its retain-until date.

        Also heals an upload whose process died before the retention was set: re-docking
        finds the object and comes here. Retention is counted from when the object was
        stored and is only ever extended.
        """
        current = _retention_of(info)
        policy = self._lock_policy()
        if policy != _LOCK_PER_OBJECT:
            return _iso(current.retain_until) if current.retain_until else None
        archived_at = info.last_modified or self._clock()
        wanted = (archived_at + timedelta(days=self.retention_days)).replace(microsecond=0)
        if current.retain_until is not None:
            if current.mode == COMPLIANCE and current.retain_until >= wanted:
                return _iso(current.retain_until)
            wanted = max(wanted, current.retain_until)
        if wanted <= self._clock():
            return _iso(current.retain_until) if current.retain_until else None
        return self._set_retention(key, info, wanted)

    def _set_retention(self, key: str, info: Object, until: datetime) -> str:
        """COMPLIANCE until ``until`` on this version; callers make sure it only lengthens."""
        retention = Retention(COMPLIANCE, until)
        self._call(
            f"set retention on {key}",
            lambda: self.client.set_object_retention(
                self.bucket, key, retention, version_id=info.version_id
            ),
            key=key,
        )
        return _iso(until)

    # -- small objects -----------------------------------------------------------------

    def put_bytes(self, key: str, data: bytes, *, content_type: str = "application/json") -> None:
        if self._head(key) is not None:
            raise ObjectExistsError(f"{key} already exists in {self.location}")
        sha256 = hashlib.sha256(data).digest()
        headers: dict[str, str | list[str] | tuple[str]] = {
            "Content-Type": content_type,
            # The stat above leaves a window for a concurrent writer; If-None-Match makes the
            # server refuse to replace an existing key (MinIO and moto both honour it).
            "If-None-Match": "*",
            "x-amz-sdk-checksum-algorithm": "SHA256",
            "x-amz-checksum-sha256": base64.b64encode(sha256).decode(),
            "x-amz-meta-sha256": sha256.hex(),
        }
        if self.sse == "s3":
            headers.update(SseS3().headers())
        attempts = 0

        def put() -> ObjectWriteResult:
            nonlocal attempts
            attempts += 1
            # minio 7.2.20's put_object turns every unknown header into x-amz-meta-*, so it
            # cannot send If-None-Match; _put_object is the request it makes underneath.
            return self.client._put_object(self.bucket, key, data, dict(headers))

        try:
            result = self._call(f"store {key}", put, key=key)
        except StorageError as exc:
            cause = exc.__cause__
            if not (isinstance(cause, S3Error) and cause.code == "PreconditionFailed"):
                raise
            # An earlier attempt may have landed with its answer lost: that is our object.
            if attempts > 1 and self.get_bytes(key) == data:
                return
            raise ObjectExistsError(f"{key} already exists in {self.location}") from None
        etag = (result.etag or "").strip('"').lower()
        if self.sse or etag != _md5_of(data):
            if self.get_bytes(key) != data:
                raise IntegrityError(f"{key}: the archive stored other bytes than were sent")

    def get_bytes(self, key: str) -> bytes:
        def read() -> bytes:
            response = self.client.get_object(self.bucket, key)
            try:
                return bytes(response.read())
            finally:
                response.close()
                response.release_conn()

        return self._call(f"read {key}", read, key=key)

    def iter_chunks(
        self,
        key: str,
        chunk_bytes: int = READ_CHUNK_BYTES,
        *,
        offset: int = 0,
        length: int | None = None,
    ) -> Iterator[bytes]:
        if length == 0:
            return
        yield from self._iter_object(key, None, chunk_bytes, offset=offset, length=length or 0)

    def _iter_object(
        self, key: str, version_id: str | None, chunk_bytes: int, *, offset: int = 0, length: int = 0
    ) -> Iterator[bytes]:
        response = self._call(
            f"read {key}",
            lambda: self.client.get_object(
                self.bucket, key, version_id=version_id, offset=offset, length=length
            ),
            key=key,
        )
        try:
            # A break mid-stream is not retried (no resume): the caller sees StorageError
            # and verifies again later.
            yield from response.stream(chunk_bytes)
        except (urllib3.exceptions.HTTPError, ConnectionError, TimeoutError) as exc:
            raise self._translate(exc, f"read {key}", key) from exc
        finally:
            response.close()
            response.release_conn()

    def _head(self, key: str, version_id: str | None = None) -> Object | None:
        def head() -> Object | None:
            try:
                return self.client.stat_object(self.bucket, key, version_id=version_id)
            except S3Error as exc:
                if exc.code in ("NoSuchKey", "NoSuchVersion"):
                    return None
                raise

        return self._call(f"stat {key}", head, key=key)

    def stat(self, key: str) -> StoredObject | None:
        info = self._head(key)
        if info is None:
            return None
        retention = _retention_of(info)
        return StoredObject(
            key=key,
            size_bytes=info.size or 0,
            sha256=_header(info, "x-amz-meta-sha256"),
            etag=(info.etag or "").strip('"').lower() or None,
            version_id=info.version_id,
            retain_until=_iso(retention.retain_until) if retention.retain_until else None,
        )

    def set_legal_hold(self, key: str, on: bool) -> bool:
        if self._head(key) is None:
            raise ObjectMissingError(f"{key} is not in {self.location}")
        if self._lock_policy() == _LOCK_OFF:
            return False
        change = self.client.enable_object_legal_hold if on else self.client.disable_object_legal_hold
        self._call(f"{'set' if on else 'lift'} legal hold on {key}",
                   lambda: change(self.bucket, key), key=key)
        return True

    def extend_retention(self, key: str, until: datetime) -> str | None:
        info = self._head(key)
        if info is None:
            raise ObjectMissingError(f"{key} is not in {self.location}")
        if self._lock_policy() == _LOCK_OFF:
            return None
        current = _retention_of(info)
        wanted = until.astimezone(timezone.utc).replace(microsecond=0)
        if current.retain_until is not None and current.retain_until >= wanted:
            return _iso(current.retain_until)  # never shortened
        return self._set_retention(key, info, wanted)

    def remove_leftovers(self, older_than: datetime) -> list[Leftover]:
        """Abort incomplete multipart uploads under ``recordings/`` initiated before
        ``older_than``, except those of keys this object is uploading now.

        Only originals and proxies go up in parts (small objects are single PUTs). Keys are
        content addresses shared by every station of the bucket, so an upload cannot be told
        to be ours: the cut-off, compared with the server's ``Initiated`` time, is what keeps
        other stations' uploads safe. The caller's policy needs ``s3:ListBucketMultipartUploads``
        and ``s3:AbortMultipartUpload`` (neither is a delete).

        The listing has no prefix, filtered here: given a prefix, MinIO lists only the uploads
        of the object of exactly that name (AWS, Ceph and moto list by prefix).
        """
        uploads = self._call("list unfinished uploads", self._unfinished_uploads)
        in_flight = self._in_flight.names()  # after listing: see InFlight
        removed: list[Leftover] = []
        for upload in uploads:
            key, initiated = upload.object_name, upload.initiated_time
            if not key.startswith(keys.RECORDINGS_PREFIX) or upload.upload_id is None:
                continue
            if initiated is None or not is_leftover(initiated, older_than=older_than,
                                                    in_flight=key in in_flight):
                continue
            if self._abort_upload(key, upload.upload_id):
                removed.append(Leftover("multipart", key, initiated))
        return removed

    def _unfinished_uploads(self) -> list[Upload]:
        uploads: list[Upload] = []
        key_marker: str | None = None
        upload_id_marker: str | None = None
        while True:
            page = self.client._list_multipart_uploads(
                self.bucket, key_marker=key_marker, upload_id_marker=upload_id_marker,
            )
            uploads.extend(page.uploads)
            if not page.is_truncated or not page.uploads:
                return uploads
            # minio 7.2.20 files NextUploadIdMarker under a misspelt attribute; the last upload
            # of the page is the same marker.
            last = page.uploads[-1]
            if (last.object_name, last.upload_id) == (key_marker, upload_id_marker):
                return uploads  # a server that does not page: do not loop
            key_marker, upload_id_marker = last.object_name, last.upload_id

    def _abort_upload(self, key: str, upload_id: str) -> bool:
        def abort() -> bool:
            try:
                self.client._abort_multipart_upload(self.bucket, key, upload_id)
            except S3Error as exc:
                if exc.code == "NoSuchUpload":
                    return False  # completed or aborted meanwhile
                raise
            return True

        return self._call(f"abort the unfinished upload of {key}", abort, key=key)

    def list_keys(self, prefix: str, *, start_after: str = "") -> Iterator[str]:
        def listing() -> list[str]:
            return sorted(
                item.object_name
                for item in self.client.list_objects(
                    self.bucket, prefix=prefix, recursive=True, start_after=start_after or None
                )
                if item.object_name and not item.is_dir
            )

        yield from self._call(f"list {prefix or '/'}", listing)


def _client_host(client: Minio) -> str:
    # Only for location strings when the caller did not say; the SDK keeps the URL private.
    base_url = getattr(client, "_base_url", None)
    return str(getattr(base_url, "host", "?"))


def _user_metadata(metadata: Mapping[str, str], sha256: str) -> dict[str, str]:
    """User metadata for an original, keyed without the ``x-amz-meta-`` prefix."""
    result: dict[str, str] = {}
    for name, value in metadata.items():
        key = name.lower().removeprefix("x-amz-meta-")
        if not _METADATA_KEY.match(key):
            raise ValueError(f"unsuitable metadata key {name!r}")
        result[key] = encode_metadata_value(str(value))
    if result.setdefault("sha256", sha256) != sha256:
        raise ValueError(f"metadata sha256 {result['sha256'][:12]} is not the recording's")
    return result
