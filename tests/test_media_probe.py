"""ffprobe adapter (evidence_daemon.media.probe): pure summary tables, then the real ffprobe."""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path
from typing import Any

import pytest

from evidence_daemon.errors import MediaError
from evidence_daemon.media.probe import MAX_TAG_CHARS, error_reason, probe_file, summarize
from .footage import (
    ffmpeg_available,
    make_audio_wav,
    make_jpeg,
    make_video,
    sample_tree,
    truncate_half,
)

needs_ffmpeg = pytest.mark.skipif(not ffmpeg_available(), reason="ffmpeg/ffprobe not installed")

CREATION_TIME = "2026-11-25T00:30:00Z"

# ---------------------------------------------------------------------------------------------
# summarize(): hand-written ffprobe JSON


def stream(**fields: Any) -> dict[str, Any]:
    return {"index": 0, **fields}


EMPTY_STREAM = {
    "index": 0,
    "codec_type": None,
    "codec_name": None,
    "width": None,
    "height": None,
    "frame_rate": None,
    "sample_rate": None,
    "channels": None,
    "duration_s": None,
}


@pytest.mark.parametrize(
    ("probe_json", "expected"),
    [
        pytest.param(
            {
                "format": {
                    "format_name": "mov,mp4,m4a,3gp,3g2,mj2",
                    "duration": "2.000000",
                    "size": "106197",
                    "bit_rate": "424788",
                    "tags": {
                        "major_brand": "isom",
                        "creation_time": "2026-11-25T00:30:00.000000Z",
                        "encoder": "Lavf59.27.100",
                    },
                },
                "streams": [
                    {
                        "index": 0, "codec_type": "video", "codec_name": "h264",
                        "width": 320, "height": 240, "avg_frame_rate": "30000/1001",
                        "r_frame_rate": "30000/1001", "duration": "2.000000",
                    },
                    {
                        "index": 1, "codec_type": "audio", "codec_name": "aac",
                        "sample_rate": "16000", "channels": 1, "avg_frame_rate": "0/0",
                        "duration": "1.984000",
                    },
                ],
            },
            {
                "format_name": "mov,mp4,m4a,3gp,3g2,mj2",
                "duration_s": 2.0,
                "bit_rate": 424788,
                "size_bytes": 106197,
                "creation_time": "2026-11-25T00:30:00+00:00",
                "streams": [
                    {
                        **EMPTY_STREAM, "codec_type": "video", "codec_name": "h264",
                        "width": 320, "height": 240, "frame_rate": 30000 / 1001,
                        "duration_s": 2.0,
                    },
                    {
                        **EMPTY_STREAM, "index": 1, "codec_type": "audio", "codec_name": "aac",
                        "sample_rate": 16000, "channels": 1, "duration_s": 1.984,
                    },
                ],
                "tags": {"encoder": "Lavf59.27.100"},
            },
            id="mp4",
        ),
        pytest.param(
            {
                "format": {
                    "format_name": "matroska,webm",
                    "duration": "2.064000",
                    "tags": {
                        "ENCODER": "Lavf59.27.100",
                        "CREATION_TIME": "2026-11-25T08:30:00+08:00",
                    },
                },
                "streams": [
                    stream(codec_type="video", codec_name="h264", avg_frame_rate="10/1",
                           tags={"DURATION": "00:00:02.000000000"}),
                    stream(index=1, codec_type="audio", codec_name="aac",
                           tags={"DURATION": "01:02:03.5"}),
                ],
            },
            {
                "format_name": "matroska,webm",
                "duration_s": 2.064,
                "bit_rate": None,
                "size_bytes": None,
                "creation_time": "2026-11-25T00:30:00+00:00",
                "streams": [
                    {**EMPTY_STREAM, "codec_type": "video", "codec_name": "h264",
                     "frame_rate": 10.0, "duration_s": 2.0},
                    {**EMPTY_STREAM, "index": 1, "codec_type": "audio", "codec_name": "aac",
                     "duration_s": 3723.5},
                ],
                "tags": {"encoder": "Lavf59.27.100"},
            },
            id="matroska: upper-case tags, DURATION tag, offset normalised to UTC",
        ),
        pytest.param(
            {
                "format": {
                    "format_name": "mov,mp4,m4a,3gp,3g2,mj2",
                    "duration": "N/A",
                    "bit_rate": "N/A",
                    "size": "12",
                    "tags": {
                        "com.apple.quicktime.make": "Apple",
                        "com.apple.quicktime.model": "iPhone 15",
                        "com.apple.quicktime.location.ISO6709": "+31.2304+121.4737+004.000/",
                        "com.apple.quicktime.creationdate": "2026-11-25T08:30:00+0800",
                        "location": "+31.2304+121.4737/",
                        "location-eng": "+31.2304+121.4737/",
                        "make": "",
                        "comment": "not kept",
                    },
                },
                "streams": [
                    stream(codec_type="video", codec_name="hevc", avg_frame_rate="0/0",
                           duration="N/A", width="N/A",
                           tags={"creation_time": "2026-11-25T00:30:00.000000Z"}),
                ],
            },
            {
                "format_name": "mov,mp4,m4a,3gp,3g2,mj2",
                "duration_s": None,
                "bit_rate": None,
                "size_bytes": 12,
                "creation_time": "2026-11-25T00:30:00+00:00",
                "streams": [{**EMPTY_STREAM, "codec_type": "video", "codec_name": "hevc"}],
                "tags": {
                    "location": "+31.2304+121.4737/",
                    "location-eng": "+31.2304+121.4737/",
                    "com.apple.quicktime.make": "Apple",
                    "com.apple.quicktime.model": "iPhone 15",
                    "com.apple.quicktime.location.ISO6709": "+31.2304+121.4737+004.000/",
                    "com.apple.quicktime.creationdate": "2026-11-25T08:30:00+0800",
                },
            },
            id="phone: apple tags, N/A values, creation_time only on the stream",
        ),
        pytest.param(
            {"format": {"format_name": "wav", "tags": {"creation_time": "yesterday"}}},
            {
                "format_name": "wav",
                "duration_s": None,
                "bit_rate": None,
                "size_bytes": None,
                "creation_time": None,
                "streams": [],
                "tags": {},
            },
            id="unparseable creation_time, no streams",
        ),
        pytest.param(
            {},
            {
                "format_name": None,
                "duration_s": None,
                "bit_rate": None,
                "size_bytes": None,
                "creation_time": None,
                "streams": [],
                "tags": {},
            },
            id="empty",
        ),
        pytest.param(
            {
                "format": {"format_name": 7, "duration": "-1", "size": "1e3", "bit_rate": True,
                           "tags": ["not", "a", "mapping"]},
                "streams": [
                    "not a stream",
                    stream(avg_frame_rate="25", sample_rate="44.1", channels="２",
                           duration="inf", height=-1, width=True),
                ],
            },
            {
                "format_name": None,
                "duration_s": None,
                "bit_rate": None,
                "size_bytes": None,
                "creation_time": None,
                "streams": [
                    {**EMPTY_STREAM, "index": None},
                    {**EMPTY_STREAM, "frame_rate": 25.0, "height": -1},
                ],
                "tags": {},
            },
            id="odd shapes and values do not crash",
        ),
    ],
)  # fmt: skip
def test_summarize(probe_json: dict[str, Any], expected: dict[str, Any]) -> None:
    assert summarize(probe_json) == expected


def test_summarize_bounds_tag_values() -> None:
    summary = summarize({"format": {"tags": {"model": "M" * 1_000_000}}})
    assert summary["tags"] == {"model": "M" * MAX_TAG_CHARS}


@pytest.mark.parametrize(
    ("stderr", "url", "expected"),
    [
        (
            b"[mov,mp4,m4a,3gp,3g2,mj2 @ 0x559a8da121c0] moov atom not found\n"
            b"file:/cards/x.mp4: Invalid data found when processing input\n",
            "file:/cards/x.mp4",
            "moov atom not found; Invalid data found when processing input",
        ),
        (
            b"file:a: b.mp4: Invalid data found when processing input\n",
            "file:a: b.mp4",
            "Invalid data found when processing input",
        ),
        (b"file:x.mp4: No such file or directory\n", "file:x.mp4", "No such file or directory"),
        (b"one\ntwo\n\n  \nthree\nthree\n", "", "two; three"),
        (b"", "file:x", ""),
        (b"file:\xff.mp4: Invalid data\n", "file:\udcff.mp4", "Invalid data"),
        (b"\xff\xfe broken\n", "", "\ufffd\ufffd broken"),
    ],
)
def test_error_reason(stderr: bytes, url: str, expected: str) -> None:
    assert error_reason(stderr, url) == expected


def test_error_reason_is_bounded() -> None:
    assert len(error_reason(b"x" * 10_000)) <= 300


# ---------------------------------------------------------------------------------------------
# probe_file(): the real ffprobe on footage made by the real ffmpeg


@pytest.fixture(scope="module")
def footage(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not ffmpeg_available():
        pytest.skip("ffmpeg/ffprobe not installed")
    root = tmp_path_factory.mktemp("footage")
    make_video(root / "clip.mp4", creation_time=CREATION_TIME)
    return root


@needs_ffmpeg
def test_playable_mp4(footage: Path) -> None:
    summary = probe_file(footage / "clip.mp4")
    assert summary["format_name"] == "mov,mp4,m4a,3gp,3g2,mj2"
    assert summary["duration_s"] == pytest.approx(2.0, abs=0.1)
    assert summary["size_bytes"] == (footage / "clip.mp4").stat().st_size
    assert summary["creation_time"] == "2026-11-25T00:30:00+00:00"
    assert [(s["codec_type"], s["codec_name"]) for s in summary["streams"]] == [
        ("video", "h264"),
        ("audio", "aac"),
    ]
    video, audio = summary["streams"]
    assert (video["width"], video["height"], video["frame_rate"]) == (320, 240, 10.0)
    assert (audio["sample_rate"], audio["channels"], audio["frame_rate"]) == (16000, 1, None)


@needs_ffmpeg
@pytest.mark.parametrize("name", ["clip.AVI", "clip.mkv", "clip.MOV", "clip.ts"])
def test_other_containers(tmp_path: Path, name: str) -> None:
    summary = probe_file(make_video(tmp_path / name, seconds=1))
    assert {s["codec_type"] for s in summary["streams"]} == {"video", "audio"}
    assert summary["duration_s"] == pytest.approx(1.0, abs=0.2)


@needs_ffmpeg
def test_mp4_without_creation_time(tmp_path: Path) -> None:
    assert probe_file(make_video(tmp_path / "plain.mp4", seconds=1))["creation_time"] is None


@needs_ffmpeg
def test_truncated_mp4_gives_a_reason(tmp_path: Path) -> None:
    clip = truncate_half(make_video(tmp_path / "cut.mp4"))
    with pytest.raises(MediaError, match="moov atom not found") as caught:
        probe_file(clip)
    assert str(tmp_path) not in str(caught.value)


@needs_ffmpeg
def test_truncated_faststart_mp4_still_probes(tmp_path: Path) -> None:
    # With the index at the front, ffprobe reads only headers: half the file is gone and it
    # still reports the full duration. A successful probe does not prove a file is whole.
    clip = truncate_half(make_video(tmp_path / "cut.mp4", faststart=True))
    assert probe_file(clip)["duration_s"] == pytest.approx(2.0, abs=0.1)


@needs_ffmpeg
def test_random_bytes_named_mp4(tmp_path: Path) -> None:
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(os.urandom(4096))
    with pytest.raises(MediaError, match="Invalid data found when processing input"):
        probe_file(junk)


@needs_ffmpeg
def test_text_that_probes_without_streams(tmp_path: Path) -> None:
    # ffprobe accepts an FFMETADATA text file as a "format" with zero streams.
    text = tmp_path / "meta.mp4"
    text.write_text(";FFMETADATA1\ntitle=not a video\n", encoding="utf-8")
    with pytest.raises(MediaError, match="^no audio or video streams$"):
        probe_file(text)


@needs_ffmpeg
def test_subtitles_only_are_not_audio_or_video(tmp_path: Path) -> None:
    srt = tmp_path / "notes.mp4"
    srt.write_text("1\n00:00:00,000 --> 00:00:01,000\nhello\n", encoding="utf-8")
    with pytest.raises(MediaError, match="^no audio or video streams$"):
        probe_file(srt)


@needs_ffmpeg
def test_concat_list_pretending_to_be_mp4_is_refused(footage: Path, tmp_path: Path) -> None:
    # Without the check, ffprobe would report clip.mp4's streams for this text file.
    shutil.copy(footage / "clip.mp4", tmp_path / "clip.mp4")
    playlist = tmp_path / "evil.mp4"
    playlist.write_text("ffconcat version 1.0\nfile clip.mp4\n", encoding="utf-8")
    with pytest.raises(MediaError, match="concat playlist"):
        probe_file(playlist)


@needs_ffmpeg
def test_hls_playlist_cannot_reach_the_network(tmp_path: Path) -> None:
    playlist = tmp_path / "evil.mp4"
    playlist.write_text(
        "#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXTINF:1,\nhttp://127.0.0.1:9/x.ts\n#EXT-X-ENDLIST\n",
        encoding="utf-8",
    )
    with pytest.raises(MediaError):
        probe_file(playlist, timeout_s=20)


@needs_ffmpeg
@pytest.mark.parametrize(
    "name",
    ["-i.mp4", "--help.mp4", "http:evil.mp4", "concat:a.mp4", "a b;c'd\".mp4", "执法记录.mp4"],
)
def test_hostile_names_are_read_as_plain_files(footage: Path, tmp_path: Path, name: str) -> None:
    copy = tmp_path / name
    shutil.copy(footage / "clip.mp4", copy)
    assert probe_file(copy)["duration_s"] == pytest.approx(2.0, abs=0.1)


@needs_ffmpeg
def test_relative_name_starting_with_dash(
    footage: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shutil.copy(footage / "clip.mp4", tmp_path / "-y.mp4")
    monkeypatch.chdir(tmp_path)
    assert probe_file(Path("-y.mp4"))["format_name"] == "mov,mp4,m4a,3gp,3g2,mj2"


@needs_ffmpeg
def test_non_utf8_name(footage: Path, tmp_path: Path) -> None:
    odd = Path(os.fsdecode(os.fsencode(tmp_path) + b"/\xff\xfe.mp4"))
    shutil.copy(footage / "clip.mp4", odd)
    assert probe_file(odd)["duration_s"] == pytest.approx(2.0, abs=0.1)


@needs_ffmpeg
def test_percent_name_is_not_an_image_sequence(tmp_path: Path) -> None:
    # Without -pattern_type none, ffprobe looks for shot000.jpg ... instead of this file.
    photo = make_jpeg(tmp_path / "shot.jpg").rename(tmp_path / "shot%03d.jpg")
    summary = probe_file(photo)
    assert summary["streams"][0]["codec_name"] == "mjpeg"


@needs_ffmpeg
def test_wav(tmp_path: Path) -> None:
    summary = probe_file(make_audio_wav(tmp_path / "talk.wav", seconds=1))
    assert summary["format_name"] == "wav"
    assert summary["duration_s"] == pytest.approx(1.0, abs=0.05)
    assert summary["streams"] == [
        {
            "index": 0,
            "codec_type": "audio",
            "codec_name": "pcm_s16le",
            "width": None,
            "height": None,
            "frame_rate": None,
            "sample_rate": 16000,
            "channels": 1,
            "duration_s": pytest.approx(1.0, abs=0.05),
        }
    ]


@needs_ffmpeg
def test_jpeg_is_a_one_frame_video(tmp_path: Path) -> None:
    summary = probe_file(make_jpeg(tmp_path / "still.JPG"))
    assert [(s["codec_type"], s["codec_name"]) for s in summary["streams"]] == [("video", "mjpeg")]


@needs_ffmpeg
def test_empty_file(tmp_path: Path) -> None:
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    with pytest.raises(MediaError, match=r"^empty file \(0 bytes\)$"):
        probe_file(empty)


@needs_ffmpeg
def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(MediaError, match="No such file or directory"):
        probe_file(tmp_path / "gone.mp4")


@needs_ffmpeg
@pytest.mark.parametrize("kind", ["directory", "fifo"])
def test_not_a_regular_file(tmp_path: Path, kind: str) -> None:
    # A FIFO would block ffprobe until the timeout; it is refused before ffprobe runs.
    target = tmp_path / "thing.mp4"
    if kind == "directory":
        target.mkdir()
    else:
        os.mkfifo(target)
    with pytest.raises(MediaError, match="^not a regular file$"):
        probe_file(target)


def test_timeout_kills_a_stuck_ffprobe(tmp_path: Path) -> None:
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"x")
    stuck = tmp_path / "stuck-ffprobe"
    stuck.write_text("#!/bin/sh\nexec sleep 30\n", encoding="utf-8")
    stuck.chmod(stuck.stat().st_mode | stat.S_IXUSR)
    with pytest.raises(MediaError, match=r"did not finish within 0\.5 s"):
        probe_file(clip, timeout_s=0.5, ffprobe_cmd=str(stuck))


def test_missing_ffprobe(tmp_path: Path) -> None:
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"x")
    with pytest.raises(MediaError, match="cannot run"):
        probe_file(clip, ffprobe_cmd=str(tmp_path / "no-such-ffprobe"))


@needs_ffmpeg
def test_sample_tree(tmp_path: Path) -> None:
    files = sample_tree(tmp_path)
    assert files["video"] == tmp_path / "DCIM/100MEDIA/DSJ001_10086_20261125083000_0001.MP4"
    assert probe_file(files["video"])["creation_time"] == "2026-11-25T00:30:00+00:00"
    assert probe_file(files["video2"])["creation_time"] is None
    assert probe_file(files["audio"])["format_name"] == "wav"
    assert probe_file(files["photo"])["streams"][0]["codec_name"] == "mjpeg"
    for role in ("truncated", "empty", "garbage"):
        with pytest.raises(MediaError):
            probe_file(files[role])
    # mtime is the recording end: 08:30:02 Shanghai = 00:30:02 UTC
    assert files["video"].stat().st_mtime == 1795566602
