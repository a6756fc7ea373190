"""What every benchmark shares: the machine and versions a figure was measured on, a child
process's CPU and memory, the S3 servers (the tests' own, in ``tests/s3server.py`` and
``tests/rgw.py``), ``evidence-daemon serve`` as its own process, and the benchmark's section of
``docs/performance.md`` rewritten in place between its markers.

A benchmark must never leave a server behind: every server here is a context manager that
stops its process (by PID, never by name) on the way out, and dies with the benchmark.
"""

from __future__ import annotations

import argparse
import importlib
import json
import shlex
import multiprocessing
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import time
from datetime import datetime, timezone
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import httpx  # noqa: E402

from tests import rgw  # noqa: E402
from tests.s3server import S3TestServer  # noqa: E402

VENV_BIN = Path(sys.executable).parent
DAEMON = VENV_BIN / "evidence-daemon"
MIB = 1 << 20
GIB = 1 << 30
MB = 1_000_000  # figures are in MB = 10^6 bytes, as the CLI prints them
RGW_DAEMONS = ("ceph-mon", "ceph-osd", "radosgw")


# -- the machine and the versions ----------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def first_line(argv: Sequence[str]) -> str:
    """The first line a command prints (its version, usually), or "not available"."""
    try:
        completed = subprocess.run(list(argv), capture_output=True, text=True, check=False, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return "not available"
    text = (completed.stdout or completed.stderr).strip()
    return text.splitlines()[0] if text else "not available"


def machine_facts(workdir: Path | None = None) -> dict[str, str]:
    """CPUs, RAM and kernel; with ``workdir``, also the disk it is on (``disk``, ``fstype``)."""
    cpu_model = "unknown"
    for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
        if line.startswith("model name"):
            cpu_model = line.partition(":")[2].strip()
            break
    memory_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / GIB
    facts = {"cpus": f"{os.cpu_count()} CPUs ({cpu_model})", "ram": f"{memory_gib:.1f} GiB",
             "kernel": platform.release()}
    if workdir is None:
        return facts
    source, fstype = "unknown", "unknown"
    found = first_line(["findmnt", "-no", "SOURCE,FSTYPE", "-T", str(workdir)]).split()
    if len(found) == 2:
        source, fstype = found
    disk = f"{source} ({fstype})"
    device = Path(source).name
    for candidate in (Path(f"/sys/class/block/{device}/queue/rotational"),
                      Path(f"/sys/class/block/{device}/../queue/rotational")):
        if candidate.exists():
            disk += f", queue/rotational={candidate.read_text().strip()}"
            break
    if Path(f"/sys/class/block/{device}/device/driver").exists():
        disk += f", driver {Path(os.path.realpath(f'/sys/class/block/{device}/device/driver')).name}"
    disk += f", {shutil.disk_usage(workdir).total / 1e9:.0f} GB"
    return {**facts, "disk": disk, "fstype": fstype}


def machine() -> str:
    facts = machine_facts()
    return f"{facts['cpus']}, {facts['ram']} RAM, Linux {facts['kernel']}"


def module_version(name: str) -> str:
    try:
        return str(getattr(importlib.import_module(name), "__version__", "?"))
    except ImportError:
        return "not installed"


def versions(modules: Sequence[str] = (), extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The code measured (git commit, and whether ``evidence_daemon/`` had uncommitted changes),
    Python, the given modules' versions and ``extra`` (tools, notes) in that order."""
    git = first_line(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"])
    dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--", "evidence_daemon"],
                           capture_output=True, text=True, check=False).stdout.strip()
    found = {"evidence-daemon": f"{module_version('evidence_daemon')} (git {git}"
                                + (", with uncommitted changes in evidence_daemon/" if dirty else "") + ")",
             "python": platform.python_version()}
    found.update((name, module_version(name)) for name in modules)
    found.update(extra or {})
    return found


def versions_text(found: Mapping[str, str]) -> str:
    return ", ".join(f"{name} {value}" for name, value in found.items())


# -- processes ------------------------------------------------------------------------------------

def peak_rss_mb(pid: int) -> float | None:
    """The kernel's high-water mark of a process's resident memory (VmHWM); None once it is gone."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024 / MB
    except (OSError, ValueError):
        return None
    return None  # a zombie has no memory lines


def rss_mb(pid: int) -> float:
    """A process's resident memory now (VmRSS), 0 when it is gone."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024 / MB
    except OSError:
        pass
    return 0.0


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process so far (all its threads)."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        fields = stat.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children(names: Sequence[str]) -> list[int]:
    """The PIDs of this process's children whose command name is one of ``names``."""
    parent, found = os.getpid(), []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text(encoding="ascii")
        except OSError:
            continue
        comm = stat[stat.index("(") + 1:stat.rindex(")")]
        ppid = int(stat.rpartition(")")[2].split()[1])
        if ppid == parent and comm in names:
            found.append(int(entry.name))
    return found


def stop_process(process: subprocess.Popen[bytes], timeout_s: float = 20) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def cli_env() -> dict[str, str]:
    """The environment for the daemon's commands: without the tests' ``EVIDENCE_*`` settings."""
    return {key: value for key, value in os.environ.items() if not key.startswith("EVIDENCE_")}


def run_cli(*args: str) -> str:
    done = subprocess.run([str(DAEMON), *args], capture_output=True, text=True, env=cli_env(),
                          check=False)
    if done.returncode != 0:
        raise RuntimeError(f"evidence-daemon {' '.join(args)}: exit {done.returncode}: "
                           f"{(done.stderr or done.stdout)[-2000:]}")
    return done.stdout


class ApiServer:
    """``evidence-daemon serve`` in its own process, as in production; ready once its catalog
    holds ``expect_recordings``."""

    def __init__(self, config: Path, port: int, log_path: Path, expect_recordings: int = 1) -> None:
        self.base_url = f"http://127.0.0.1:{port}"
        with log_path.open("ab") as log_file:
            self.process = subprocess.Popen(
                [str(DAEMON), "--config", str(config), "serve"], stdout=log_file,
                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=cli_env())
        deadline = time.monotonic() + 60
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"serve exited {self.process.returncode}: "
                                   f"{log_path.read_text()[-2000:]}")
            try:
                health = httpx.get(f"{self.base_url}/healthz", timeout=5).json()
                if health["catalog"]["recordings"] >= expect_recordings:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"serve did not index {expect_recordings} recordings: "
                                   f"{log_path.read_text()[-2000:]}")
            time.sleep(0.2)

    def stop(self) -> None:
        stop_process(self.process)


# -- S3 servers: the tests' own ----------------------------------------------------------------

@dataclass(frozen=True)
class S3Server:
    """A running test S3 server, with the CPU and memory of its processes for the report."""

    server: S3TestServer
    label: str
    pids: Callable[[], list[int]]

    @property
    def endpoint(self) -> str:
        return self.server.endpoint

    @property
    def access_key(self) -> str:
        return self.server.access_key

    @property
    def secret_key(self) -> str:
        return self.server.secret_key

    @property
    def is_moto(self) -> bool:
        return self.server.is_moto

    def cpu_s(self) -> float:
        return sum(cpu_s(pid) for pid in self.pids())

    def rss_mb(self) -> float:
        return sum(rss_mb(pid) for pid in self.pids())

    def make_bucket(self, bucket: str) -> str:
        """A fresh bucket with Object Lock (hence versioning), as a station's is made; how."""
        self.server.client().make_bucket(bucket, object_lock=True)
        return "`Minio.make_bucket(object_lock=True)`"

    def archive_settings(self, bucket: str) -> dict[str, Any]:
        """The ``[archive]`` table of a station using this server, otherwise the defaults."""
        return {"backend": "s3", "endpoint": self.endpoint, "bucket": bucket,
                "access_key": self.access_key, "secret_key": self.secret_key, "secure": False}


def _serve_moto(connection: Connection) -> None:
    """In a child process: the tests' moto server until the parent says stop (or goes)."""
    from tests.s3server import moto_s3_server

    with moto_s3_server() as endpoint:
        connection.send(endpoint)
        try:
            connection.recv()
        except EOFError:
            pass


@contextmanager
def moto_server() -> Iterator[S3Server]:
    """``tests.s3server.moto_s3_server`` in a process of its own, so moto's CPU (it is bound by
    it) is not the benchmark's, and its memory (it keeps every byte) goes when it stops."""
    from tests.s3server import MOTO_ACCESS_KEY, MOTO_SECRET_KEY

    context = multiprocessing.get_context("spawn")
    ours, theirs = context.Pipe()
    process = context.Process(target=_serve_moto, args=(theirs,), daemon=True, name="moto")
    process.start()
    try:
        if not ours.poll(60):
            raise RuntimeError("the moto server did not start within 60 s")
        endpoint = ours.recv()
        pid = process.pid
        assert pid is not None
        yield S3Server(S3TestServer(endpoint, MOTO_ACCESS_KEY, MOTO_SECRET_KEY, secure=False,
                                    kind="moto"), "moto", lambda: [pid])
    finally:
        ours.send("stop")
        process.join(20)
        if process.is_alive():
            process.kill()
            process.join()


@contextmanager
def rgw_server(workdir: Path) -> Iterator[S3Server]:
    """The tests' throw-away Ceph RGW cluster (``tests/rgw.py``) under ``workdir/rgw``, on a real
    disk (the OSD's block file is there). Its daemons are our children, stopped by PID."""
    directory = workdir / "rgw"
    directory.mkdir(parents=True)
    with rgw.rgw_cluster(directory) as cluster:
        yield S3Server(S3TestServer(cluster.endpoint, cluster.access_key, cluster.secret_key,
                                    secure=False, kind="rgw"), "Ceph RGW",
                       lambda: children(RGW_DAEMONS))


def rgw_missing_reason() -> str | None:
    """Why RGW cannot run here (the Ceph packages to install), or None."""
    return rgw.missing_reason()


# -- the report ---------------------------------------------------------------------------------

def write_doc(path: Path, section: str, begin: str, end: str) -> None:
    """Replace the text between ``begin`` and ``end`` (the markers included in ``section``),
    or append ``section`` when the markers are not there yet; atomically."""
    if path.exists():
        text = path.read_text(encoding="utf-8")
    else:
        text = "# Performance\n\nMeasured figures, each with its date, machine and command.\n"
    if begin in text and end in text:
        head, _, rest = text.partition(begin)
        text = head + section.rstrip("\n") + rest.partition(end)[2]
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(path.name + ".tmp")
    temp.write_text(text, encoding="utf-8")
    os.replace(temp, path)


def section_head(begin: str, title: str, *, run_at: str, total_s: float, command: str,
                 found_versions: Mapping[str, str] | None = None,
                 machine_text: str | None = None) -> list[str]:
    """The opening lines every benchmark's section has: its marker, title, when, how long, the
    exact command, the machine and the versions."""
    lines = [begin, title, "", f"Run {run_at}, {total_s:.0f} s in all:", "", "```", command, "```",
             "", f"- Machine: {machine_text or machine()}"]
    if found_versions is not None:
        lines.append(f"- Versions: {versions_text(found_versions)}")
    return lines


def run_at() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def command_line(script: str, argv: Sequence[str] | None) -> str:
    """How this run was started, as the report shows it (from the repository root)."""
    return " ".join([".venv/bin/python", f"benchmarks/{script}",
                     *map(shlex.quote, sys.argv[1:] if argv is None else argv)])


def output_arguments(parser: argparse.ArgumentParser, script: str, *, results: bool = True) -> None:
    """``--workdir``, ``--out`` and (with ``results``) ``--results``, as every benchmark has."""
    parser.add_argument("--workdir", type=Path, default=None,
                        help="where generated data goes (default /var/tmp; not tmpfs)")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "performance.md",
                        help="markdown file whose generated section is written")
    if results:
        parser.add_argument("--results", type=Path,
                            default=REPO / "benchmarks" / "results" / f"{script.removesuffix('.py')}.json",
                            help="raw figures as JSON (benchmarks/results/ is not in git)")


def publish(section: str, begin: str, end: str, out: Path, results_path: Path | None = None,
            results: Mapping[str, Any] | None = None) -> None:
    """Print the section, write it into ``out`` between its markers and the raw figures (JSON)
    to ``results_path``."""
    print()
    print(section)
    out = out if out.is_absolute() else Path.cwd() / out
    write_doc(out, section, begin, end)
    written = [str(out)]
    if results_path is not None and results is not None:
        results_path = results_path if results_path.is_absolute() else Path.cwd() / results_path
        results_path.parent.mkdir(parents=True, exist_ok=True)
        results_path.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
        written.append(str(results_path))
    print(f"wrote {' and '.join(written)}")
