"""Recording facts an auditor reads (time, place, camera) from real files, and that a proxy made
with the recorded arguments keeps them."""

from __future__ import annotations

from pathlib import Path

import pytest

from evidence_daemon.config import MediaConfig
from evidence_daemon.media import transcode
from evidence_daemon.media.probe import probe_file
from .footage import ffmpeg_available, run_ffmpeg

pytestmark = pytest.mark.skipif(not ffmpeg_available(), reason="ffmpeg/ffprobe not installed")

SOURCE = ["-f", "lavfi", "-i", "testsrc2=size=320x240:rate=10:duration=1",
          "-f", "lavfi", "-i", "sine=sample_rate=16000:duration=1",
          "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac", "-b:a", "32k"]


def test_android_style_mp4_location_and_time(tmp_path: Path) -> None:
    path = tmp_path / "VID_20261125_083000.mp4"
    run_ffmpeg(*SOURCE, "-metadata", "location=+31.2304+121.4737/",
               "-metadata", "creation_time=2026-11-25T00:30:00Z", f"file:{path}")
    summary = probe_file(path)
    assert summary["creation_time"] == "2026-11-25T00:30:00+00:00"
    assert summary["tags"]["location"] == "+31.2304+121.4737/"
    video, audio = summary["streams"]
    assert (video["codec_name"], video["width"], video["height"], video["frame_rate"]) == (
        "h264", 320, 240, 10.0)
    assert (audio["codec_name"], audio["sample_rate"], audio["channels"]) == ("aac", 16000, 1)
    assert summary["duration_s"] == pytest.approx(1.0, abs=0.1)


def test_quicktime_mov_location_make_model_survive_into_the_proxy(tmp_path: Path) -> None:
    path = tmp_path / "IMG_0001.MOV"
    run_ffmpeg(*SOURCE, "-movflags", "use_metadata_tags",
               "-metadata", "com.apple.quicktime.location.ISO6709=+31.2304+121.4737+004.000/",
               "-metadata", "com.apple.quicktime.make=Apple",
               "-metadata", "com.apple.quicktime.model=iPhone 15",
               "-metadata", "creation_time=2026-11-25T00:30:00Z", f"file:{path}")
    tags = probe_file(path)["tags"]
    assert tags["com.apple.quicktime.location.ISO6709"] == "+31.2304+121.4737+004.000/"
    assert (tags["com.apple.quicktime.make"], tags["com.apple.quicktime.model"]) == ("Apple", "iPhone 15")

    proxy = tmp_path / "proxy.mp4"
    transcode.FfmpegRunner(niceness=0).run(
        transcode.fill(transcode.proxy_arguments("video", MediaConfig()), path, proxy), 60)
    # -map_metadata 0: the viewing copy still says when it was recorded
    assert probe_file(proxy)["creation_time"] == "2026-11-25T00:30:00+00:00"
