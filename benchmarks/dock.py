"""Shift change: N recorders docked at once, archived by the running daemon, beside the raw
parallel read of the same N devices (issue 14).

Usage (from the repository root, as root)::

    .venv/bin/python benchmarks/dock.py [--cards 1,4,8,16] [--files 3] [--file-mb 40]
                                        [--fs vfat,exfat] [--s3-cards 1,4,8] [--rate-mbs 30]
                                        [--settle-s S] [--no-proxy] [--workdir DIR]
                                        [--out docs/performance.md]
                                        [--results benchmarks/results/dock.json]

Set-up, once: ``--files`` playable H.264/AAC clips of about ``--file-mb`` MB are made with
ffmpeg (``tests/footage.py``'s ``run_ffmpeg``; noise keeps the bitrate of a real 1080p
recorder), remuxed into distinct files per card, and written onto card images with
``tests/dock_fixtures.py``'s ``make_card_image`` (FAT32 by ``mkfs.vfat`` + ``mcopy`` on a
sparse image of at least 1 GiB, so mkfs picks FAT32; exFAT by ``mkfs.exfat`` + exfat-fuse),
labelled ``BODYCAMnn`` so the shipped udev rules (``config/udev/``) make them recorders.
``systemd-udevd`` is started if none runs, with the shipped rules installed while the run lasts.

The throttle: this kernel has no device-mapper and the cgroup-v2 hierarchy carries no ``io``
controller, so a USB-2 rate is set with the cgroup-v1 blkio controller: one group
(``/sys/fs/cgroup/blkio/evidence-dock-bench``), ``"7:<minor> <rate>"`` written to its
``blkio.throttle.read_bps_device`` for every loop device as soon as it is attached, and the
reader's PID in its ``cgroup.procs`` (the daemon, hence its FUSE mount helpers; and every
``dd``). The images stay in the page cache, so the throttle, not the disk, is each device's
limit -- as a USB-2 recorder's own speed is.

Cases, for each N in ``--cards`` and each filesystem in ``--fs`` (and S3 for N in
``--s3-cards``, FAT32 cards), in this order:

  (raw)  N loop devices attached, throttled, ``dd if=/dev/loopK of=/dev/null bs=1M
         iflag=direct count=<the card's footage bytes>`` all N at once (in the same group):
         wall time until the last ``dd`` ends
  (dock) ``evidence-daemon run`` (its own process, fresh state and archive, shipped
         defaults but for ``dock.runtime_dir``) in the group; the N images attached one after
         the other; time from the last attach until the last recording's ``archived_at``
         (from the station's database, read-only). Archives: a filesystem archive on the
         work directory's disk; S3: the tests' moto server (``tests/s3server.py``), fresh per
         case, in its own process -- bound by its own CPU, so S3 lines measure moto too.

Printed side by side: raw seconds, dock seconds, the ratio (target ≤ 1.15× at N = 8), the
aggregate MB/s of each, the daemon's peak RSS (VmHWM) and CPU (its own and its reaped mount
helpers'), the bytes the group read from the devices, and -- as the profile -- per-device
phases from the daemon's log: attach → docked (udev), docked → mounted (waiting until the
device is readable, at most ``dock.settle_s``, and the mount), mounted → released (every file
read, hashed and durable in the spool; the uploads go on after). The load average is
noted before and after each case: the machine is shared.

Its section of ``--out``, raw figures in ``--results`` (JSON), data in a temporary directory
(deleted): as every benchmark here, see ``benchmarks/README.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import pstats
import re
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.common import (  # noqa: E402
    MB, command_line, cpu_s, load_average, machine, moto_server, output_arguments, peak_rss_mb,
    publish, run_at, section_head, versions,
)
from evidence_daemon.config import DockConfig  # noqa: E402
from tests.dock_fixtures import (  # noqa: E402
    RULES_INSTALLED, RULES_SOURCE, UDEVD, DaemonProcess, LoopDevices, make_card_image,
)
from tests.footage import run_ffmpeg  # noqa: E402
from tests.helpers import write_config  # noqa: E402

BEGIN = "<!-- BEGIN benchmarks/dock.py (generated: rerun the script to update) -->"
END = "<!-- END benchmarks/dock.py -->"
BLKIO = Path("/sys/fs/cgroup/blkio")
GROUP = BLKIO / "evidence-dock-bench"
TARGET_RATIO = 1.15
TARGET_CARDS = 8
CLIP_MB_PER_S = 3.85  # 640x360 testsrc2 + noise, x264 ultrafast: measured here
TOOLS = ("losetup", "udevadm", "fusefat", "mkfs.vfat", "mcopy", "mkfs.exfat", "exfatlabel",
         "mount.exfat-fuse", "dd", "blockdev", "ffmpeg")
FS_NAMES = {"vfat": "FAT32", "exfat": "exFAT"}
LOG_TIME = r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) "


# -- the throttle: one blkio (cgroup v1) group ----------------------------------------------------

class Throttle:
    """Every process in the group reads each listed device at most ``rate`` bytes a second."""

    def __init__(self, rate_bps: int) -> None:
        if not (BLKIO / "blkio.throttle.read_bps_device").exists():
            raise SystemExit(f"{BLKIO}: no cgroup-v1 blkio controller with throttling here")
        self.rate_bps = rate_bps
        GROUP.mkdir(exist_ok=True)

    @staticmethod
    def _device(devnode: str) -> str:
        rdev = os.stat(devnode).st_rdev
        return f"{os.major(rdev)}:{os.minor(rdev)}"

    def limit(self, devnode: str) -> None:
        (GROUP / "blkio.throttle.read_bps_device").write_text(
            f"{self._device(devnode)} {self.rate_bps}\n")

    def release(self, devnode: str) -> None:
        with contextlib.suppress(OSError):
            (GROUP / "blkio.throttle.read_bps_device").write_text(f"{self._device(devnode)} 0\n")

    def join(self, pid: int) -> None:
        (GROUP / "cgroup.procs").write_text(f"{pid}\n")

    def bytes_read(self) -> int:
        """What the group has read from loop devices so far."""
        total = 0
        for line in (GROUP / "blkio.throttle.io_service_bytes").read_text().splitlines():
            parts = line.split()
            if len(parts) == 3 and parts[1] == "Read" and parts[0].startswith("7:"):
                total += int(parts[2])
        return total

    def close(self) -> None:
        for pid in (GROUP / "cgroup.procs").read_text().split():  # leftovers go back to the root
            with contextlib.suppress(OSError):
                (BLKIO / "cgroup.procs").write_text(f"{pid}\n")
        with contextlib.suppress(OSError):
            GROUP.rmdir()


def udevd_answers() -> bool:
    return subprocess.run(["udevadm", "control", "--ping", "--timeout=2"], capture_output=True,
                          check=False).returncode == 0


def ensure_udevd() -> bool:
    """Start udevd unless one answers; whether it was started here. (Another session's test
    fixture may stop a udevd it finds running: every dock case checks again.)"""
    if udevd_answers():
        return False
    subprocess.run([str(UDEVD), "--daemon"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, check=True, timeout=30)
    deadline = time.monotonic() + 10
    while not udevd_answers():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{UDEVD} --daemon does not answer")
        time.sleep(0.1)
    shutil.copyfile(RULES_SOURCE, RULES_INSTALLED)
    subprocess.run(["udevadm", "control", "--reload"], check=True, timeout=30)
    return True


@contextlib.contextmanager
def udev_with_shipped_rules() -> Iterator[None]:
    """The running udevd (or one started here, and stopped at the end) with the project's rules."""
    previous = RULES_INSTALLED.read_bytes() if RULES_INSTALLED.exists() else None
    started = ensure_udevd()
    shutil.copyfile(RULES_SOURCE, RULES_INSTALLED)
    subprocess.run(["udevadm", "control", "--reload"], check=True, timeout=30)
    try:
        yield
    finally:
        if previous is None:
            RULES_INSTALLED.unlink(missing_ok=True)
        else:
            RULES_INSTALLED.write_bytes(previous)
        command = "--exit" if started else "--reload"
        subprocess.run(["udevadm", "control", command], capture_output=True, check=False, timeout=30)


# -- the profile: cProfile in every thread of the daemon, without touching its code ----------------

PROFILE_HOOK = '''"""Written by benchmarks/dock.py: profile every thread of this process into $DOCK_BENCH_PROFILE."""
import atexit, cProfile, os, pstats, threading

_profiles = []


def _start(frame, event, arg):
    profile = cProfile.Profile()
    _profiles.append(profile)
    profile.enable()


def _dump():
    merged = None
    for profile in list(_profiles):
        stats = pstats.Stats(profile)
        merged = stats if merged is None else merged.add(stats)
    if merged is not None:
        merged.dump_stats(os.environ["DOCK_BENCH_PROFILE"])


if os.environ.get("DOCK_BENCH_PROFILE"):
    threading.setprofile(_start)
    _start(None, None, None)
    atexit.register(_dump)
'''
# Waiting for work, not doing it: left out of the profile's table.
IDLE = re.compile(r"wait|acquire|sleep|select|poll|recv|accept|join|result|_worker|__call__|SimpleQueue")


@contextlib.contextmanager
def profiled(directory: Path) -> Iterator[Path]:
    """Daemons started inside write a merged cProfile of all their threads to the path yielded."""
    hook = directory / "profile-hook"
    hook.mkdir(parents=True, exist_ok=True)
    (hook / "sitecustomize.py").write_text(PROFILE_HOOK, encoding="utf-8")
    output = directory / "daemon.pstats"
    saved = {key: os.environ.get(key) for key in ("PYTHONPATH", "DOCK_BENCH_PROFILE")}
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(hook), saved["PYTHONPATH"]]))
    os.environ["DOCK_BENCH_PROFILE"] = str(output)
    try:
        yield output
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def profile_table(path: Path, rows: int = 14) -> list[str]:
    """The functions the daemon's threads spent the most time in (their own time, summed over
    threads, wall clock), idle waits left out."""
    if not path.exists():
        return ["(no profile was written: the daemon did not exit normally)"]
    stats = pstats.Stats(str(path))
    entries = []
    for (filename, line, name), (_, calls, own, cumulative, _) in stats.stats.items():  # type: ignore[attr-defined]
        if IDLE.search(name):
            continue
        where = name if filename == "~" else f"{Path(filename).name}:{line} {name}"
        entries.append((own, cumulative, calls, where))
    entries.sort(reverse=True)
    lines = ["| function | own s (all threads) | cumulative s | calls |", "|---|---:|---:|---:|"]
    lines += [f"| `{where}` | {own:.2f} | {cumulative:.2f} | {calls:,} |"
              for own, cumulative, calls, where in entries[:rows]]
    return lines


# -- footage and cards ----------------------------------------------------------------------------

@dataclass(frozen=True)
class Card:
    label: str
    footage_bytes: int
    images: dict[str, Path]  # fs -> image


def make_cards(work: Path, count: int, files: int, file_mb: float, filesystems: Sequence[str]
               ) -> list[Card]:
    """``count`` cards of ``files`` distinct playable clips each, one image per filesystem."""
    seconds = max(1.0, file_mb / CLIP_MB_PER_S)
    bases = []
    for slot in range(files):  # one encode per slot; every card gets a distinct remux of it
        base = work / "clips" / f"base{slot}.mp4"
        base.parent.mkdir(parents=True, exist_ok=True)
        run_ffmpeg("-f", "lavfi", "-i", f"testsrc2=size=640x360:rate=30:duration={seconds}",
                   "-f", "lavfi", "-i", f"sine=frequency={440 + 110 * slot}:sample_rate=16000:"
                   f"duration={seconds}", "-vf", "noise=alls=60:allf=t", "-c:v", "libx264",
                   "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac",
                   "-movflags", "+faststart", f"file:{base}")
        bases.append(base)
    cards = []
    for number in range(1, count + 1):
        label = f"BODYCAM{number:02d}"
        content: dict[str, bytes | Path] = {}
        for slot, base in enumerate(bases):
            clip = work / "clips" / label / f"DSJ{number:03d}_1{number:04d}_20261125{8 + slot:02d}3000_{slot + 1:04d}.MP4"
            clip.parent.mkdir(parents=True, exist_ok=True)
            run_ffmpeg("-i", f"file:{base}", "-map", "0", "-c", "copy", "-metadata",
                       f"comment={label} clip {slot + 1}", "-movflags", "+faststart", f"file:{clip}")
            content[f"DCIM/100MEDIA/{clip.name}"] = clip
        footage = sum(path.stat().st_size for path in content.values() if isinstance(path, Path))
        size_mib = max(1024, int(footage * 1.3 / (1 << 20)) + 64)
        images = {fs: make_card_image(work / "images" / fs, label, content, fs=fs, size_mib=size_mib)
                  for fs in filesystems}
        shutil.rmtree(work / "clips" / label)
        cards.append(Card(label, footage, images))
    return cards


# -- one case ------------------------------------------------------------------------------------

@dataclass
class Result:
    fs: str
    archive: str
    cards: int
    footage_bytes: int
    raw_s: float = 0.0
    dock_s: float = 0.0
    seen_s: float = 0.0  # until this process saw every recording archived (polling)
    recordings: int = 0
    expected: int = 0
    peak_rss_mb: float | None = None
    daemon_cpu_s: float = 0.0
    daemon_sys_s: float = 0.0  # of which in the kernel (copies through FUSE and the page cache)
    helpers_cpu_s: float = 0.0
    group_read_bytes: int = 0
    raw_read_bytes: int = 0
    load: str = ""
    phases: dict[str, float] = field(default_factory=dict)
    note: str = ""

    settle_s: float = 0.0  # measured: docked -> mounted (median): readiness wait + the mount

    @property
    def ratio(self) -> float | None:
        return self.dock_s / self.raw_s if self.raw_s and self.dock_s else None

    @property
    def ratio_after_settle(self) -> float | None:
        """(dock - docked->mounted) / raw: what the daemon adds beyond waiting to mount."""
        return (self.dock_s - self.settle_s) / self.raw_s if self.raw_s and self.dock_s else None


def attach_all(loops: LoopDevices, throttle: Throttle, images: Sequence[Path]) -> tuple[list[str], float]:
    """Attach and throttle each image; the devices and the wall-clock time of the last attach."""
    devnodes, last = [], 0.0
    for image in images:
        devnode = loops.attach(image)
        last = time.time()
        throttle.limit(devnode)
        devnodes.append(devnode)
    return devnodes, last


def detach_all(loops: LoopDevices, throttle: Throttle, devnodes: Sequence[str]) -> None:
    for devnode in devnodes:
        throttle.release(devnode)
    loops.cleanup()


def raw_read(work: Path, throttle: Throttle, cards: Sequence[Card], fs: str) -> tuple[float, int]:
    """All the cards' devices read at once with ``dd iflag=direct`` in the group; (s, bytes)."""
    loops = LoopDevices(work / "raw-run")
    loops.runtime_dir.mkdir(parents=True, exist_ok=True)
    devnodes, _ = attach_all(loops, throttle, [card.images[fs] for card in cards])
    try:
        before = throttle.bytes_read()
        started = time.perf_counter()
        readers = [subprocess.Popen(
            ["sh", "-c", f'echo $$ > {GROUP}/cgroup.procs && exec dd if={devnode} of=/dev/null '
             f'bs=1M iflag=direct count={-(-card.footage_bytes // (1 << 20))} status=none'])
            for devnode, card in zip(devnodes, cards)]
        codes = [reader.wait() for reader in readers]
        elapsed = time.perf_counter() - started
        if any(codes):
            raise RuntimeError(f"dd failed: exit codes {codes}")
        return elapsed, throttle.bytes_read() - before
    finally:
        detach_all(loops, throttle, devnodes)


def archived(database: Path) -> tuple[int, str | None]:
    """(recordings archived, the latest ``archived_at``) from the station's database, read-only."""
    if not database.exists():
        return 0, None
    try:
        with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=5)) as db:
            count, latest = db.execute("SELECT count(*), max(archived_at) FROM recordings "
                                       "WHERE archived_at IS NOT NULL").fetchone()
    except sqlite3.OperationalError:  # not yet created
        return 0, None
    return int(count), latest


def instant(text: str) -> float:
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return (moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)).timestamp()


def log_phases(log_text: str, attached_at: dict[str, float]) -> dict[str, float]:
    """Per-device phases from the daemon's log (medians and maxima over the devices)."""
    stamps: dict[str, dict[str, float]] = {}
    identity_of: dict[str, str] = {}
    for line in log_text.splitlines():
        match = re.match(LOG_TIME, line)
        if not match:
            continue
        at = datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
        if found := re.search(r"docked: (\S+) .* on (/dev/loop\d+)", line):
            identity_of[found.group(2)] = found.group(1)
            stamps.setdefault(found.group(2), {})["docked"] = at
        elif found := re.search(r"mounted (/dev/loop\d+) \(\w+\) read-only", line):
            stamps.setdefault(found.group(1), {})["mounted"] = at
        elif found := re.search(r"^\S+ \S+ INFO \S+: (\S+): (done|incomplete) ", line):
            for devnode, identity in identity_of.items():
                if identity == found.group(1):
                    stamps.setdefault(devnode, {})["done"] = at
    spans: dict[str, list[float]] = {"attach → docked": [], "docked → mounted": [],
                                     "mounted → done": []}
    for devnode, seen in stamps.items():
        if devnode in attached_at and "docked" in seen:
            spans["attach → docked"].append(seen["docked"] - attached_at[devnode])
        if "docked" in seen and "mounted" in seen:
            spans["docked → mounted"].append(seen["mounted"] - seen["docked"])
        if "mounted" in seen and "done" in seen:
            spans["mounted → done"].append(seen["done"] - seen["mounted"])
    phases = {}
    for name, values in spans.items():
        if values:
            phases[f"{name} median"] = statistics.median(values)
            phases[f"{name} max"] = max(values)
    return phases


def unreaped_helpers(daemon_pid: int) -> dict[int, float]:
    """CPU seconds so far of the group's processes the daemon will not reap (FUSE helpers)."""
    found = {}
    for text in (GROUP / "cgroup.procs").read_text().split():
        pid = int(text)
        try:
            with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
                ppid = int(stat.read().rpartition(")")[2].split()[1])
            if pid != daemon_pid and ppid != daemon_pid:
                found[pid] = cpu_s(pid)
        except (OSError, ValueError):
            continue
    return found


def dock_case(work: Path, throttle: Throttle, cards: Sequence[Card], fs: str, files: int,
              archive: dict[str, Any], args: argparse.Namespace, result: Result) -> None:
    """The daemon running, the cards docked one after the other: until all are archived."""
    directory = work / "case"
    runtime_dir = directory / "run"
    runtime_dir.mkdir(parents=True)
    dock = f'[dock]\nruntime_dir = "{runtime_dir}"\n'
    if args.settle_s is not None:
        dock += f"settle_s = {args.settle_s}\n"
    extra = dock + ("\n[media]\nproxy = false\n" if args.no_proxy else "")
    config = write_config(directory, station_id="dock-bench",
                          archive=archive or {"backend": "filesystem", "path": str(directory / "archive")},
                          extra=extra)
    database = directory / "state" / "state.sqlite3"
    if ensure_udevd():
        result.note = (result.note + " udevd had gone and was restarted").strip()
    daemon = DaemonProcess(config, runtime_dir)
    loops = LoopDevices(runtime_dir)
    devnodes: list[str] = []
    try:
        daemon.start()
        assert daemon.process is not None
        pid = daemon.process.pid
        throttle.join(pid)
        read_before = throttle.bytes_read()
        log_start = daemon.log_size()
        attached_at: dict[str, float] = {}
        for card in cards:
            [devnode], attached_at_one = attach_all(loops, throttle, [card.images[fs]])
            devnodes.append(devnode)
            attached_at[devnode] = attached_at_one
        last_attach = max(attached_at.values())
        expected = len(cards) * files
        deadline = time.monotonic() + args.timeout_s
        count, latest = archived(database)
        helpers: dict[int, float] = {}  # the group's other processes (FUSE helpers): last CPU
        while count < expected and time.monotonic() < deadline:
            if time.time() - last_attach > 30 and "docked:" not in daemon.output(log_start):
                raise RuntimeError("no device docked within 30 s of its attach: is udevd running?")
            if not daemon.running:
                raise RuntimeError(f"the daemon exited: {daemon.output()[-2000:]}")
            time.sleep(0.2)
            count, latest = archived(database)
            helpers.update(unreaped_helpers(pid))
        result.seen_s = time.time() - last_attach
        result.recordings, result.expected = count, expected
        if latest is not None:
            result.dock_s = instant(latest) - last_attach
        if count < expected:
            result.note = f"timed out after {args.timeout_s:.0f} s: {count}/{expected} archived"
        time.sleep(0.5)  # the jobs' last log lines and unmounts
        result.group_read_bytes = throttle.bytes_read() - read_before
        result.peak_rss_mb = peak_rss_mb(pid)
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            fields = stat.read().rpartition(")")[2].split()
        ticks = os.sysconf("SC_CLK_TCK")
        result.daemon_cpu_s = cpu_s(pid)
        result.daemon_sys_s = int(fields[12]) / ticks
        helpers.update(unreaped_helpers(pid))
        # the daemon's reaped children (ffprobe, ffmpeg, mount commands) + the FUSE helpers,
        # which daemonize (their parent is then init, so they are never the daemon's to reap)
        result.helpers_cpu_s = (int(fields[13]) + int(fields[14])) / ticks + sum(helpers.values())
        result.phases = log_phases(daemon.output(log_start), attached_at)
    finally:
        if daemon.running:
            daemon.stop()
        detach_all(loops, throttle, devnodes)
        shutil.rmtree(directory, ignore_errors=True)


def run_case(work: Path, throttle: Throttle, cards: Sequence[Card], fs: str, files: int,
             archive_kind: str, args: argparse.Namespace, profile: Path | None = None) -> Result:
    result = Result(fs=fs, archive=archive_kind, cards=len(cards),
                    footage_bytes=sum(card.footage_bytes for card in cards))
    load_before = load_average()
    result.raw_s, result.raw_read_bytes = raw_read(work, throttle, cards, fs)
    with contextlib.ExitStack() as stack:
        archive: dict[str, Any] = {}
        if archive_kind == "S3":
            s3 = stack.enter_context(moto_server())
            s3.make_bucket("dock-bench")
            archive = s3.archive_settings("dock-bench")
        if profile is not None:
            stack.enter_context(profiled(profile))
        dock_case(work, throttle, cards, fs, files, archive, args, result)
    result.settle_s = result.phases.get("docked → mounted median", 0.0)
    result.load = f"{load_before} → {load_average()}"
    print(f"  {FS_NAMES[fs]:6} {archive_kind:10} N={len(cards):2}{' (profiled)' if profile else ''}: raw {result.raw_s:6.2f} s, "
          f"dock {result.dock_s:6.2f} s, ratio {result.ratio or 0:5.2f}×, "
          f"{result.recordings}/{result.expected} archived, peak RSS {result.peak_rss_mb or 0:.0f} MB, "
          f"load {result.load} {result.note}", flush=True)
    return result


# -- report --------------------------------------------------------------------------------------

def markdown(results: Sequence[Result], *, args: argparse.Namespace, started_at: str,
             total_s: float, command: str, card_text: str, disk_mb_s: float | None,
             profile: Sequence[str] = ()) -> str:
    lines = [
        *section_head(BEGIN, "## Shift change (`benchmarks/dock.py`)", run_at=started_at,
                      total_s=total_s, command=command,
                      found_versions=versions(("moto", "minio"), {
                          "udevd": subprocess.run(["udevadm", "--version"], capture_output=True,
                                                  text=True, check=False).stdout.strip()})),
        f"- Cards: {card_text}. Each loop device read-throttled to {args.rate_mbs:g} MB/s "
        "(USB-2) by the cgroup-v1 blkio controller (`blkio.throttle.read_bps_device`; no "
        "device-mapper and no cgroup-v2 `io` controller on this kernel); the daemon (and so its "
        "FUSE mount helpers) and every `dd` in that group. Images in the page cache.",
        "- Daemon: `evidence-daemon run`, shipped defaults (`dock.max_concurrent_devices = 0`, "
        f"`dock.settle_s` {'= ' + str(args.settle_s) if args.settle_s is not None else f'default {DockConfig().settle_s}'} "
        "(the most to wait: a device is mounted once readable), "
        f"viewing copies {'off' if args.no_proxy else 'on (default)'}), fresh state per case; "
        "filesystem archive on the work directory's disk, or S3 on the tests' moto server "
        "(its own process; moto is bound by its own CPU)."
        + (f" That disk writes {disk_mb_s:.0f} MB/s with `dd conv=fsync` (context)."
           if disk_mb_s else ""),
        "- raw: `dd iflag=direct` of each card's footage bytes, all N at once. dock: from the "
        "last `losetup` until the last recording's `archived_at`. ratio = dock / raw; "
        "(dock − mount wait) / raw leaves out the measured docked → mounted median (the wait "
        "for readiness and the mount; context: with small cards a fixed wait dominated). "
        f"Target ≤ {TARGET_RATIO}× at N = {TARGET_CARDS}. MB = 10^6 bytes. Peak RSS: the "
        "daemon's VmHWM. CPU: the daemon's own (of which in the kernel) + its helpers' "
        "(ffprobe, viewing-copy ffmpeg, the FUSE mount helpers). Read: bytes the "
        "group read from the devices (dock / raw). Load: 1-min load average before → after "
        "(2 CPUs, shared by 8 engineers).",
        "",
        "| cards | archive | N | raw s | dock s | ratio | (dock − mount wait) / raw | raw MB/s "
        "| dock MB/s | peak RSS MB | CPU s | read MB | archived | load |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for row in results:
        lines.append(
            f"| {FS_NAMES[row.fs]} | {row.archive} | {row.cards} | {row.raw_s:.2f} | "
            f"{row.dock_s:.2f} | **{row.ratio or 0:.2f}×** | {row.ratio_after_settle or 0:.2f}× | "
            f"{row.footage_bytes / MB / row.raw_s:.0f} | "
            f"{row.footage_bytes / MB / row.dock_s if row.dock_s else 0:.0f} | "
            f"{row.peak_rss_mb or 0:.0f} | {row.daemon_cpu_s:.1f} (sys {row.daemon_sys_s:.1f}) + "
            f"{row.helpers_cpu_s:.1f} | "
            f"{row.group_read_bytes / MB:.0f} / {row.raw_read_bytes / MB:.0f} | "
            f"{row.recordings}/{row.expected}{' ' + row.note if row.note else ''} | {row.load} |")
    lines += ["", "Per-device phases from the daemon's log (median / max seconds):", "",
              "| cards | archive | N | attach → docked | docked → mounted | mounted → released (spooled) |",
              "|---|---|---:|---:|---:|---:|"]
    for row in results:
        cells = [f"{row.phases.get(name + ' median', 0):.2f} / {row.phases.get(name + ' max', 0):.2f}"
                 for name in ("attach → docked", "docked → mounted", "mounted → done")]
        lines.append(f"| {FS_NAMES[row.fs]} | {row.archive} | {row.cards} | {' | '.join(cells)} |")
    if profile:
        lines += ["", f"Profile of the daemon, {args.profile_cards} FAT32 cards (cProfile in every "
                  "thread, wall-clock time summed over threads, waits for work left out):", "",
                  *profile]
    lines += ["", "Target:", ""]
    for row in results:
        if (row.cards == TARGET_CARDS and row.archive == "filesystem" and row.ratio is not None
                and "profiled" not in row.note):
            lines.append(f"- {FS_NAMES[row.fs]}, {TARGET_CARDS} cards, filesystem archive: "
                         f"**{'met' if row.ratio <= TARGET_RATIO else 'MISSED'}** — {row.ratio:.2f}× "
                         f"(≤ {TARGET_RATIO}×)")
    lines += ["", END]
    return "\n".join(lines) + "\n"


def disk_write_rate(work: Path, size_bytes: int) -> float:
    """MB/s of ``dd conv=fsync`` writing ``size_bytes`` to the work directory's disk."""
    target = work / "disk-probe"
    started = time.perf_counter()
    subprocess.run(["dd", "if=/dev/zero", f"of={target}", "bs=1M",
                    f"count={max(1, size_bytes >> 20)}", "conv=fsync", "status=none"], check=True)
    elapsed = time.perf_counter() - started
    target.unlink()
    return size_bytes / MB / elapsed


def counts(text: str) -> list[int]:
    return sorted({int(part) for part in text.split(",") if part.strip()})


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cards", type=counts, default=[1, 4, 8, 16],
                        help="numbers of cards docked at once (default 1,4,8,16)")
    parser.add_argument("--s3-cards", type=counts, default=[1, 4, 8],
                        help="the same with an S3 (moto) archive, FAT32 cards (default 1,4,8; "
                             "empty: none)")
    parser.add_argument("--fs", default="vfat,exfat", help="card filesystems (default vfat,exfat)")
    parser.add_argument("--files", type=int, default=3, help="clips per card (default 3)")
    parser.add_argument("--file-mb", type=float, default=40,
                        help="size of each clip in MB (default 40; a full shift: 500+)")
    parser.add_argument("--rate-mbs", type=float, default=30, help="device read rate (default 30)")
    parser.add_argument("--settle-s", type=float, default=None,
                        help="dock.settle_s for the daemon (default: the shipped default)")
    parser.add_argument("--no-proxy", action="store_true", help="viewing copies off")
    parser.add_argument("--profile-cards", type=int, default=0,
                        help="also run N FAT32 cards (filesystem archive) with cProfile in every "
                             "daemon thread and report where the time goes (default 0: no)")
    parser.add_argument("--timeout-s", type=float, default=900, help="per dock case (default 900)")
    output_arguments(parser, "dock.py")
    args = parser.parse_args(argv)
    filesystems = [fs for fs in args.fs.split(",") if fs]
    if os.geteuid() != 0:
        parser.error("needs root: loop devices, udevd, mounts and the blkio cgroup")
    if missing := [tool for tool in TOOLS if shutil.which(tool) is None]:
        parser.error(f"missing tools: {', '.join(missing)} (see benchmarks/README.md)")
    if not set(filesystems) <= set(FS_NAMES) or not args.cards or args.files < 1:
        parser.error("--fs takes vfat and/or exfat; --cards and --files must not be empty")
    started_at, began = run_at(), time.perf_counter()
    command = command_line("dock.py", argv)
    work = Path(tempfile.mkdtemp(prefix="dock-bench-", dir=args.workdir or "/var/tmp"))
    throttle = Throttle(int(args.rate_mbs * MB))
    results: list[Result] = []
    try:
        with udev_with_shipped_rules():
            most = max(args.cards + args.s3_cards + [args.profile_cards])
            print(f"making {most} cards x {args.files} clips of ~{args.file_mb:g} MB "
                  f"({', '.join(FS_NAMES[fs] for fs in filesystems)}) under {work} ...", flush=True)
            cards = make_cards(work, most, args.files, args.file_mb, filesystems)
            card_text = (f"{args.files} H.264/AAC clips per card (640x360, noise: ~30 Mbit/s), "
                         f"{cards[0].footage_bytes / MB:.0f} MB of footage per card, labelled "
                         "`BODYCAMnn` (the shipped udev rules make them recorders)")
            disk_mb_s = disk_write_rate(work, cards[0].footage_bytes * max(args.cards))
            for count in args.cards:
                for fs in filesystems:
                    results.append(run_case(work, throttle, cards[:count], fs, args.files,
                                            "filesystem", args))
            for count in args.s3_cards:
                results.append(run_case(work, throttle, cards[:count], "vfat", args.files, "S3",
                                        args))
            profile: list[str] = []
            if args.profile_cards:
                pstats_path = work / "profile" / "daemon.pstats"
                profiled_row = run_case(work, throttle, cards[:args.profile_cards], "vfat",
                                        args.files, "filesystem", args, profile=work / "profile")
                profiled_row.note = (profiled_row.note + " profiled (cProfile slows it)").strip()
                results.append(profiled_row)
                profile = profile_table(pstats_path)
                if args.results and pstats_path.exists():
                    shutil.copyfile(pstats_path, args.results.with_suffix(".pstats"))
        section = markdown(results, args=args, started_at=started_at,
                           total_s=time.perf_counter() - began, command=command,
                           card_text=card_text, disk_mb_s=disk_mb_s, profile=profile)
        publish(section, BEGIN, END, args.out, args.results, {
            "run_at": started_at, "command": command, "machine": machine(),
            "results": [{**asdict(row), "ratio": row.ratio,
                         "ratio_after_settle": row.ratio_after_settle} for row in results]})
        return 0
    finally:
        throttle.close()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
