"""ffmpeg for viewing copies: its argument lists (pure), and a runner that keeps it out of
ingest's way.

The argument builders are pure functions of the settings, with ``{input}``/``{output}``
standing for the file names (the ``derived`` ledger event records them so). ``FfmpegRunner``
runs ffmpeg ``nice``d in the idle CPU and I/O classes, with a timeout, stops it (SIGSTOP) while
``pause_while()`` is true, and classifies each failure once: ``ProxyInputError`` when the bytes
cannot be decoded (the same bytes give the same result), ``ProxyEnvironmentError`` when this
machine failed (retry later).

What must never happen: ffmpeg given a name it could read as a URL or an option (inputs are
``file:`` paths with ``protocol_whitelist=file``); a stopped ffmpeg left stopped.
"""

from __future__ import annotations

import logging
import shutil
import signal
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ffmpeg  # ffmpeg-python: builds the argument lists

from ..config import MediaConfig
from ..errors import EvidenceError, MediaError
from .jobs import ProxyKind
from .probe import error_reason
from ..i18n import _

log = logging.getLogger(__name__)

PAUSE_CHECK_S = 0.5
# ffmpeg reasons that describe this machine, not the recording: worth retrying.
ENVIRONMENT_MARKERS = ("no space left", "cannot allocate memory", "permission denied",
                       "no such file or directory", "resource temporarily unavailable",
                       "input/output error", "read-only file system")
INPUT_PLACEHOLDER = "{input}"
OUTPUT_PLACEHOLDER = "{output}"


class ProxyInputError(MediaError):
    """ffmpeg could not make a playable copy of these bytes: the recording is unplayable."""


class ProxyEnvironmentError(MediaError):
    """The proxy could not be made for a reason outside the recording: retry later."""

# -- pure decisions -----------------------------------------------------------------------

def is_input_failure(returncode: int, reason: str) -> bool:
    """ffmpeg exited with an error about the recording (not killed, not a machine problem)."""
    if returncode < 0:  # killed by a signal: stopped, or out of memory
        return False
    lowered = reason.lower()
    return not any(marker in lowered for marker in ENVIRONMENT_MARKERS)
def scale_filter(max_width: int, max_height: int) -> str:
    """Fit inside max_width x max_height, keep the aspect ratio, never enlarge, even sizes."""
    return (f"scale=w='min({max_width},iw)':h='min({max_height},ih)'"
            ":force_original_aspect_ratio=decrease:force_divisible_by=2")
def proxy_arguments(kind: ProxyKind, settings: MediaConfig) -> list[str]:
    """ffmpeg's arguments (after the program name) for a proxy, with placeholders for files."""
    audio = {"c:a": "aac", "b:a": f"{settings.proxy_audio_kbps}k", "ac": 2}
    output: dict[str, Any]
    if kind == ProxyKind.VIDEO:
        video_kbps = settings.proxy_video_kbps
        output = {
            "vf": scale_filter(settings.proxy_max_width, settings.proxy_max_height),
            "c:v": "libx264", "preset": "veryfast", "crf": 23, "profile:v": "high",
            "pix_fmt": "yuv420p", "maxrate": f"{video_kbps}k", "bufsize": f"{2 * video_kbps}k",
            **audio, "sn": None, "dn": None, "map_metadata": 0, "movflags": "+faststart",
            "f": "mp4",
        }
    elif kind == ProxyKind.AUDIO:
        output = {**audio, "vn": None, "sn": None, "dn": None, "map_metadata": 0,
                  "movflags": "+faststart", "f": "ipod"}
    else:
        raise ValueError(_("no proxy for kind {kind!r}").format(kind=kind))
    stream = ffmpeg.input(INPUT_PLACEHOLDER, protocol_whitelist="file").output(
        OUTPUT_PLACEHOLDER, **output)
    return ["-hide_banner", "-nostdin", "-v", "error", "-y", *stream.get_args()]
def poster_arguments(at_s: float, max_width: int, max_height: int) -> list[str]:
    """ffmpeg's arguments for one JPEG frame at ``at_s`` seconds of the (proxy) input."""
    stream = ffmpeg.input(INPUT_PLACEHOLDER, ss=f"{at_s:.3f}", protocol_whitelist="file").output(
        OUTPUT_PLACEHOLDER, vf=scale_filter(max_width, max_height), **{"frames:v": 1, "q:v": 3},
        update=1, f="image2")
    return ["-hide_banner", "-nostdin", "-v", "error", "-y", *stream.get_args()]
def priority_prefix(niceness: int, which: Callable[[str], str | None]) -> list[str]:
    """Commands that lower ffmpeg's priority so ingest never waits for it: ``nice``, then the
    idle CPU scheduling class (``chrt --idle``: runs only on otherwise idle CPU time) and the
    idle I/O class (``ionice -c 3``), each when installed. ``niceness`` 0 means none at all."""
    if niceness <= 0:
        return []
    prefix = ["nice", "-n", str(niceness)] if which("nice") else []
    if which("chrt"):
        prefix += ["chrt", "--idle", "0"]
    if which("ionice"):
        prefix += ["ionice", "-c", "3"]
    return prefix
def fill(arguments: list[str], input_path: Path, output_path: Path) -> list[str]:
    return [f"file:{input_path}" if arg == INPUT_PLACEHOLDER else
            f"file:{output_path}" if arg == OUTPUT_PLACEHOLDER else arg for arg in arguments]
# -- running ffmpeg -----------------------------------------------------------------------

class FfmpegRunner:
    """Runs ffmpeg ``nice``d, with a timeout; ``stop()`` ends the ones running."""

    def __init__(self, ffmpeg_cmd: str = "ffmpeg", *, niceness: int = 10) -> None:
        self.ffmpeg_cmd = ffmpeg_cmd
        self.niceness = niceness
        self._running: set[subprocess.Popen[bytes]] = set()
        self._lock = threading.Lock()
        self._stopped = False
        self._version: str | None = None

    def version(self) -> str:
        if self._version is None:
            try:
                completed = subprocess.run([self.ffmpeg_cmd, "-version"], capture_output=True,
                                           timeout=30, check=False)
            except (OSError, subprocess.TimeoutExpired) as exc:
                raise ProxyEnvironmentError(_("cannot run {ffmpeg_cmd}: {exc}").format(
                    ffmpeg_cmd=self.ffmpeg_cmd, exc=exc)) from exc
            first = completed.stdout.decode("utf-8", "replace").splitlines()
            self._version = first[0].strip() if first else "unknown"
        return self._version

    def run(self, arguments: list[str], timeout_s: float,
            pause_while: Callable[[], bool] | None = None) -> None:
        """Raise ``ProxyInputError`` or ``ProxyEnvironmentError`` when ffmpeg fails.

        While ``pause_while()`` is true (checked every ``PAUSE_CHECK_S``) ffmpeg is stopped
        (SIGSTOP) and continued after; paused time does not count towards ``timeout_s``.
        """
        command = [*priority_prefix(self.niceness, shutil.which), self.ffmpeg_cmd, *arguments]
        with self._lock:
            if self._stopped:
                raise ProxyEnvironmentError(_("stopping"))
            try:
                process = subprocess.Popen(command, stdin=subprocess.DEVNULL,
                                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            except OSError as exc:
                raise ProxyEnvironmentError(_("cannot run {ffmpeg_cmd}: {strerror}").format(
                    ffmpeg_cmd=self.ffmpeg_cmd, strerror=exc.strerror)) from exc
            self._running.add(process)
        active_s, paused = 0.0, False
        try:
            while True:
                try:
                    _output, stderr = process.communicate(timeout=PAUSE_CHECK_S)
                    break
                except subprocess.TimeoutExpired:
                    pass
                active_s += 0.0 if paused else PAUSE_CHECK_S
                if active_s > timeout_s:
                    process.kill()
                    process.communicate()
                    raise ProxyEnvironmentError(_("ffmpeg did not finish within {timeout_s:g} s").format(
                        timeout_s=timeout_s))
                busy = _safely(pause_while)
                if busy != paused:
                    process.send_signal(signal.SIGSTOP if busy else signal.SIGCONT)
                    paused = busy
        finally:
            if paused and process.poll() is None:
                process.send_signal(signal.SIGCONT)
            with self._lock:
                self._running.discard(process)
        if process.returncode != 0:
            reason = error_reason(stderr) or f"ffmpeg failed with exit status {process.returncode}"
            if is_input_failure(process.returncode, reason):
                raise ProxyInputError(reason)
            raise ProxyEnvironmentError(reason)

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
            for process in self._running:
                process.terminate()
                process.send_signal(signal.SIGCONT)  # a paused ffmpeg must see its SIGTERM
def _safely(check: Callable[[], bool] | None) -> bool:
    if check is None:
        return False
    try:
        return check()
    except EvidenceError as exc:  # cannot tell: let ffmpeg run rather than stall forever
        log.warning(_("proxy worker: %s"), exc.message)
        return False
