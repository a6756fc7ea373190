"""Viewing copies (evidence_daemon.media.proxy): pure decisions, then the real ffmpeg on every
format recorders and terminals produce, the queue's retries and restarts, and verify."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import sqlite3
import time
from collections.abc import Iterator
from contextlib import redirect_stderr, redirect_stdout
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable

import pytest

from evidence_daemon.archive import keys
from evidence_daemon.cli import main
from evidence_daemon.config import MediaConfig, load_config
from evidence_daemon.errors import StateError
from evidence_daemon.media import jobs, transcode
from evidence_daemon.media import proxy as px
from evidence_daemon.media.probe import probe_file
from evidence_daemon.station import open_station
from .footage import (
    ffmpeg_available,
    make_amr_nb,
    make_audio,
    make_audio_wav,
    make_jpeg,
    make_video,
    truncate_half,
)
from .helpers import write_config

needs_ffmpeg = pytest.mark.skipif(not ffmpeg_available(), reason="ffmpeg/ffprobe not installed")

SHA = "a" * 64

# ---------------------------------------------------------------------------------------------
# pure decisions


def media(format_name: str, *codec_types: str, duration_s: float | None = 2.0) -> dict[str, Any]:
    return {"format_name": format_name, "duration_s": duration_s,
            "streams": [{"codec_type": kind} for kind in codec_types]}


@pytest.mark.parametrize(
    ("summary", "expected"),
    [
        (media("mov,mp4,m4a,3gp,3g2,mj2", "video", "audio"), "video"),
        (media("avi", "video"), "video"),  # MJPEG AVI: a video, not a still
        (media("wav", "audio"), "audio"),
        (media("amr", "audio"), "audio"),
        (media("image2", "video", duration_s=None), None),  # a JPEG still
        (media("jpeg_pipe", "video"), None),
        (media("mov,mp4,m4a,3gp,3g2,mj2", "data"), None),
        (None, None),
    ],
)
def test_proxy_kind(summary: dict[str, Any] | None, expected: str | None) -> None:
    assert jobs.proxy_kind(summary) == expected


@pytest.mark.parametrize(
    ("summary", "reasons", "expected"),
    [
        (media("mp4", "video"), {}, ("pending", "video", None)),
        (media("mp3", "audio"), {}, ("pending", "audio", None)),
        (None, {"unplayable": "moov atom not found"}, ("unplayable", None, "moov atom not found")),
        (None, {"empty": "0 bytes"}, ("skipped", None, "empty file: nothing to view")),
        (media("image2", "video"), {}, ("skipped", None,
                                        "still image or no audio/video stream: viewed as is, no proxy")),
    ],
)
def test_initial_job(summary: dict[str, Any] | None, reasons: dict[str, str],
                     expected: tuple[str, str | None, str | None]) -> None:
    assert jobs.initial_job(summary, reasons) == expected


@pytest.mark.parametrize(("attempts", "expected_s"), [(1, 60), (2, 120), (3, 240), (7, 3600), (30, 3600)])
def test_backoff_doubles_up_to_a_cap(attempts: int, expected_s: float) -> None:
    assert jobs.backoff_s(attempts) == expected_s


@pytest.mark.parametrize(
    ("returncode", "reason", "is_input"),
    [
        (1, "moov atom not found; Invalid data found when processing input", True),
        (1, "Cannot determine format of input stream 0:0 after EOF", True),
        (1, "Error writing trailer: No space left on device", False),
        (1, "file:/x: Permission denied", False),
        (-9, "", False),  # killed
    ],
)
def test_failure_classification(returncode: int, reason: str, is_input: bool) -> None:
    assert transcode.is_input_failure(returncode, reason) is is_input


@pytest.mark.parametrize(
    ("niceness", "installed", "expected"),
    [
        (10, {"nice", "chrt", "ionice"}, ["nice", "-n", "10", "chrt", "--idle", "0", "ionice", "-c", "3"]),
        (5, {"nice"}, ["nice", "-n", "5"]),
        (10, set(), []),
        (0, {"nice", "chrt", "ionice"}, []),
    ],
)
def test_priority_prefix(niceness: int, installed: set[str], expected: list[str]) -> None:
    assert transcode.priority_prefix(niceness, lambda name: name if name in installed else None) == expected


def test_arguments_are_recreatable_and_capped() -> None:
    settings = MediaConfig(proxy_max_width=1280, proxy_max_height=720, proxy_video_kbps=1500)
    video = transcode.proxy_arguments("video", settings)
    assert video.count(transcode.INPUT_PLACEHOLDER) == 1 and video[-1] == transcode.OUTPUT_PLACEHOLDER
    assert {"libx264", "aac", "+faststart", "1500k"} <= set(video)
    assert any("min(1280,iw)" in arg and "min(720,ih)" in arg for arg in video)
    audio = transcode.proxy_arguments("audio", settings)
    assert "-vn" in audio and "libx264" not in audio
    filled = transcode.fill(video, Path("/in"), Path("/out"))
    assert "file:/in" in filled and filled[-1] == "file:/out"
    with pytest.raises(ValueError):
        transcode.proxy_arguments("none", settings)


def test_keys() -> None:
    assert keys.proxy_key(SHA) == f"recordings/{SHA}/proxy.mp4"
    assert keys.proxy_key(SHA, "m4a") == f"recordings/{SHA}/proxy.m4a"
    assert keys.poster_key(SHA) == f"recordings/{SHA}/poster.jpg"
    with pytest.raises(ValueError):
        keys.proxy_key(SHA, "exe")


# ---------------------------------------------------------------------------------------------
# every format, through ingest and `proxies --run`

MEDIA_SECTION = "[media]\nproxy_max_width = 256\nproxy_max_height = 240\n"


def _zero_payload(path: Path) -> Path:
    """Keep the MP4 index (at the front) but zero every media byte: ffprobe reads it, ffmpeg
    cannot decode a single frame."""
    data = bytearray(path.read_bytes())
    start = data.find(b"mdat") + 4
    data[start:] = bytes(len(data) - start)
    path.write_bytes(bytes(data))
    return path


# name -> (make the file under a directory, expected outcome)
# outcome: "video" (h264 + aac proxy.mp4 and a poster), "video-silent" (h264 only),
# "audio" (aac proxy.m4a), "skipped", or "unplayable:<part of the reason>".
FORMATS: dict[str, tuple[Callable[[Path], Path], str]] = {
    "h264-mp4": (lambda d: make_video(d / "h264.MP4"), "video"),
    "h264-mov": (lambda d: make_video(d / "h264.MOV", seconds=1.5), "video"),
    "h265-mp4": (lambda d: make_video(d / "h265.mp4", codec="libx265"), "video"),
    "h265-mov": (lambda d: make_video(d / "h265.mov", codec="libx265", seconds=1.5), "video"),
    "fragmented-mp4": (lambda d: make_video(d / "frag.mp4", movflags="frag_keyframe+empty_moov"),
                       "video"),
    "mjpeg-avi": (lambda d: make_video(d / "mjpeg.AVI", codec="mjpeg", audio_codec="pcm_s16le"),
                  "video"),
    "h264-avi": (lambda d: make_video(d / "h264.avi", audio_codec="libmp3lame"), "video"),
    "h264-mp4-no-audio": (lambda d: make_video(d / "mute.mp4", audio=False), "video-silent"),
    "wav": (lambda d: make_audio_wav(d / "voice.WAV"), "audio"),
    "mp3": (lambda d: make_audio(d / "voice.mp3", codec="libmp3lame"), "audio"),
    "amr": (lambda d: make_amr_nb(d / "voice.amr"), "audio"),
    "jpeg": (lambda d: make_jpeg(d / "photo.JPG"), "skipped"),
    "truncated-mp4": (lambda d: truncate_half(make_video(d / "cut.mp4", seconds=1.5)),
                      "unplayable:moov atom not found"),
    # A battery dying under a recorder that writes its index first (or fragments) leaves a
    # playable beginning: the proxy shows what is there.
    "truncated-faststart-mp4": (lambda d: truncate_half(make_video(d / "cutfs.mp4", faststart=True)),
                                "video"),
    "truncated-fragmented-mp4": (
        lambda d: truncate_half(make_video(d / "cutfrag.mp4", movflags="frag_keyframe+empty_moov")),
        "video-silent"),  # the one fragment's audio came after the cut
    "undecodable-mp4": (lambda d: _zero_payload(make_video(d / "zero.mp4", faststart=True)),
                        "unplayable:"),
}


def cli(*args: str) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(list(args))
    return code, out.getvalue() + err.getvalue()


@pytest.fixture(scope="module")
def batch(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    if not ffmpeg_available():
        pytest.skip("ffmpeg/ffprobe not installed")
    base = tmp_path_factory.mktemp("proxies")
    card = base / "card"
    card.mkdir()
    files = {name: make(card) for name, (make, _) in FORMATS.items()}
    config = write_config(base, extra=MEDIA_SECTION)
    originals = {name: hashlib.sha256(path.read_bytes()).hexdigest() for name, path in files.items()}
    code, output = cli("--config", str(config), "ingest", str(card))
    assert code == 0, output
    started = time.monotonic()
    code, output = cli("--config", str(config), "proxies", "--run", "--json")
    assert code == 0, output
    yield {"config": config, "base": base, "ids": originals, "run": json.loads(output),
           "seconds": time.monotonic() - started, "archive": base / "archive"}


def _jobs(config: Path) -> dict[str, sqlite3.Row]:
    connection = sqlite3.connect(config.parent / "state" / "state.sqlite3")
    connection.row_factory = sqlite3.Row
    try:
        return {row["sha256"]: row for row in connection.execute("SELECT * FROM proxy_jobs")}
    finally:
        connection.close()


def _recordings(config: Path) -> dict[str, dict[str, Any]]:
    code, output = cli("--config", str(config), "recordings", "--json")
    assert code == 0, output
    return {recording["id"]: recording for recording in json.loads(output)}


def _ledger(archive: Path, event: str) -> dict[str, dict[str, Any]]:
    found = {}
    for path in sorted((archive / "ledger").rglob("*.json")):
        entry = json.loads(path.read_text())
        if entry["event"] == event:
            found[entry["recording"]] = entry
    return found


@needs_ffmpeg
@pytest.mark.parametrize("name", list(FORMATS))
def test_each_format_gets_a_playable_proxy_or_a_reason(batch: dict[str, Any], name: str) -> None:
    expected = FORMATS[name][1]
    sha256 = batch["ids"][name]
    job = _jobs(batch["config"])[sha256]
    recording = _recordings(batch["config"])[sha256]
    prefix = batch["archive"] / "recordings" / sha256
    # the original is archived bit-exact whatever happens to its proxy
    original = next(prefix.glob("original*"))
    assert hashlib.sha256(original.read_bytes()).hexdigest() == sha256

    if expected.startswith("unplayable:"):
        assert job["state"] == "unplayable", job["last_error"]
        assert expected.split(":", 1)[1] in job["last_error"]
        assert "unplayable" in recording["flags"]
        assert recording["flag_reasons"]["unplayable"]
        assert not list(prefix.glob("proxy.*")) and not (prefix / "poster.jpg").exists()
        return
    if expected == "skipped":
        assert job["state"] == "skipped"
        assert not list(prefix.glob("proxy.*"))
        return

    assert job["state"] == "done", job["last_error"]
    assert "unplayable" not in recording["flags"]
    if expected == "audio":
        proxy = prefix / "proxy.m4a"
        assert job["poster_key"] is None and not (prefix / "poster.jpg").exists()
    else:
        proxy = prefix / "proxy.mp4"
        poster = probe_file(prefix / "poster.jpg")
        assert poster["streams"][0]["codec_name"] == "mjpeg"
    summary = probe_file(proxy)
    codecs = {stream["codec_type"]: stream for stream in summary["streams"]}
    if expected == "audio":
        assert set(codecs) == {"audio"} and codecs["audio"]["codec_name"] == "aac"
        return
    assert codecs["video"]["codec_name"] == "h264"
    # 320x240 fitted into 256x240, aspect kept
    assert (codecs["video"]["width"], codecs["video"]["height"]) == (256, 192)
    assert ("audio" in codecs) is (expected == "video")
    if "audio" in codecs:
        assert codecs["audio"]["codec_name"] == "aac"
    # faststart: the index comes before the media data
    head = proxy.read_bytes()
    assert head.find(b"moov") < head.find(b"mdat")


@needs_ffmpeg
def test_derived_events_describe_what_is_stored(batch: dict[str, Any]) -> None:
    derived = _ledger(batch["archive"], "derived")
    sha256 = batch["ids"]["h264-mp4"]
    details = derived[sha256]["details"]
    assert details["source_key"] == f"derived:{sha256}:proxy" and details["once"] is True
    assert details["ffmpeg_version"].startswith("ffmpeg version")
    stored = batch["archive"] / details["proxy"]["key"]
    assert hashlib.sha256(stored.read_bytes()).hexdigest() == details["proxy"]["sha256"]
    assert stored.stat().st_size == details["proxy"]["size_bytes"]
    assert transcode.INPUT_PLACEHOLDER in details["proxy"]["arguments"]
    poster = batch["archive"] / details["poster"]["key"]
    assert hashlib.sha256(poster.read_bytes()).hexdigest() == details["poster"]["sha256"]
    # the arguments recreate a proxy of the same kind from the original
    original = next((batch["archive"] / "recordings" / sha256).glob("original*"))
    again = batch["base"] / "again.mp4"
    transcode.FfmpegRunner(niceness=0).run(transcode.fill(details["proxy"]["arguments"], original, again), 60)
    assert probe_file(again)["streams"][0]["codec_name"] == "h264"
    # one event per recording, none for unplayable or skipped ones
    assert batch["ids"]["jpeg"] not in derived and batch["ids"]["truncated-mp4"] not in derived


@needs_ffmpeg
def test_unplayable_found_by_ffmpeg_is_flagged_in_the_ledger(batch: dict[str, Any]) -> None:
    sha256 = batch["ids"]["undecodable-mp4"]
    flagged = _ledger(batch["archive"], "flagged")
    assert flagged[sha256]["details"]["flag"] == "unplayable"
    assert flagged[sha256]["details"]["reason"] == _jobs(batch["config"])[sha256]["last_error"]
    # the ingest already recorded a truncated MP4 as unplayable: no second event
    assert batch["ids"]["truncated-mp4"] not in flagged


@needs_ffmpeg
def test_proxies_report_and_verify(batch: dict[str, Any]) -> None:
    counts = batch["run"]["counts"]
    assert counts["done"] == sum(1 for _, outcome in FORMATS.values() if outcome.startswith("video")
                                 or outcome == "audio")
    assert counts["unplayable"] == 2 and counts["skipped"] == 1 and counts["failed"] == 0
    code, output = cli("--config", str(batch["config"]), "proxies")
    assert code == 0 and "moov atom not found" in output
    code, output = cli("--config", str(batch["config"]), "verify")
    assert code == 0, output
    assert batch["seconds"] < 60


# ---------------------------------------------------------------------------------------------
# one station per test: tampering, retries, restarts, the daemon worker


@pytest.fixture
def station_dir(tmp_path: Path) -> Path:
    if not ffmpeg_available():
        pytest.skip("ffmpeg/ffprobe not installed")
    make_video(tmp_path / "card" / "a.mp4", seconds=1)
    config = write_config(tmp_path, extra=MEDIA_SECTION)
    code, output = cli("--config", str(config), "ingest", str(tmp_path / "card"))
    assert code == 0, output
    return tmp_path


def test_verify_names_the_recording_whose_proxy_changed(station_dir: Path) -> None:
    config = str(station_dir / "config.toml")
    assert cli("--config", config, "proxies", "--run")[0] == 0
    proxy = next((station_dir / "archive").rglob("proxy.mp4"))
    sha256 = proxy.parent.name
    proxy.chmod(0o644)
    data = bytearray(proxy.read_bytes())
    data[-10] ^= 0xFF
    proxy.write_bytes(bytes(data))
    code, output = cli("--config", config, "verify")
    assert code == 7
    assert f"recording {sha256[:12]}" in output and "proxy.mp4: viewing copy changed" in output
    (proxy.parent / "poster.jpg").unlink()
    code, output = cli("--config", config, "verify")
    assert "poster.jpg: named by a 'derived' event but missing" in output


class FailingRunner(transcode.FfmpegRunner):
    def __init__(self, reason: str) -> None:
        super().__init__(niceness=0)
        self.reason = reason
        self.calls = 0

    def run(self, arguments: list[str], timeout_s: float,
            pause_while: Callable[[], bool] | None = None) -> None:
        self.calls += 1
        raise transcode.ProxyEnvironmentError(self.reason)


def test_environment_failures_back_off_then_fail_then_requeue(station_dir: Path) -> None:
    now = [datetime(2026, 11, 26, 8, 0, tzinfo=timezone.utc)]
    config = load_config(station_dir / "config.toml")
    station = open_station(config, clock=lambda: now[0])
    try:
        runner = FailingRunner("Error writing trailer: No space left on device")
        maker = px.ProxyMaker(config, station.store, station.ledger, runner,
                              work_dir=config.station.state_dir / "proxy-tmp")
        worker = px.ProxyWorker(config, station.database, maker, clock=lambda: now[0])
        assert worker.run_pending() == {"pending": 1}  # attempt 1 failed: waits 60 s
        assert worker.run_pending() == {}  # not due yet
        now[0] += timedelta(seconds=61)
        assert worker.run_pending() == {"pending": 1}  # attempt 2: waits 120 s
        now[0] += timedelta(seconds=121)
        assert worker.run_pending() == {"failed": 1}  # attempt 3 of proxy_retries = 3
        assert runner.calls == 3
        report = jobs.ProxyQueue(station.database).report()
        assert report["counts"]["failed"] == 1
        assert "No space left" in report["problems"][0]["reason"]
    finally:
        station.close()
    code, output = cli("--config", str(station_dir / "config.toml"), "proxies")
    assert "failed after 3 attempt(s): Error writing trailer: No space left on device" in output
    code, output = cli("--config", str(station_dir / "config.toml"), "proxies", "--retry-failed",
                       "--run")
    assert code == 0 and "requeued 1" in output and "made now: 1 done" in output


def test_a_job_left_running_by_a_crash_is_redone(station_dir: Path) -> None:
    config = load_config(station_dir / "config.toml")
    station = open_station(config)
    try:
        queue = jobs.ProxyQueue(station.database)
        queue.enqueue_archived()
        job = queue.claim()  # ... and the process dies here
        assert job is not None
        (config.station.state_dir / "proxy-tmp" / job.sha256).mkdir(parents=True)
        worker = px.ProxyWorker.from_station(station)
        assert worker.run_pending() == {"done": 1}
        assert not any((config.station.state_dir / "proxy-tmp").iterdir())
        assert queue.report()["counts"]["done"] == 1
    finally:
        station.close()


def test_proxy_stored_before_a_crash_is_kept(station_dir: Path) -> None:
    """Killed after storing the proxy, before its event: the stored copy is described as is."""
    config = load_config(station_dir / "config.toml")
    station = open_station(config)
    try:
        worker = px.ProxyWorker.from_station(station)
        assert worker.run_pending() == {"done": 1}
        # forget the job and the event's index, as if SQLite never heard of them
        station.database.execute("DELETE FROM proxy_jobs")
        assert worker.run_pending() == {"done": 1}
        events = station.database.query("SELECT details FROM ledger WHERE event = 'derived'")
        assert len(events) == 1  # once-only: not appended twice
    finally:
        station.close()
    assert cli("--config", str(station_dir / "config.toml"), "verify")[0] == 0


def test_daemon_worker_makes_proxies_in_the_background(station_dir: Path) -> None:
    config = load_config(station_dir / "config.toml")
    station = open_station(config)
    try:
        worker = px.ProxyWorker.from_station(station, poll_s=0.05)
        worker.start()
        try:
            other = px.ProxyWorker.from_station(station)
            with pytest.raises(StateError):
                other.run_pending()  # one proxy maker per station
            deadline = time.monotonic() + 30
            while jobs.ProxyQueue(station.database).report()["counts"]["done"] < 1:
                assert time.monotonic() < deadline, "no proxy within 30 s"
                time.sleep(0.05)
        finally:
            worker.stop()
    finally:
        station.close()


def test_proxies_wait_while_files_are_being_archived(station_dir: Path) -> None:
    """A source still on its way to the archive holds new jobs back, and pauses a running
    ffmpeg (SIGSTOP) until it is archived; a source stuck for longer than the window does not."""
    now = [datetime.now(timezone.utc)]
    config = load_config(station_dir / "config.toml")
    station = open_station(config, clock=lambda: now[0])
    try:
        station.database.execute(
            "INSERT INTO sources (source_key, origin, root, rel_path, state, discovered_at,"
            " updated_at) VALUES ('k', 'dir', '/card', 'b.mp4', 'discovered', ?, ?)",
            (now[0].isoformat(), now[0].isoformat()))
        queue = jobs.ProxyQueue(station.database, lambda: now[0])
        assert queue.ingest_active()
        worker = px.ProxyWorker.from_station(station)
        assert worker.run_pending() == {}
        checks: list[bool] = []

        def busy_twice() -> bool:
            checks.append(len(checks) < 2)
            return checks[-1]

        runner = transcode.FfmpegRunner(niceness=0)
        out = station_dir / "slow.mp4"
        runner.run(["-v", "error", "-y", "-re", "-f", "lavfi", "-i",  # -re: 1.5 s of wall time
                    "testsrc2=size=320x240:rate=10:duration=1.5", "-c:v", "libx264", f"file:{out}"],
                   60, busy_twice)
        assert checks[:3] == [True, True, False]  # stopped, still stopped, continued
        assert probe_file(out)["streams"][0]["codec_name"] == "h264"
        now[0] += timedelta(seconds=jobs.INGEST_ACTIVE_WINDOW_S + 1)
        assert not queue.ingest_active()
        assert worker.run_pending() == {"done": 1}
    finally:
        station.close()


def test_proxies_off_means_no_worker(station_dir: Path) -> None:
    config = load_config(station_dir / "config.toml", overrides={"media.proxy": "false"})
    station = open_station(config)
    try:
        worker = px.ProxyWorker.from_station(station, poll_s=0.01)
        worker.start()
        time.sleep(0.1)
        worker.stop()
        assert jobs.ProxyQueue(station.database).report()["counts"]["done"] == 0
    finally:
        station.close()


def test_proxy_read_from_the_archive_when_the_spool_copy_is_gone(station_dir: Path) -> None:
    config = load_config(station_dir / "config.toml")
    shutil.rmtree(config.spool_dir / "objects", ignore_errors=True)
    code, output = cli("--config", str(station_dir / "config.toml"), "proxies", "--run")
    assert code == 0 and "1 done" in output, output
    derived = _ledger(station_dir / "archive", "derived")
    assert [event["details"]["read_from"] for event in derived.values()] == ["archive"]
