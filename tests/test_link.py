"""The upload link: ``archive.max_upload_mbps`` caps the station's upload rate, and the rate the
uploads achieve is measured (issue 14, part 3). Pure tables for the token bucket and the
measure; the cap proven on the filesystem archive (copy across filesystems) and on S3 (moto)."""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from evidence_daemon.archive.filesystem import FilesystemArchive
from evidence_daemon.archive.link import (
    Throttle,
    TokenBucket,
    UploadMeter,
    UploadSample,
    busy_seconds,
    measured_rate,
)
from evidence_daemon.config import load_config
from evidence_daemon.errors import ConfigError
from evidence_daemon.ingest.pipeline import Origin
from evidence_daemon.archive.factory import build_store
from evidence_daemon.station import open_station

from .helpers import write_config
from .s3server import S3TestServer

MIB = 1024 * 1024


# -- the token bucket ------------------------------------------------------------------------

@pytest.mark.parametrize(("steps", "waits"), [
    # (now_s, bytes) per reserve at 100 B/s with a 100 B burst -> seconds to wait
    ([(0, 50), (0, 50)], [0.0, 0.0]),                 # the burst goes at once
    ([(0, 100), (0, 100)], [0.0, 1.0]),               # then the rate holds
    ([(0, 100), (0, 100), (0, 100)], [0.0, 1.0, 2.0]),  # concurrent callers queue up
    ([(0, 100), (0.5, 100)], [0.0, 0.5]),             # half a second earned 50 B
    ([(0, 100), (60, 100), (60, 100)], [0.0, 0.0, 1.0]),  # idle time refills to the burst only
    ([(0, 250)], [1.5]),                              # one read larger than the burst
    ([(5, 100), (4, 100)], [0.0, 1.0]),               # a clock going back earns nothing
])
def test_token_bucket(steps: list[tuple[float, int]], waits: list[float]) -> None:
    bucket = TokenBucket(100.0, 100.0, now_s=steps[0][0])
    assert [bucket.reserve(count, now) for now, count in steps] == pytest.approx(waits)


def test_token_bucket_refuses_a_zero_rate() -> None:
    with pytest.raises(ValueError):
        TokenBucket(0.0, 1.0, now_s=0.0)


def test_throttle_holds_the_average_rate_on_an_injected_clock() -> None:
    clock = [0.0]
    throttle = Throttle(1000.0, burst_bytes=1000.0, clock=lambda: clock[0],
                        sleep=lambda s: clock.__setitem__(0, clock[0] + s))
    for _ in range(10):
        throttle.take(1000)
    assert clock[0] == pytest.approx(9.0)  # 10 000 B at 1000 B/s, the first 1000 B a burst


@pytest.mark.parametrize(("mbps", "rate"), [(0, None), (10, 1_250_000.0), (0.5, 62_500.0)])
def test_the_cap_is_in_megabits_per_second_and_zero_means_unlimited(
    mbps: float, rate: float | None
) -> None:
    throttle = Throttle.from_mbps(mbps)
    assert (throttle.rate_bytes_per_s if throttle is not None else None) == rate


@pytest.mark.parametrize("value", ["-1", "fast"])
def test_a_bad_cap_names_the_key(tmp_path: Path, value: str) -> None:
    with pytest.raises(ConfigError, match="archive.max_upload_mbps"):
        load_config(write_config(tmp_path), environ={},
                    overrides={"archive.max_upload_mbps": value})


# -- measuring -----------------------------------------------------------------------------

def sample(start: float, end: float, size: int = MIB) -> UploadSample:
    return UploadSample(start, end, size)


@pytest.mark.parametrize(("samples", "busy"), [
    ([], 0.0),
    ([sample(0, 2)], 2.0),
    ([sample(0, 2), sample(5, 6)], 3.0),           # idle between uploads does not count
    ([sample(0, 4), sample(1, 3)], 4.0),           # parallel uploads count once
    ([sample(0, 2), sample(1, 3), sample(3, 4)], 4.0),
    ([sample(5, 6), sample(0, 2)], 3.0),           # any order
])
def test_busy_seconds(samples: list[UploadSample], busy: float) -> None:
    assert busy_seconds(samples) == pytest.approx(busy)


@pytest.mark.parametrize(("samples", "rate"), [
    ([], None),
    ([sample(0, 2, 4 * MIB)], 2 * MIB),
    # two parallel uploads of 2 MiB in the same 2 s: the link carried 2 MiB/s
    ([sample(0, 2, 2 * MIB), sample(0, 2, 2 * MIB)], 2 * MIB),
    # a night without uploads between them changes nothing
    ([sample(0, 1, MIB), sample(36_000, 36_001, MIB)], MIB),
    ([sample(0, 1, 1000)], None),                  # too little to say
    ([sample(3, 3, 4 * MIB)], None),               # no time at all
])
def test_measured_rate(samples: list[UploadSample], rate: float | None) -> None:
    assert measured_rate(samples) == (pytest.approx(rate) if rate is not None else None)


def test_the_meter_keeps_the_latest_uploads() -> None:
    meter = UploadMeter(keep=2)
    assert meter.rate_bytes_per_s() is None
    meter.record(sample(0, 1, 100 * MIB))
    meter.record(sample(1, 2, MIB))
    meter.record(sample(2, 3, MIB))
    assert meter.rate_bytes_per_s() == pytest.approx(MIB)


# -- the cap on real archives ----------------------------------------------------------------

@pytest.fixture
def other_filesystem() -> Iterator[Path]:
    """A directory on another filesystem than tmp_path (no hard link: a real copy)."""
    if not os.path.isdir("/dev/shm") or os.stat("/dev/shm").st_dev == os.stat(
            tempfile.gettempdir()).st_dev:
        pytest.skip("needs /dev/shm on a filesystem of its own")
    with tempfile.TemporaryDirectory(dir="/dev/shm") as directory:
        yield Path(directory)


def test_the_filesystem_archive_copy_is_capped(tmp_path: Path, other_filesystem: Path) -> None:
    data = os.urandom(6 * MIB)
    source = tmp_path / "clip.mp4"
    source.write_bytes(data)
    sha256 = hashlib.sha256(data).hexdigest()
    store = FilesystemArchive(other_filesystem / "capped", throttle=Throttle(4 * MIB))
    started = time.monotonic()
    stored = store.put_original(f"recordings/{sha256}/original.mp4", source, sha256=sha256,
                                size_bytes=len(data), metadata={})
    elapsed_s = time.monotonic() - started
    assert stored.sha256 == sha256
    assert elapsed_s >= 1.2  # 6 MiB at 4 MiB/s, the first MiB a burst: 1.25 s
    assert (other_filesystem / "capped" / stored.key).read_bytes() == data


def test_the_s3_upload_is_capped(tmp_path: Path, s3_default_server: S3TestServer) -> None:
    data = os.urandom(6 * MIB)  # multipart: more than the test part size
    source = tmp_path / "clip.mp4"
    source.write_bytes(data)
    sha256 = hashlib.sha256(data).hexdigest()
    bucket = s3_default_server.make_bucket(object_lock=True)
    store = s3_default_server.archive(bucket, max_upload_mbps=16.0)  # 2 MB/s
    started = time.monotonic()
    stored = store.put_original(f"recordings/{sha256}/original.mp4", source, sha256=sha256,
                                size_bytes=len(data), metadata={})
    elapsed_s = time.monotonic() - started
    assert stored.sha256 == sha256 and stored.size_bytes == len(data)
    assert elapsed_s >= (len(data) - 500_000) / 2_000_000 * 0.95  # ~2.9 s at the cap


def test_a_capped_station_archives_at_the_cap_and_measures_it(
    tmp_path: Path, other_filesystem: Path
) -> None:
    """``archive.max_upload_mbps`` from the configuration reaches the store, and the pipeline's
    meter sees the rate the link was held to."""
    card = tmp_path / "card"
    card.mkdir()
    for index in range(3):
        (card / f"DSJ1_1001_20261125083000_000{index}.MP4").write_bytes(os.urandom(2 * MIB))
    config = load_config(
        write_config(tmp_path, archive={"backend": "filesystem",
                                        "path": str(other_filesystem / "archive"),
                                        "max_upload_mbps": 16},
                     extra="[ingest]\nprobe = false"),
        environ={})
    assert build_store(config)._throttle is not None  # type: ignore[attr-defined]
    station = open_station(config)
    ingestor = station.ingestor()
    started = time.monotonic()
    summary = ingestor.ingest(Origin(card, device_id="DSJ1"))
    elapsed_s = time.monotonic() - started
    rate = station.upload_meter.rate_bytes_per_s()
    station.close()
    assert summary.ok and summary.counts["archived"] == 3
    assert elapsed_s >= (6 * MIB - 500_000) / 2_000_000 * 0.95
    # the start's burst makes a short measurement a little optimistic (the forecast never
    # counts on more than the cap: compliance.forecast.upload_rate)
    assert rate is not None and 1_500_000 < rate <= 2_000_000 * 1.15
