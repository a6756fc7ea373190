"""Faults at the station's durable steps: a full spool, a full state disk, a stored copy that
never verified, files that change while read, a lost database. Each case records what held in
the fault matrix (``fault_log``) and asserts it: nothing lost, nothing wrongly archived, no
duplicates, and an exit code and message that tell the operator the truth."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from evidence_daemon.archive import keys
from evidence_daemon.config import load_config
from evidence_daemon.archive.factory import build_store

from .faultcheck import hashes_of, measure
from .faultlog import FaultLog
from .helpers import run_cli, run_cli_process, write_config
from .s3_fixtures import DEFAULT_SERVER, server_of_kind

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small tmpfs needs root")


@pytest.fixture
def small_tmpfs(tmp_path: Path) -> Iterator[Any]:
    """Mount tmpfs file systems of a given size; unmounted afterwards."""
    mounted: list[Path] = []

    def mount(name: str, size: str) -> Path:
        path = tmp_path / name
        path.mkdir()
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], check=True)
        mounted.append(path)
        return path

    def resize(path: Path, size: str) -> None:
        subprocess.run(["mount", "-o", f"remount,size={size}", str(path)], check=True)

    mount.resize = resize  # type: ignore[attr-defined]
    yield mount
    for path in reversed(mounted):
        subprocess.run(["umount", "-l", str(path)], check=False)


def _random_bytes(size: int, seed: int) -> bytes:
    out = bytearray()
    block = hashlib.sha256(str(seed).encode()).digest()
    while len(out) < size:
        block = hashlib.sha256(block).digest()
        out += block * 64
    return bytes(out[:size])


@needs_root
def test_a_full_spool_never_stores_a_short_copy_and_the_next_run_archives_it(
    tmp_path: Path, small_tmpfs: Any, fault_log: FaultLog
) -> None:
    spool = small_tmpfs("spool", "19m")
    card = tmp_path / "card"
    card.mkdir()
    big = card / "DSJ001_10086_20261125083000_0001.MP4"
    big.write_bytes(_random_bytes(20_000_000, 1))
    small = card / "small.mp4"
    small.write_bytes(_random_bytes(1_000_000, 2))
    sources = hashes_of([big, small])
    config = write_config(tmp_path, extra=f'[ingest]\nspool_dir = "{spool}"\nprobe = false\n')

    first = run_cli_process("--config", str(config), "ingest", str(card))
    assert first.returncode == 5, first.stderr
    assert "the spool" in first.stderr and "is full" in first.stderr
    assert "not archived: not copied, the spool is full" in first.stdout
    store = build_store(load_config(config))
    stored = [key for key in store.list_keys("recordings/") if sources[big] in key]
    assert stored == []  # never a short copy under the recording's name
    assert list((spool / "incoming").iterdir()) == []
    after_full = measure(config, sources)
    assert after_full.wrongly_archived == 0 and after_full.files_lost == 0

    small_tmpfs.resize(spool, "64m")
    second = run_cli_process("--config", str(config), "ingest", str(card))
    assert second.returncode == 0, second.stderr
    recovered = measure(config, sources)
    assert recovered.archived == 2 and recovered.duplicates == 0
    assert run_cli_process("--config", str(config), "verify").returncode == 0
    fault_log("ENOSPC on the spool", "20,000,000-byte file into a 19 MiB tmpfs spool, then space freed",
              injected_by="tmpfs -o size=19m as ingest.spool_dir; remount size=64m",
              files_lost=recovered.files_lost, wrongly_archived=after_full.wrongly_archived,
              duplicates=recovered.duplicates, exit_code=first.returncode,
              message=first.stderr.strip().splitlines()[-2])


def test_a_short_write_is_completed_or_fails_never_ignored(tmp_path: Path) -> None:
    """RLIMIT_FSIZE makes write() store fewer bytes than asked, then fail: the same short
    write a nearly full disk gives, without root."""
    import resource
    import signal

    from evidence_daemon.errors import IngestError
    from evidence_daemon.ingest.spool import Spool, SpoolFullError

    source = tmp_path / "clip.mp4"
    data = _random_bytes(6 * 1024 * 1024 + 123, 3)
    source.write_bytes(data)
    spool = Spool(tmp_path / "spool", chunk_bytes=4 * 1024 * 1024)
    spool.prepare()
    info = source.stat()
    old_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (5 * 1024 * 1024, hard))
    try:
        with pytest.raises(SpoolFullError) as raised:
            spool.copy_in(os.fsencode(source), 1, expected_size=info.st_size,
                          expected_mtime_ns=info.st_mtime_ns)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, old_handler)
    assert isinstance(raised.value, IngestError)
    assert "is full" in raised.value.message
    assert list((tmp_path / "spool" / "incoming").iterdir()) == []
    copied = spool.copy_in(os.fsencode(source), 1, expected_size=info.st_size,
                           expected_mtime_ns=info.st_mtime_ns)
    assert copied.size_bytes == len(data)
    assert copied.sha256 == hashlib.sha256(data).hexdigest()


def _plant_bad_original(store: Any, sha256: str, data: bytes) -> str:
    """What the old short-write bug left: a truncated copy under the recording's name, with no
    manifest and no custody event naming it."""
    key = keys.original_key(sha256, "mp4")
    if hasattr(store, "root"):
        path = store.root / key
        path.parent.mkdir(parents=True)
        path.write_bytes(data)
        path.chmod(0o444)
    else:
        store.client.put_object(store.bucket, key, io.BytesIO(data), len(data),
                                metadata={"sha256": sha256})
    return key


@pytest.mark.parametrize("backend", [
    "filesystem", pytest.param("s3", marks=pytest.mark.s3),
    pytest.param("s3-rgw", marks=[pytest.mark.s3, pytest.mark.rgw])])
def test_a_stored_copy_that_never_verified_is_set_aside_and_the_good_copy_archived(
    tmp_path: Path, backend: str, request: pytest.FixtureRequest,
    capsys: pytest.CaptureFixture[str], fault_log: FaultLog,
) -> None:
    card = tmp_path / "card"
    card.mkdir()
    clip = card / "clip.mp4"
    data = _random_bytes(7_000_000, 4)
    clip.write_bytes(data)
    sha256 = hashlib.sha256(data).hexdigest()
    if backend.startswith("s3"):
        server = server_of_kind(request, "rgw" if backend == "s3-rgw" else DEFAULT_SERVER)
        config = write_config(tmp_path, archive=server.archive_settings(server.make_bucket()),
                              extra="[ingest]\nprobe = false\n")
    else:
        config = write_config(tmp_path, extra="[ingest]\nprobe = false\n")
    store = build_store(load_config(config))
    store.check()
    key = _plant_bad_original(store, sha256, data[:5_000_000])

    code, out, err = run_cli(capsys, "--config", str(config), "ingest", str(card))
    assert code == 0, out + err
    assert "archived (new recordings)" in out
    stored = b"".join(store.iter_chunks(key))
    assert stored == data
    entries = [json.loads(store.get_bytes(k)) for k in store.list_keys("ledger/")]
    aside = [e for e in entries if e["event"] == "set-aside"]
    assert len(aside) == 1
    details = aside[0]["details"]
    assert details["found_sha256"] == hashlib.sha256(data[:5_000_000]).hexdigest()
    assert details["found_size_bytes"] == 5_000_000
    if backend == "filesystem":
        kept = store.root / details["set_aside_as"]
        assert kept.read_bytes() == data[:5_000_000]  # set aside, never deleted
    else:
        assert details["set_aside_as"].startswith("version ")
        old = store.client.get_object(store.bucket, key, version_id=details["version_id"])
        assert old.read() == data[:5_000_000]
        old.close()
        old.release_conn()
    code, out, _ = run_cli(capsys, "--config", str(config), "verify")
    assert code == 0, out
    measured = measure(config, {clip: sha256})
    assert (measured.archived, measured.duplicates, measured.wrongly_archived) == (1, 0, 0)
    fault_log("stored copy never verified", f"truncated original already at the key ({backend})",
              injected_by="5 of 7 MB written under recordings/<sha>/original.mp4, no manifest",
              files_lost=measured.files_lost, wrongly_archived=measured.wrongly_archived,
              duplicates=measured.duplicates, exit_code=code,
              message=f"set aside as {details['set_aside_as']}")


def test_a_bad_original_with_a_manifest_is_tampering_and_stays(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], fault_log: FaultLog
) -> None:
    card = tmp_path / "card"
    card.mkdir()
    clip = card / "clip.mp4"
    clip.write_bytes(_random_bytes(300_000, 5))
    config = write_config(tmp_path, extra="[ingest]\nprobe = false\n")
    assert run_cli(capsys, "--config", str(config), "ingest", str(card))[0] == 0
    sha256 = hashlib.sha256(clip.read_bytes()).hexdigest()
    archive = tmp_path / "archive"
    original = archive / keys.original_key(sha256, "mp4")
    original.chmod(0o644)
    original.write_bytes(b"forged")
    # The station forgets everything but its key (restored from backup): it must not
    # "repair" evidence it once archived.
    shutil.copytree(tmp_path / "state" / "keys", tmp_path / "key-backup")
    shutil.rmtree(tmp_path / "state")
    shutil.copytree(tmp_path / "key-backup", tmp_path / "state" / "keys")
    code, out, err = run_cli(capsys, "--config", str(config), "ingest", str(card))
    assert code != 0
    assert original.read_bytes() == b"forged"  # kept for the examiner, not set aside
    assert not (archive / "rejected").exists()
    assert "tampering" in out + err
    assert "1 file(s) are not archived" in err  # counted once, though it stays in the spool
    fault_log("stored copy never verified", "altered original that a manifest names",
              injected_by="original overwritten after archival, state dir lost",
              files_lost=0, wrongly_archived=0, duplicates=0, exit_code=code,
              message=(out + err).strip().splitlines()[-1])


def test_a_spool_copy_damaged_after_it_was_made_is_read_again_not_archived(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], fault_log: FaultLog
) -> None:
    card = tmp_path / "card"
    card.mkdir()
    clip = card / "clip.mp4"
    clip.write_bytes(_random_bytes(2_000_000, 6))
    sha256 = hashlib.sha256(clip.read_bytes()).hexdigest()
    config = write_config(tmp_path, archive={"backend": "filesystem", "path": str(tmp_path / "gone")},
                          extra="[ingest]\nprobe = false\n")
    (tmp_path / "gone").write_text("not a directory: the archive is away")
    code, _, _ = run_cli(capsys, "--config", str(config), "ingest", str(card))
    assert code == 6
    spooled = tmp_path / "state" / "spool" / "objects" / sha256
    spooled.chmod(0o644)
    with spooled.open("r+b") as handle:
        handle.truncate(1_000_000)  # a bad sector, a fsck: the spool copy is no longer whole
    (tmp_path / "gone").unlink()

    code, out, err = run_cli(capsys, "--config", str(config), "ingest", str(card))
    assert code == 5, out + err
    assert "spool copy is damaged" in out
    assert not spooled.exists()
    archive = tmp_path / "gone"
    assert not any(p.name.startswith("original") for p in archive.rglob("*"))
    code, out, err = run_cli(capsys, "--config", str(config), "ingest", str(card))
    assert code == 0, out + err
    measured = measure(config, {clip: sha256})
    assert (measured.archived, measured.duplicates, measured.wrongly_archived) == (1, 0, 0)
    fault_log("spool copy damaged", "spool copy truncated while the archive was away",
              injected_by="truncate objects/<sha> between runs", files_lost=measured.files_lost,
              wrongly_archived=measured.wrongly_archived, duplicates=measured.duplicates,
              exit_code=5, message="spool copy is damaged (1000000 of 2000000 bytes)")


def _sum_of_outcomes(out: str) -> int:
    """The file counts of an ingest summary's outcome lines."""
    total = 0
    for line in out.splitlines():
        parts = line.split(maxsplit=1)
        if len(parts) == 2 and parts[0].isdigit() and not parts[1].startswith("MB"):
            total += int(parts[0])
    return total


def test_every_file_of_a_run_is_counted_once_after_an_outage_and_after_a_lost_database(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], fault_log: FaultLog
) -> None:
    card = tmp_path / "card"
    card.mkdir()
    for index in range(32):
        (card / f"clip{index:02d}.mp4").write_bytes(_random_bytes(20_000 + index, 100 + index))
    for index in range(8):  # the same content under another name: duplicates
        shutil.copy(card / f"clip{index:02d}.mp4", card / f"copy{index:02d}.mp4")
    sources = hashes_of(sorted(card.iterdir()))
    away = tmp_path / "away"
    away.write_text("the archive is not mounted")
    config = write_config(tmp_path, archive={"backend": "filesystem", "path": str(away)},
                          extra="[ingest]\nprobe = false\n")
    code, out, err = run_cli(capsys, "--config", str(config), "ingest", str(card))
    assert code == 6, err
    assert "40  waiting in the spool for the archive" in out
    assert "no files found" not in out

    (tmp_path / "empty-dir").mkdir()
    code, out, err = run_cli(capsys, "--config", str(config), "ingest", str(tmp_path / "empty-dir"))
    assert code == 6
    assert "40  waiting in the spool for the archive" in out and "no files found" not in out

    away.unlink()
    code, out, err = run_cli(capsys, "--config", str(config), "ingest", str(card))
    assert code == 0, err
    assert "32  archived (new recordings)" in out
    assert "8  duplicates of archived content" in out
    assert "already archived earlier" not in out
    assert _sum_of_outcomes(out) == 40
    outage = measure(config, sources)
    assert (outage.archived, outage.duplicates, outage.wrongly_archived) == (40, 0, 0)
    fault_log("archive unreachable", "archive away at start: 40 files spooled, then archived",
              injected_by="archive path is a plain file", files_lost=outage.files_lost,
              wrongly_archived=outage.wrongly_archived, duplicates=outage.duplicates,
              exit_code=6, message="40 file(s) are safe in the spool but not yet archived")

    database = load_config(config).database_path
    for extra in ("", "-wal", "-shm"):
        Path(f"{database}{extra}").unlink(missing_ok=True)
    code, out, err = run_cli(capsys, "--config", str(config), "ingest", str(card))
    assert code == 0, err
    assert "32  already in the archive (verified again, nothing stored twice)" in out
    assert "archived (new recordings)" not in out
    assert _sum_of_outcomes(out) == 40
    lost_db = measure(config, sources)
    assert (lost_db.archived, lost_db.duplicates, lost_db.wrongly_archived) == (40, 0, 0)
    fault_log("corrupted or deleted SQLite", "state database deleted, card docked again",
              injected_by="rm evidence.sqlite3", files_lost=lost_db.files_lost,
              wrongly_archived=lost_db.wrongly_archived, duplicates=lost_db.duplicates,
              exit_code=code, message=out.splitlines()[1].strip())


@pytest.mark.parametrize("change", ["appended", "truncated", "replaced"])
def test_a_file_changed_while_read_is_not_archived_and_the_run_says_so(
    tmp_path: Path, change: str, fault_log: FaultLog
) -> None:
    from evidence_daemon.cli.ingest import _ingest_exit
    from evidence_daemon.ingest.pipeline import Origin
    from evidence_daemon.station import open_station

    card = tmp_path / "card"
    card.mkdir()
    clip = card / "clip.mp4"
    clip.write_bytes(_random_bytes(12 * 1024 * 1024, 7))
    config_path = write_config(tmp_path, extra="[ingest]\nprobe = false\ncopy_chunk_kib = 1024\n")
    config = load_config(config_path)
    changed = []

    def progress(event: str, info: dict[str, Any]) -> None:
        if event == "bytes" and not changed:
            changed.append(True)
            if change == "appended":
                with clip.open("ab") as handle:
                    handle.write(b"more")
            elif change == "truncated":
                os.truncate(clip, 2 * 1024 * 1024)
            else:
                replacement = card / "new.tmp"
                replacement.write_bytes(_random_bytes(12 * 1024 * 1024, 8))
                os.utime(replacement, ns=(1, 1))
                os.replace(replacement, clip)

    station = open_station(config)
    try:
        summary = station.ingestor().ingest(Origin(card), progress=progress)
    finally:
        station.close()
    err = io.StringIO()
    code = _ingest_exit(summary, err)
    store = build_store(config)
    if change == "replaced":
        # The open file is the old inode, read whole and unchanged: that copy is consistent
        # and archived; the new file under the name is another source, taken next time.
        assert code == 0 and summary.not_archived == 0
        assert len([k for k in store.list_keys("recordings/") if "original" in k]) == 1
    else:
        assert code == 5
        assert summary.not_archived == 1
        assert any("changed while being read" in reason for _, reason in summary.problems)
        assert [k for k in store.list_keys("recordings/")] == []
    # The next run reads the file as it now is, and archives it.
    final = run_cli_process("--config", str(config_path), "ingest", str(card))
    assert final.returncode == 0, final.stderr
    measured = measure(config_path, hashes_of([clip]))
    assert (measured.archived, measured.wrongly_archived, measured.duplicates) == (1, 0, 0)
    fault_log("source changed while read", f"file {change} during the copy",
              injected_by="progress callback changes the file after the first chunk",
              files_lost=measured.files_lost, wrongly_archived=measured.wrongly_archived,
              duplicates=measured.duplicates, exit_code=code,
              message=(err.getvalue().strip().splitlines() or ["(exit 0: the open copy was whole)"])[0])


@needs_root
def test_a_full_state_disk_stops_the_run_with_exit_3_and_nothing_is_lost(
    tmp_path: Path, small_tmpfs: Any, fault_log: FaultLog
) -> None:
    state = small_tmpfs("state", "2m")
    card = tmp_path / "card"
    card.mkdir()
    for index in range(40):
        (card / f"clip{index:02d}.mp4").write_bytes(_random_bytes(50_000, 200 + index))
    sources = hashes_of(sorted(card.iterdir()))
    config = write_config(tmp_path, extra=(
        f'[ingest]\nspool_dir = "{tmp_path / "spool"}"\nprobe = false\n'))
    text = config.read_text().replace(f'state_dir = "{tmp_path / "state"}"', f'state_dir = "{state}"')
    config.write_text(text)
    first = run_cli_process("--config", str(config), "ingest", str(card))
    assert first.returncode == 3, first.stdout + first.stderr
    assert "database or disk is full (the disk of" in first.stderr
    during = measure(config, sources)
    assert during.wrongly_archived == 0 and during.duplicates == 0

    small_tmpfs.resize(state, "32m")
    second = run_cli_process("--config", str(config), "ingest", str(card))
    assert second.returncode == 0, second.stderr
    assert _sum_of_outcomes(second.stdout) == 40
    recovered = measure(config, sources)
    assert (recovered.archived, recovered.duplicates, recovered.wrongly_archived) == (40, 0, 0)
    assert run_cli_process("--config", str(config), "verify").returncode == 0
    fault_log("ENOSPC on the state database", "40 files, state_dir on a 2 MiB tmpfs, then enlarged",
              injected_by="tmpfs -o size=2m as station.state_dir; remount size=32m",
              files_lost=recovered.files_lost, wrongly_archived=during.wrongly_archived,
              duplicates=recovered.duplicates, exit_code=first.returncode,
              message=first.stderr.strip().splitlines()[-1])


@needs_root
def test_a_full_archive_disk_leaves_files_in_the_spool_then_archives_them(
    tmp_path: Path, small_tmpfs: Any, fault_log: FaultLog
) -> None:
    archive = small_tmpfs("archive", "3m")
    card = tmp_path / "card"
    card.mkdir()
    for index in range(10):
        (card / f"clip{index:02d}.mp4").write_bytes(_random_bytes(500_000, 300 + index))
    sources = hashes_of(sorted(card.iterdir()))
    config = write_config(tmp_path, archive={"backend": "filesystem", "path": str(archive)},
                          extra="[ingest]\nprobe = false\n")
    first = run_cli_process("--config", str(config), "ingest", str(card))
    assert first.returncode in (5, 6), first.stdout + first.stderr
    assert "No space left on device" in first.stdout + first.stderr, first.stdout + first.stderr
    during = measure(config, sources)
    assert during.wrongly_archived == 0 and during.duplicates == 0
    assert during.archived < 10

    small_tmpfs.resize(archive, "64m")
    second = run_cli_process("--config", str(config), "ingest", str(card))
    assert second.returncode == 0, second.stdout + second.stderr
    recovered = measure(config, sources)
    assert (recovered.archived, recovered.duplicates, recovered.wrongly_archived) == (10, 0, 0)
    assert run_cli_process("--config", str(config), "verify").returncode == 0
    fault_log("ENOSPC on the filesystem archive", "10 × 500 kB into a 3 MiB archive, then enlarged",
              injected_by="tmpfs -o size=3m as archive.path; remount size=64m",
              files_lost=recovered.files_lost, wrongly_archived=during.wrongly_archived,
              duplicates=recovered.duplicates, exit_code=first.returncode,
              message=first.stderr.strip().splitlines()[-1])


def test_a_corrupted_state_database_is_named_kept_and_rebuilt_once_moved_aside(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], fault_log: FaultLog
) -> None:
    card = tmp_path / "card"
    card.mkdir()
    for index in range(5):
        (card / f"clip{index}.mp4").write_bytes(_random_bytes(10_000, 400 + index))
    sources = hashes_of(sorted(card.iterdir()))
    config = write_config(tmp_path, extra="[ingest]\nprobe = false\n")
    assert run_cli(capsys, "--config", str(config), "ingest", str(card))[0] == 0
    database = load_config(config).database_path
    garbage = _random_bytes(16_384, 9)
    database.write_bytes(garbage)
    for extra in ("-wal", "-shm"):
        Path(f"{database}{extra}").unlink(missing_ok=True)

    code, out, refusal = run_cli(capsys, "--config", str(config), "ingest", str(card))
    assert code == 3
    assert f"{database}: file is not a database (the file is damaged. Move it aside" in refusal
    assert database.read_bytes() == garbage  # never "repaired" or deleted by the station
    database.rename(f"{database}.damaged")
    code, out, err = run_cli(capsys, "--config", str(config), "ingest", str(card))
    assert code == 0, err
    assert "5  already in the archive" in out
    measured = measure(config, sources)
    assert (measured.archived, measured.duplicates, measured.wrongly_archived) == (5, 0, 0)
    fault_log("corrupted or deleted SQLite", "state database overwritten with random bytes",
              injected_by="16 KiB of random bytes over state.sqlite3", files_lost=measured.files_lost,
              wrongly_archived=measured.wrongly_archived, duplicates=measured.duplicates,
              exit_code=3, message=refusal.strip().splitlines()[-1][:200])


@pytest.mark.parametrize("rows", ["all", "last-3"])
def test_a_lost_ledger_index_is_read_back_from_the_archive_never_appended_twice(
    tmp_path: Path, rows: str, capsys: pytest.CaptureFixture[str], fault_log: FaultLog
) -> None:
    import sqlite3

    card = tmp_path / "card"
    card.mkdir()
    for index in range(4):
        (card / f"clip{index}.mp4").write_bytes(_random_bytes(10_000, 500 + index))
    config = write_config(tmp_path, extra="[ingest]\nprobe = false\n")
    assert run_cli(capsys, "--config", str(config), "ingest", str(card))[0] == 0
    database = load_config(config).database_path
    with sqlite3.connect(database) as conn:
        if rows == "all":
            conn.execute("DELETE FROM ledger")
        else:
            conn.execute("DELETE FROM ledger WHERE seq > (SELECT MAX(seq) - 3 FROM ledger)")
        # the sources forget too, so the same files are taken again and their events retried
        conn.execute("DELETE FROM sources")
        conn.execute("DELETE FROM recordings")
    for index in range(4, 6):
        (card / f"clip{index}.mp4").write_bytes(_random_bytes(10_000, 500 + index))
    sources = hashes_of(sorted(card.iterdir()))
    code, out, err = run_cli(capsys, "--config", str(config), "ingest", str(card))
    assert code == 0, err
    measured = measure(config, sources)
    assert (measured.archived, measured.duplicates, measured.wrongly_archived) == (6, 0, 0)
    assert run_cli(capsys, "--config", str(config), "verify")[0] == 0
    fault_log("corrupted or deleted SQLite", f"ledger index lost ({rows} rows) and queue forgotten",
              injected_by=f"DELETE FROM ledger ({rows}), sources, recordings",
              files_lost=measured.files_lost, wrongly_archived=measured.wrongly_archived,
              duplicates=measured.duplicates, exit_code=code,
              message=out.splitlines()[1].strip())


@needs_root
@pytest.mark.slow
@pytest.mark.parametrize("target", ["archive", "state", "spool"])
def test_enospc_at_every_durable_step(
    tmp_path: Path, target: str, small_tmpfs: Any, fault_log: FaultLog
) -> None:
    """The disk fills at a different byte each case, so ENOSPC strikes each durable step in
    turn: spool copy and its fsync, the original, the manifest, each ledger entry, the public
    key, each SQLite commit. Then space is given back and the same command finishes."""
    sizes = {"archive": list(range(4, 124, 4)), "state": list(range(16, 400, 32)),
             "spool": list(range(4, 44, 4))}[target]
    steps_hit: dict[str, int] = {}
    worst = {"lost": 0, "wrong": 0, "dup": 0}
    codes: set[int] = set()
    for case, size_kib in enumerate(sizes):
        root = tmp_path / f"case{case}"
        card = root / "card"
        card.mkdir(parents=True)
        for index in range(3):
            (card / f"clip{index}.mp4").write_bytes(_random_bytes(12_000, 600 + index))
        sources = hashes_of(sorted(card.iterdir()))
        disk = small_tmpfs(f"{target}{case}", f"{size_kib}k")
        archive = disk if target == "archive" else root / "archive"
        config = write_config(root, archive={"backend": "filesystem", "path": str(archive)},
                              extra=f'[ingest]\nprobe = false\nspool_dir = '
                                    f'"{disk if target == "spool" else root / "spool"}"\n')
        if target == "state":
            text = config.read_text().replace(f'state_dir = "{root / "state"}"', f'state_dir = "{disk}"')
            config.write_text(text)
        first = run_cli_process("--config", str(config), "ingest", str(card))
        codes.add(first.returncode)
        if first.returncode != 0:
            assert first.returncode in (3, 5, 6, 7), first.stdout + first.stderr
            assert "space" in (first.stdout + first.stderr).lower() or "is full" in first.stderr, \
                first.stdout + first.stderr
            step = _step_of(first.stdout + first.stderr)
            steps_hit[step] = steps_hit.get(step, 0) + 1
        try:
            during = measure(config, sources)
        except Exception:  # the archive's own key or ledger may be half there: read after
            during = None
        small_tmpfs.resize(disk, "64m")
        second = run_cli_process("--config", str(config), "ingest", str(card))
        assert second.returncode == 0, f"{target} at {size_kib} KiB:\n{first.stderr}\n{second.stdout}{second.stderr}"
        after = measure(config, sources)
        assert after.archived == 3 and after.duplicates == 0 and after.wrongly_archived == 0, \
            f"{target} at {size_kib} KiB: {after}"
        verify = run_cli_process("--config", str(config), "verify")
        assert verify.returncode == 0, f"{target} at {size_kib} KiB: {verify.stdout}"
        worst["lost"] = max(worst["lost"], after.files_lost)
        worst["wrong"] = max(worst["wrong"], during.wrongly_archived if during else 0)
        worst["dup"] = max(worst["dup"], after.duplicates)
    # The sweep really moved the failure between steps in the archive (the spool and the state
    # have one kind each that needs space: the copy, an SQLite commit).
    assert len(steps_hit) >= (2 if target == "archive" else 1), steps_hit
    fault_log(f"ENOSPC on the {'filesystem archive' if target == 'archive' else 'state database' if target == 'state' else 'spool'}",
              f"sweep: {len(sizes)} disk sizes {sizes[0]}–{sizes[-1]} KiB, 3 files of 12 kB",
              injected_by="tmpfs of each size, then remounted at 64 MiB and run again",
              files_lost=worst["lost"], wrongly_archived=worst["wrong"], duplicates=worst["dup"],
              exit_code=max(codes),
              message="failed at: " + ", ".join(f"{step} ×{n}" for step, n in sorted(steps_hit.items()))
                      + f"; exit codes {sorted(codes)}")


def _step_of(output: str) -> str:
    """Which durable step the disk filled at, from the first thing the operator was told."""
    lines = [line for line in output.splitlines() if "space" in line.lower() or "full" in line]
    for needle, step in (("public key", "public key"), ("ledger/", "ledger entry"),
                         ("manifest.json", "manifest"), ("/original", "original"),
                         ("cannot make the spool copy durable", "spool fsync"),
                         ("spool", "spool copy"), ("state database", "SQLite commit"),
                         (".staging", "archive temp file")):
        if lines and needle in lines[0]:
            return step
    return lines[0][:80] if lines else "other"
