"""Object Lock on the archive bucket: how originals are protected, and their retention.

Originals get COMPLIANCE retention: from the bucket's default rule when it has a sufficient
one, else set on each object after upload (``LockPolicy``, decided once per ``check``).
Retention is counted from when the object was stored and is only ever extended.

Must never: shorten a retention or lift COMPLIANCE, or accept a bucket whose versioning is
suspended (a new upload would replace the stored bytes for good).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from enum import StrEnum

from minio.commonconfig import COMPLIANCE
from minio.datatypes import Object
from minio.error import S3Error
from minio.objectlockconfig import YEARS
from minio.retention import Retention as SdkRetention

from ...clock import Clock, format_seconds, parse_optional
from ...errors import StorageError
from .connection import Bucket
from ...i18n import _

logger = logging.getLogger(__package__)


class LockPolicy(StrEnum):
    """How the bucket protects originals, decided from its Object Lock configuration."""

    BUCKET_DEFAULT = "bucket-default"  # a COMPLIANCE default rule at least as long as ours
    PER_OBJECT = "per-object"  # lock enabled: set COMPLIANCE retention on each original
    OFF = "off"  # no Object Lock on the bucket (allowed only if not required)


def header(info: Object, name: str) -> str | None:
    value = info.metadata.get(name) if info.metadata is not None else None
    return str(value) if value is not None else None


@dataclass(frozen=True)
class Retention:
    mode: str | None
    retain_until: datetime | None


def retention_of(info: Object) -> Retention:
    """The retention a HEAD answer carries (to callers allowed to read it: MinIO and S3
    alike); a date the server wrote in a form not understood counts as none."""
    try:
        retain_until = parse_optional(header(info, "x-amz-object-lock-retain-until-date"))
    except ValueError:
        retain_until = None
    return Retention(mode=header(info, "x-amz-object-lock-mode"), retain_until=retain_until)


def shown(moment: datetime | None) -> str | None:
    """A retain-until date as ``StoredObject.retain_until`` gives it."""
    return format_seconds(moment) if moment is not None else None


class ObjectLock:
    """The bucket's ``LockPolicy`` (read once, re-read by ``forget``) and the retention and
    legal holds of its objects."""

    def __init__(
        self, bucket: Bucket, *, retention_days: int, require_object_lock: bool, clock: Clock
    ) -> None:
        self._bucket = bucket
        self.retention_days = retention_days
        self.require_object_lock = require_object_lock
        self._clock = clock
        self._policy: LockPolicy | None = None
        self._mutex = threading.Lock()
        self._warned_no_lock = False

    def policy(self) -> LockPolicy:
        with self._mutex:
            if self._policy is None:
                self._policy = self._read_policy()
            return self._policy

    def forget(self) -> None:
        """Read the configuration again at the next ``policy()``."""
        with self._mutex:
            self._policy = None

    def _read_policy(self) -> LockPolicy:
        bucket = self._bucket

        def read() -> LockPolicy:
            try:
                config = bucket.client.get_object_lock_config(bucket.name)
            except S3Error as exc:
                if exc.code == "ObjectLockConfigurationNotFoundError":
                    return LockPolicy.OFF
                raise
            if config.mode is None or config.duration is None:
                return LockPolicy.PER_OBJECT
            days = config.duration * (365 if config.duration_unit == YEARS else 1)
            if config.mode == COMPLIANCE and days >= self.retention_days:
                return LockPolicy.BUCKET_DEFAULT
            # A GOVERNANCE or shorter default can be bypassed or run out early: extend it.
            logger.info(
                "archive %s: bucket default retention is %s %d days; setting COMPLIANCE "
                "%d days on each original instead",
                bucket.location, config.mode, days, self.retention_days,
            )
            return LockPolicy.PER_OBJECT

        policy = bucket.call("read the Object Lock configuration", read)
        if bucket.versioning_status() == "Suspended":
            # Each new object would replace the unversioned "null" version of its key in place,
            # and set_aside could keep nothing: the old bytes would be gone for good.
            raise StorageError(
                _("archive {location}: versioning is suspended on bucket {name!r}; an upload "
                  "could replace a stored object for good (enable versioning again, or better, "
                  "use a bucket with Object Lock)").format(
                      location=bucket.location, name=bucket.name)
            )
        if policy == LockPolicy.OFF:
            if self.require_object_lock:
                raise StorageError(
                    _("archive {location}: bucket {name!r} has no Object Lock, but "
                      "archive.require_object_lock is set; originals could be deleted or "
                      "overwritten (recreate the bucket with Object Lock enabled)").format(
                          location=bucket.location, name=bucket.name)
                )
            if not self._warned_no_lock:
                self._warned_no_lock = True
                logger.warning(
                    _("archive %s: bucket %r has no Object Lock; originals are not protected from "
                      "deletion or overwrite by the storage itself"),
                    bucket.location, bucket.name,
                )
        return policy

    def ensure_retention(self, key: str, info: Object) -> str | None:
        """Make sure an original is under COMPLIANCE retention; its retain-until date.

        Also heals an upload whose process died before the retention was set: re-docking
        finds the object and comes here. Retention is counted from when the object was
        stored and is only ever extended.
        """
        current = retention_of(info)
        if self.policy() != LockPolicy.PER_OBJECT:
            return shown(current.retain_until)
        archived_at = info.last_modified or self._clock()
        wanted = (archived_at + timedelta(days=self.retention_days)).replace(microsecond=0)
        if current.retain_until is not None:
            if current.mode == COMPLIANCE and current.retain_until >= wanted:
                return shown(current.retain_until)
            wanted = max(wanted, current.retain_until)
        if wanted <= self._clock():
            return shown(current.retain_until)
        return self._set_retention(key, info, wanted)

    def extend(self, key: str, info: Object, until: datetime) -> str | None:
        """``ArchiveStore.extend_retention`` for the object ``info`` of ``key``."""
        if self.policy() == LockPolicy.OFF:
            return None
        current = retention_of(info)
        wanted = until.astimezone(timezone.utc).replace(microsecond=0)
        if current.retain_until is not None and current.retain_until >= wanted:
            return shown(current.retain_until)  # never shortened
        return self._set_retention(key, info, wanted)

    def _set_retention(self, key: str, info: Object, until: datetime) -> str:
        """COMPLIANCE until ``until`` on this version; callers make sure it only lengthens."""
        bucket = self._bucket
        retention = SdkRetention(COMPLIANCE, until)
        bucket.call(
            f"set retention on {key}",
            lambda: bucket.client.set_object_retention(
                bucket.name, key, retention, version_id=info.version_id
            ),
            key=key,
        )
        return format_seconds(until)

    def set_legal_hold(self, key: str, on: bool) -> bool:
        """``ArchiveStore.set_legal_hold`` for an existing ``key``."""
        if self.policy() == LockPolicy.OFF:
            return False
        bucket = self._bucket
        change = (bucket.client.enable_object_legal_hold if on
                  else bucket.client.disable_object_legal_hold)
        bucket.call(f"{'set' if on else 'lift'} legal hold on {key}",
                    lambda: change(bucket.name, key), key=key)
        return True
