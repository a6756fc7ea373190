"""Sample footage made with the real ffmpeg, small and fast, for tests.

Everything here writes only below the path or root it is given. Videos are testsrc2 + a sine
tone, 320x240 at 10 fps, encoded with ``-preset ultrafast``: about 0.1 s per file. Output paths
are passed as ``file:<path>`` so names beginning with ``-`` or containing ``:`` work too.

Use from a test module as ``from .footage import make_video, sample_tree``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

FFMPEG = shutil.which("ffmpeg") or "ffmpeg"
FFMPEG_TIMEOUT_S = 60

# What sample_tree writes by default: 2026-11-25 08:30:00 in Shanghai (00:30:00 UTC).
SAMPLE_START_LOCAL = datetime(2026, 11, 25, 8, 30, 0)
SAMPLE_TIMEZONE = "Asia/Shanghai"
SAMPLE_DEVICE = "DSJ001"
SAMPLE_OFFICER = "10086"

# Audio codec per container when the extension says which; AAC fits mp4/mov/mkv/ts/avi.
_AUDIO_CODEC = {".wav": "pcm_s16le"}


def ffmpeg_available() -> bool:
    return shutil.which("ffmpeg") is not None and shutil.which("ffprobe") is not None


def run_ffmpeg(*args: str) -> None:
    """Run ffmpeg quietly; raise with its stderr when it fails."""
    completed = subprocess.run(
        [FFMPEG, "-hide_banner", "-nostdin", "-loglevel", "error", "-y", *args],
        capture_output=True,
        timeout=FFMPEG_TIMEOUT_S,
        check=False,
    )
    if completed.returncode != 0:
        raise RuntimeError(
            f"ffmpeg {' '.join(args)} failed: {completed.stderr.decode(errors='replace')}"
        )


def make_video(
    path: Path,
    *,
    seconds: float = 2,
    creation_time: str | None = None,
    codec: str = "libx264",
    audio: bool = True,
    faststart: bool = False,
    movflags: str | None = None,
    audio_codec: str = "aac",
    size: str = "320x240",
    rate: int = 10,
) -> Path:
    """Write a small video (container from the extension: .mp4, .MOV, .avi, .mkv, .ts, ...).

    ``creation_time`` (e.g. ``"2026-11-25T00:30:00Z"``) is written as container metadata.
    ``faststart`` moves the MP4 index to the front, as many recorders do; ``movflags`` adds
    others (``"frag_keyframe+empty_moov"``: a fragmented MP4). ``codec`` may be ``libx265``
    (H.265) or ``mjpeg`` (Motion JPEG, as in AVI recorders); ``audio_codec`` e.g. ``pcm_s16le``.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    args = [
        "-f", "lavfi", "-i", f"testsrc2=size={size}:rate={rate}:duration={seconds}",
    ]  # fmt: skip
    if audio:
        args += ["-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=16000:duration={seconds}"]
    args += ["-c:v", codec, "-pix_fmt", "yuvj420p" if codec == "mjpeg" else "yuv420p"]
    if codec == "libx264":
        args += ["-preset", "ultrafast"]
    if codec == "libx265":
        args += ["-preset", "ultrafast", "-x265-params", "log-level=error", "-tag:v", "hvc1"]
    if audio:
        args += ["-c:a", audio_codec]
        if audio_codec == "aac":
            args += ["-b:a", "32k"]
    if movflags is not None:
        args += ["-movflags", movflags]
    if creation_time is not None:
        args += ["-metadata", f"creation_time={creation_time}"]
    if faststart:
        args += ["-movflags", "+faststart"]
    run_ffmpeg(*args, f"file:{path}")
    return path


def make_audio_wav(path: Path, *, seconds: float = 1) -> Path:
    """Write a mono 16 kHz PCM WAV (what voice recorders and some terminals produce)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    run_ffmpeg(
        "-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=16000:duration={seconds}",
        "-c:a", "pcm_s16le", "-f", "wav", f"file:{path}",
    )  # fmt: skip
    return path


def make_audio(path: Path, *, codec: str = "libmp3lame", seconds: float = 1) -> Path:
    """Write mono 16 kHz audio with ``codec`` (container from the extension: .mp3, .m4a, ...)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    run_ffmpeg(
        "-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=16000:duration={seconds}",
        "-c:a", codec, f"file:{path}",
    )  # fmt: skip
    return path


def make_amr_nb(path: Path, *, seconds: float = 1) -> Path:
    """Write an AMR-NB file (``#!AMR`` + 12.2 kbit/s frames) byte by byte.

    Debian's ffmpeg decodes AMR but has no AMR encoder (no libopencore-amrnb/vo-amrwbenc
    encoders), so the frames are built here: each is a table-of-contents byte for mode 7 and
    31 bytes of (deterministic pseudo-random) speech parameters, which decode to noise.
    """
    import random

    generator = random.Random(20261126)
    frames = [
        bytes([0x3C]) + bytes(generator.getrandbits(8) for _ in range(31))
        for _ in range(int(seconds * 50))  # 20 ms per frame
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"#!AMR\n" + b"".join(frames))
    return path


def make_jpeg(path: Path) -> Path:
    """Write one 320x240 JPEG still."""
    path.parent.mkdir(parents=True, exist_ok=True)
    run_ffmpeg(
        "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=1",
        "-frames:v", "1", "-f", "image2", "-update", "1", f"file:{path}",
    )  # fmt: skip
    return path


def truncate_half(path: Path) -> Path:
    """Cut the file to half its size in place, like a recorder whose battery died mid-write."""
    size_bytes = path.stat().st_size
    with path.open("r+b") as handle:
        handle.truncate(size_bytes // 2)
    return path


def sample_tree(
    root: Path,
    *,
    start_local: datetime = SAMPLE_START_LOCAL,
    timezone: str = SAMPLE_TIMEZONE,
) -> dict[str, Path]:
    """Build a small body-camera card under ``root`` and return its files by role.

    Roles (names use ``<device>_<officer>_<YYYYMMDDhhmmss>_<seq>``, times from ``start_local``
    in ``timezone``; each file's mtime is its recording end, as a recorder leaves it):

    - ``video``: ``DCIM/100MEDIA/DSJ001_10086_<start>_0001.MP4``, 2 s, creation_time set (UTC)
    - ``video2``: ``..._0002.MP4`` 5 min later, no creation_time
    - ``truncated``: ``..._0003.MP4``, cut in half (moov atom lost)
    - ``audio``: ``RECORD/DSJ001_10086_<start>_0004.WAV``
    - ``photo``: ``PHOTO/DSJ001_10086_<start>_0005.JPG``
    - ``empty``: ``DCIM/100MEDIA/DSJ001_10086_<start>_0006.MP4``, zero bytes
    - ``garbage``: ``DCIM/100MEDIA/NOTES.MP4``, text, no pattern match
    - ``junk``: ``DCIM/100MEDIA/Thumbs.db`` (in the default skip list)
    """
    zone = ZoneInfo(timezone)

    def stamp(offset_s: float) -> str:
        return (start_local + timedelta(seconds=offset_s)).strftime("%Y%m%d%H%M%S")

    def name(offset_s: float, seq: int, extension: str) -> str:
        return f"{SAMPLE_DEVICE}_{SAMPLE_OFFICER}_{stamp(offset_s)}_{seq:04d}{extension}"

    def set_mtime(path: Path, end_offset_s: float) -> None:
        end = (start_local + timedelta(seconds=end_offset_s)).replace(tzinfo=zone)
        os.utime(path, (end.timestamp(), end.timestamp()))

    media_dir = root / "DCIM" / "100MEDIA"
    start_utc = start_local.replace(tzinfo=zone).astimezone(ZoneInfo("UTC"))
    files = {
        "video": make_video(
            media_dir / name(0, 1, ".MP4"),
            creation_time=start_utc.strftime("%Y-%m-%dT%H:%M:%SZ"),
        ),
        "video2": make_video(media_dir / name(300, 2, ".MP4")),
        "truncated": truncate_half(make_video(media_dir / name(600, 3, ".MP4"))),
        "audio": make_audio_wav(root / "RECORD" / name(900, 4, ".WAV")),
        "photo": make_jpeg(root / "PHOTO" / name(1200, 5, ".JPG")),
        "empty": media_dir / name(1500, 6, ".MP4"),
        "garbage": media_dir / "NOTES.MP4",
        "junk": media_dir / "Thumbs.db",
    }
    files["empty"].write_bytes(b"")
    files["garbage"].write_text("shift notes, not a video\n", encoding="utf-8")
    files["junk"].write_bytes(b"\xd0\xcf\x11\xe0" + bytes(60))
    for role, offset_s, seconds in (
        ("video", 0, 2),
        ("video2", 300, 2),
        ("truncated", 600, 2),
        ("audio", 900, 1),
        ("photo", 1200, 0),
        ("empty", 1500, 0),
    ):
        set_mtime(files[role], offset_s + seconds)
    return files
