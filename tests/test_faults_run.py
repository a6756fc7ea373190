"""``kill -9`` of ``evidence-daemon run`` while a card is docked, at random instants.

One station per backend (filesystem, S3), never reset between instants: archive, ledger, state
and spool accumulate as in a real station. Each instant:

1. a new card is docked (a loop-attached image; most are vfat read through fusefat, every fourth
   is ext4 under a ``wipe = true`` rule, so kills also land mid-wipe);
2. the daemon gets SIGKILL after a delay drawn uniformly from [0, the time an uninterrupted dock
   of that kind of card takes until its job ended];
3. one of three things happens to the card, drawn at random: it stays in the dock; it is pulled
   (the loop detached) and the dead daemon's mount stays behind, as after a real USB pull with
   nobody to unmount it (vfat cards only); or it is pulled after someone unmounted it
   (``umount -l``). A pulled
   card is docked again once the daemon is back. A mount left behind is the daemon's to clear;
4. the daemon is started again; the card's job must end ``done``; the card is undocked.

Measured, as the fault matrix counts them: files lost, wrongly archived and duplicates over every
file of every card once the last instant recovered (``measure``); premature wipes at each kill
(files gone from an ext4 card whose bytes were not archived and verified at that moment).

Bounded in time, because CI runs it: ``EVIDENCE_FAULT_INSTANTS`` instants per backend (50), but
no instant starts after ``EVIDENCE_FAULT_BUDGET_S`` seconds (200) per backend; the record says
how many ran. ``EVIDENCE_FAULT_SEED`` repeats a run's instants (the seed is in the record).
"""

from __future__ import annotations

import hashlib
import os
import random
import re
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from evidence_daemon.config import load_config

from .dock_fixtures import (
    DaemonProcess,
    LoopDevices,
    make_card_image,
    mounts_under,
    require_root,
    require_tools,
    status,
)
from .faultcheck import hashes_on_card, measure
from .faultlog import FaultLog
from .helpers import run_cli_process, wait_for, write_config
from .s3_fixtures import DEFAULT_SERVER, server_of_kind

pytestmark = [pytest.mark.root, pytest.mark.slow, pytest.mark.faults]

# Read at import: an autouse fixture removes every EVIDENCE_* variable before each test.
INSTANTS = int(os.environ.get("EVIDENCE_FAULT_INSTANTS") or 50)
BUDGET_S = float(os.environ.get("EVIDENCE_FAULT_BUDGET_S") or 200)
SEED = int(os.environ.get("EVIDENCE_FAULT_SEED") or random.SystemRandom().randrange(1_000_000))

SMALL_BYTES = 150_000
LARGE_BYTES = 6_000_000  # more than one 5 MiB part: a multipart upload on S3
JOB_TIMEOUT_S = 60
LEFT_DOCKED, PULLED, UNMOUNTED_AND_PULLED = AFTER_KILL = (
    "left docked", "pulled, its mount left behind", "unmounted and pulled")


@dataclass
class Card:
    index: int
    image: Path
    files: dict[str, bytes]
    wipe: bool


@dataclass
class Instant:
    card: Card
    delay_s: float
    stage: str  # how far the dead daemon got with the card (from its log)
    after_kill: str  # one of AFTER_KILL
    stale_mounts: int
    premature_wipes: int


class KillRun:
    """One station with its daemon, and the cards docked into it."""

    def __init__(self, directory: Path, config: Path, daemon: DaemonProcess, loops: LoopDevices) -> None:
        self.directory = directory
        self.config = config
        self.daemon = daemon
        self.loops = loops
        self.sources: dict[Path, str] = {}
        self.previous: Card | None = None

    def new_card(self, index: int, *, wipe: bool) -> Card:
        prefix = f"DSJ{index:03d}"
        files = {
            f"DCIM/100MEDIA/{prefix}_10086_20261125_08{index % 60:02d}{n:02d}_{n:04d}.MP4":
                os.urandom(size) for n, size in enumerate((SMALL_BYTES, SMALL_BYTES, LARGE_BYTES))
        }
        if index % 5 == 4 and self.previous is not None:
            # the same clip on a second card (copied between cameras): one recording, two sources
            files[f"DCIM/100MEDIA/{prefix}_COPY.MP4"] = next(iter(self.previous.files.values()))
        label = f"WIPECAM{index:03d}" if wipe else f"BODYCAM{index:03d}"
        image = make_card_image(self.directory / "images", label, files,
                                fs="ext4" if wipe else "vfat", size_mib=24 if wipe else 16)
        card = Card(index, image, files, wipe)
        self.sources.update(hashes_on_card(image, files))
        self.previous = card
        return card

    def job_ended(self, devnode: str, since: float) -> dict[str, Any] | None:
        current = status(self.daemon.runtime_dir)
        assert self.daemon.process is not None
        if current.get("pid") != self.daemon.process.pid:
            return None
        return next((job for job in current.get("jobs", []) if job["devnode"] == devnode
                     and job["started_at"] >= since and job["finished_at"] is not None), None)

    def wait_done(self, card: Card, devnode: str, since: float, what: str) -> dict[str, Any]:
        ended: list[dict[str, Any]] = []

        def done() -> bool:
            assert self.daemon.running, f"the daemon died: {self.daemon.output()[-3000:]}"
            job = self.job_ended(devnode, since)
            if job is not None:
                ended.append(job)
            return job is not None

        wait_for(done, JOB_TIMEOUT_S, f"card {card.index}'s job to end ({what})", every_s=0.05)
        job = ended[-1]
        assert job["state"] == "done", (f"card {card.index} ({what}): job {job['state']} "
                                        f"{job['error']} {job['result']}\n{self.daemon.output()[-3000:]}")
        return job

    def undock(self, devnode: str) -> None:
        wait_for(lambda: not mounts_under(self.daemon.runtime_dir), 30, "the card to be unmounted")
        self.loops.detach(devnode)

    def uninterrupted(self, card: Card) -> float:
        """Dock, wait for the job to end; seconds from the dock to the job's end."""
        docked_at = time.time()
        devnode = self.loops.attach(card.image)
        job = self.wait_done(card, devnode, docked_at, "uninterrupted")
        self.undock(devnode)
        return float(job["finished_at"]) - docked_at

    def kill_while_docked(self, card: Card, delay_s: float, after_kill: str) -> Instant:
        log_offset = self.daemon.log_size()
        devnode = self.loops.attach(card.image)
        time.sleep(delay_s)
        self.daemon.kill()
        stage = stage_at_kill(self.daemon.output(since=log_offset))
        stale = mounts_under(self.daemon.runtime_dir)
        premature = self.premature_wipes(card, stale)
        if after_kill == UNMOUNTED_AND_PULLED:
            for mountpoint in reversed(stale):
                subprocess.run(["umount", "-l", mountpoint], capture_output=True, check=False)
        if after_kill != LEFT_DOCKED:
            # Unlike a card pulled from a USB reader, whose node vanishes, a loop held by a mount
            # stays bound until that mount goes: the restarted daemon may still see it, and fail
            # to mount it once it has cleared the dead daemon's mount. The card docked again
            # comes back on another node, or on the same one once it is free.
            self.loops.detach(devnode)
        docked_again_at = time.time()
        self.daemon.start()
        if after_kill != LEFT_DOCKED:
            docked_again_at = time.time()
            devnode = self.loops.attach(card.image)
        self.wait_done(card, devnode, docked_again_at,
                       f"killed {delay_s:.3f} s after the dock while {stage}, then {after_kill}")
        self.undock(devnode)
        return Instant(card, delay_s, stage, after_kill, len(stale), premature)

    def premature_wipes(self, card: Card, stale_mounts: list[str]) -> int:
        """Files gone from a wipe card at the kill whose bytes were not archived and verified."""
        if not card.wipe:
            return 0
        on_card = files_on_ext4_card(card.image, stale_mounts)
        gone = {card.image / name: hashlib.sha256(data).hexdigest()
                for name, data in card.files.items() if name not in on_card}
        if not gone:
            return 0
        return len(gone) - measure(self.config, gone).archived


def incomplete_multipart_uploads(station: KillRun) -> int:
    """Multipart uploads begun and never completed nor aborted: parts the S3 server keeps until
    its own expiry (MinIO: 24 h) or a lifecycle rule reclaims them."""
    import boto3

    archive = load_config(station.config).archive
    client = boto3.client(
        "s3", endpoint_url=f"{'https' if archive.secure else 'http'}://{archive.endpoint}",
        aws_access_key_id=archive.access_key, aws_secret_access_key=archive.secret_key,
        region_name=archive.region,
    )
    listed = client.list_multipart_uploads(Bucket=archive.bucket)
    return len(listed.get("Uploads", []))


def stage_at_kill(log: str) -> str:
    """How far the dead daemon got with the card, from what it logged after the dock."""
    stage = "before the uevent"
    for line in log.splitlines():
        if "dock.manager: docked: " in line:
            stage = "settling or mounting"
        elif "mounter: mounted " in line:
            stage = "ingesting, none archived yet"
        elif "pipeline: archived " in line and stage.startswith("ingesting"):
            stage = "ingesting, some archived"
        elif "remounted read-write for the wipe" in line:
            stage = "wiping"
        elif re.search(r"dock\.manager: \S+: (done|incomplete)", line):
            stage = "after the job ended"
    return stage


def files_on_ext4_card(image: Path, stale_mounts: list[str]) -> set[str]:
    """The card's files as the kernel sees them: through the dead daemon's mount if it is still
    there (its unlinks may not be on the image yet), else read from the image."""
    for mountpoint in stale_mounts:
        root = Path(mountpoint)
        return {str(path.relative_to(root)) for path in root.rglob("*") if path.is_file()}
    listing = subprocess.run(["debugfs", "-R", "ls -p /DCIM/100MEDIA", str(image)],
                             capture_output=True, text=True, check=True).stdout
    # ls -p: /inode/mode/uid/gid/name/size/ per entry
    return {f"DCIM/100MEDIA/{fields[5]}" for fields in (line.split("/") for line in listing.splitlines())
            if len(fields) > 6 and fields[5] not in (".", "..")}


@pytest.fixture
def station(tmp_path: Path, udevd: None, loop_devices: LoopDevices,
            request: pytest.FixtureRequest) -> Iterator[KillRun]:
    require_root()
    require_tools("fusefat", "mkfs.vfat", "mcopy", "mkfs.ext4", "debugfs")
    runtime_dir = loop_devices.runtime_dir
    backend = request.param
    archive: dict[str, Any] | None = None
    if backend == "s3":
        # moto (or a real MinIO): 50 instants on RGW would not fit the suite's time budget
        server = server_of_kind(request, DEFAULT_SERVER)
        archive = {**server.archive_settings(server.make_bucket()), "part_size_mib": 5,
                   "retention_days": 1}
    config = write_config(tmp_path, station_id="dock-kill", archive=archive, extra=f"""
[ingest]
probe = false

[media]
proxy = false

[metrics]
listen = ""

[dock]
runtime_dir = "{runtime_dir}"
settle_s = 0.1

[[dock.rules]]
role = "recorder"
model = "wipe-test"
label_pattern = "WIPECAM.*"
wipe = true
""")
    daemon = DaemonProcess(config, runtime_dir)
    daemon.start()
    try:
        yield KillRun(tmp_path, config, daemon, loop_devices)
    finally:
        if daemon.running:
            daemon.stop()


@pytest.mark.parametrize("station", ["filesystem", pytest.param("s3", marks=pytest.mark.s3)],
                         indirect=True)
def test_kill_9_of_run_with_a_docked_card_at_random_instants(
    station: KillRun, fault_log: FaultLog, request: pytest.FixtureRequest
) -> None:
    backend = request.node.callspec.params["station"]
    rng = random.Random(SEED)
    # How long a dock takes when nothing goes wrong, per kind of card: the range of the instants.
    # The faster of two docks: the first one also pays for cold caches.
    baseline_s = {wipe: min(station.uninterrupted(station.new_card(index * 2 + wipe, wipe=wipe))
                            for index in range(2))
                  for wipe in (False, True)}
    instants: list[Instant] = []
    started = time.monotonic()
    for index in range(4, 4 + INSTANTS):
        if time.monotonic() - started > BUDGET_S:
            break
        wipe = index % 4 == 3
        card = station.new_card(index, wipe=wipe)
        # Not for ext4: a mount left read-write mid-wipe on a lingering loop, beside a second
        # loop on the same image, is two devices writing one card — no real dock can do that.
        after_kill = rng.choice((LEFT_DOCKED, UNMOUNTED_AND_PULLED) if wipe else AFTER_KILL)
        instants.append(station.kill_while_docked(card, rng.uniform(0, baseline_s[wipe]), after_kill))
    exit_code = station.daemon.stop()
    assert exit_code == 0, station.daemon.output()[-3000:]
    verify = run_cli_process("--config", str(station.config), "verify")
    measured = measure(station.config, station.sources)
    premature = sum(instant.premature_wipes for instant in instants)

    delays = [instant.delay_s for instant in instants]
    stages = Counter(instant.stage for instant in instants)
    after_kills = Counter(instant.after_kill for instant in instants)
    stale = sum(1 for instant in instants if instant.stale_mounts)
    multipart = f", {incomplete_multipart_uploads(station)} multipart uploads left incomplete" \
        if backend == "s3" else ""
    # The record's message is cut at 300 characters: the figures first, the detail printed.
    message = (
        f"{len(instants)} of {INSTANTS} instants (seed {SEED}), delay {min(delays):.3f}-"
        f"{max(delays):.3f} s after the dock (uninterrupted {baseline_s[False]:.2f} s vfat, "
        f"{baseline_s[True]:.2f} s ext4+wipe): {measured.archived} of {len(station.sources)} files "
        f"archived, verify exit {verify.returncode}{multipart}; {stale} kills left a mount behind"
    )
    print(message)
    print(f"in {time.monotonic() - started:.0f} s; at the kill: "
          + ", ".join(f"{count} {stage}" for stage, count in stages.most_common())
          + "; then: " + ", ".join(f"{after_kills[what]} {what}" for what in AFTER_KILL))
    fault_log("kill -9 of run with a docked device",
              f"SIGKILL of `run` at random instants while a card is docked ({backend})",
              injected_by=f"SIGKILL at {len(instants)} instants uniform in [0, uninterrupted dock "
                          "time]; card left docked, or pulled (losetup --detach) with or without "
                          "umount -l first; restart, dock again",
              files_lost=measured.files_lost, wrongly_archived=measured.wrongly_archived,
              duplicates=measured.duplicates, premature_wipes=premature, exit_code=exit_code,
              message=message)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert (measured.files_lost, measured.wrongly_archived, measured.duplicates, premature) == (0, 0, 0, 0)
    assert measured.archived == len(station.sources)
    assert len(instants) >= min(INSTANTS, 10), message  # a budget too small to mean anything
