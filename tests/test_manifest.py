"""The typed manifest (``custody.manifest``): one structure written by the pipeline and read by
the API's indexer and by ``verify``. Pure: no archive, no database."""

from __future__ import annotations

import json
from typing import Any

import pytest

from evidence_daemon.archive import keys
from evidence_daemon.custody.manifest import MANIFEST_VERSION, Manifest, Storage
from evidence_daemon.errors import IntegrityError

SHA = "ab" * 32

# A manifest exactly as stations wrote it before the typed structure existed (the dict literal
# of ingest.pipeline at evidence-daemon 2026-11), bytes and all: it is in archives and its
# SHA-256 is in signed ledger events, so it must keep reading.
OLD_MANIFEST = {
    "manifest_version": 1,
    "recording": SHA,
    "sha256": SHA,
    "sm3": None,
    "size_bytes": 1234,
    "original_key": keys.original_key(SHA, "mp4"),
    "extension": "mp4",
    "station": "town-a",
    "device_id": "DSJ001",
    "officer_id": "10086",
    "recorded_start": "2026-11-25T08:30:00+08:00",
    "recorded_end": "2026-11-25T08:31:00+08:00",
    "time_source": "filename",
    "timezone": "Asia/Shanghai",
    "archive_deadline": "2026-11-26T08:31:00+08:00",
    "source": {"source_key": "0" * 32, "path": "DCIM/100/a.mp4", "root": "/media/cam",
               "device_id": "DSJ001", "officer_id": None, "size_bytes": 1234,
               "mtime": "2026-11-25T00:31:00.000000+00:00",
               "acquired_at": "2026-11-25T00:40:00.000000+00:00"},
    "media": {"duration_s": 60.0, "container": "mov,mp4"},
    "flags": ["officer_mismatch"],
    "flag_reasons": {"officer_mismatch": "assigned to 10010"},
    "first_seen_at": "2026-11-25T00:40:01.000000+00:00",
    "verified_at": "2026-11-25T01:00:00.000000+00:00",
    "storage": {"verified_by": "sha256-read-back", "version_id": None, "retain_until": None},
    "software": {"name": "evidence-daemon", "version": "0.9.0"},
}
OLD_BYTES = json.dumps(OLD_MANIFEST, sort_keys=True, ensure_ascii=False, indent=2).encode() + b"\n"


def manifest_bytes(**changes: Any) -> bytes:
    manifest = dict(OLD_MANIFEST)
    manifest.update(changes)
    return json.dumps(manifest).encode()


def test_a_manifest_written_before_the_typed_structure_still_reads_and_writes_the_same() -> None:
    manifest = Manifest.from_json(OLD_BYTES)
    assert (manifest.sha256, manifest.size_bytes, manifest.station) == (SHA, 1234, "town-a")
    assert manifest.flags == ("officer_mismatch",) and manifest.storage.verified_by == "sha256-read-back"
    assert manifest.source is not None and manifest.source["path"] == "DCIM/100/a.mp4"
    # Same bytes back: a station that writes a manifest now writes what it always wrote.
    assert manifest.to_json() == OLD_BYTES


def test_the_earliest_minimal_manifests_read_with_defaults() -> None:
    """Without manifest_version, recording, source, software (as the first manifests were)."""
    minimal = {name: OLD_MANIFEST[name] for name in
               ("sha256", "size_bytes", "extension", "original_key", "station", "verified_at")}
    manifest = Manifest.from_json(json.dumps(minimal).encode())
    assert manifest.manifest_version == MANIFEST_VERSION and manifest.recording == SHA
    assert manifest.flags == () and manifest.flag_reasons == {} and manifest.storage == Storage()


def test_round_trip() -> None:
    manifest = Manifest(
        sha256=SHA, size_bytes=5, extension="wav", original_key=keys.original_key(SHA, "wav"),
        station="town-b", verified_at="2026-11-26T00:00:00.000000+00:00", officer_id="中文",
        flags=("empty",), flag_reasons={"empty": "the file has no bytes"},
        storage=Storage(verified_by="etag", version_id="v1", retain_until="2033-01-01T00:00:00Z"),
        media={"duration_s": 1.5},
    )
    assert Manifest.from_json(manifest.to_json()) == manifest
    assert json.loads(manifest.to_json())["recording"] == SHA


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"size_bytes": "1234"}, "'size_bytes' has the wrong type"),
        ({"size_bytes": True}, "'size_bytes' has the wrong type"),
        ({"size_bytes": -1}, "'size_bytes' is not a byte count"),
        ({"sha256": None}, "'sha256' is missing"),
        ({"original_key": 7}, "'original_key' has the wrong type"),
        ({"station": ""}, "field 'station'"),
        ({"verified_at": "yesterday"}, "'verified_at' is not a date/time"),
        ({"flags": "unplayable"}, "'flags' has the wrong type"),
        ({"flags": ["ok", 3]}, "'flags' has the wrong type"),
        ({"officer_id": 10086}, "'officer_id' has the wrong type"),
        ({"storage": {"verified_by": 1}}, "'storage.verified_by' has the wrong type"),
        ({"media": "mp4"}, "'media' has the wrong type"),
        ({"manifest_version": 2}, "manifest_version 2 is newer"),
    ],
)
def test_a_manifest_with_a_wrong_field_is_refused_naming_it(changes: dict[str, Any], named: str) -> None:
    with pytest.raises(IntegrityError, match=named):
        Manifest.from_json(manifest_bytes(**changes))


def test_a_missing_field_is_named() -> None:
    data = dict(OLD_MANIFEST)
    del data["extension"]
    with pytest.raises(IntegrityError, match="manifest field 'extension' is missing"):
        Manifest.from_json(json.dumps(data).encode())


@pytest.mark.parametrize("data", [b"\xff\xfe", b"not json", b"[1, 2]"])
def test_bytes_that_are_no_manifest_are_refused(data: bytes) -> None:
    with pytest.raises(IntegrityError, match="manifest is not"):
        Manifest.from_json(data)


def test_a_manifest_nested_past_the_recursion_limit_is_refused_not_a_crash() -> None:
    from evidence_daemon.custody.manifest import Manifest
    from evidence_daemon.errors import IntegrityError

    with pytest.raises(IntegrityError, match="nested too deeply"):
        Manifest.from_json(b'{"a": ' + b"[" * 200_000 + b"]" * 200_000 + b"}")
