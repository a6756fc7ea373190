"""The one release policy (dock/release.py) used by the inbox release and the device wipe: the
pure decision as a table, the action's order (ledger event, then the irreversible step), and
both users with a ledger that cannot be written: nothing is deleted or moved."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from evidence_daemon.config import WatchConfig, load_config
from evidence_daemon.custody.chain import Event
from evidence_daemon.custody.ledger import LedgerWriter
from evidence_daemon.dock.inbox import inbox_origin, release_inbox_file
from evidence_daemon.dock.manager import DockManager
from evidence_daemon.dock.release import (
    Decision,
    Outcome,
    Released,
    SourceRecord,
    Verdict,
    release,
    release_decision,
)
from evidence_daemon.dock.wipe import wipe_device
from evidence_daemon.errors import StorageError
from evidence_daemon.ingest.pipeline import Origin
from evidence_daemon.station import Station, open_station

from .faultlog import FaultLog
from .helpers import write_config
from .test_dock_manager import FakeMounter, FakeRegistry

SHA = "ab" * 32
OTHER = "cd" * 32
NOW = (100, 5_000)
VERIFIED_AT = "2026-11-25T00:31:00+00:00"


def record(state: str = "archived", sha256: str | None = SHA, size: int = 100, mtime: int = 5_000,
           archived_at: str | None = VERIFIED_AT) -> SourceRecord:
    return SourceRecord(state, size, mtime, sha256, archived_at)


# -- the pure decision -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("facts", "current", "fresh", "expected"),
    [
        # the fresh hash equals the archived copy's: release
        (record(), NOW, SHA, Decision(Verdict.RELEASE)),
        (record("duplicate"), NOW, SHA, Decision(Verdict.RELEASE)),
        # everything cheap agrees, not hashed yet: hash it and ask again
        (record(), NOW, None, Decision(Verdict.VERIFY)),
        # the fresh hash differs: keep, and say why (both hashes)
        (record(), NOW, OTHER, Decision(Verdict.LEAVE, "its content differs from the archived "
                                        f"copy (SHA-256 {OTHER[:12]} now, {SHA[:12]} archived)")),
        # the archived copy is unknown: keep, whatever the fresh hash says
        (record(sha256=None), NOW, SHA, Decision(Verdict.LEAVE, "no archived hash on record")),
        (record(archived_at=None), NOW, SHA,
         Decision(Verdict.LEAVE, "its recording is not verified in the archive yet")),
        (record("spooled"), NOW, SHA, Decision(Verdict.LEAVE, "not archived yet (state spooled)")),
        (record("failed"), NOW, SHA, Decision(Verdict.LEAVE, "not archived yet (state failed)")),
        (record(size=99), NOW, SHA, Decision(
            Verdict.LEAVE, "the file changed since it was ingested (size or mtime differ)")),
        (record(mtime=4_999), NOW, SHA, Decision(
            Verdict.LEAVE, "the file changed since it was ingested (size or mtime differ)")),
        (record(), None, SHA, Decision(Verdict.LEAVE, "the file is gone or is not a regular file")),
    ],
)
def test_release_decision(facts: SourceRecord, current: tuple[int, int] | None, fresh: str | None,
                          expected: Decision) -> None:
    assert release_decision(facts, current, fresh) == expected


# -- the action: the event first, then the irreversible step -----------------------------------


def test_release_records_the_event_before_the_irreversible_step() -> None:
    steps: list[str] = []
    released = release(Decision(Verdict.RELEASE), record_event=lambda: steps.append("event"),
                       irreversible=lambda: steps.append("delete"), outcome=Outcome.REMOVED,
                       verb="remove")
    assert released == Released(Outcome.REMOVED) and steps == ["event", "delete"]


@pytest.mark.parametrize("decision", [Decision(Verdict.VERIFY),
                                      Decision(Verdict.LEAVE, "not archived yet (state spooled)")])
def test_release_does_nothing_unless_the_decision_is_release(decision: Decision) -> None:
    steps: list[str] = []
    released = release(decision, record_event=lambda: steps.append("event"),
                       irreversible=lambda: steps.append("delete"), outcome=Outcome.WIPED,
                       verb="delete")
    assert released.outcome is Outcome.LEFT and released.reason and steps == []


def test_a_ledger_write_that_fails_deletes_nothing(fault_log: FaultLog) -> None:
    steps: list[str] = []

    def failing_event() -> None:
        raise StorageError("archive unreachable (injected)")

    with pytest.raises(StorageError) as raised:
        release(Decision(Verdict.RELEASE), record_event=failing_event,
                irreversible=lambda: steps.append("delete"), outcome=Outcome.WIPED, verb="delete")
    assert steps == []
    fault_log("release policy", "ledger append fails before a release", files_lost=0,
              wrongly_archived=0, duplicates=0, premature_wipes=len(steps),
              message=raised.value.message, injected_by="record_event raising StorageError")


def test_an_irreversible_step_that_fails_leaves_the_file_with_the_reason(fault_log: FaultLog) -> None:
    def refused() -> None:
        raise PermissionError(13, "Permission denied")

    released = release(Decision(Verdict.RELEASE), record_event=lambda: None, irreversible=refused,
                       outcome=Outcome.REMOVED, verb="remove")
    assert released == Released(Outcome.LEFT, "cannot remove it: Permission denied")
    fault_log("release policy", "unlink refused after the event", files_lost=0,
              wrongly_archived=0, duplicates=0, premature_wipes=0,
              message=released.reason, injected_by="irreversible step raising EACCES")


# -- both users with a real station and a ledger that refuses their events ---------------------


class RefusingLedger:
    """The station's real ledger, except that ``refused`` events raise as an archive that went
    away would (ingest's own events go through the real writer)."""

    def __init__(self, real: LedgerWriter, refused: set[Event]) -> None:
        self.real = real
        self.refused = refused
        self.attempts: list[Event] = []

    def append(self, event: Event, **kwargs: Any) -> dict[str, Any]:
        if event in self.refused:
            self.attempts.append(event)
            raise StorageError(f"archive unreachable: cannot append '{event}' (injected)")
        return self.real.append(event, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


@pytest.fixture
def station(tmp_path: Path) -> Iterator[Station]:
    config = load_config(write_config(tmp_path / "station",
                                      extra="[ingest]\nprobe = false\n[dock]\nsettle_s = 0\n"),
                         environ={})
    opened = open_station(config)
    yield opened
    opened.close()


def ledger_events(station: Station) -> list[str]:
    root = station.config.archive.path / "ledger"
    return [json.loads(path.read_bytes())["event"] for path in sorted(root.rglob("*.json"))]


def wait_idle(manager: DockManager) -> None:
    deadline = time.monotonic() + 30
    while manager.busy:
        assert time.monotonic() < deadline
        time.sleep(0.02)


@pytest.mark.parametrize("after", ["move", "remove"])
def test_inbox_file_stays_when_its_ledger_event_cannot_be_written(
    tmp_path: Path, station: Station, after: str, fault_log: FaultLog
) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "a.mp4").write_bytes(b"interview room recording")
    watch = WatchConfig(path=inbox, device_id="ROOM-1", after=after)
    ledger = RefusingLedger(station.ledger, {Event.INBOX_MOVED, Event.INBOX_REMOVED})
    manager = DockManager(station.config, station.ingestor(), FakeRegistry(),
                          FakeMounter(tmp_path), station.database, ledger)  # type: ignore[arg-type]
    manager.inbox_ready(watch, [b"a.mp4"])
    wait_idle(manager)
    manager.shutdown()
    [job] = manager.snapshot()
    still_there = (inbox / "a.mp4").is_file()
    moved = (inbox / "done" / "a.mp4").exists()
    assert job["state"] == "failed" and "cannot append" in job["error"], job
    assert still_there and not moved and len(ledger.attempts) == 1
    assert station.recordings()[0]["archived_at"] is not None  # archived, just not released
    fault_log("release policy", f"inbox {after}: ledger event refused", files_lost=0,
              wrongly_archived=0, duplicates=0, premature_wipes=int(not still_there),
              message=job["error"], injected_by="ledger append raising StorageError")


def test_inbox_file_is_released_with_its_event(tmp_path: Path, station: Station) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "a.mp4").write_bytes(b"interview room recording")
    watch = WatchConfig(path=inbox, device_id="ROOM-1", after="remove")
    manager = DockManager(station.config, station.ingestor(), FakeRegistry(),
                          FakeMounter(tmp_path), station.database, station.ledger)
    manager.inbox_ready(watch, [b"a.mp4"])
    wait_idle(manager)
    manager.shutdown()
    [job] = manager.snapshot()
    assert job["state"] == "done" and job["result"] == {"archived": 1, "removed": 1}, job
    assert not (inbox / "a.mp4").exists()
    assert ledger_events(station).count("inbox-removed") == 1


def test_a_planted_done_link_leaves_the_file_and_writes_no_event(
    tmp_path: Path, station: Station, fault_log: FaultLog
) -> None:
    inbox, elsewhere = tmp_path / "inbox", tmp_path / "elsewhere"
    inbox.mkdir()
    elsewhere.mkdir()
    watch = WatchConfig(path=inbox, after="move")
    (inbox / "a.mp4").write_bytes(b"evidence")
    assert station.ingestor().ingest(inbox_origin(watch), paths=[b"a.mp4"]).ok
    os.symlink(elsewhere, inbox / "done")
    released = release_inbox_file(watch, b"a.mp4", station.database, station.ledger,
                                  actor="station:test")
    assert released.outcome is Outcome.LEFT and released.reason.startswith("cannot move it")
    assert (inbox / "a.mp4").read_bytes() == b"evidence" and list(elsewhere.iterdir()) == []
    assert "inbox-moved" not in ledger_events(station)
    fault_log("release policy", "done/ is a planted symbolic link", files_lost=0,
              wrongly_archived=0, duplicates=0, premature_wipes=0, message=released.reason,
              injected_by="symlink inbox/done -> elsewhere")


def card_files(tree: Path) -> list[str]:
    return sorted(path.name for path in tree.rglob("*") if path.is_file())


def ingest_card(tmp_path: Path, station: Station) -> Path:
    tree = tmp_path / "card"
    (tree / "DCIM").mkdir(parents=True)
    for index in range(3):
        (tree / "DCIM" / f"DSJ001_10086_2026112508{index:02d}00_{index:04d}.MP4").write_bytes(
            os.urandom(5000))
    assert station.ingestor().ingest(Origin(tree, device_id="CAM-1")).ok
    return tree


def test_the_wipe_deletes_nothing_when_its_ledger_event_cannot_be_written(
    tmp_path: Path, station: Station, fault_log: FaultLog
) -> None:
    tree = ingest_card(tmp_path, station)
    ledger = RefusingLedger(station.ledger, {Event.WIPED})
    with pytest.raises(StorageError) as raised:
        wipe_device(tree, "CAM-1", station.database, ledger, actor="station:test")  # type: ignore[arg-type]
    left = card_files(tree)
    assert len(left) == 3 and ledger.attempts == [Event.WIPED]  # stopped at the first refusal
    assert "wiped" not in ledger_events(station)
    fault_log("release policy", "wipe: ledger event refused", files_lost=0, wrongly_archived=0,
              duplicates=0, premature_wipes=3 - len(left), message=raised.value.message,
              injected_by="ledger append raising StorageError")


def test_the_wipe_keeps_a_file_whose_recording_is_not_verified_in_the_archive(
    tmp_path: Path, station: Station
) -> None:
    tree = ingest_card(tmp_path, station)
    [first, *_] = sorted(station.recordings(), key=lambda r: r["sources"][0]["path"])
    station.database.execute("UPDATE recordings SET archived_at = NULL WHERE sha256 = ?",
                             (first["sha256"],))
    report = wipe_device(tree, "CAM-1", station.database, station.ledger, actor="station:test")
    assert len(report.deleted) == 2
    assert report.kept == [(first["sources"][0]["path"],
                            "its recording is not verified in the archive yet")]
    assert card_files(tree) == [Path(first["sources"][0]["path"]).name]
    assert ledger_events(station).count("wiped") == 2
