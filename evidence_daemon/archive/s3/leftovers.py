"""Unfinished multipart uploads a killed process left in the bucket, and their removal.

The one removal the S3 archive makes: aborting incomplete multipart uploads under
``recordings/`` (their parts are billed and kept for ever otherwise). An abort cannot touch an
object — a completed upload answers NoSuchUpload — and Object Lock never blocks it: it protects
object versions, and an unfinished upload has none.

Must never: abort an upload this process has in flight, or one begun after the cut-off.
"""

from __future__ import annotations

from datetime import datetime

from minio.datatypes import Upload
from minio.error import S3Error

from .. import keys
from ..base import InFlight, Leftover, is_leftover
from .connection import Bucket


def unfinished_uploads(bucket: Bucket) -> list[Upload]:
    """Every incomplete multipart upload in the bucket (one request per page, no retries)."""
    uploads: list[Upload] = []
    key_marker: str | None = None
    upload_id_marker: str | None = None
    while True:
        page = bucket.client._list_multipart_uploads(
            bucket.name, key_marker=key_marker, upload_id_marker=upload_id_marker,
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


def _abort_upload(bucket: Bucket, key: str, upload_id: str) -> bool:
    def abort() -> bool:
        try:
            bucket.client._abort_multipart_upload(bucket.name, key, upload_id)
        except S3Error as exc:
            if exc.code == "NoSuchUpload":
                return False  # completed or aborted meanwhile
            raise
        return True

    return bucket.call(f"abort the unfinished upload of {key}", abort, key=key)


def remove_leftovers(bucket: Bucket, in_flight: InFlight, older_than: datetime) -> list[Leftover]:
    """Abort incomplete multipart uploads under ``recordings/`` initiated before
    ``older_than``, except those of keys in ``in_flight`` (uploading now).

    Only originals and proxies go up in parts (small objects are single PUTs). Keys are
    content addresses shared by every station of the bucket, so an upload cannot be told
    to be ours: the cut-off, compared with the server's ``Initiated`` time, is what keeps
    other stations' uploads safe. The caller's policy needs ``s3:ListBucketMultipartUploads``
    and ``s3:AbortMultipartUpload`` (neither is a delete).

    The listing has no prefix, filtered here: given a prefix, MinIO lists only the uploads
    of the object of exactly that name (AWS, Ceph and moto list by prefix).
    """
    uploads = bucket.call("list unfinished uploads", lambda: unfinished_uploads(bucket))
    active = in_flight.names()  # after listing: see InFlight
    removed: list[Leftover] = []
    for upload in uploads:
        key, initiated = upload.object_name, upload.initiated_time
        if not key.startswith(keys.RECORDINGS_PREFIX) or upload.upload_id is None:
            continue
        if initiated is None or not is_leftover(initiated, older_than=older_than,
                                                in_flight=key in active):
            continue
        if _abort_upload(bucket, key, upload.upload_id):
            removed.append(Leftover("multipart", key, initiated))
    return removed
