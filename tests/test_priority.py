"""Earliest deadline first: important files, then yesterday's before today's (issue 14, part 2).

Pure tables for the order (``ingest.priority``), and the order the archive actually receives
originals in, watched through a slowed filesystem archive."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from evidence_daemon.archive.base import ArchiveStore, SetAside, StoredObject
from evidence_daemon.config import DEFAULT_PRIORITY_PATTERNS, Config, load_config
from evidence_daemon.ingest.pipeline import Origin
from evidence_daemon.ingest.priority import (
    OrderRules,
    UploadQueue,
    estimated_deadline,
    is_important,
    upload_key,
)
from evidence_daemon.station import open_station

from .faultlog import FaultLog
from .helpers import write_config

UTC = timezone.utc
NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)  # 20:00 in Asia/Shanghai


def rules() -> OrderRules:
    return OrderRules.from_config(Config())


@pytest.mark.parametrize(("path", "important"), [
    ("DCIM/100MEDIA/DSJ1_1001_20261125083000_0001.MP4", False),
    ("重要/DSJ1_1001_20261125083000_0001.MP4", True),           # a 重要 (important) folder
    ("DCIM/重点视频/VID_20261125_083000.MP4", True),             # 重点 (key file)
    ("DSJ1_1001_20261125083000_0001_IMP.MP4", True),             # vendor suffix
    ("DSJ1_1001_20261125083000_IMP_0001.MP4", True),
    ("IMP_20261125083000.MP4", True),
    ("DCIM/IMP/VID_20261125_083000.MP4", True),                  # an IMP folder
    ("DCIM/IMPORT/VID_20261125_083000.MP4", False),              # not a marker
    ("SIMPLE_20261125083000.MP4", False),
    ("dsj1_1001_20261125083000_0001_imp.mp4", False),            # case-sensitive by design
])
def test_vendor_markers_make_a_file_important(path: str, important: bool) -> None:
    assert is_important(path, DEFAULT_PRIORITY_PATTERNS) is important


def test_priority_patterns_are_configurable(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path, extra='[ingest]\npriority_patterns = ["*LOCK*"]'),
                         environ={})
    assert config.ingest.priority_patterns == ("*LOCK*",)
    assert is_important("DCIM/LOCK0001.MP4", config.ingest.priority_patterns)
    assert not is_important("重要/a.mp4", config.ingest.priority_patterns)


@pytest.mark.parametrize(("path", "mtime", "expected"), [
    # the name's start (local time, UTC+8) + 24 h: the duration is not known yet
    ("DSJ1_1001_20261125083000_0001.MP4", None, datetime(2026, 11, 26, 0, 30, tzinfo=UTC)),
    ("DSJ1_1001_20261124083000_0001.MP4", NOW, datetime(2026, 11, 25, 0, 30, tzinfo=UTC)),
    # no time in the name: the modification time (the recorder closed the file at the end)
    ("CLIP0001.MP4", datetime(2026, 11, 25, 3, 0, tzinfo=UTC),
     datetime(2026, 11, 26, 3, 0, tzinfo=UTC)),
    # a reset recorder clock (1980) counts from when the station saw the file, as in the catalog
    ("CLIP0002.MP4", datetime(1980, 1, 1, tzinfo=UTC), NOW + timedelta(hours=24)),
    # a name that is not a date condemns the clock too
    ("DSJ1_1001_20261325083000_0001.MP4", datetime(2026, 11, 25, 3, 0, tzinfo=UTC),
     NOW + timedelta(hours=24)),
    ("CLIP0003.MP4", None, None),  # nothing known: no deadline
])
def test_the_deadline_is_estimated_from_what_is_known_before_probing(
    path: str, mtime: datetime | None, expected: datetime | None
) -> None:
    mtime_ns = int(mtime.timestamp() * 1e9) if mtime is not None else None
    assert estimated_deadline(path, mtime_ns, seen_at=NOW, rules=rules()) == expected


YESTERDAY = datetime(2026, 11, 24, 10, tzinfo=UTC)
TODAY = datetime(2026, 11, 25, 10, tzinfo=UTC)


@pytest.mark.parametrize(("first", "second"), [
    # yesterday's recording before today's
    (dict(important=False, deadline=YESTERDAY, first_seen=9),
     dict(important=False, deadline=TODAY, first_seen=1)),
    # a file marked important before any other, even an older one
    (dict(important=True, deadline=TODAY, first_seen=9),
     dict(important=False, deadline=YESTERDAY, first_seen=1)),
    # among important ones, the earliest deadline
    (dict(important=True, deadline=YESTERDAY, first_seen=9),
     dict(important=True, deadline=TODAY, first_seen=1)),
    # the same deadline: the one seen first
    (dict(important=False, deadline=TODAY, first_seen=1),
     dict(important=False, deadline=TODAY, first_seen=2)),
    # a known deadline before an unknown one
    (dict(important=False, deadline=TODAY, first_seen=9),
     dict(important=False, deadline=None, first_seen=1)),
])
def test_upload_order(first: dict[str, Any], second: dict[str, Any]) -> None:
    assert upload_key(**first) < upload_key(**second)


def test_unknown_deadline_sorts_last() -> None:
    assert upload_key(important=False, deadline=None, first_seen=1)[1] == math.inf


def test_upload_queue_hands_out_the_most_urgent_item_and_stops_after_every_item() -> None:
    work: UploadQueue[str] = UploadQueue(maxsize=10)
    work.put((1, 200.0, 1), "today")
    work.close(2)  # stop markers put before later items still come after them
    work.put((1, 100.0, 2), "yesterday")
    work.put((0, 300.0, 3), "important")
    work.put((1, 100.0, 2), "yesterday, seen again")  # equal keys never compare the items
    taken = []
    while (item := work.get()) is not None:
        taken.append(item)
        work.task_done()
    work.task_done()
    assert taken == ["important", "yesterday", "yesterday, seen again", "today"]
    assert work.get() is None
    work.task_done()
    assert work.unfinished_tasks == 0
    work.join()  # returns: every item was marked done


def test_upload_queue_is_bounded() -> None:
    work: UploadQueue[int] = UploadQueue(maxsize=1)
    work.put((1, 0.0, 0), 0)
    blocked = threading.Thread(target=work.put, args=((0, 0.0, 1), 1), daemon=True)
    blocked.start()
    blocked.join(0.2)
    assert blocked.is_alive()  # the copy thread waits while the queue is full
    assert work.get() == 0
    blocked.join(5)
    assert not blocked.is_alive()
    assert work.get() == 1


# -- the order the archive receives originals in -------------------------------------------

class SlowArchive:
    """The filesystem archive behind a slow link: every original takes ``delay_s`` and the
    order they arrive in is kept."""

    def __init__(self, inner: ArchiveStore, delay_s: float) -> None:
        self.inner = inner
        self.delay_s = delay_s
        self.order: list[str] = []  # sha256 of each original, as stored

    def put_original(self, key: str, source: Path, *, sha256: str, size_bytes: int,
                     metadata: Mapping[str, str], replacing: SetAside | None = None) -> StoredObject:
        time.sleep(self.delay_s)
        self.order.append(sha256)
        return self.inner.put_original(key, source, sha256=sha256, size_bytes=size_bytes,
                                       metadata=metadata, replacing=replacing)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def _card(root: Path, names: list[str]) -> None:
    for index, name in enumerate(names):
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(f"clip {index} {name}".encode() * 1000)


def _station(tmp_path: Path, *, queue_depth: int = 4) -> Any:
    config = load_config(
        write_config(tmp_path, extra=f"[ingest]\nprobe = false\nqueue_depth = {queue_depth}"),
        environ={}, overrides={"archive.upload_workers": "1"})
    return open_station(config, clock=lambda: NOW)


def _archived_names(station: Any, order: list[str]) -> list[str]:
    names = {row["sha256"]: row["rel_path"] for row in station.database.query(
        "SELECT sha256, rel_path FROM sources WHERE sha256 IS NOT NULL")}
    return [names[sha256] for sha256 in order]


def test_one_card_is_archived_important_first_then_by_deadline(tmp_path: Path) -> None:
    card = tmp_path / "card"
    # Scan order (sorted names) is the opposite of the deadline order on purpose.
    _card(card, [
        "A_TODAY/DSJ1_1001_20261125150000_0003.MP4",
        "B_TODAY/DSJ1_1001_20261125090000_0002.MP4",
        "C_YESTERDAY/DSJ1_1001_20261124090000_0001.MP4",
        "D_TODAY/DSJ1_1001_20261125160000_0004_IMP.MP4",
    ])
    station = _station(tmp_path)
    slow = SlowArchive(station.store, delay_s=0.05)
    station.store = slow
    summary = station.ingestor().ingest(Origin(card, device_id="DSJ1"))
    order = _archived_names(station, slow.order)
    station.close()
    assert summary.ok
    assert order == [
        "D_TODAY/DSJ1_1001_20261125160000_0004_IMP.MP4",      # marked important
        "C_YESTERDAY/DSJ1_1001_20261124090000_0001.MP4",     # yesterday
        "B_TODAY/DSJ1_1001_20261125090000_0002.MP4",
        "A_TODAY/DSJ1_1001_20261125150000_0003.MP4",
    ]


def test_the_spool_backlog_uploads_earliest_deadline_first_across_docks(
    tmp_path: Path, fault_log: FaultLog
) -> None:
    """The archive was away for two docks: what waits in the spool goes up important first,
    then yesterday's before today's, whichever card it came from, and a card docked when the
    archive is back is merged into that order."""
    first_dock, second_dock, third_dock = tmp_path / "one", tmp_path / "two", tmp_path / "three"
    _card(first_dock, ["DSJ1_1001_20261125090000_0001.MP4", "DSJ1_1001_20261125100000_0002.MP4"])
    _card(second_dock, ["DSJ2_1002_20261124200000_0001.MP4", "重要/DSJ2_1002_20261125110000_0002.MP4"])
    _card(third_dock, ["DSJ3_1003_20261124100000_0001.MP4", "DSJ3_1003_20261125180000_0002.MP4"])
    station = _station(tmp_path, queue_depth=1)
    ingestor = station.ingestor()
    for waiting, card, device in ((2, first_dock, "DSJ1"), (4, second_dock, "DSJ2")):
        away = ingestor.ingest(Origin(card, device_id=device), archive_error="archive away")
        assert away.pending == waiting  # what this run copied and what earlier runs left
    slow = SlowArchive(station.store, delay_s=0.05)
    station.store = slow
    summary = station.ingestor().ingest(Origin(third_dock, device_id="DSJ3"))
    order = _archived_names(station, slow.order)
    station.close()
    assert summary.ok and summary.pending == 0
    fault_log("slow archive link", "archive away for two docks, then slow (50 ms per original)",
              injected_by="archive_error for two ingests; put_original delayed 50 ms",
              files_lost=6 - len(set(slow.order)), wrongly_archived=0,
              duplicates=len(slow.order) - len(set(slow.order)),
              message="uploaded important first, then earliest deadline first across the cards")
    assert order == [
        "重要/DSJ2_1002_20261125110000_0002.MP4",   # important
        "DSJ3_1003_20261124100000_0001.MP4",        # yesterday 10:00, from the card docked last
        "DSJ2_1002_20261124200000_0001.MP4",        # yesterday 20:00
        "DSJ1_1001_20261125090000_0001.MP4",        # today
        "DSJ1_1001_20261125100000_0002.MP4",
        "DSJ3_1003_20261125180000_0002.MP4",
    ]


def test_the_daemons_retry_resumes_in_deadline_order(tmp_path: Path) -> None:
    """``Ingestor.resume`` (the upkeep retry job, the daemon's start) takes the same order."""
    card = tmp_path / "card"
    _card(card, ["DSJ1_1001_20261125090000_0002.MP4", "DSJ1_1001_20261124090000_0001.MP4",
                 "DSJ1_1001_20261125080000_0003_IMP.MP4"])
    station = _station(tmp_path, queue_depth=1)
    station.ingestor().ingest(Origin(card, device_id="DSJ1"), archive_error="archive away")
    slow = SlowArchive(station.store, delay_s=0.02)
    station.store = slow
    summary = station.ingestor().resume()
    order = _archived_names(station, slow.order)
    station.close()
    assert summary.ok
    assert order == ["DSJ1_1001_20261125080000_0003_IMP.MP4", "DSJ1_1001_20261124090000_0001.MP4",
                     "DSJ1_1001_20261125090000_0002.MP4"]
