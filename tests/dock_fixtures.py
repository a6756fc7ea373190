"""Root-only fixtures for docking: a running udevd with the project's rules, card images, loops.

What a dock station sees is reproduced with the real stack: Debian's ``systemd-udevd``, loop
devices (``losetup``) carrying FAT, exFAT or ext4 card images, FUSE mounts. Every test using these
skips with the reason when the machine cannot run it (not root, a tool missing); CI runs as root
with ``scripts/test`` installing the tools, so there they run.

- ``udevd`` (session): uses the running udevd or starts one (and stops it at the end); installs
  ``config/udev/99-evidence-dock.rules`` and nothing else into /etc/udev/rules.d while the session
  lasts.
- ``make_card_image(directory, label, files, fs=..., size_mib=...)``: a card image with files.
- ``loop_devices``: ``attach(image) -> "/dev/loopN"`` and ``detach(devnode)``; at the end of the
  test, even a failed one, everything mounted under its ``runtime_dir`` or from its loops is
  unmounted and every loop it attached is detached.
- ``DaemonProcess``: ``evidence-daemon run`` as its own process, stopped with SIGTERM or killed
  with SIGKILL; ``status(runtime_dir)`` reads its status file, ``mounts_under(directory)`` lists
  what is mounted below a directory.

Load with ``pytest_plugins = ["tests.dock_fixtures"]``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from evidence_daemon.sources.mounter import parse_mountinfo

from .helpers import wait_for

PROJECT_ROOT = Path(__file__).resolve().parent.parent
RULES_SOURCE = PROJECT_ROOT / "config" / "udev" / "99-evidence-dock.rules"
RULES_INSTALLED = Path("/etc/udev/rules.d") / RULES_SOURCE.name
UDEVD = Path("/lib/systemd/systemd-udevd")

# Which Debian package gives each tool, for skip messages.
TOOL_PACKAGES = {
    "udevadm": "udev",
    "losetup": "mount",
    "mount": "mount",
    "umount": "mount",
    "mkfs.vfat": "dosfstools",
    "mcopy": "mtools",
    "fusefat": "fusefat",
    "mkfs.exfat": "exfatprogs",
    "exfatlabel": "exfatprogs",
    "mount.exfat-fuse": "exfat-fuse",
    "mkfs.ext4": "e2fsprogs",
}
IMAGE_TOOLS = {
    "vfat": ("mkfs.vfat", "mcopy"),
    "exfat": ("mkfs.exfat", "exfatlabel", "mount.exfat-fuse", "losetup", "umount"),
    "ext4": ("mkfs.ext4",),
}


def require_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root (loop devices, udevd, mounts)")


def require_tools(*tools: str) -> None:
    missing = [tool for tool in tools if shutil.which(tool) is None]
    if missing:
        packages = sorted({TOOL_PACKAGES.get(tool, tool) for tool in missing})
        pytest.skip(f"needs {', '.join(missing)} (apt-get install {' '.join(packages)})")


def _run(*argv: str, env: Mapping[str, str] | None = None, timeout_s: float = 60) -> str:
    """Run a tool; a failure fails the test with the tool's own message."""
    result = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=timeout_s,
                            stdin=subprocess.DEVNULL, check=False)
    if result.returncode != 0:
        pytest.fail(f"{' '.join(argv)} failed ({result.returncode}): {result.stderr.strip()}")
    return result.stdout


# -- udevd -----------------------------------------------------------------------------------------


def _udevd_answers() -> bool:
    result = subprocess.run(["udevadm", "control", "--ping", "--timeout=2"], capture_output=True,
                            stdin=subprocess.DEVNULL, timeout=10, check=False)
    return result.returncode == 0


@pytest.fixture(scope="session")
def udevd() -> Iterator[None]:
    """A udevd that applies the project's rules; started here only if none is running."""
    require_root()
    require_tools("udevadm", "losetup")
    started = False
    if not _udevd_answers():
        if not UDEVD.exists():
            pytest.skip(f"needs {UDEVD} (apt-get install udev)")
        # --daemon forks; its output goes nowhere so no pipe is left open behind it.
        subprocess.run([str(UDEVD), "--daemon"], stdin=subprocess.DEVNULL,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=30, check=False)
        deadline = time.monotonic() + 10
        while not _udevd_answers():
            if time.monotonic() > deadline:
                pytest.fail(f"{UDEVD} --daemon did not start answering `udevadm control --ping`")
            time.sleep(0.1)
        started = True
    previous_rules = RULES_INSTALLED.read_bytes() if RULES_INSTALLED.exists() else None
    RULES_INSTALLED.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(RULES_SOURCE, RULES_INSTALLED)
    _run("udevadm", "control", "--reload")
    try:
        yield
    finally:
        if previous_rules is None:
            RULES_INSTALLED.unlink(missing_ok=True)
        else:
            RULES_INSTALLED.write_bytes(previous_rules)
        if started:
            subprocess.run(["udevadm", "control", "--exit"], capture_output=True, timeout=30,
                           check=False)
        else:
            subprocess.run(["udevadm", "control", "--reload"], capture_output=True, timeout=30,
                           check=False)


# -- card images -------------------------------------------------------------------------------


def make_card_image(
    directory: Path,
    label: str,
    files: Mapping[str, bytes | Path],
    *,
    fs: str = "vfat",
    size_mib: int = 32,
    tz: str | None = None,
) -> Path:
    """A card image in ``directory`` with a ``fs`` filesystem labelled ``label`` holding ``files``.

    ``files`` maps paths on the card ("DCIM/100MEDIA/VID_0001.MP4") to bytes or to a file to copy
    (its mtime is kept). FAT keeps local wall-clock times: ``tz`` ("Asia/Shanghai") is the zone
    they are written in, else this process's. vfat labels have at most 11 characters, exfat 15.

    vfat and ext4 images are filled without mounting anything. exfat needs a loop device and
    exfat-fuse (root) for a moment; the label is set only afterwards, so a udev source listening
    meanwhile sees an unlabelled filesystem, not a recorder.
    """
    if fs not in IMAGE_TOOLS:
        raise ValueError(f"fs must be one of {sorted(IMAGE_TOOLS)}, got {fs!r}")
    require_tools(*IMAGE_TOOLS[fs])
    if fs == "exfat":
        require_root()
    directory.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(dir=directory, prefix=f"{label.lower() or 'card'}-",
                                    suffix=f".{fs}.img")
    os.close(handle)
    image = Path(name)
    os.truncate(image, size_mib * 1024 * 1024)
    content = Path(tempfile.mkdtemp(dir=directory, prefix="card-content-"))
    try:
        _stage(content, files)
        env = dict(os.environ, **({"TZ": tz} if tz else {}))
        if fs == "vfat":
            _run("mkfs.vfat", *(["-n", label] if label else []), str(image))
            entries = sorted(str(entry) for entry in content.iterdir())
            if entries:
                env["MTOOLS_SKIP_CHECK"] = "1"
                _run("mcopy", "-s", "-m", "-i", str(image), *entries, "::/", env=env)
        elif fs == "ext4":
            label_args = ["-L", label] if label else []
            _run("mkfs.ext4", "-q", "-F", *label_args, "-E", "root_owner=0:0", "-d", str(content),
                 str(image), env=env)
        else:
            _run("mkfs.exfat", str(image))
            if files:
                _fill_exfat(image, content, env)
            if label:
                _run("exfatlabel", str(image), label)
    finally:
        shutil.rmtree(content, ignore_errors=True)
    return image


def _stage(content: Path, files: Mapping[str, bytes | Path]) -> None:
    for rel_path, data in files.items():
        relative = Path(rel_path)
        if relative.is_absolute() or ".." in relative.parts or not relative.parts:
            raise ValueError(f"card paths are relative and stay on the card: {rel_path!r}")
        target = content / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(data, Path):
            shutil.copy2(data, target)
        else:
            target.write_bytes(data)


def _fill_exfat(image: Path, content: Path, env: Mapping[str, str]) -> None:
    devnode = loop_attach(image)
    mountpoint = Path(tempfile.mkdtemp(dir=image.parent, prefix="exfat-fill-"))
    try:
        _run("mount.exfat-fuse", devnode, str(mountpoint), env=env)
        try:
            shutil.copytree(content, mountpoint, dirs_exist_ok=True)
        finally:
            _run("umount", str(mountpoint))
    finally:
        loop_detach(devnode)
        mountpoint.rmdir()


# -- loop devices ------------------------------------------------------------------------------


def loop_attach(image: Path) -> str:
    """Attach ``image`` to a free loop device and return its node ("/dev/loop3")."""
    require_root()
    require_tools("losetup")
    return _run("losetup", "--find", "--show", str(image)).strip()


def loop_detach(devnode: str) -> None:
    """Detach a loop device; one that is already detached is fine. A busy one (still mounted)
    is detached by the kernel once its last user closes it."""
    subprocess.run(["losetup", "--detach", devnode], capture_output=True, timeout=30, check=False)


class LoopDevices:
    """Loop devices attached by one test, and the runtime directory its mounts go under."""

    def __init__(self, runtime_dir: Path) -> None:
        self.runtime_dir = runtime_dir
        self.attached: list[str] = []
        self._roots = [runtime_dir]

    def attach(self, image: Path) -> str:
        devnode = loop_attach(image)
        self.attached.append(devnode)
        return devnode

    def detach(self, devnode: str) -> None:
        loop_detach(devnode)

    def clean_mounts_under(self, directory: Path) -> None:
        """Also unmount whatever is mounted under ``directory`` at the end of the test."""
        self._roots.append(directory)

    def cleanup(self) -> None:
        roots = [os.path.realpath(root) for root in self._roots]
        ours = set(self.attached)
        mounts = parse_mountinfo(Path("/proc/self/mountinfo").read_text(encoding="utf-8",
                                                                        errors="surrogateescape"))
        for entry in reversed(mounts):
            mountpoint, source = entry.mountpoint, entry.source
            under_root = any(mountpoint == root or mountpoint.startswith(root + "/") for root in roots)
            if under_root or source in ours:
                subprocess.run(["umount", "-l", mountpoint], capture_output=True, timeout=30,
                               check=False)
        for devnode in self.attached:
            loop_detach(devnode)
        self.attached.clear()


@pytest.fixture
def loop_devices(tmp_path: Path) -> Iterator[LoopDevices]:
    """Attach card images; every loop attached and every mount made under ``runtime_dir`` is
    undone at the end of the test, whatever its outcome."""
    require_root()
    require_tools("losetup", "umount")
    devices = LoopDevices(tmp_path / "run")
    devices.runtime_dir.mkdir()
    try:
        yield devices
    finally:
        devices.cleanup()


# -- the daemon --------------------------------------------------------------------------------


def mounts_under(directory: Path) -> list[str]:
    """Mountpoints below ``directory``, as /proc/self/mountinfo lists them."""
    root = os.path.realpath(directory)
    return [entry.mountpoint for entry in parse_mountinfo(
        Path("/proc/self/mountinfo").read_text(encoding="utf-8", errors="surrogateescape"))
        if entry.mountpoint.startswith(root + "/")]


def status(runtime_dir: Path) -> dict[str, Any]:
    """The daemon's ``status.json`` (what ``evidence-daemon status`` reads); {} when absent."""
    try:
        loaded: dict[str, Any] = json.loads((runtime_dir / "status.json").read_text())
    except (OSError, ValueError):
        return {}
    return loaded


class DaemonProcess:
    """``evidence-daemon run`` in its own process: stopped with SIGTERM, or killed with SIGKILL.

    Its output goes to ``daemon.log`` beside the config, appended across restarts. It is ready
    once its status file names its own pid: a killed daemon leaves its status file behind.
    """

    def __init__(self, config: Path, runtime_dir: Path) -> None:
        self.config = config
        self.runtime_dir = runtime_dir
        self.log_path = config.parent / "daemon.log"
        self.process: subprocess.Popen[str] | None = None

    def start(self, timeout_s: float = 30) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("EVIDENCE_", "NOTIFY_"))}
        with self.log_path.open("a") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "evidence_daemon", "--config", str(self.config), "-v", "run"],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True, env=env,
            )
        self.process = process

        def ready() -> bool:
            if process.poll() is not None:
                raise AssertionError(f"the daemon exited ({process.returncode}) while starting:\n"
                                     + self.output()[-3000:])
            return status(self.runtime_dir).get("pid") == process.pid

        wait_for(ready, timeout_s, "the daemon to be ready", every_s=0.05)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self) -> int:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=120)

    def kill(self) -> None:
        """SIGKILL: no handler runs, nothing is unmounted, the status file stays."""
        assert self.process is not None
        self.process.kill()
        self.process.wait(timeout=30)

    def log_size(self) -> int:
        return self.log_path.stat().st_size if self.log_path.exists() else 0

    def output(self, since: int = 0) -> str:
        """What the daemon logged, from byte offset ``since`` (a ``log_size()`` taken earlier)."""
        if not self.log_path.exists():
            return ""
        with self.log_path.open("rb") as log:
            log.seek(since)
            return log.read().decode("utf-8", errors="replace")
