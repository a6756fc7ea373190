"""Watch folders: the readiness rules and after-archival decisions as tables, then real inotify
(watchdog) on real files, and end to end through a real station."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from evidence_daemon.config import WatchConfig, load_config
from evidence_daemon.errors import ConfigError
from evidence_daemon.dock.inbox import done_name, inbox_origin, release_inbox_file
from evidence_daemon.dock.release import (
    Decision,
    Outcome,
    Released,
    SourceRecord,
    Verdict,
    after_action,
)
from evidence_daemon.sources.watch import (
    Readiness,
    WatchFolders,
    is_candidate,
    poll_period_s,
    unclosed_quiet_s,
)
from evidence_daemon.station import Station, open_station

from .helpers import write_config

# -- the readiness state machine, driven by an injected clock ---------------------------------

TICK_S = 0.25  # how often the simulated poll runs


def simulate(steps: list[tuple[Any, ...]], *, until: float, stable_s: float = 1.0,
             unclosed_s: float = 5.0) -> list[tuple[float, bytes]]:
    """Play events at given times against simulated files, polling every TICK_S the way
    ``WatchFolders.poll`` does (stat every pending file, then take the ready ones).

    Steps: (t, "write", path, size) content written (event), (t, "quiet", path, size) content
    written without any event (NFS), (t, "close", path), (t, "attrib", path) mtime set,
    (t, "rename", src, dst), (t, "delete", path), (t, "scan",) a directory scan,
    (t, "retry", path) the handler failed. Returns (time, path) reports.
    """
    readiness = Readiness(stable_s, unclosed_s)
    files: dict[bytes, tuple[int, int]] = {}
    reports: list[tuple[float, bytes]] = []
    pending_steps = sorted(steps, key=lambda step: step[0])
    ticks = int(until / TICK_S) + 1
    for tick in range(ticks):
        now = round(tick * TICK_S, 6)
        while pending_steps and pending_steps[0][0] <= now:
            at, action, *args = pending_steps.pop(0)
            mtime_ns = int(at * 1e9) + 1
            if action in ("write", "quiet"):
                path, size = args
                files[path] = (size, mtime_ns)
                if action == "write":
                    readiness.written(path, at)
            elif action == "close":
                readiness.closed(args[0], at)
            elif action == "attrib":
                files[args[0]] = (files[args[0]][0], mtime_ns)
                readiness.touched(args[0], at)
            elif action == "rename":
                source, target = args
                files[target] = files.pop(source)
                readiness.gone(source)
                readiness.closed(target, at)
            elif action == "delete":
                files.pop(args[0])
                readiness.gone(args[0])
            elif action == "scan":
                for path, (size, mtime) in files.items():
                    readiness.found(path, size, mtime, at)
                readiness.prune(set(files))
            elif action == "retry":
                readiness.retry([args[0]], at)
            else:
                raise AssertionError(action)
        for path in readiness.pending():
            if path in files:
                readiness.observe(path, *files[path], now)
            else:
                readiness.gone(path)
        reports.extend((now, path) for path in readiness.take_ready(now))
    return reports


A, B, TMP = b"a.mp4", b"b.mp4", b".a.mp4.Xy12ab"


@pytest.mark.parametrize(
    ("steps", "expected"),
    [
        pytest.param(
            [(0, "write", A, 10), (0.5, "write", A, 20), (1.0, "write", A, 30), (1.0, "close", A)],
            [(2.0, A)], id="closed-then-stable"),
        pytest.param(
            [(0, "write", A, 10), (2.0, "write", A, 20), (3.0, "close", A)],
            [(4.0, A)], id="writer-stalls-longer-than-stable_s-without-closing"),
        pytest.param(
            [(0, "write", A, 10), (0.5, "close", A), (1.0, "write", A, 20), (1.2, "close", A)],
            [(2.25, A)], id="closed-then-reopened-samba"),
        pytest.param(
            [(0, "write", A, 10), (0, "close", A), (0.5, "attrib", A)],
            [(1.5, A)], id="mtime-set-after-close-rsync-inplace"),
        pytest.param(
            [(0, "write", TMP, 10), (0, "close", TMP), (0.5, "rename", TMP, A)],
            [(1.5, A)], id="renamed-into-place"),
        pytest.param(
            [(0, "quiet", A, 10), (0, "scan")],
            [(5.0, A)], id="found-at-start-waits-unclosed_s"),
        pytest.param(
            [(0, "quiet", A, 10), (0, "scan"), (3.0, "quiet", A, 20)],
            [(8.0, A)], id="found-then-grows-silently"),
        pytest.param(
            [(0, "write", A, 10), (0.5, "delete", A)],
            [], id="deleted-before-ready"),
        pytest.param(
            [(0, "write", A, 10), (0, "close", A), (2.0, "attrib", A), (2.0, "close", A)],
            [(1.0, A), (3.0, A)], id="reported-again-after-a-change"),
        pytest.param(
            [(0, "write", A, 10), (0, "close", A), (2.0, "close", A), (2.0, "scan")],
            [(1.0, A)], id="event-or-scan-without-change-not-reported-twice"),
        pytest.param(
            [(0, "write", A, 10), (0, "close", A), (2.0, "delete", A), (2.5, "write", A, 10),
             (2.5, "close", A)],
            [(1.0, A), (3.5, A)], id="deleted-and-back"),
        pytest.param(
            [(0, "write", A, 10), (0, "close", A), (1.5, "retry", A)],
            [(1.0, A), (2.5, A)], id="handler-failed-retry"),
        pytest.param(
            [(0, "write", A, 10), (0, "close", A), (0.25, "write", B, 5), (0.5, "close", B)],
            [(1.0, A), (1.5, B)], id="independent-files"),
    ],
)
def test_readiness(steps: list[tuple[Any, ...]], expected: list[tuple[float, bytes]]) -> None:
    assert simulate(steps, until=10.0) == expected


def test_stat_needed_before_ready() -> None:
    readiness = Readiness(1.0, 5.0)
    readiness.closed(A, 0.0)
    assert readiness.take_ready(100.0) == []  # never stat'ed: size unknown
    readiness.observe(A, 1, 1, 100.0)
    assert readiness.take_ready(100.5) == []
    assert readiness.take_ready(101.0) == [A]


def test_gone_tree_forgets_a_directory() -> None:
    readiness = Readiness(0.0, 0.0)
    for path in (b"room/a.mp4", b"room/sub/b.mp4", b"roomy.mp4"):
        readiness.written(path, 0.0)
    readiness.gone_tree(b"room")
    assert readiness.pending() == [b"roomy.mp4"]


@pytest.mark.parametrize(
    ("stable_s", "unclosed_s", "period_s"),
    [(10.0, 30.0, 1.0), (0.5, 30.0, 0.25), (20.0, 60.0, 1.0), (0.0, 30.0, 0.05)],
)
def test_timing_defaults(stable_s: float, unclosed_s: float, period_s: float) -> None:
    assert unclosed_quiet_s(stable_s) == unclosed_s
    assert poll_period_s(stable_s) == period_s


@pytest.mark.parametrize(
    ("relative", "candidate"),
    [
        (b"a.mp4", True), (b"room-1/a.mp4", True), (b"\xff\xfe.mp4", True), (b".hidden", True),
        (b"room/done/a.mp4", True),  # only the folder's own done/ is the done area
        (b"done/a.mp4", False), (b"done", False),
        (b"a.mp4.part", False), (b"A.MP4.TMP", False), (b"a.partial", False),
        (b"a.mp4.crdownload", False), (b".~lock.a.docx#", False), (b"~$report.docx", False),
        (b".a.mp4.swp", False), (b".a.mp4.Xy12Z9", False), (b".syncthing.a.mp4.tmp", False),
        (b".rsync-partial/a.mp4", False), (b"Thumbs.db", False), (b"._a.mp4", False),
        (b"System Volume Information/x.mp4", False), (b"../a.mp4", False), (b"/etc/passwd", False),
        (b"a/./b.mp4", False), (b"a//b.mp4", False), (b"", False),
    ],
)
def test_is_candidate(relative: bytes, candidate: bool) -> None:
    assert is_candidate(relative) is candidate


@pytest.mark.parametrize(
    ("name", "attempt", "expected"),
    [(b"a.mp4", 0, b"a.mp4"), (b"a.mp4", 1, b"a.1.mp4"), (b"a.tar.gz", 2, b"a.tar.2.gz"),
     (b"noext", 1, b"noext.1"), (b".hidden", 1, b".hidden.1")],
)
def test_done_name(name: bytes, attempt: int, expected: bytes) -> None:
    assert done_name(name, attempt) == expected


SHA = "ab" * 32
OTHER = "cd" * 32
NOW = (100, 5_000)
KEEPS = "the folder keeps its files (after = keep)"
ARCHIVED = SourceRecord("archived", 100, 5_000, SHA, "2026-11-25T00:31:00+00:00")


def _record(state: str = "archived", size: int = 100, mtime: int = 5_000,
            archived_at: str | None = "2026-11-25T00:31:00+00:00") -> SourceRecord:
    return SourceRecord(state, size, mtime, SHA, archived_at)


@pytest.mark.parametrize(
    ("after", "records", "current", "fresh", "expected"),
    [
        ("keep", [], None, None, Decision(Verdict.LEAVE, KEEPS)),
        ("keep", [ARCHIVED], NOW, SHA, Decision(Verdict.LEAVE, KEEPS)),
        ("shred", [ARCHIVED], NOW, SHA, Decision(Verdict.LEAVE, "unknown after-archival action 'shred'")),
        ("move", [ARCHIVED], None, None, Decision(Verdict.LEAVE, "the file is gone or is not a regular file")),
        ("move", [], NOW, None, Decision(Verdict.LEAVE, "no record of this file being ingested")),
        ("remove", [_record(size=99)], NOW, None, Decision(
            Verdict.LEAVE, "the file changed since it was ingested (size or mtime differ); it will be "
                     "ingested again")),
        ("remove", [_record(mtime=4_999)], NOW, SHA, Decision(
            Verdict.LEAVE, "the file changed since it was ingested (size or mtime differ); it will be "
                     "ingested again")),
        ("remove", [_record("spooled")], NOW, None, Decision(Verdict.LEAVE, "not archived yet (state spooled)")),
        ("move", [_record("failed")], NOW, SHA, Decision(Verdict.LEAVE, "not archived yet (state failed)")),
        ("move", [_record("discovered")], NOW, SHA, Decision(Verdict.LEAVE, "not archived yet (state discovered)")),
        ("remove", [_record(archived_at=None)], NOW, SHA, Decision(
            Verdict.LEAVE, "its recording is not verified in the archive yet")),
        ("move", [ARCHIVED], NOW, None, Decision(Verdict.VERIFY)),
        ("remove", [ARCHIVED], NOW, None, Decision(Verdict.VERIFY)),
        ("remove", [ARCHIVED], NOW, OTHER, Decision(
            Verdict.LEAVE, f"its content differs from the archived copy (SHA-256 {OTHER[:12]} now, "
                     f"{SHA[:12]} archived)")),
        ("move", [ARCHIVED], NOW, SHA, Decision(Verdict.RELEASE)),
        ("remove", [ARCHIVED], NOW, SHA, Decision(Verdict.RELEASE)),
        ("remove", [_record("duplicate")], NOW, SHA, Decision(Verdict.RELEASE)),
        # ingested twice: the row that matches the file as it is now decides
        ("remove", [_record("spooled"), _record(size=50)], NOW, SHA,
         Decision(Verdict.LEAVE, "not archived yet (state spooled)")),
        ("remove", [_record(size=50, state="spooled"), ARCHIVED], NOW, SHA, Decision(Verdict.RELEASE)),
    ],
)
def test_after_action(after: str, records: list[SourceRecord], current: tuple[int, int] | None,
                      fresh: str | None, expected: Decision) -> None:
    assert after_action(after, records, current, fresh) == expected


# -- real watchdog / inotify on real files -----------------------------------------------------


class Reports:
    """An ``on_ready`` that records (monotonic time, paths) and lets a test wait for them."""

    def __init__(self, handler: Callable[[WatchConfig, list[bytes]], None] | None = None) -> None:
        self.calls: list[tuple[float, list[bytes]]] = []
        self.handler = handler
        self._changed = threading.Condition()

    def __call__(self, watch: WatchConfig, paths: list[bytes]) -> None:
        with self._changed:
            self.calls.append((time.monotonic(), list(paths)))
            self._changed.notify_all()
        if self.handler is not None:
            self.handler(watch, paths)

    @property
    def paths(self) -> list[bytes]:
        return [path for _, paths in self.calls for path in paths]

    def wait_for(self, paths: set[bytes], timeout_s: float = 5.0) -> None:
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while not paths <= set(self.paths):
                remaining = deadline - time.monotonic()
                assert remaining > 0, f"not reported in {timeout_s} s: {paths - set(self.paths)}"
                self._changed.wait(remaining)


@pytest.fixture
def inbox(tmp_path: Path) -> Path:
    path = tmp_path / "inbox"
    path.mkdir()
    return path


@pytest.fixture
def watching() -> Iterator[Callable[..., WatchFolders]]:
    started: list[WatchFolders] = []

    def start(watches: list[WatchConfig], on_ready: Reports, **kwargs: Any) -> WatchFolders:
        folders = WatchFolders(watches, on_ready, **kwargs)
        folders.start()
        started.append(folders)
        return folders

    yield start
    for folders in started:
        folders.stop()


def test_file_written_slowly_is_reported_once_after_close(
    inbox: Path, watching: Callable[..., WatchFolders]
) -> None:
    reports = Reports()
    watching([WatchConfig(path=inbox, stable_s=0.5)], reports)
    with (inbox / "clip.mp4").open("wb") as handle:
        for chunk in range(4):
            handle.write(bytes([chunk]) * 4096)
            handle.flush()
            if chunk < 3:
                time.sleep(0.5)  # each pause as long as stable_s: only the close says "done"
        last_write_at = time.monotonic()
    closed_at = time.monotonic()
    reports.wait_for({b"clip.mp4"})
    time.sleep(0.8)
    assert reports.paths == [b"clip.mp4"]
    assert reports.calls[0][0] >= max(last_write_at, closed_at) + 0.5


def test_files_present_at_start_are_reported(
    inbox: Path, watching: Callable[..., WatchFolders]
) -> None:
    (inbox / "room-1").mkdir()
    (inbox / "room-1" / "before.mp4").write_bytes(b"arrived while the daemon was down")
    (inbox / "done").mkdir()
    (inbox / "done" / "old.mp4").write_bytes(b"archived earlier")
    (inbox / "Thumbs.db").write_bytes(b"junk")
    (inbox / "half.mp4.part").write_bytes(b"partial")
    reports = Reports()
    started_at = time.monotonic()
    watching([WatchConfig(path=inbox, stable_s=0.3)], reports, unclosed_s=0.8)
    reports.wait_for({b"room-1/before.mp4"})
    time.sleep(0.5)
    assert reports.paths == [b"room-1/before.mp4"]
    # nobody was seen closing it: it waited the longer quiet period
    assert reports.calls[0][0] >= started_at + 0.8


def test_junk_temp_done_links_and_directories_are_not_reported(
    inbox: Path, tmp_path: Path, watching: Callable[..., WatchFolders]
) -> None:
    outside = tmp_path / "outside.mp4"
    outside.write_bytes(b"not in the inbox")
    reports = Reports()
    watching([WatchConfig(path=inbox, stable_s=0.3)], reports)
    for name in ("Thumbs.db", "._clip.mp4", "clip.mp4.part", "CLIP.TMP", ".~lock.x#", "~$x.docx",
                 ".clip.mp4.swp"):
        (inbox / name).write_bytes(b"never evidence")
    (inbox / "done").mkdir()
    (inbox / "done" / "archived.mp4").write_bytes(b"already done")
    (inbox / "empty-dir").mkdir()
    os.symlink(outside, inbox / "link.mp4")
    # rsync: a temp name next to the target, renamed when complete
    (inbox / ".synced.mp4.a1B2c3").write_bytes(b"synced by rsync")
    os.rename(inbox / ".synced.mp4.a1B2c3", inbox / "synced.mp4")
    (inbox / "room-2").mkdir()
    time.sleep(0.2)  # its watch is in place: the close of ok.mp4 is seen
    (inbox / "room-2" / "ok.mp4").write_bytes(b"a real recording")
    odd_name = b"\xe6\x89\xa7\xe6\xb3\x95\xff.mp4"  # not valid UTF-8: must survive exactly
    with open(os.path.join(os.fsencode(inbox), odd_name), "wb") as handle:
        handle.write(b"odd name")
    reports.wait_for({b"synced.mp4", b"room-2/ok.mp4", odd_name})
    time.sleep(0.5)
    assert sorted(reports.paths) == sorted([b"synced.mp4", b"room-2/ok.mp4", odd_name])


def test_a_failing_handler_gets_the_batch_again(
    inbox: Path, watching: Callable[..., WatchFolders]
) -> None:
    failures: list[list[bytes]] = []

    def fail_once(watch: WatchConfig, paths: list[bytes]) -> None:
        if not failures:
            failures.append(paths)
            raise RuntimeError("archive unreachable")

    reports = Reports(fail_once)
    watching([WatchConfig(path=inbox, stable_s=0.3)], reports)
    (inbox / "a.mp4").write_bytes(b"retry me")
    deadline = time.monotonic() + 5
    while len(reports.calls) < 2:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert reports.paths == [b"a.mp4", b"a.mp4"]


def test_missing_inbox_and_nested_inboxes_are_config_errors(tmp_path: Path) -> None:
    missing = WatchFolders([WatchConfig(path=tmp_path / "nope")], Reports())
    with pytest.raises(ConfigError, match=r"watch\[0\]\.path: .*nope does not exist"):
        missing.start()
    (tmp_path / "inbox" / "room").mkdir(parents=True)
    nested = WatchFolders([WatchConfig(path=tmp_path / "inbox"),
                           WatchConfig(path=tmp_path / "inbox" / "room")], Reports())
    with pytest.raises(ConfigError, match=r"watch\[1\]\.path: .* lies inside watch\[0\]\.path"):
        nested.start()


# -- end to end with a real station ------------------------------------------------------------


@pytest.fixture
def station(tmp_path: Path) -> Iterator[Station]:
    config = load_config(write_config(tmp_path / "station", extra="[ingest]\nprobe = false"),
                         environ={})
    opened = open_station(config)
    yield opened
    opened.close()


def release(watch: WatchConfig, relative: bytes, station: Station) -> Released:
    return release_inbox_file(watch, relative, station.database, station.ledger,
                              actor="station:test")


def left_with(result: Released, reason_start: str) -> bool:
    return result.outcome is Outcome.LEFT and result.reason.startswith(reason_start)


def test_ready_files_are_archived_then_moved_to_done(
    inbox: Path, station: Station, watching: Callable[..., WatchFolders]
) -> None:
    watch = WatchConfig(path=inbox, device_id="ROOM-1", officer_id="10086", stable_s=0.3,
                        after="move")
    (inbox / "done").mkdir()
    (inbox / "done" / "a.mp4").write_bytes(b"an older file of the same name")
    results: dict[bytes, Released] = {}

    def ingest_then_finish(watch: WatchConfig, paths: list[bytes]) -> None:
        summary = station.ingestor().ingest(inbox_origin(watch), paths=paths)
        assert summary.ok, summary
        for path in paths:
            results[path] = release(watch, path, station)

    reports = Reports(ingest_then_finish)
    watching([watch], reports, unclosed_s=1.0)
    (inbox / "a.mp4").write_bytes(b"interview room recording")
    # Likely written before inotify watches the new directory: then its close is not seen, and
    # it is taken after unclosed_s of stability instead of stable_s.
    (inbox / "room-2").mkdir()
    (inbox / "room-2" / "b.mp4").write_bytes(b"second room recording")
    reports.wait_for({b"a.mp4", b"room-2/b.mp4"})
    deadline = time.monotonic() + 5
    while len(results) < 2:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    time.sleep(0.4)  # moving them into done/ must not report anything

    assert results == {b"a.mp4": Released(Outcome.MOVED), b"room-2/b.mp4": Released(Outcome.MOVED)}
    assert sorted(reports.paths) == [b"a.mp4", b"room-2/b.mp4"]
    assert not (inbox / "a.mp4").exists() and not (inbox / "room-2" / "b.mp4").exists()
    assert (inbox / "done" / "a.mp4").read_bytes() == b"an older file of the same name"
    assert (inbox / "done" / "a.1.mp4").read_bytes() == b"interview room recording"
    assert (inbox / "done" / "room-2" / "b.mp4").read_bytes() == b"second room recording"
    recordings = station.recordings()
    assert sorted(s["path"] for r in recordings for s in r["sources"]) == ["a.mp4", "room-2/b.mp4"]
    assert {(r["device_id"], r["officer_id"]) for r in recordings} == {("ROOM-1", "10086")}

    # Not archived (the archive was down: spooled only) or never ingested: left, with a reason.
    (inbox / "c.mp4").write_bytes(b"waiting for the archive")
    (inbox / "d.mp4").write_bytes(b"never ingested")
    station.ingestor().ingest(inbox_origin(watch), archive_error="archive unreachable", paths=[b"c.mp4"])
    assert release(watch, b"c.mp4", station) == Released(Outcome.LEFT, "not archived yet (state spooled)")
    assert release(watch, b"d.mp4", station) == Released(Outcome.LEFT, "no record of this file being ingested")
    assert (inbox / "c.mp4").exists() and (inbox / "d.mp4").exists()


def test_remove_only_what_verifies(inbox: Path, station: Station) -> None:
    watch = WatchConfig(path=inbox, device_id="TERM-3", stable_s=0.3, after="remove")
    contents = {b"a.mp4": b"verified copy", b"b.mp4": b"appended later",
                b"c.mp4": b"same size, new bytes", b"d.mp4": b"kept anyway"}
    for name, content in contents.items():
        (inbox / os.fsdecode(name)).write_bytes(content)
    summary = station.ingestor().ingest(inbox_origin(watch), paths=list(contents))
    assert summary.ok and summary.counts["archived"] == 4

    with (inbox / "b.mp4").open("ab") as handle:
        handle.write(b" and more")
    replaced = inbox / "c.mp4"
    before = replaced.stat()
    replaced.write_bytes(b"SAME SIZE, NEW BYTES")  # same length; mtime put back below
    os.utime(replaced, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert (replaced.stat().st_size, replaced.stat().st_mtime_ns) == (before.st_size, before.st_mtime_ns)

    assert release(watch, b"a.mp4", station) == Released(Outcome.REMOVED)
    assert left_with(release(watch, b"b.mp4", station), "the file changed since it was ingested")
    assert left_with(release(watch, b"c.mp4", station), "its content differs from the archived copy")
    assert release(WatchConfig(path=inbox, device_id="TERM-3", after="keep"), b"d.mp4",
                   station) == Released(Outcome.KEPT)
    assert release(watch, b"a.mp4", station) == Released(Outcome.LEFT, "the file is gone or is not a regular file")
    assert sorted(path.name for path in inbox.iterdir()) == ["b.mp4", "c.mp4", "d.mp4"]
    assert (inbox / "c.mp4").read_bytes() == b"SAME SIZE, NEW BYTES"


def test_move_never_follows_a_planted_link(inbox: Path, tmp_path: Path, station: Station) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    watch = WatchConfig(path=inbox, stable_s=0.3, after="move")
    (inbox / "a.mp4").write_bytes(b"evidence")
    assert station.ingestor().ingest(inbox_origin(watch), paths=[b"a.mp4"]).ok
    os.symlink(elsewhere, inbox / "done")
    result = release(watch, b"a.mp4", station)
    assert left_with(result, "cannot move it")
    assert (inbox / "a.mp4").read_bytes() == b"evidence" and list(elsewhere.iterdir()) == []
