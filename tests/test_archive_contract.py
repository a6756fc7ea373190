"""The storage contract, run against every ArchiveStore backend (filesystem and S3).

Whatever the rest of the daemon relies on is asserted here once, so a backend cannot drift.
Backend-specific behaviour (ETags, Object Lock, retries) is tested in each backend's module.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from evidence_daemon.archive import keys
from evidence_daemon.archive.base import (
    ArchiveStore,
    StoredObject,
    hash_chunks,
    hash_stored,
    require_copy,
)
from evidence_daemon.archive.filesystem import FilesystemArchive
from evidence_daemon.errors import (
    IntegrityError,
    ObjectExistsError,
    ObjectMissingError,
    StorageError,
)

from .s3_fixtures import S3_SERVERS, server_of_kind


BACKENDS = [
    pytest.param("filesystem", id="filesystem"),
    *(pytest.param(kind, id=f"s3-{kind}",
                   marks=[pytest.mark.s3, *([pytest.mark.rgw] if kind == "rgw" else [])])
      for kind in S3_SERVERS),
]


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ArchiveStore:
    if request.param == "filesystem":
        archive: ArchiveStore = FilesystemArchive(tmp_path / "archive")
    else:
        s3_server = server_of_kind(request, request.param)
        archive = s3_server.archive(s3_server.make_bucket())
    archive.check()
    return archive


def put(store: ArchiveStore, directory: Path, data: bytes, name: str = "clip.mp4") -> StoredObject:
    source = directory / name
    source.write_bytes(data)
    sha256 = hashlib.sha256(data).hexdigest()
    return store.put_original(
        keys.original_key(sha256, keys.safe_extension(name)),
        source,
        sha256=sha256,
        size_bytes=len(data),
        metadata={"station": "zhen-01"},
    )


@pytest.fixture
def spool(tmp_path: Path) -> Path:
    directory = tmp_path / "spool"
    directory.mkdir()
    return directory


@pytest.mark.parametrize("size", [0, 1, 300_000])
def test_original_round_trip(store: ArchiveStore, spool: Path, size: int) -> None:
    data = os.urandom(size)
    stored = put(store, spool, data)
    sha256 = hashlib.sha256(data).hexdigest()
    assert (stored.key, stored.size_bytes, stored.sha256) == (
        keys.original_key(sha256, "mp4"), size, sha256
    )
    assert stored.verified_by is not None
    assert store.get_bytes(stored.key) == data
    assert hash_stored(store, stored.key) == (sha256, size)
    info = store.stat(stored.key)
    assert info is not None and info.size_bytes == size


def test_same_original_again_is_a_no_op(store: ArchiveStore, spool: Path) -> None:
    data = os.urandom(10_000)
    first = put(store, spool, data)
    again = put(store, spool, data)
    assert again.key == first.key and again.size_bytes == first.size_bytes
    assert list(store.list_keys(keys.recording_prefix(first.key.split("/")[1]))) == [first.key]


def test_other_bytes_under_a_taken_original_key_are_refused(store: ArchiveStore, spool: Path) -> None:
    first = put(store, spool, b"the recording")
    other = spool / "other.mp4"
    other.write_bytes(b"something else")
    with pytest.raises(ObjectExistsError):
        store.put_original(
            first.key,
            other,
            sha256=hashlib.sha256(b"something else").hexdigest(),
            size_bytes=len(b"something else"),
            metadata={},
        )
    assert store.get_bytes(first.key) == b"the recording"


def test_source_not_matching_its_hash_is_an_integrity_error(
    store: ArchiveStore, spool: Path
) -> None:
    source = spool / "clip.mp4"
    source.write_bytes(b"changed after hashing")
    sha256 = hashlib.sha256(b"original content").hexdigest()
    with pytest.raises(IntegrityError):
        store.put_original(
            keys.original_key(sha256, "mp4"),
            source,
            sha256=sha256,
            size_bytes=source.stat().st_size,
            metadata={},
        )


def test_put_bytes_is_create_only(store: ArchiveStore) -> None:
    key = keys.manifest_key("a" * 64)
    store.put_bytes(key, b'{"v":1}')
    with pytest.raises(ObjectExistsError):
        store.put_bytes(key, b'{"v":2}')
    assert store.get_bytes(key) == b'{"v":1}'
    assert b"".join(store.iter_chunks(key, chunk_bytes=3)) == b'{"v":1}'


def test_missing_keys(store: ArchiveStore) -> None:
    key = keys.ledger_key("zhen-01", 7)
    assert store.stat(key) is None
    with pytest.raises(ObjectMissingError):
        store.get_bytes(key)
    with pytest.raises(ObjectMissingError):
        list(store.iter_chunks(key))
    assert issubclass(ObjectMissingError, StorageError)


def test_list_keys_is_lexical_and_prefix_exact(store: ArchiveStore) -> None:
    written = [
        keys.ledger_key("w1", 10),
        keys.ledger_key("w1", 9),
        keys.ledger_key("w10", 1),
        keys.public_key_key("w1"),
        keys.manifest_key("b" * 64),
    ]
    for key in written:
        store.put_bytes(key, key.encode())
    assert list(store.list_keys("ledger/w1/")) == [
        keys.ledger_key("w1", 9),
        keys.ledger_key("w1", 10),
    ]
    ledger = sorted(key for key in written if key.startswith("ledger/"))
    assert list(store.list_keys("ledger/w1")) == ledger
    assert list(store.list_keys("")) == sorted(written)
    assert list(store.list_keys("ledger/nobody/")) == []


def test_location_names_the_archive(store: ArchiveStore) -> None:
    assert store.location.startswith(("file://", "s3://"))


def test_the_read_back_proof_both_backends_share() -> None:
    data = b"recording bytes"
    sha256 = hashlib.sha256(data).hexdigest()
    key = keys.original_key(sha256, "mp4")
    read_back = hash_chunks([data[:5], data[5:]])
    assert read_back == (sha256, len(data))
    require_copy(key, sha256=sha256, size_bytes=len(data), read_back=read_back, how="test")
    with pytest.raises(IntegrityError, match=r"size: expected 16 bytes, archive has 15 bytes"):
        require_copy(key, sha256=sha256, size_bytes=16, read_back=read_back, how="test")
    short = hash_chunks([data[:-1]])
    with pytest.raises(IntegrityError, match="size"):
        require_copy(key, sha256=sha256, size_bytes=len(data), read_back=short, how="test")
    other = hash_chunks([data.upper()])
    with pytest.raises(IntegrityError, match="stored copy does not match the original \\(test"):
        require_copy(key, sha256=sha256, size_bytes=len(data), read_back=other, how="test")
