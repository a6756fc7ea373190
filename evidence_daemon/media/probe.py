"""Read a media file's facts with ffprobe, and reduce them to the summary kept in the manifest.

``probe_file`` is the adapter (runs ffprobe); ``summarize`` is pure and turns ffprobe's JSON
into a small, JSON-able summary. Both must never modify, move or "repair" the file: probing is
read-only, and a file that cannot be probed is still evidence (the caller archives it with the
reason carried by ``MediaError``).

ffprobe is run directly with ``subprocess`` rather than through ``ffmpeg.probe`` (ffmpeg-python):
the arguments are the same, but ``ffmpeg.probe`` has no timeout, and a FIFO, a hung USB read or a
hostile file would otherwise block an ingest worker forever.

Input is hostile until proven otherwise, so ffprobe is told to read exactly one local file:

- the path is passed as ``file:<path>``, so a name beginning with ``-`` is not an option and a
  name containing ``:`` is not a protocol (``http:``, ``concat:``, ...);
- ``-protocol_whitelist file``: a playlist inside the file (HLS, DASH) cannot reach the network;
- ``-pattern_type none``: a name containing ``%d`` or ``*`` is not an image-sequence pattern
  (otherwise the image2 demuxer probes *other* files, e.g. ``img001.jpg`` for ``img%03d.jpg``);
- formats that describe other files (an ffconcat list named ``.mp4`` probes as the file it
  lists) are refused, so a summary always describes the bytes that are archived.
"""

from __future__ import annotations

import json
import math
import re
import stat
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..errors import MediaError
from ..ingest.timing import parse_iso_time
from ..i18n import _

DEFAULT_TIMEOUT_S = 60.0

# Demuxers whose "streams" come from other files named inside this one.
REFERENCING_FORMATS = frozenset({"concat", "hls", "dash"})

# Tags worth keeping for an auditor (who made the recording, where); the rest of ffprobe's
# tags (handler names, brands) say nothing about the evidence.
KEPT_TAGS = (
    "make",
    "model",
    "location",
    "location-eng",
    "com.apple.quicktime.make",
    "com.apple.quicktime.model",
    "com.apple.quicktime.location.ISO6709",
    "com.apple.quicktime.creationdate",
    "encoder",
)
# A hostile file can carry megabytes in one tag; the manifest keeps a bounded prefix (the
# original, with every byte of the tag, is archived anyway).
MAX_TAG_CHARS = 1024
MAX_REASON_CHARS = 300

_LOG_PREFIX = re.compile(r"^\[[^\]]*@ 0x[0-9a-fA-F]+\]\s*")  # "[mov,mp4,... @ 0x55d...] "


def probe_file(
    path: Path,
    *,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    ffprobe_cmd: str = "ffprobe",
) -> dict[str, Any]:
    """Probe ``path`` and return ``summarize`` of ffprobe's output.

    Raises ``MediaError`` with a short reason when the path is not a non-empty regular file,
    ffprobe cannot read it or does not finish within ``timeout_s``, it has no audio or video
    stream, or it is a playlist of other files.
    """
    # ffprobe's reasons for these are misleading ("moov atom not found" for an empty .mp4) or
    # missing (it blocks forever on a FIFO), so they are named before ffprobe runs.
    try:
        file_stat = path.stat()
    except OSError as exc:
        raise MediaError(_("cannot read file: {value}").format(value=exc.strerror or exc)) from exc
    if not stat.S_ISREG(file_stat.st_mode):
        raise MediaError(_("not a regular file"))
    if file_stat.st_size == 0:
        raise MediaError(_("empty file (0 bytes)"))

    url = f"file:{path}"
    args = [
        ffprobe_cmd,
        "-v", "error",
        "-hide_banner",
        "-protocol_whitelist", "file",
        "-pattern_type", "none",
        "-show_format",
        "-show_streams",
        "-of", "json",
        url,
    ]  # fmt: skip
    try:
        completed = subprocess.run(
            args,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=timeout_s,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:  # run() has already killed ffprobe
        raise MediaError(_("ffprobe did not finish within {timeout_s:g} s").format(
            timeout_s=timeout_s)) from exc
    except OSError as exc:
        raise MediaError(_("cannot run {ffprobe_cmd}: {value}").format(
            ffprobe_cmd=ffprobe_cmd, value=exc.strerror or exc)) from exc

    if completed.returncode != 0:
        raise MediaError(
            error_reason(completed.stderr, url)
            or f"ffprobe failed with exit status {completed.returncode}"
        )
    try:
        probe_json = json.loads(completed.stdout.decode("utf-8", errors="replace"))
    except ValueError as exc:
        raise MediaError(_("ffprobe printed output that is not JSON")) from exc
    if not isinstance(probe_json, dict):
        raise MediaError(_("ffprobe printed output that is not a JSON object"))

    summary = summarize(probe_json)
    if summary["format_name"] in REFERENCING_FORMATS:
        raise MediaError(
            _("a {format_name} playlist that refers to other files, not a recording").format(
                format_name=summary['format_name'])
        )
    if not any(stream["codec_type"] in ("audio", "video") for stream in summary["streams"]):
        raise MediaError(_("no audio or video streams"))
    return summary


def error_reason(stderr: bytes, url: str = "") -> str:
    """The short human reason in ffprobe's stderr: its last two distinct meaningful lines.

    ffprobe says what went wrong in the demuxer's line ("moov atom not found") and then the
    generic result ("Invalid data found when processing input"); both help, nothing else does.
    Log prefixes (``[mov,mp4 @ 0x...]``) and the file name (``file:<path>:``) are removed.
    """
    # surrogateescape decodes a non-UTF-8 file name the way os.fsdecode did for ``url``, so the
    # prefix still matches; the result is then made printable for logs and JSON.
    text = stderr.decode("utf-8", errors="surrogateescape")
    reasons: list[str] = []
    for raw_line in text.splitlines():
        line = _LOG_PREFIX.sub("", raw_line.strip())
        if url and line.startswith(url + ":"):
            line = line[len(url) + 1 :].strip()
        line = line.encode("utf-8", errors="surrogateescape").decode("utf-8", errors="replace")
        if line and line not in reasons:
            reasons.append(line)
    reason = "; ".join(reasons[-2:])
    if len(reason) > MAX_REASON_CHARS:
        reason = reason[: MAX_REASON_CHARS - 3] + "..."
    return reason


def summarize(probe_json: Mapping[str, Any]) -> dict[str, Any]:
    """Reduce ``ffprobe -show_format -show_streams -of json`` output to a JSON-able summary.

    Keys: ``format_name``, ``duration_s``, ``bit_rate``, ``size_bytes``, ``creation_time``
    (ISO 8601 in UTC, ``+00:00``), ``streams`` (``index``, ``codec_type``, ``codec_name``,
    ``width``, ``height``, ``frame_rate``, ``sample_rate``, ``channels``, ``duration_s``) and
    ``tags`` (the ``KEPT_TAGS`` present). Values ffprobe leaves out or reports as ``N/A`` are
    ``None``. Never raises for odd input: unknown shapes become ``None``.
    """
    format_info = _mapping(probe_json.get("format"))
    format_tags = _mapping(format_info.get("tags"))
    raw_streams = probe_json.get("streams")
    streams = [
        _mapping(stream) for stream in (raw_streams if isinstance(raw_streams, list) else [])
    ]
    return {
        "format_name": _text(format_info.get("format_name")),
        "duration_s": _float(format_info.get("duration")),
        "bit_rate": _int(format_info.get("bit_rate")),
        "size_bytes": _int(format_info.get("size")),
        "creation_time": _creation_time(format_tags, streams),
        "streams": [_summarize_stream(stream) for stream in streams],
        "tags": _kept_tags(format_tags),
    }


def _summarize_stream(stream: Mapping[str, Any]) -> dict[str, Any]:
    tags = _mapping(stream.get("tags"))
    duration_s = _float(stream.get("duration"))
    if duration_s is None:
        # Matroska keeps per-stream durations only as a "DURATION" tag (HH:MM:SS.nnnnnnnnn).
        duration_s = _clock_duration(_tag(tags, "DURATION"))
    return {
        "index": _int(stream.get("index")),
        "codec_type": _text(stream.get("codec_type")),
        "codec_name": _text(stream.get("codec_name")),
        "width": _int(stream.get("width")),
        "height": _int(stream.get("height")),
        "frame_rate": _rate(stream.get("avg_frame_rate")),
        "sample_rate": _int(stream.get("sample_rate")),
        "channels": _int(stream.get("channels")),
        "duration_s": duration_s,
    }


def _creation_time(
    format_tags: Mapping[str, Any], streams: list[Mapping[str, Any]]
) -> str | None:
    # The container's own time first; some recorders set it only on the streams.
    candidates = [_tag(format_tags, "creation_time")]
    candidates += [_tag(_mapping(stream.get("tags")), "creation_time") for stream in streams]
    for candidate in candidates:
        parsed = parse_iso_time(candidate)
        if parsed is not None:
            return parsed.isoformat()
    return None


def _kept_tags(tags: Mapping[str, Any]) -> dict[str, str]:
    kept: dict[str, str] = {}
    for name in KEPT_TAGS:
        value = _tag(tags, name)
        if value is not None:
            kept[name] = value[:MAX_TAG_CHARS]
    return kept


def _tag(tags: Mapping[str, Any], name: str) -> str | None:
    # Tag case differs by container: MP4 "encoder", Matroska "ENCODER".
    value = tags.get(name)
    if value is None:
        lowered = name.lower()
        value = next((v for k, v in tags.items() if str(k).lower() == lowered), None)
    return value if isinstance(value, str) and value else None


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _float(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = float(value)  # ffprobe prints most numbers as strings ("2.000000", "N/A")
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) and number >= 0 else None


def _int(value: Any) -> int | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return value
    text = value.strip() if isinstance(value, str) else ""
    if text.isascii() and text.isdigit():
        try:
            return int(text)
        except ValueError:  # more digits than int() accepts from a string: nonsense anyway
            return None
    return None


def _rate(value: Any) -> float | None:
    """``"30000/1001"`` -> 29.97; ``"0/0"`` (audio, or unknown) -> None."""
    if not isinstance(value, str):
        return None
    numerator, _, denominator = value.partition("/")
    top, bottom = _float(numerator), _float(denominator or "1")
    if top is None or bottom is None or top == 0 or bottom == 0:
        return None
    return top / bottom


def _clock_duration(value: str | None) -> float | None:
    match = re.fullmatch(r"(\d+):([0-5]\d):([0-5]\d(?:\.\d+)?)", value or "")
    if match is None:
        return None
    hours, minutes, seconds = match.groups()
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds)
