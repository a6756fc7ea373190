"""``S3Archive``: the storage contract in a MinIO (or any S3) bucket, through the ``minio`` SDK.

This is the production backend; its parts live beside it: ``connection`` (client, retries,
error translation), ``upload`` (hashing while uploading), ``lock`` (Object Lock retention
and legal holds) and ``leftovers`` (unfinished multipart uploads). An original is proven
stored by SHA-256 while sent plus the server's ETag, or, when ETags prove nothing (SSE-S3,
``verify = "readback"``), by reading the stored object back and hashing it.

Must never: overwrite, delete or shorten the retention of anything in the bucket (every write
is create-only), publish an object whose bytes do not hash to the recording id, or put the
secret key in a message or a log line.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import mimetypes
from collections.abc import Iterator, Mapping
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import urllib3
from minio import Minio
from minio.commonconfig import CopySource
from minio.datatypes import Object
from minio.error import S3Error
from minio.sse import SseS3

from ...clock import Clock, utc_now
from ...errors import IntegrityError, ObjectExistsError, ObjectMissingError, StorageError
from ..base import (
    READ_CHUNK_BYTES,
    InFlight,
    Leftover,
    Proof,
    SetAside,
    StoredObject,
    hash_chunks,
    rejected_key,
    require_copy,
    require_size,
)
from ..link import Throttle
from . import leftovers
from .connection import Bucket, client_host, make_client
from .lock import ObjectLock, header, retention_of, shown
from .upload import (
    MAX_PART_SIZE_BYTES,
    MIB,
    MIN_PART_SIZE_BYTES,
    SourceMismatch,
    UploadDigests,
    UploadReader,
    local_digests,
    md5_of,
    parallel_parts,
    user_metadata,
)
from ...i18n import _

if TYPE_CHECKING:
    from minio.helpers import ObjectWriteResult

    from ...config import ArchiveConfig

logger = logging.getLogger(__package__)


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
        clock: Clock = utc_now,
        throttle: Throttle | None = None,
    ) -> None:
        if not MIN_PART_SIZE_BYTES <= part_size_bytes <= MAX_PART_SIZE_BYTES:
            raise ValueError(_("part size must be 5 MiB to 5 GiB, got {part_size_bytes} bytes").format(
                part_size_bytes=part_size_bytes))
        if sse not in ("", "s3"):
            raise ValueError(_("sse must be '' or 's3', got {sse!r}").format(sse=sse))
        if verify not in ("stream", "readback"):
            raise ValueError(_("verify must be 'stream' or 'readback', got {verify!r}").format(
                verify=verify))
        if retention_days < 1:
            raise ValueError(_("retention_days must be at least 1"))
        self.client = client
        self.bucket = bucket
        self.part_size_bytes = part_size_bytes
        self.sse = sse
        self.verify = verify
        # ``retries`` counts attempts, so 0 and 1 both mean "try once".
        self.attempts = max(1, retries)
        self._bucket = Bucket(client, bucket, endpoint=endpoint or client_host(client),
                              attempts=self.attempts, backoff_s=backoff_s,
                              backoff_max_s=backoff_max_s)
        self._call = self._bucket.call
        self._head = self._bucket.head
        self._lock = ObjectLock(self._bucket, retention_days=retention_days,
                                require_object_lock=require_object_lock, clock=clock)
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
        client, endpoint = make_client(config, connect_timeout_s=connect_timeout_s,
                                       read_timeout_s=read_timeout_s)
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
        return self._bucket.location

    # -- bucket ------------------------------------------------------------------------

    def check(self) -> None:
        """Bucket reachable and present, Object Lock as required and versioning not suspended
        (see ``ObjectLock``).

        Write access is not probed: every probe object would stay in a locked bucket forever.
        """
        exists = self._call("check the bucket", lambda: self.client.bucket_exists(self.bucket))
        if not exists:
            raise StorageError(
                _("archive {location}: bucket {bucket!r} does not exist (create it with Object "
                  "Lock enabled, e.g. `mc mb --with-lock`)").format(
                      location=self.location, bucket=self.bucket)
            )
        self._lock.forget()  # check() re-reads the configuration
        self._lock.policy()

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
        self._lock.forget()

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
        headers: dict[str, str] = user_metadata(metadata, sha256)
        self._lock.policy()  # fail before uploading if the bucket is not acceptable
        existing = self._head(key)
        if existing is not None and not (
            replacing is not None and replacing.key == key
            and (replacing.version_id is None or replacing.version_id == existing.version_id)
        ):
            return self._accept_existing(key, source, existing, sha256, size_bytes)

        if size_bytes <= self.part_size_bytes:
            # A single PUT carries the SHA-256 the server must check (MinIO verifies it; a
            # lock-enabled bucket demands some checksum). Multipart cannot: the SDK sends no
            # per-part checksums, so there the ETag comparison below does the proving.
            headers["x-amz-sdk-checksum-algorithm"] = "SHA256"
            headers["x-amz-checksum-sha256"] = base64.b64encode(bytes.fromhex(sha256)).decode()
        content_type = mimetypes.guess_type(key)[0] or "application/octet-stream"

        def upload() -> tuple[ObjectWriteResult, UploadDigests]:
            digests = UploadDigests(size_bytes, self.part_size_bytes)
            with source.open("rb", buffering=0) as handle:
                reader = UploadReader(handle, size_bytes, digests, sha256, self.part_size_bytes,
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
        except SourceMismatch as exc:
            raise IntegrityError(
                _("{source} does not hash to {sha256} any more ({exc}); nothing was stored under "
                  "{key}").format(source=source, sha256=sha256[:12], exc=exc, key=key)
            ) from exc
        except OSError as exc:
            raise StorageError(_("cannot read {source} to store {key}: {strerror}").format(
                source=source, key=key, strerror=exc.strerror)) from exc

        stored = self._head(key, result.version_id)
        if stored is None:
            raise StorageError(_("archive {location}: {key} vanished right after upload").format(
                location=self.location, key=key))
        require_size(key, size_bytes, stored.size)
        # Ceph RGW 16 answers a completed multipart upload with an empty <ETag>; the HEAD of
        # the same version carries the ETag the server computed, which proves as much.
        etag = (result.etag or stored.etag or "").strip('"').lower()
        if self._etag_proves and etag == digests.etag():
            proof = Proof.SHA256_ETAG
        else:
            if self._etag_proves:
                logger.warning(
                    _("archive %s: %s: ETag %s is not the expected %s; reading it back"),
                    self.location, key, etag, digests.etag(),
                )
            self._read_back(key, result.version_id, sha256, size_bytes)
            proof = Proof.READBACK
        return self._proven(key, stored, result.version_id, sha256, size_bytes, etag, proof)

    @property
    def _etag_proves(self) -> bool:
        """Whether a matching ETag proves the stored bytes (it is no MD5 under SSE)."""
        return self.verify == "stream" and not self.sse

    def _proven(
        self, key: str, info: Object, version_id: str | None, sha256: str, size_bytes: int,
        etag: str, proof: Proof,
    ) -> StoredObject:
        """A verified original, once it is under the retention it needs."""
        return StoredObject(
            key=key,
            size_bytes=size_bytes,
            sha256=sha256,
            etag=etag or None,
            version_id=version_id,
            verified_by=proof,
            retain_until=self._lock.ensure_retention(key, info),
        )

    def set_aside(self, key: str, *, tag: str) -> SetAside:
        existing = self._head(key)
        if existing is None:
            raise ObjectMissingError(_("{key} is not in the archive {location}").format(
                key=key, location=self.location))
        if self._bucket.versioning_status() == "Enabled":
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

    def _accept_existing(
        self, key: str, source: Path, existing: Object, sha256: str, size_bytes: int
    ) -> StoredObject:
        """Re-docking the same file: prove what is there instead of writing again."""
        stored_sha256 = header(existing, "x-amz-meta-sha256")
        if stored_sha256 is not None and stored_sha256 != sha256:
            raise ObjectExistsError(
                _("{key} already holds a different object in {location} (SHA-256 {stored_sha256}, "
                  "not {sha256})").format(
                      key=key, location=self.location, stored_sha256=stored_sha256[:12], sha256=sha256[:12])
            )
        if existing.size != size_bytes:
            if stored_sha256 is None:
                raise ObjectExistsError(
                    _("{key} already holds a different object in {location} ({size} bytes, not "
                      "{size_bytes})").format(
                          key=key, location=self.location, size=existing.size, size_bytes=size_bytes)
                )
            require_size(key, size_bytes, existing.size)
        etag = (existing.etag or "").strip('"').lower()
        proof = Proof.READBACK
        if self._etag_proves and stored_sha256 is not None:
            try:
                local = local_digests(source, size_bytes, self.part_size_bytes)
            except OSError as exc:
                raise StorageError(_("cannot read {source} to verify {key}: {strerror}").format(
                    source=source, key=key, strerror=exc.strerror)) from exc
            if local.sha256() != sha256:
                raise IntegrityError(_("{source} does not hash to {sha256} any more").format(
                    source=source, sha256=sha256[:12]))
            if etag == local.etag():
                proof = Proof.SHA256_ETAG
        if proof == Proof.READBACK:
            # Also the way out when the object was uploaded with another part size.
            try:
                self._read_back(key, existing.version_id, sha256, size_bytes)
            except IntegrityError:
                if stored_sha256 is None:
                    raise ObjectExistsError(
                        _("{key} already holds a different object in {location}").format(
                            key=key, location=self.location)
                    ) from None
                raise
        return self._proven(key, existing, existing.version_id, sha256, size_bytes, etag, proof)

    def _read_back(self, key: str, version_id: str | None, sha256: str, size_bytes: int) -> None:
        read_back = hash_chunks(self._iter_object(key, version_id, READ_CHUNK_BYTES))
        require_copy(key, sha256=sha256, size_bytes=size_bytes, read_back=read_back,
                     how="SHA-256 of the stored object")

    # -- small objects -----------------------------------------------------------------

    def put_bytes(self, key: str, data: bytes, *, content_type: str = "application/json") -> None:
        if self._head(key) is not None:
            raise ObjectExistsError(_("{key} already exists in {location}").format(
                key=key, location=self.location))
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
            raise ObjectExistsError(_("{key} already exists in {location}").format(
                key=key, location=self.location)) from None
        etag = (result.etag or "").strip('"').lower()
        if self.sse or etag != md5_of(data):
            if self.get_bytes(key) != data:
                raise IntegrityError(_("{key}: the archive stored other bytes than were sent").format(
                    key=key))

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
            raise self._bucket.translate(exc, f"read {key}", key) from exc
        finally:
            response.close()
            response.release_conn()

    def stat(self, key: str) -> StoredObject | None:
        info = self._head(key)
        if info is None:
            return None
        return StoredObject(
            key=key,
            size_bytes=info.size or 0,
            sha256=header(info, "x-amz-meta-sha256"),
            etag=(info.etag or "").strip('"').lower() or None,
            version_id=info.version_id,
            retain_until=shown(retention_of(info).retain_until),
        )

    def set_legal_hold(self, key: str, on: bool) -> bool:
        if self._head(key) is None:
            raise ObjectMissingError(_("{key} is not in {location}").format(
                key=key, location=self.location))
        return self._lock.set_legal_hold(key, on)

    def extend_retention(self, key: str, until: datetime) -> str | None:
        info = self._head(key)
        if info is None:
            raise ObjectMissingError(_("{key} is not in {location}").format(
                key=key, location=self.location))
        return self._lock.extend(key, info, until)

    def remove_leftovers(self, older_than: datetime) -> list[Leftover]:
        """See ``leftovers.remove_leftovers``: never an upload this object has in flight."""
        return leftovers.remove_leftovers(self._bucket, self._in_flight, older_than)

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


