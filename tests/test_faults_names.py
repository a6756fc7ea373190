"""Hostile trees: names and shapes a device (or someone with a card writer) can present. Each
kind is ingested on its own card; every regular file must be archived bit-exact, links are
never followed, special files never opened, and the operator sees an honest exit code."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from .faultcheck import hashes_of, measure
from .faultlog import FaultLog
from .helpers import write_config


def _newline(card: Path) -> None:
    (card / "line\nbreak.mp4").write_bytes(b"newline in the name")


def _invalid_utf8(card: Path) -> None:
    with open(os.path.join(os.fsencode(card), b"gbk-\xd6\xd0\xce\xc4.mp4"), "wb") as handle:
        handle.write(b"GBK bytes in the name, not UTF-8")


def _escapes(card: Path) -> None:
    (card / "clip\x1b[2J\x1b]0;title\x07.mp4").write_bytes(b"escape sequences in the name")


def _long_name(card: Path) -> None:
    (card / ("长" * 85)).write_bytes(b"255 bytes of UTF-8 in one name")  # 85 x 3 bytes


def _deep(card: Path) -> None:
    path = card
    for level in range(100):
        path = path / f"d{level}"
    path.mkdir(parents=True)
    (path / "deep.mp4").write_bytes(b"100 directories down")


def _many(card: Path) -> None:
    folder = card / "DCIM"
    folder.mkdir()
    for index in range(10_000):
        (folder / f"IMG{index:05d}.JPG").write_bytes(b"%05d" % index)


def _fifo(card: Path) -> None:
    os.mkfifo(card / "pipe.mp4")
    (card / "beside-the-pipe.mp4").write_bytes(b"a file next to a FIFO")


def _symlink_loop(card: Path) -> None:
    os.symlink("loop-b", card / "loop-a")
    os.symlink("loop-a", card / "loop-b")
    (card / "sub").mkdir()
    os.symlink("..", card / "sub" / "up")
    (card / "sub" / "real.mp4").write_bytes(b"a file beside a directory loop")


def _sparse(card: Path) -> None:
    with (card / "sparse.mp4").open("wb") as handle:
        handle.write(b"head")
        handle.seek(10 * 1024**3 - 4)
        handle.write(b"tail")


SHM = Path("/dev/shm")

CASES: dict[str, tuple[Callable[[Path], None], str]] = {
    "newline": (_newline, "a newline in a file name"),
    "invalid-utf8": (_invalid_utf8, "a GBK (not UTF-8) file name"),
    "escapes": (_escapes, "ESC/BEL sequences in a file name"),
    "255-bytes": (_long_name, "a 255-byte file name"),
    "100-levels": (_deep, "a file 100 directories deep"),
    "10000-files": (_many, "10,000 files in one directory"),
    "fifo": (_fifo, "a FIFO named like a video"),
    "symlink-loop": (_symlink_loop, "symbolic link loops (file and directory)"),
    "sparse-10GB": (_sparse, "a sparse 10 GiB file"),
}


@pytest.mark.slow
@pytest.mark.parametrize("kind", list(CASES))
def test_hostile_tree_is_archived_without_loss(kind: str, tmp_path: Path, fault_log: FaultLog) -> None:
    make, description = CASES[kind]
    if kind == "sparse-10GB":
        free = os.statvfs(tmp_path)
        if free.f_bavail * free.f_frsize < 25 * 1024**3:
            pytest.skip("needs 25 GiB free for the spool copy of a 10 GiB file")
    card = tmp_path / "card"
    card.mkdir()
    make(card)
    regular = [Path(os.fsdecode(os.path.join(directory, name)))
               for directory, _, names in os.walk(os.fsencode(card))
               for name in names
               if os.path.isfile(os.path.join(directory, name))
               and not os.path.islink(os.path.join(directory, name))]
    sources = hashes_of(regular) if kind != "sparse-10GB" else {
        card / "sparse.mp4": _sparse_sha256()}
    # The station's own disk is tmpfs where it can be (not for the 10 GiB spool copy): the
    # names are the point here, and ~15 fsyncs a file would make 10,000 files take minutes.
    state_root = tmp_path if kind == "sparse-10GB" or not SHM.is_dir() else Path(
        tempfile.mkdtemp(prefix="evidence-names-", dir=SHM))
    try:
        config = write_config(state_root, extra="[ingest]\nprobe = false\n")
        started = time.monotonic()
        env = {key: value for key, value in os.environ.items() if not key.startswith("EVIDENCE_")}
        process = subprocess.Popen(
            [sys.executable, "-m", "evidence_daemon", "--config", str(config), "ingest", str(card)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        )
        stdout, stderr = process.communicate(timeout=600)
        seconds = time.monotonic() - started
        _check_and_record(kind, description, config, sources, process.returncode, stdout, stderr,
                          seconds, fault_log)
    finally:
        if state_root != tmp_path:
            shutil.rmtree(state_root, ignore_errors=True)


def _check_and_record(kind: str, description: str, config: Path, sources: dict[Path, str],
                      returncode: int, stdout: str, stderr: str, seconds: float,
                      fault_log: FaultLog) -> None:
    result = subprocess.CompletedProcess([], returncode, stdout, stderr)
    assert result.returncode == 0, result.stdout + result.stderr
    assert not any(ch in result.stdout for ch in "\x1b\x07")
    measured = measure(config, sources)
    assert (measured.archived, measured.wrongly_archived, measured.duplicates) == (len(sources), 0, 0)
    counts = ", ".join(line.strip() for line in result.stdout.splitlines()[1:]
                       if line.strip()[:1].isdigit())
    fault_log("hostile names and trees", description, injected_by=f"card with {kind}",
              files_lost=measured.files_lost, wrongly_archived=measured.wrongly_archived,
              duplicates=measured.duplicates, exit_code=result.returncode,
              message=f"{counts}; ingest took {seconds:.1f} s")


def _sparse_sha256() -> str:
    import hashlib

    digest = hashlib.sha256(b"head")
    zeros = bytes(64 * 1024 * 1024)
    remaining = 10 * 1024**3 - 8
    while remaining:
        step = min(remaining, len(zeros))
        digest.update(memoryview(zeros)[:step])
        remaining -= step
    digest.update(b"tail")
    return digest.hexdigest()
