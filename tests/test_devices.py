"""Device registry and officer attribution on real SQLite and the filesystem archive: in
process (DeviceRegistry, with an injected clock) and through the CLI."""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from evidence_daemon.config import Config, load_config
from evidence_daemon.devices.registry import DeviceIdentity
from evidence_daemon.errors import ConfigError, DeviceError
from evidence_daemon.ingest.pipeline import Origin
from evidence_daemon.state.db import MIGRATIONS, Database
from evidence_daemon.station import Station, open_station

from .helpers import recordings_json, run_cli, write_config

NO_PROBE = "[ingest]\nprobe = false"


class FakeClock:
    """The station's clock, moved by the test instead of by sleeping."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


def utc(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 11, day, hour, minute, tzinfo=timezone.utc)


def ledger_events(archive: Path, event: str | None = None) -> list[dict[str, Any]]:
    entries = [json.loads(path.read_bytes()) for path in sorted((archive / "ledger").rglob("*.json"))]
    return [entry for entry in entries if event is None or entry["event"] == event]


def station_config(tmp_path: Path, extra: str = NO_PROBE) -> Config:
    return load_config(write_config(tmp_path, extra=extra), environ={})


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(utc(25, 0))


@pytest.fixture
def station(tmp_path: Path, clock: FakeClock) -> Iterator[Station]:
    opened = open_station(station_config(tmp_path), clock=clock)
    yield opened
    opened.close()


def make_card(root: Path, names: list[str]) -> None:
    """Plain bytes under recorder-style names: with probe off, times come from the names."""
    root.mkdir(parents=True, exist_ok=True)
    for name in names:
        (root / name).write_bytes(f"footage of {name}".encode() * 100)


def by_file(recordings: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {recording["sources"][0]["path"]: recording for recording in recordings}


# -- registry, in process ---------------------------------------------------------------------

def test_docking_registers_once_and_counts_every_dock(
    tmp_path: Path, station: Station, clock: FakeClock
) -> None:
    registry = station.devices()
    identity = DeviceIdentity("RECORDER-SN123", model="DSJ-V9", role="recorder", serial="SN123",
                              fs_uuid="1234-ABCD", fs_label="DSJ001")
    registry.docked(identity)
    clock.advance(hours=9)
    registry.docked(identity)
    clock.advance(hours=15)
    registry.docked(DeviceIdentity("RECORDER-SN123", model="DSJ-V9", role="recorder", serial="SN123",
                                   fs_uuid="5678-EF01", fs_label=""))  # reformatted card, no label
    [device] = registry.list()
    assert device["docks"] == 3
    assert device["first_docked_at"] == "2026-11-25T08:00:00+08:00"  # shown in station time
    assert device["last_docked_at"] == "2026-11-26T08:00:00+08:00"
    assert (device["model"], device["role"], device["serial"]) == ("DSJ-V9", "recorder", "SN123")
    assert device["fs_uuid"] == "5678-EF01" and device["fs_label"] == "DSJ001"  # latest said, kept
    assert device["in_service"] is True and device["current_officer"] is None

    archive = tmp_path / "archive"
    [registered] = ledger_events(archive, "device-registered")
    assert registered["details"]["source_key"] == "device:RECORDER-SN123"
    assert registered["details"]["model"] == "DSJ-V9" and registered["details"]["registered_by"] == "dock"
    docks = ledger_events(archive, "device-docked")
    assert [entry["details"]["dock"] for entry in docks] == [1, 2, 3]
    assert [entry["time"][:13] for entry in docks] == ["2026-11-25T00", "2026-11-25T09", "2026-11-26T00"]
    assert docks[2]["details"]["fs_uuid"] == "5678-EF01"  # the identity as seen at that dock
    assert registry.pending_events() == 0


def test_a_dock_keeps_the_apparent_clock_offset_of_its_newest_file(
    tmp_path: Path, station: Station, clock: FakeClock
) -> None:
    registry = station.devices()
    registry.docked(DeviceIdentity("DSJ001"))  # an empty card: nothing to tell the clock by
    [device] = registry.list()
    assert (device["clock_offset_s"], device["newest_file_at"]) == (None, None)
    clock.advance(hours=24)
    registry.docked(DeviceIdentity("DSJ001"),
                    newest_file_time=datetime(1980, 1, 1, tzinfo=timezone.utc))  # a reset clock
    [device] = registry.list()
    assert device["newest_file_at"] == "1980-01-01T08:00:00+08:00"
    assert device["clock_offset_s"] == (datetime(1980, 1, 1, tzinfo=timezone.utc) - clock.now).total_seconds()
    with pytest.raises(ValueError, match="no time zone"):
        registry.docked(DeviceIdentity("DSJ001"), newest_file_time=datetime(2026, 11, 25))


@pytest.mark.parametrize(("seconds", "shown"), [
    (None, "-"), (-50 * 60, "-50 min"), (90, "+2 min"), (3 * 3600, "+3.0 h"),
    (-71 * 3600, "-71.0 h"), (-46 * 365.25 * 86400, "-16,802 d"),
])
def test_clock_offsets_are_shown_in_a_unit_people_read(seconds: float | None, shown: str) -> None:
    from evidence_daemon.cli.devices import _offset

    assert _offset(seconds) == shown


def test_two_docks_at_the_same_instant_are_two_events(station: Station, tmp_path: Path) -> None:
    """The clock does not move (a frozen or coarse clock): each dock is still in the ledger."""
    registry = station.devices()
    registry.docked(DeviceIdentity("DSJ001"))
    registry.docked(DeviceIdentity("DSJ001"))
    assert len(ledger_events(tmp_path / "archive", "device-docked")) == 2


def test_assign_before_first_dock_registers_the_device(
    tmp_path: Path, station: Station, clock: FakeClock
) -> None:
    registry = station.devices()
    outcome = registry.assign("DSJ001", "10086", utc(25, 0), note="issued with the uniform")
    assert outcome.registered and outcome.closed == []
    [device] = registry.list()
    assert device["docks"] == 0 and device["first_docked_at"] is None and device["model"] is None
    assert device["current_officer"] == "10086"

    clock.advance(hours=10)
    registry.docked(DeviceIdentity("DSJ001", model="DSJ-V9", role="recorder"))
    [device] = registry.list()
    assert device["docks"] == 1 and device["model"] == "DSJ-V9"
    assert device["first_docked_at"] == "2026-11-25T18:00:00+08:00"
    [registered] = ledger_events(tmp_path / "archive", "device-registered")
    assert registered["details"]["registered_by"] == "assignment"


def test_assignment_history_handover_and_refusals(
    tmp_path: Path, station: Station, clock: FakeClock
) -> None:
    registry = station.devices()
    registry.docked(DeviceIdentity("DSJ001"))
    registry.assign("DSJ001", "10086", utc(25, 0))
    outcome = registry.assign("DSJ001", "10087", utc(25, 5), note="afternoon shift")
    assert [closed.officer_id for closed in outcome.closed] == ["10086"]
    assert outcome.closed[0].valid_to == utc(25, 5)

    assert registry.officer_at("DSJ001", utc(24, 23)) is None
    assert registry.officer_at("DSJ001", utc(25, 4, 59)) == "10086"
    assert registry.officer_at("DSJ001", utc(25, 5)) == "10087"
    assert registry.officer_at("DSJ002", utc(25, 5)) is None  # unknown device

    before = registry.list()
    events_before = len(ledger_events(tmp_path / "archive"))
    with pytest.raises(ConfigError, match="overlaps the assignment to officer 10086"):
        registry.assign("DSJ001", "10088", utc(25, 2), utc(25, 3))
    with pytest.raises(ConfigError, match="must start after"):
        registry.assign("DSJ001", "10088", utc(25, 5))
    with pytest.raises(ConfigError, match="officer id"):
        registry.assign("DSJ001", " \t", utc(25, 6))
    with pytest.raises(ConfigError, match="UTC offset"):
        registry.assign("DSJ001", "10088", datetime(2026, 11, 25, 6))
    with pytest.raises(DeviceError, match="device id"):
        registry.docked(DeviceIdentity("bad\nid"))
    assert registry.list() == before  # a refused assignment changes nothing
    assert len(ledger_events(tmp_path / "archive")) == events_before

    assert before[0]["current_officer"] == "10086"  # the clock says 08:00 in Shanghai
    clock.advance(hours=6)
    [device] = registry.list()
    assert device["current_officer"] == "10087"
    assert [(item["officer_id"], item["valid_from"], item["valid_to"], item["note"])
            for item in device["assignments"]] == [
        ("10086", "2026-11-25T08:00:00+08:00", "2026-11-25T13:00:00+08:00", ""),
        ("10087", "2026-11-25T13:00:00+08:00", None, "afternoon shift"),
    ]
    assigned = ledger_events(tmp_path / "archive", "device-assigned")
    assert [entry["details"]["officer_id"] for entry in assigned] == ["10086", "10087"]
    assert assigned[1]["details"]["closed"] == [{
        "officer_id": "10086", "valid_from": "2026-11-25T00:00:00.000000+00:00",
        "valid_to": "2026-11-25T05:00:00.000000+00:00",
    }]
    assert assigned[1]["details"]["note"] == "afternoon shift"


def test_only_one_open_assignment_per_device_even_if_the_code_forgot(station: Station) -> None:
    """The schema itself refuses a second open-ended assignment: the last line of defence."""
    station.devices().assign("DSJ001", "10086", utc(25, 0))
    with pytest.raises(sqlite3.IntegrityError):
        with station.database.transaction() as conn:
            conn.execute("INSERT INTO assignments (device_id, officer_id, valid_from, created_at)"
                         " VALUES ('DSJ001', '10087', '2026-11-26T00:00:00+00:00', 'now')")


def test_device_events_wait_in_the_outbox_while_the_archive_is_away(
    tmp_path: Path, clock: FakeClock
) -> None:
    """A dock must never fail because the NAS is away: it is recorded, its event follows later."""
    blocked = tmp_path / "nas"
    blocked.write_text("the NAS is not mounted: this is a plain file\n")
    config = load_config(write_config(
        tmp_path, archive={"backend": "filesystem", "path": str(blocked / "archive")}, extra=NO_PROBE,
    ), environ={})
    station = open_station(config, clock=clock, connect_archive=False)
    try:
        registry = station.devices()
        registry.docked(DeviceIdentity("DSJ001", model="DSJ-V9"))
        registry.assign("DSJ001", "10086", utc(25, 0))
        assert registry.list()[0]["docks"] == 1
        assert registry.officer_at("DSJ001", utc(25, 1)) == "10086"  # attribution works meanwhile
        assert registry.pending_events() == 3  # registered, docked, assigned

        blocked.unlink()
        blocked.mkdir()
        station.connect()
        assert registry.flush_ledger() == 3
        assert registry.pending_events() == 0
        assert registry.flush_ledger() == 0
    finally:
        station.close()
    archive = blocked / "archive"
    assert [entry["event"] for entry in ledger_events(archive)] == [
        "key-registered", "device-registered", "device-docked", "device-assigned"]


def test_an_event_appended_just_before_a_crash_is_not_appended_twice(
    tmp_path: Path, station: Station
) -> None:
    """Killed after the ledger append but before the outbox row was removed: the retry finds
    the once-only event and only removes the row."""
    registry = station.devices()
    registry.docked(DeviceIdentity("DSJ001"))
    [dock] = ledger_events(tmp_path / "archive", "device-docked")
    details = {key: value for key, value in dock["details"].items() if key != "once"}
    with station.database.transaction() as conn:  # the row as it was before the crash
        conn.execute("INSERT INTO ledger_outbox (event, recording, actor, details, created_at)"
                     " VALUES ('device-docked', NULL, ?, ?, 'then')",
                     (dock["actor"], json.dumps(details)))
    assert registry.flush_ledger() == 1
    assert registry.pending_events() == 0
    assert len(ledger_events(tmp_path / "archive", "device-docked")) == 1


def test_a_schema_1_database_is_migrated(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite3"
    conn = sqlite3.connect(path)
    conn.executescript(MIGRATIONS[0] + "\nPRAGMA user_version = 1;")
    conn.execute("INSERT INTO ledger (writer, seq, entry_hash, time, event, actor, details)"
                 " VALUES ('s', 1, 'h', 't', 'acquired', 'a', '{}')")
    conn.commit()
    conn.close()
    database = Database(path)
    try:
        assert database.schema_version == len(MIGRATIONS) >= 2
        assert database.scalar("SELECT COUNT(*) FROM ledger") == 1  # old rows untouched
        assert database.scalar("SELECT COUNT(*) FROM devices") == 0
        assert database.scalar("SELECT COUNT(*) FROM assignments") == 0
    finally:
        database.close()


# -- attribution during ingest, in process ------------------------------------------------------

def test_shared_device_reassigned_mid_day_attributes_by_recorded_time(
    tmp_path: Path, station: Station, clock: FakeClock
) -> None:
    clock.advance(hours=24)  # the card is docked after the shift, not before it was recorded
    registry = station.devices()
    registry.assign("DSJ001", "10086", datetime.fromisoformat("2026-11-25T08:00:00+08:00"))
    registry.assign("DSJ001", "10087", datetime.fromisoformat("2026-11-25T13:00:00+08:00"))
    card = tmp_path / "card"
    make_card(card, [
        "VID_20261125_075900_0001.MP4",  # before anyone had it: the source's default
        "VID_20261125_090000_0002.MP4",  # morning: 10086
        "VID_20261125_125959_0003.MP4",  # last second of the morning shift
        "VID_20261125_130000_0004.MP4",  # the handover instant belongs to the next officer
        "VID_20261125_180000_0005.MP4",  # afternoon: 10087
        "DSJ001_10086_20261125150000_0006.MP4",  # name says 10086, assignment 10087
    ])
    summary = station.ingestor().ingest(Origin(card, device_id="DSJ001", officer_id="900"))
    assert summary.ok
    recordings = by_file(station.recordings())
    assert {path: recording["officer_id"] for path, recording in recordings.items()} == {
        "VID_20261125_075900_0001.MP4": "900",
        "VID_20261125_090000_0002.MP4": "10086",
        "VID_20261125_125959_0003.MP4": "10086",
        "VID_20261125_130000_0004.MP4": "10087",
        "VID_20261125_180000_0005.MP4": "10087",
        "DSJ001_10086_20261125150000_0006.MP4": "10086",
    }
    assert [path for path, recording in recordings.items() if recording["flags"]] == [
        "DSJ001_10086_20261125150000_0006.MP4"]
    mismatch = recordings["DSJ001_10086_20261125150000_0006.MP4"]
    assert mismatch["flags"] == ["officer_mismatch"]
    assert "10086" in mismatch["flag_reasons"]["officer_mismatch"]
    assert "10087" in mismatch["flag_reasons"]["officer_mismatch"]


def test_without_a_docked_device_id_no_assignment_applies(tmp_path: Path, station: Station) -> None:
    """The assignment is that of the physical device docked; a name alone does not select one."""
    station.devices().assign("DSJ001", "10086", utc(24, 0))
    card = tmp_path / "card"
    make_card(card, ["VID_20261125_090000_0001.MP4"])
    assert station.ingestor().ingest(Origin(card)).ok
    [recording] = station.recordings()
    assert recording["officer_id"] is None and recording["flags"] == []


def test_recording_without_a_start_time_uses_its_end(
    tmp_path: Path, station: Station, clock: FakeClock
) -> None:
    """No name pattern, no probe: the mtime is the recorded end, and that picks the officer."""
    clock.advance(hours=24)  # docked after the footage was recorded
    registry = station.devices()
    registry.assign("CAM-7", "10086", utc(25, 0))
    registry.assign("CAM-7", "10087", utc(25, 5))
    card = tmp_path / "card"
    make_card(card, ["morning.mp4", "afternoon.mp4"])
    os.utime(card / "morning.mp4", (utc(25, 2).timestamp(), utc(25, 2).timestamp()))
    os.utime(card / "afternoon.mp4", (utc(25, 7).timestamp(), utc(25, 7).timestamp()))
    assert station.ingestor().ingest(Origin(card, device_id="CAM-7")).ok
    recordings = by_file(station.recordings())
    assert recordings["morning.mp4"]["time_source"] == "mtime"
    assert recordings["morning.mp4"]["officer_id"] == "10086"
    assert recordings["afternoon.mp4"]["officer_id"] == "10087"


# -- through the CLI ----------------------------------------------------------------------------

def test_cli_assign_list_ingest_and_verify(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = str(write_config(tmp_path, extra=NO_PROBE))
    code, out, err = run_cli(capsys, "--config", config, "devices", "assign", "DSJ001", "10086",
                             "--from", "2026-11-25T08:00", "--note", "shift plan 47")
    assert code == 0, err
    assert "registered it now" in out and "officer 10086 from 2026-11-25T08:00:00+08:00" in out
    code, out, err = run_cli(capsys, "--config", config, "devices", "assign", "DSJ001", "10087",
                             "--from", "2026-11-25T05:00:00Z")  # 13:00 in Shanghai
    assert code == 0, err
    assert "closed: officer 10086" in out and "to 2026-11-25T13:00:00+08:00" in out

    code, _, err = run_cli(capsys, "--config", config, "devices", "assign", "DSJ001", "10088",
                           "--from", "2026-11-25T10:00", "--to", "2026-11-25T11:00")
    assert code == 2 and "overlaps the assignment to officer 10086" in err
    code, _, err = run_cli(capsys, "--config", config, "devices", "assign", "DSJ001", "10088",
                           "--from", "yesterday")
    assert code == 2 and "--from 'yesterday': not an ISO 8601 time" in err
    code, _, err = run_cli(capsys, "--config", config, "devices", "assign", "DSJ001", "10088",
                           "--from", "2026-11-26T10:00", "--to", "2026-11-26T09:00")
    assert code == 2 and "must end after it starts" in err

    code, out, _ = run_cli(capsys, "--config", config, "devices", "list", "--json")
    assert code == 0
    [device] = json.loads(out)
    assert {"device_id", "model", "role", "first_docked_at", "last_docked_at", "docks",
            "current_officer", "assignments", "in_service"} <= set(device)
    assert device["device_id"] == "DSJ001" and device["current_officer"] == "10087"
    assert [(item["officer_id"], item["valid_from"], item["valid_to"], item["note"])
            for item in device["assignments"]] == [
        ("10086", "2026-11-25T08:00:00+08:00", "2026-11-25T13:00:00+08:00", "shift plan 47"),
        ("10087", "2026-11-25T13:00:00+08:00", None, ""),
    ]
    code, out, _ = run_cli(capsys, "--config", config, "devices", "list")
    assert code == 0
    assert "DSJ001" in out and "never" in out
    assert "officer 10086  from 2026-11-25 08:00  to 2026-11-25 13:00  shift plan 47" in out

    card = tmp_path / "card"
    make_card(card, [
        "VID_20261125_093000_0001.MP4",  # no officer in the name: the assignment's
        "DSJ001_10099_20261125093000_0002.MP4",  # the name says 10099: kept, flagged
        "DSJ001_10087_20261125140000_0003.MP4",  # the name agrees with the assignment
    ])
    code, _, err = run_cli(capsys, "--config", config, "ingest", str(card), "--device-id", "DSJ001")
    assert code == 0, err
    recordings = by_file(recordings_json(capsys, Path(config)))
    plain = recordings["VID_20261125_093000_0001.MP4"]
    assert plain["officer_id"] == "10086" and plain["flags"] == []
    named = recordings["DSJ001_10099_20261125093000_0002.MP4"]
    assert named["officer_id"] == "10099" and named["flags"] == ["officer_mismatch"]
    agreeing = recordings["DSJ001_10087_20261125140000_0003.MP4"]
    assert agreeing["officer_id"] == "10087" and agreeing["flags"] == []

    manifest = json.loads((tmp_path / "archive" / "recordings" / named["id"] / "manifest.json").read_text())
    assert manifest["officer_id"] == "10099" and manifest["flags"] == ["officer_mismatch"]
    assert "10086" in manifest["flag_reasons"]["officer_mismatch"]

    events = [entry["event"] for entry in ledger_events(tmp_path / "archive")]
    assert events[:4] == ["key-registered", "device-registered", "device-assigned", "device-assigned"]
    assert events.count("archived") == 3
    code, out, err = run_cli(capsys, "--config", config, "verify")
    assert code == 0, out + err
    assert "OK" in out


def test_cli_assign_while_the_archive_is_away(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blocked = tmp_path / "nas"
    blocked.write_text("not mounted\n")
    config = str(write_config(tmp_path, archive={"backend": "filesystem", "path": str(blocked / "archive")}))
    code, out, err = run_cli(capsys, "--config", config, "devices", "assign", "DSJ001", "10086",
                             "--from", "2026-11-25T08:00")
    assert code == 6
    assert "assigned device DSJ001" in out
    assert "saved and in effect" in err and "not writable" in err
    code, out, _ = run_cli(capsys, "--config", config, "devices", "list")
    assert code == 0 and "2 device event(s) wait for the archive" in out

    blocked.unlink()
    blocked.mkdir()
    code, _, err = run_cli(capsys, "--config", config, "devices", "assign", "DSJ001", "10087",
                           "--from", "2026-11-25T13:00")
    assert code == 0, err
    assert [entry["event"] for entry in ledger_events(blocked / "archive")] == [
        "key-registered", "device-registered", "device-assigned", "device-assigned"]
    assert run_cli(capsys, "--config", config, "verify")[0] == 0


def test_cli_devices_list_when_empty(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = str(write_config(tmp_path))
    assert run_cli(capsys, "--config", config, "devices", "list") == (0, "no devices registered yet\n", "")
    assert run_cli(capsys, "--config", config, "devices", "list", "--json")[1] == "[]\n"
