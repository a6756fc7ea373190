"""The manifest: what a station states about one archived recording, stored beside it.

One structure, written by the ingest pipeline (``recordings/<id>/manifest.json``, create-only)
and read by the API's indexer and by ``verify``. Its SHA-256 is recorded in the signed
``archived`` ledger event, so its bytes must never be rewritten: ``to_json`` is used once, when
it is first stored, and readers hash the stored bytes, never a re-serialisation.

``from_json`` reads every manifest ever written (version 1, and the earliest ones that lack
``manifest_version`` and the fields added later) and refuses one it cannot trust with an
``IntegrityError`` naming the field that is wrong. It checks types only; whether the manifest
describes the object stored beside it is for its readers to judge.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from ..errors import IntegrityError
from ..i18n import _

MANIFEST_VERSION = 1


@dataclass(frozen=True)
class Storage:
    """How the archive holds the original."""

    verified_by: str | None = None  # how its bytes were checked after the upload
    version_id: str | None = None
    retain_until: str | None = None  # object-lock retention, when the archive has one


@dataclass(frozen=True)
class Manifest:
    """A recording's manifest (all times ISO 8601)."""

    sha256: str
    size_bytes: int
    extension: str
    original_key: str
    station: str
    verified_at: str  # when the stored original was verified: the recording's archival time
    recording: str = ""  # the recording id: its SHA-256 ("" read as ``sha256``)
    sm3: str | None = None
    device_id: str | None = None
    officer_id: str | None = None
    recorded_start: str | None = None  # in the station's zone, with its offset
    recorded_end: str | None = None
    time_source: str | None = None
    timezone: str | None = None  # the station's zone name
    archive_deadline: str | None = None
    source: dict[str, Any] | None = None  # where the file came from (``Source.custody_details``)
    media: dict[str, Any] | None = None  # what ffprobe found
    flags: tuple[str, ...] = ()
    flag_reasons: dict[str, str] = field(default_factory=dict)
    first_seen_at: str | None = None
    storage: Storage = field(default_factory=Storage)
    software: dict[str, Any] | None = None
    manifest_version: int = MANIFEST_VERSION

    def __post_init__(self) -> None:
        if not self.recording:
            object.__setattr__(self, "recording", self.sha256)

    def to_json(self) -> bytes:
        """The bytes to store (sorted keys, UTF-8, indented, newline-terminated)."""
        data = asdict(self)
        data["flags"] = list(self.flags)
        return json.dumps(data, sort_keys=True, ensure_ascii=False, indent=2).encode() + b"\n"

    @classmethod
    def from_json(cls, data: bytes) -> Manifest:
        """Parse stored bytes; ``IntegrityError`` naming what is wrong."""
        try:
            parsed = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise IntegrityError(_("manifest is not JSON ({exc})").format(exc=exc)) from None
        except RecursionError:  # nested past the interpreter's limit: never one we wrote
            raise IntegrityError(_("manifest is not JSON this software writes: nested too deeply")) from None
        if not isinstance(parsed, dict):
            raise IntegrityError(_("manifest is not a JSON object"))
        return cls.from_dict(parsed)

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Manifest:
        version = _field(raw, "manifest_version", int, default=MANIFEST_VERSION)
        if version > MANIFEST_VERSION:
            raise IntegrityError(_("manifest_version {version} is newer than this software reads "
                                   "({MANIFEST_VERSION}); upgrade evidence-daemon").format(
                                       version=version, MANIFEST_VERSION=MANIFEST_VERSION))
        station = raw.get("station")
        if station is None or station == "":
            raise IntegrityError(_("manifest has no station (field 'station' is missing or empty)"))
        size_bytes = _field(raw, "size_bytes", int)
        if size_bytes < 0:
            raise IntegrityError(_("manifest field 'size_bytes' is not a byte count: "
                                   "{size_bytes!r}").format(size_bytes=size_bytes))
        verified_at = _field(raw, "verified_at", str)
        try:
            datetime.fromisoformat(verified_at)
        except ValueError:
            raise IntegrityError(_("manifest field 'verified_at' is not a date/time: "
                                   "{verified_at!r}").format(verified_at=verified_at)) from None
        flags = _field(raw, "flags", list, default=[])
        if not all(isinstance(flag, str) for flag in flags):
            raise IntegrityError(_("manifest field 'flags' has the wrong type: expected a list of "
                                   "text"))
        storage = _field(raw, "storage", dict, default={})
        return cls(
            manifest_version=version,
            sha256=_field(raw, "sha256", str),
            recording=_field(raw, "recording", str, default=""),
            size_bytes=size_bytes,
            extension=_field(raw, "extension", str),
            original_key=_field(raw, "original_key", str),
            station=_field(raw, "station", str),
            verified_at=verified_at,
            sm3=_optional(raw, "sm3"),
            device_id=_optional(raw, "device_id"),
            officer_id=_optional(raw, "officer_id"),
            recorded_start=_optional(raw, "recorded_start"),
            recorded_end=_optional(raw, "recorded_end"),
            time_source=_optional(raw, "time_source"),
            timezone=_optional(raw, "timezone"),
            archive_deadline=_optional(raw, "archive_deadline"),
            source=_field(raw, "source", dict, default=None),
            media=_field(raw, "media", dict, default=None),
            flags=tuple(flags),
            flag_reasons={str(name): reason for name, reason in
                          _field(raw, "flag_reasons", dict, default={}).items()},
            first_seen_at=_optional(raw, "first_seen_at"),
            storage=Storage(
                verified_by=_optional(storage, "verified_by", "storage.verified_by"),
                version_id=_optional(storage, "version_id", "storage.version_id"),
                # Retention some archive wrote in another form is not ours to interpret.
                retain_until=storage.get("retain_until")
                if isinstance(storage.get("retain_until"), str) else None,
            ),
            software=_field(raw, "software", dict, default=None),
        )


_TYPE_NAMES = {str: "text", int: "an integer", list: "a list", dict: "an object"}
_REQUIRED = object()


def _field(raw: Mapping[str, Any], name: str, kind: type, *, default: Any = _REQUIRED,
           label: str | None = None) -> Any:
    """``raw[name]`` when it is a ``kind``; a missing (or null) value is ``default``."""
    value = raw.get(name)
    label = label or name
    if value is None:
        if default is _REQUIRED:
            raise IntegrityError(_("manifest field '{label}' is missing").format(label=label))
        return default
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise IntegrityError(_("manifest field '{label}' has the wrong type: expected "
                               "{TYPE_NAMES}, found {name}").format(
                                   label=label, TYPE_NAMES=_TYPE_NAMES[kind], name=type(value).__name__))
    return value


def _optional(raw: Mapping[str, Any], name: str, label: str | None = None) -> str | None:
    value: str | None = _field(raw, name, str, default=None, label=label)
    return value
