"""Read-ahead in the spool copy (issue 14): while chunk n is written to the spool and hashed,
chunk n+1 is read from the device, so a USB-2 recorder is never idle while the spool's disk
takes a write. Real files in and out; the device's and the disk's speeds are slowed by the
read and write the Spool is given (the real ones are os.readv and durable.write_all)."""

from __future__ import annotations

import errno
import hashlib
import os
import threading
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes

from evidence_daemon.durable import write_all
from evidence_daemon.errors import IngestError
from evidence_daemon.ingest.spool import Spool, SpoolFullError

from .faultlog import FaultLog

CHUNK = 64 * 1024
CHUNKS = 10
DELAY_S = 0.05


class Timed:
    """A slowed read and write (a USB-2 device, a busy spool disk) that record when they ran."""

    def __init__(self) -> None:
        self.reads: list[tuple[float, float]] = []
        self.writes: list[tuple[float, float]] = []
        self.buffers: set[int] = set()
        self.lock = threading.Lock()

    def read(self, fd: int, buffers: list[bytearray]) -> int:
        started = time.monotonic()
        time.sleep(DELAY_S)
        count = os.readv(fd, buffers)
        with self.lock:
            self.reads.append((started, time.monotonic()))
            self.buffers.add(id(buffers[0]))
        return count

    def write(self, fd: int, data: memoryview) -> None:
        started = time.monotonic()
        time.sleep(DELAY_S)
        write_all(fd, data)
        with self.lock:
            self.writes.append((started, time.monotonic()))


def source_file(tmp_path: Path, size: int) -> tuple[Path, bytes]:
    data = os.urandom(size)
    path = tmp_path / "DSJ001_10086_20261125080000_0001.MP4"
    path.write_bytes(data)
    return path, data


def copy(spool: Spool, path: Path, **kwargs: object) -> tuple[object, float]:
    info = path.stat()
    started = time.monotonic()
    copied = spool.copy_in(os.fsencode(path), 1, expected_size=info.st_size,
                           expected_mtime_ns=info.st_mtime_ns, **kwargs)  # type: ignore[arg-type]
    return copied, time.monotonic() - started


def test_reading_the_next_chunk_overlaps_writing_the_last(tmp_path: Path) -> None:
    path, data = source_file(tmp_path, CHUNKS * CHUNK)
    timed = Timed()
    spool = Spool(tmp_path / "spool", chunk_bytes=CHUNK, hash_sm3=True, read=timed.read,
                  write=timed.write)
    spool.prepare()
    progress: list[int] = []
    copied, elapsed_s = copy(spool, path, on_bytes=progress.append)

    # reads: CHUNKS + the one at the end; writes: CHUNKS. One after the other that is ~1.05 s.
    serial_s = (len(timed.reads) + len(timed.writes)) * DELAY_S
    assert len(timed.writes) == CHUNKS
    assert elapsed_s < 0.75 * serial_s, (elapsed_s, serial_s)
    overlapping = sum(1 for read in timed.reads for write in timed.writes
                      if read[0] < write[1] and write[0] < read[1])
    assert overlapping >= CHUNKS - 1
    assert len(timed.buffers) == 2  # two buffers a device, reused: memory stays bounded

    sm3 = hashes.Hash(hashes.SM3())
    sm3.update(data)
    assert copied.sha256 == hashlib.sha256(data).hexdigest()  # type: ignore[attr-defined]
    assert copied.sm3 == sm3.finalize().hex()  # type: ignore[attr-defined]
    assert copied.part.read_bytes() == data  # type: ignore[attr-defined]
    assert progress == [CHUNK] * CHUNKS
    durable = spool.make_durable(copied)  # type: ignore[arg-type]
    assert durable.read_bytes() == data and durable.name == hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("size", [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK + 17])
def test_every_size_copies_whole_with_the_right_hash(tmp_path: Path, size: int) -> None:
    path, data = source_file(tmp_path, size)
    spool = Spool(tmp_path / "spool", chunk_bytes=CHUNK)
    spool.prepare()
    copied, _ = copy(spool, path)
    assert copied.part.read_bytes() == data  # type: ignore[attr-defined]
    assert copied.sha256 == hashlib.sha256(data).hexdigest()  # type: ignore[attr-defined]
    assert copied.size_bytes == size  # type: ignore[attr-defined]


def test_a_spool_write_failing_behind_the_read_ahead_is_spool_full(
    tmp_path: Path, fault_log: FaultLog
) -> None:
    """The write of chunk 3 fails (ENOSPC) on its helper thread while chunk 4 is being read:
    the copy stops with SpoolFullError, no .part is left, nothing later is written."""
    path, data = source_file(tmp_path, 6 * CHUNK)
    writes: list[int] = []

    def full_at_third(fd: int, chunk: memoryview) -> None:
        writes.append(len(chunk))
        if len(writes) == 3:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        write_all(fd, chunk)

    spool = Spool(tmp_path / "spool", chunk_bytes=CHUNK, write=full_at_third)
    spool.prepare()
    with pytest.raises(SpoolFullError) as raised:
        copy(spool, path)
    assert len(writes) == 3
    assert list((tmp_path / "spool" / "incoming").iterdir()) == []
    assert path.read_bytes() == data  # the source is never touched
    fault_log("ENOSPC on the spool", "spool write fails behind the device read-ahead",
              injected_by="Spool(write=) raising ENOSPC at the 3rd chunk", files_lost=0,
              wrongly_archived=0, duplicates=0, message=raised.value.message)


def test_a_device_read_failing_while_a_chunk_is_written_is_a_failed_read(
    tmp_path: Path, fault_log: FaultLog
) -> None:
    """The device stops answering (EIO, a pulled card) while the last chunk is still being
    written: IngestError naming the read, the in-flight write finished before the spool file
    closes, no .part left."""
    path, _ = source_file(tmp_path, 6 * CHUNK)
    reads = 0
    writing = threading.Event()

    def pulled_at_fourth(fd: int, buffers: list[bytearray]) -> int:
        nonlocal reads
        reads += 1
        if reads == 4:
            assert writing.wait(5)
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        return os.readv(fd, buffers)

    def slow_write(fd: int, chunk: memoryview) -> None:
        writing.set()
        time.sleep(0.1)
        write_all(fd, chunk)  # EBADF here would mean the file closed under it

    spool = Spool(tmp_path / "spool", chunk_bytes=CHUNK, read=pulled_at_fourth, write=slow_write)
    spool.prepare()
    with pytest.raises(IngestError) as raised:
        copy(spool, path)
    assert "read failed after" in raised.value.message
    assert not isinstance(raised.value, SpoolFullError)
    assert list((tmp_path / "spool" / "incoming").iterdir()) == []
    fault_log("device pulled mid-copy", "read fails (EIO) while the read-ahead writes the last chunk",
              injected_by="Spool(read=) raising EIO at the 4th chunk", files_lost=0,
              wrongly_archived=0, duplicates=0, message=raised.value.message)
