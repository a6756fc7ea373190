"""Ingest throughput and peak memory of ``evidence-daemon ingest``, beside baselines from the same run.

Usage (from the repository root)::

    .venv/bin/python benchmarks/ingest.py [--gib N] [--files K] [--rss-gib M] [--repeat R]
                                          [--s3 rgw|moto] [--skip-s3] [--workdir DIR]
                                          [--out docs/performance.md]

Cases, each on a fresh destination, each timed wall-clock around one command:

  (a)  ``cp -r tree copy && openssl dgst -sha256 copy/*`` -- the baseline: copy and hash
  (a') the same with ``sync`` before the hash -- context only: (a) leaves its copy in the page
       cache, while ingest makes every copy durable (fsync) before it counts
  (b)  ``evidence-daemon ingest`` to a filesystem archive
  (c)  ``rclone copy`` of the tree to the S3 test server
  (d)  ``evidence-daemon ingest`` to the same S3 server (a fresh bucket)
  (e)  one file of ``--rss-gib`` GiB ingested to the filesystem archive (and to S3 unless
       ``--skip-s3``, beside ``rclone copy`` of the same file): peak RSS of the ingest process
       (``VmHWM``), and on S3 its time against rclone's

The S3 server (``--s3``): ``rgw`` (the default), the tests' throw-away Ceph RADOS Gateway
(``tests/rgw.py`` through ``benchmarks/common.py``), started once for the run, a fresh
bucket with Object Lock per case -- a real server that is not the bottleneck; or ``moto``,
the tests' moto server (``tests/s3server.py``) in its own process, fresh for every case --
bound by its own CPU, so it measures moto more than the clients. rclone is Debian's ``rclone`` package (``apt-get install
rclone``); without it the rclone cases are skipped and the report says so.

Cases (a)-(d) run ``--repeat`` times (default 3), interleaved, and the table shows medians: on a
virtual disk the speed of durable writes varies several-fold from minute to minute (1 GiB
with fsync measured here between 0.7 and 3.3 s), and a single run would mostly measure that.

Before each case the page cache is dropped (``sync; echo 3 > /proc/sys/vm/drop_caches``) so
every case reads its source cold; where that is not permitted every case is given a warm
cache instead (the tree is read once just before it), and the report says which.

This is a benchmark, not a test: it asserts nothing. It prints a table and writes it into
``docs/performance.md`` between the markers below, leaving the rest of that file alone. All
generated data lives in one temporary directory, deleted at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.common import (  # noqa: E402
    DAEMON, GIB, MB, S3Server, command_line, first_line, load_average, machine_facts,
    moto_server, output_arguments, peak_rss_mb, rgw_missing_reason, rgw_server, run_at,
    section_head, versions, write_doc,
)

WRITE_CHUNK_BYTES = 16 << 20
RSS_TARGET_MB = 150.0

BEGIN_MARK = "<!-- BEGIN benchmarks/ingest.py (generated: rerun the script to update) -->"
END_MARK = "<!-- END benchmarks/ingest.py -->"


# -- measuring one command ----------------------------------------------------------------

@dataclass
class Measurement:
    label: str
    description: str
    size_bytes: int
    seconds: float = 0.0
    ok: bool = False
    note: str = ""
    cpu_s: float = 0.0  # user + system of the process and its waited-for children
    peak_rss_mb: float | None = None  # the measured process itself (VmHWM)
    tree_rss_mb: float | None = None  # the largest process in its tree (ru_maxrss)
    server_cpu_s: float | None = None  # the S3 server's CPU while the case ran
    skipped: str = ""
    runs: list[float] = field(default_factory=list)  # seconds of every run, when repeated

    @property
    def mb_per_s(self) -> float:
        return self.size_bytes / MB / self.seconds if self.seconds else 0.0

    @property
    def seconds_text(self) -> str:
        if len(self.runs) < 2:
            return f"{self.seconds:.2f}"
        return f"{self.seconds:.2f} ({min(self.runs):.2f}–{max(self.runs):.2f})"


def combine(samples: list[Measurement]) -> Measurement:
    """Repeated runs of one case as one row: the median run's figures, the worst peak RSS."""
    ranked = sorted(samples, key=lambda sample: sample.seconds)
    median = ranked[(len(ranked) - 1) // 2] if len(ranked) % 2 else None
    if median is None:  # even count: the mean of the middle two, other figures from the lower one
        low, high = ranked[len(ranked) // 2 - 1], ranked[len(ranked) // 2]
        median = dataclasses.replace(low, seconds=(low.seconds + high.seconds) / 2)
    else:
        median = dataclasses.replace(median)
    median.runs = [sample.seconds for sample in samples]
    median.ok = all(sample.ok for sample in samples)
    median.note = "; ".join(sample.note for sample in samples if sample.note)
    rss = [sample.peak_rss_mb for sample in samples if sample.peak_rss_mb is not None]
    median.peak_rss_mb = max(rss) if rss else None
    tree_rss = [sample.tree_rss_mb for sample in samples if sample.tree_rss_mb is not None]
    median.tree_rss_mb = max(tree_rss) if tree_rss else None
    return median


@dataclass
class Completed:
    returncode: int
    seconds: float
    cpu_s: float
    peak_rss_mb: float | None
    tree_rss_mb: float
    stdout: str
    stderr: str


def run_timed(argv: Sequence[str], *, logs: Path, env: dict[str, str] | None = None) -> Completed:
    """Run ``argv`` to completion: wall time, CPU and peak memory, without a shell in between.

    The peak RSS of the process itself is its kernel high-water mark (VmHWM), polled every
    20 ms until it exits (the mark only grows, so the last reading is the peak to within the
    final 20 ms). ``wait4`` adds the CPU and largest RSS of the whole process tree.
    """
    logs.mkdir(parents=True, exist_ok=True)
    out_path, err_path = logs / "stdout.txt", logs / "stderr.txt"
    with out_path.open("wb") as out, err_path.open("wb") as err:
        started = time.perf_counter()
        process = subprocess.Popen(list(argv), stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=env)
        peak_mb: list[float] = [0.0]
        finished = threading.Event()

        def poll() -> None:
            while not finished.is_set():
                reading = peak_rss_mb(process.pid)
                if reading is not None:
                    peak_mb[0] = max(peak_mb[0], reading)
                finished.wait(0.02)

        poller = threading.Thread(target=poll, daemon=True)
        poller.start()
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - started
        finished.set()
        poller.join()
        process.returncode = os.waitstatus_to_exitcode(status)
    return Completed(
        returncode=process.returncode,
        seconds=seconds,
        cpu_s=usage.ru_utime + usage.ru_stime,
        peak_rss_mb=peak_mb[0] or None,
        tree_rss_mb=usage.ru_maxrss * 1024 / MB,
        stdout=out_path.read_text(errors="replace"),
        stderr=err_path.read_text(errors="replace"),
    )


def _tail(text: str, lines: int = 6) -> str:
    return " | ".join(line.strip() for line in text.strip().splitlines()[-lines:])


# -- page cache -------------------------------------------------------------------------

class Cache:
    """Gives every case the same starting point: a cold page cache, or (unprivileged) a warm one."""

    def __init__(self, *, want_cold: bool = True) -> None:
        self.cold = want_cold and self._drop()
        if want_cold and not self.cold:
            self.reason = "writing /proc/sys/vm/drop_caches is not permitted"
        else:
            self.reason = "" if self.cold else "asked for with --warm"

    @staticmethod
    def _drop() -> bool:
        os.sync()
        try:
            with open("/proc/sys/vm/drop_caches", "w", encoding="ascii") as control:
                control.write("3\n")
        except OSError:
            return False
        return True

    def prepare(self, source: Path) -> None:
        if self.cold:
            self._drop()
            return
        os.sync()
        for path in sorted(source.rglob("*")):
            if path.is_file():
                with path.open("rb", buffering=0) as handle:
                    while handle.read(WRITE_CHUNK_BYTES):
                        pass

    @property
    def description(self) -> str:
        if self.cold:
            return ("cold: `sync; echo 3 > /proc/sys/vm/drop_caches` before every case, so each case "
                    "reads its source from disk (as the guest sees it; a hypervisor may still cache)")
        return (f"warm ({self.reason}): before every case the source tree is read once, so every "
                "case reads it from the page cache")


# -- data -------------------------------------------------------------------------------

def footage_name(index: int, start: datetime) -> str:
    """A common body-camera name: <device>_<officer>_<YYYYMMDDhhmmss>_<seq>.MP4."""
    moment = start + timedelta(minutes=10 * index)
    return f"DSJ001_10086_{moment:%Y%m%d%H%M%S}_{index + 1:04d}.MP4"


def make_tree(root: Path, total_bytes: int, files: int, *, start: datetime) -> list[Path]:
    """``files`` files of random bytes (footage is incompressible), ``total_bytes`` in all."""
    root.mkdir(parents=True)
    base, extra = divmod(total_bytes, files)
    paths = []
    for index in range(files):
        path = root / footage_name(index, start)
        remaining = base + (1 if index < extra else 0)
        with path.open("wb", buffering=0) as handle:
            while remaining:
                chunk = os.urandom(min(WRITE_CHUNK_BYTES, remaining))
                handle.write(chunk)
                remaining -= len(chunk)
        paths.append(path)
    os.sync()
    return paths


# -- the cases ---------------------------------------------------------------------------

def write_config(path: Path, state_dir: Path, archive: dict[str, object]) -> Path:
    def value(item: object) -> str:
        if isinstance(item, bool):
            return "true" if item else "false"
        return '"' + str(item).replace("\\", "\\\\").replace('"', '\\"') + '"'

    lines = ["[station]", 'id = "bench"', f"state_dir = {value(state_dir)}", "[archive]"]
    lines += [f"{key} = {value(item)}" for key, item in archive.items()]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def archived_count(stdout: str) -> int:
    match = re.search(r"^\s*(\d+)\s+archived", stdout, re.MULTILINE)
    return int(match.group(1)) if match else 0


def case_baseline(label: str, tree: Path, work: Path, size: int, cache: Cache, *, with_sync: bool) -> Measurement:
    copy = work / "copy"
    sync = " && sync" if with_sync else ""
    script = f"cp -r {shlex.quote(str(tree))} {shlex.quote(str(copy))}{sync} && openssl dgst -sha256 {shlex.quote(str(copy))}/*"
    description = ("`cp -r tree copy && sync && openssl dgst -sha256 copy/*`" if with_sync
                   else "`cp -r tree copy && openssl dgst -sha256 copy/*`")
    result = Measurement(label, description, size)
    cache.prepare(tree)
    done = run_timed(["sh", "-c", script], logs=work / "logs")
    files = sum(1 for path in tree.iterdir() if path.is_file())
    result.seconds, result.cpu_s, result.tree_rss_mb = done.seconds, done.cpu_s, done.tree_rss_mb
    result.ok = done.returncode == 0 and done.stdout.count("SHA2-256(") == files
    if not result.ok:
        result.note = f"exit {done.returncode}: {_tail(done.stderr)}"
    shutil.rmtree(copy, ignore_errors=True)
    return result


def case_ingest(label: str, description: str, tree: Path, work: Path, size: int, cache: Cache,
                archive: dict[str, object], files: int, server: S3Server | None = None) -> Measurement:
    config = write_config(work / "config.toml", work / "state", archive)
    result = Measurement(label, description, size)
    cache.prepare(tree)
    server_cpu_before = server.cpu_s() if server else 0.0
    done = run_timed([str(DAEMON), "--config", str(config), "ingest", str(tree), "--device-id", "BENCH"],
                     logs=work / "logs")
    if server:
        result.server_cpu_s = server.cpu_s() - server_cpu_before
    result.seconds, result.cpu_s = done.seconds, done.cpu_s
    result.peak_rss_mb, result.tree_rss_mb = done.peak_rss_mb, done.tree_rss_mb
    archived = archived_count(done.stdout)
    result.ok = done.returncode == 0 and archived == files
    if not result.ok:
        result.note = f"exit {done.returncode}, {archived}/{files} archived: {_tail(done.stderr or done.stdout)}"
    for name in ("state", "archive"):
        shutil.rmtree(work / name, ignore_errors=True)
    return result


def case_rclone(label: str, tree: Path, work: Path, size: int, cache: Cache, server: S3Server,
                bucket: str) -> Measurement:
    # moto answers 400 to the HEAD rclone makes after an upload; RGW answers it, and rclone
    # then checks the stored copy, as the station does.
    no_head = ["--s3-no-head"] if server.is_moto else []
    result = Measurement(label, f"`rclone copy {' '.join(no_head + [''])}tree {server.label}:bucket`",
                         size)
    env = {key: value for key, value in os.environ.items() if key != "AWS_CA_BUNDLE"}
    env.update({
        "RCLONE_CONFIG": str(work / "rclone.conf"),  # absent: only the variables below count
        "RCLONE_CONFIG_BENCH_TYPE": "s3",
        "RCLONE_CONFIG_BENCH_PROVIDER": "Other",
        "RCLONE_CONFIG_BENCH_ENV_AUTH": "false",
        "RCLONE_CONFIG_BENCH_ENDPOINT": f"http://{server.endpoint}",
        "RCLONE_CONFIG_BENCH_REGION": "us-east-1",
        "RCLONE_CONFIG_BENCH_ACCESS_KEY_ID": server.access_key,
        "RCLONE_CONFIG_BENCH_SECRET_ACCESS_KEY": server.secret_key,
    })
    cache.prepare(tree)
    before = server.cpu_s()
    done = run_timed(["rclone", "copy", *no_head, str(tree), f"bench:{bucket}"],
                     logs=work / "logs", env=env)
    result.server_cpu_s = server.cpu_s() - before
    result.seconds, result.cpu_s, result.tree_rss_mb = done.seconds, done.cpu_s, done.tree_rss_mb
    result.peak_rss_mb = done.peak_rss_mb
    result.ok = done.returncode == 0
    if not result.ok:
        result.note = f"exit {done.returncode}: {_tail(done.stderr)}"
    return result


# -- reference costs (context for reading the table) ----------------------------------------

def reference_costs(paths: list[Path]) -> dict[str, float]:
    """Per-stage costs measured here on the same files, warm: what an ingest cannot avoid."""
    import hashlib

    for path in paths:  # warm, so these say CPU cost, not disk
        with path.open("rb", buffering=0) as handle:
            while handle.read(WRITE_CHUNK_BYTES):
                pass
    started = time.perf_counter()
    size = 0
    for path in paths:
        digest = hashlib.sha256()
        with path.open("rb", buffering=0) as handle:
            while chunk := handle.read(4 << 20):
                digest.update(chunk)
                size += len(chunk)
    sha_mb_s = size / MB / (time.perf_counter() - started)
    started = time.perf_counter()
    for path in paths:
        subprocess.run(["ffprobe", "-v", "error", "-hide_banner", "-protocol_whitelist", "file",
                        "-pattern_type", "none", "-show_format", "-show_streams", "-of", "json",
                        f"file:{path}"], capture_output=True, check=False)
    probe_s = (time.perf_counter() - started) / len(paths)
    return {"sha256_mb_s": sha_mb_s, "ffprobe_s_per_file": probe_s}


def report_versions() -> dict[str, str]:
    return versions(("moto", "minio", "boto3"), {
        "ffmpeg": first_line(["ffmpeg", "-version"]).split(" Copyright")[0].removeprefix("ffmpeg version "),
        "openssl": first_line(["openssl", "version"]).split(" (")[0].removeprefix("OpenSSL "),
        "rclone": first_line(["rclone", "version"]).removeprefix("rclone "),
        "Ceph": (first_line(["radosgw", "--version"]).removeprefix("ceph version ").split(" (")[0]
                 if shutil.which("radosgw") else "not installed"),
    })


# -- report ------------------------------------------------------------------------------

@dataclass
class Report:
    command: str
    started: str
    machine: dict[str, str]
    versions: dict[str, str]
    cache: str
    data: str
    rows: list[Measurement] = field(default_factory=list)
    rss_rows: list[Measurement] = field(default_factory=list)
    references: dict[str, float] = field(default_factory=dict)
    total_s: float = 0.0
    repeat: int = 1
    server: str = "moto"  # the S3 server's label
    load: str = ""  # load average at the start and the end

    def row(self, label: str) -> Measurement | None:
        return next((row for row in self.rows + self.rss_rows if row.label == label), None)


def _fmt(value: float | None, spec: str = ".1f") -> str:
    return "–" if value is None else format(value, spec)


def _ratio(row: Measurement, base: Measurement | None) -> str:
    if base is None or not base.ok or not row.ok or row.skipped or not base.seconds:
        return "–"
    return f"{row.seconds / base.seconds:.2f}×"


def _versus_rclone(report: Report, row: Measurement) -> str:
    """Ingest to S3 against rclone's copy of the same data: (d) vs (c), (e-s3) vs (e-rclone)."""
    base = {"d": "c", "e-s3": "e-rclone"}.get(row.label)
    return _ratio(row, report.row(base)) if base else "–"


def table(report: Report) -> list[str]:
    baseline = report.row("a")
    lines = [
        f"| case | command | seconds{' median (min–max)' if report.repeat > 1 else ''} | MB/s | time vs (a) | time vs rclone | CPU s (user+sys) | peak RSS MB (process / largest in tree) | {report.server} CPU s |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in report.rows + report.rss_rows:
        if row.skipped:
            lines.append(f"| ({row.label}) | {row.description} | skipped: {row.skipped} | | | | | | |")
            continue
        status = "" if row.ok else f" **FAILED**: {row.note}"
        lines.append(
            f"| ({row.label}) | {row.description}{status} | {row.seconds_text} | {row.mb_per_s:.0f} | "
            f"{_ratio(row, baseline) if not row.label.startswith('e') else '–'} | "
            f"{_versus_rclone(report, row)} | "
            f"{row.cpu_s:.1f} | {_fmt(row.peak_rss_mb, '.0f')} / {_fmt(row.tree_rss_mb, '.0f')} | "
            f"{_fmt(row.server_cpu_s)} |"
        )
    return lines


def verdicts(report: Report) -> list[str]:
    results = []

    def compare(name: str, row: Measurement | None, base: Measurement | None) -> None:
        if row is None or base is None or row.skipped or base.skipped:
            results.append(f"- {name}: not measured in this run")
        elif not (row.ok and base.ok):
            results.append(f"- {name}: not decided: a case failed (see the table)")
        else:
            met = row.seconds <= base.seconds
            results.append(
                f"- {name}: **{'met' if met else 'MISSED'}** — {row.seconds:.2f} s vs {base.seconds:.2f} s"
                f"{' (medians)' if len(row.runs) > 1 else ''} "
                f"({row.seconds / base.seconds:.2f}× the time; {row.mb_per_s:.0f} vs {base.mb_per_s:.0f} MB/s)"
            )

    compare("(b) ingest to filesystem at least as fast as (a) cp + openssl", report.row("b"), report.row("a"))
    compare(f"(d) ingest to S3 ({report.server}) at least as fast as (c) rclone", report.row("d"),
            report.row("c"))
    compare(f"(e-s3) one large file: ingest to S3 ({report.server}) at least as fast as (e-rclone)",
            report.row("e-s3"), report.row("e-rclone"))
    for label, target in (("e-fs", "filesystem"), ("e-s3", "S3")):
        row = report.row(label)
        if row is None or row.skipped:
            results.append(f"- peak RSS ≤ {RSS_TARGET_MB:.0f} MB, one large file to {target}: not measured in this run")
        elif not row.ok or row.peak_rss_mb is None:
            results.append(f"- peak RSS ≤ {RSS_TARGET_MB:.0f} MB, one large file to {target}: not decided: the case failed")
        else:
            met = row.peak_rss_mb <= RSS_TARGET_MB
            results.append(
                f"- peak RSS ≤ {RSS_TARGET_MB:.0f} MB, one {row.size_bytes / GIB:g} GiB file to {target}: "
                f"**{'met' if met else 'MISSED'}** — {row.peak_rss_mb:.0f} MB"
            )
    ingest_rows = [row for row in report.rows + report.rss_rows
                   if "evidence-daemon" in row.description and row.ok and row.peak_rss_mb is not None]
    if ingest_rows:
        worst = max(ingest_rows, key=lambda row: row.peak_rss_mb or 0.0)
        assert worst.peak_rss_mb is not None
        results.append(
            f"- (context, not the target's case) highest peak RSS of any ingest in this run: "
            f"{worst.peak_rss_mb:.0f} MB in ({worst.label}), "
            f"{'within' if worst.peak_rss_mb <= RSS_TARGET_MB else 'OVER'} {RSS_TARGET_MB:.0f} MB"
        )
    return results


def markdown(report: Report) -> str:
    lines = [
        *section_head(BEGIN_MARK, "## Ingest throughput and memory (`benchmarks/ingest.py`)",
                      run_at=report.started, total_s=report.total_s, command=report.command,
                      found_versions=report.versions,
                      machine_text=f"{report.machine['cpus']}, {report.machine['ram']} RAM, disk "
                                   f"{report.machine['disk']}, Linux {report.machine['kernel']}"),
        ("- S3 server: the tests' throw-away single-node Ceph RADOS Gateway (`tests/rgw.py`: one "
         "monitor, one bluestore OSD on a sparse file in the work directory, radosgw over plain HTTP "
         "on 127.0.0.1), started once for the run, a fresh bucket with Object Lock per case. Its "
         "daemons share the 2 CPUs with the client being measured (their CPU is the last column)."
         if report.server != "moto" else
         "- S3 server: the tests' moto server (`tests/s3server.py`) in its own process, fresh for every S3 case (there is no MinIO "
         "server on this machine). moto is bound by its own CPU, so S3 figures compare clients with each "
         "other in this run, not with a real MinIO."),
        f"- Load average (1, 5, 15 min) at the start and the end: {report.load}",
        f"- Data: {report.data}",
        f"- Page cache: {report.cache}",
        (f"- Cases (a)–(d) ran {report.repeat} times, interleaved (a, a', b, c, d, a, ...); seconds are the "
         "median with the range; peak RSS is the highest of the runs; the other figures are the median run's. "
         "(e) ran once." if report.repeat > 1 else "- Each case ran once."),
        "- MB = 10^6 bytes. \"time vs\" is seconds divided by the reference's seconds (below 1.00× is faster). "
        "Peak RSS: the measured process's own high-water mark (VmHWM, polled every 20 ms) / the largest "
        "process of its tree (`wait4` ru_maxrss, includes ffprobe, cp, openssl).",
        "",
        *table(report),
        "",
    ]
    if report.references:
        lines += [
            f"Reference costs on the same files (warm cache): Python `hashlib` SHA-256 "
            f"{report.references['sha256_mb_s']:.0f} MB/s on one core; ffprobe "
            f"{report.references['ffprobe_s_per_file']:.2f} s per file.",
            "",
        ]
    lines += ["Targets:", "", *verdicts(report), "", END_MARK]
    return "\n".join(lines) + "\n"


def print_report(report: Report) -> None:
    print()
    print(f"ingest benchmark, {report.started}; {report.machine['cpus']}, {report.machine['ram']} RAM, "
          f"{report.machine['disk']}")
    print(f"page cache: {'cold (dropped before every case)' if report.cache.startswith('cold') else 'warm for every case'}")
    header = f"{'case':11}{'seconds (range)':>19} {'MB/s':>7} {'vs (a)':>7} {'vs rcl':>7} {'CPU s':>6} {'RSS MB':>7} {'srv s':>7}  command"
    print(header)
    print("-" * len(header))
    baseline = report.row("a")
    for row in report.rows + report.rss_rows:
        if row.skipped:
            print(f"{'(' + row.label + ')':11} skipped: {row.skipped}")
            continue
        print(
            f"{'(' + row.label + ')':11}{row.seconds_text:>19} {row.mb_per_s:7.0f} "
            f"{_ratio(row, baseline) if not row.label.startswith('e') else '–':>7} "
            f"{_versus_rclone(report, row):>7} {row.cpu_s:6.1f} "
            f"{_fmt(row.peak_rss_mb, '.0f'):>7} {_fmt(row.server_cpu_s):>7}  {row.description.replace('`', '')}"
            + ("" if row.ok else f"  FAILED: {row.note}")
        )
    if report.references:
        print(f"reference: hashlib SHA-256 {report.references['sha256_mb_s']:.0f} MB/s (one core, warm); "
              f"ffprobe {report.references['ffprobe_s_per_file']:.2f} s/file")
    print()
    for line in verdicts(report):
        print(line.replace("**", ""))


# -- main --------------------------------------------------------------------------------

def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gib", type=float, default=1.0, help="size of the footage tree in GiB (default 1)")
    parser.add_argument("--files", type=int, default=None,
                        help="number of files in the tree (default: one per 256 MiB)")
    parser.add_argument("--rss-gib", type=float, default=2.0,
                        help="size of the single file for the peak-RSS case (default 2; 0 skips it)")
    parser.add_argument("--repeat", type=int, default=3,
                        help="rounds of cases (a)-(d), interleaved; the table shows medians (default 3)")
    parser.add_argument("--warm", action="store_true",
                        help="give every case a warm page cache instead of dropping it before each")
    parser.add_argument("--skip-s3", action="store_true", help="skip the S3 cases (c), (d) and (e) to S3")
    parser.add_argument("--s3", choices=("rgw", "moto"), default="rgw",
                        help="the S3 server: the tests' Ceph RGW cluster (default) or moto_server")
    output_arguments(parser, "ingest.py", results=False)
    args = parser.parse_args(argv)
    if args.gib <= 0 or args.rss_gib < 0:
        parser.error("--gib must be positive and --rss-gib not negative")
    if args.files is None:
        args.files = max(1, round(args.gib * 4))
    if args.files < 1 or args.repeat < 1:
        parser.error("--files and --repeat must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    run_started = time.perf_counter()
    command = command_line("ingest.py", argv)
    workdir = Path(tempfile.mkdtemp(prefix="evidence-bench-", dir=args.workdir or "/var/tmp"))
    run_stack = contextlib.ExitStack()  # the RGW cluster, when one runs
    try:
        machine = machine_facts(workdir)
        if machine["fstype"] in ("tmpfs", "ramfs"):
            print(f"{workdir} is on {machine['fstype']}; give --workdir on a real disk", file=sys.stderr)
            return 2
        tree_bytes = int(args.gib * GIB)
        rss_bytes = int(args.rss_gib * GIB)
        # source + copy (or spool + hard-linked archive) at once, with room to spare
        needed = max(tree_bytes, rss_bytes) * 3 + GIB
        if shutil.disk_usage(workdir).free < needed:
            print(f"{workdir}: need {needed / 1e9:.1f} GB free", file=sys.stderr)
            return 2
        s3_missing = ("--skip-s3" if args.skip_s3 else
                      rgw_missing_reason() if args.s3 == "rgw" else None)
        with_s3 = s3_missing is None
        with_rclone = with_s3 and shutil.which("rclone") is not None
        if with_s3 and not with_rclone:
            print("rclone is missing: the rclone cases are skipped (apt-get install rclone)", file=sys.stderr)
        rgw = run_stack.enter_context(rgw_server(workdir)) if with_s3 and args.s3 == "rgw" else None
        if rgw is not None:
            print(f"Ceph RGW cluster up at {rgw.endpoint}", flush=True)

        def case_server() -> contextlib.AbstractContextManager[S3Server]:
            """moto fresh for every case (it keeps every byte in memory); RGW for the whole run."""
            return contextlib.nullcontext(rgw) if rgw is not None else moto_server()

        cache = Cache(want_cold=not args.warm)
        start = datetime(2026, 11, 25, 8, 30)
        print(f"generating {args.gib:g} GiB in {args.files} files under {workdir} ...", flush=True)
        tree = workdir / "tree"
        paths = make_tree(tree, tree_bytes, args.files, start=start)
        report = Report(
            command=command,
            started=run_at(),
            machine=machine,
            versions=report_versions(),
            cache=cache.description,
            repeat=args.repeat,
            server=rgw.label if rgw is not None else "moto",
            load=load_average(),
            data=(f"{args.gib:g} GiB in {args.files} files of {tree_bytes / args.files / MB:.0f} MB of random "
                  f"bytes named like `{paths[0].name}`, in `{workdir.parent}` on the disk above. "
                  "Random bytes are not MP4: ffprobe rejects each file quickly and the daemon archives it "
                  "flagged unplayable (the probe still runs, as for real footage)."),
        )

        def run(label: str, func: Callable[..., Measurement], *func_args: Any, **kwargs: Any) -> Measurement:
            print(f"({label}) ...", end=" ", flush=True)
            measurement = func(label, *func_args, **kwargs)
            print(f"{measurement.seconds:.2f} s" + ("" if measurement.ok else f" FAILED: {measurement.note}"),
                  flush=True)
            return measurement

        def s3_archive(server: S3Server, bucket: str) -> dict[str, object]:
            return server.archive_settings(bucket)

        server_label = rgw.label if rgw is not None else "moto"

        # Rounds interleave the cases, so a slow spell of the disk or the host hits them alike.
        samples: dict[str, list[Measurement]] = {}
        for round_index in range(args.repeat):
            if args.repeat > 1:
                print(f"round {round_index + 1} of {args.repeat}", flush=True)
            round_dir = workdir / f"round{round_index}"
            samples.setdefault("a", []).append(
                run("a", case_baseline, tree, round_dir / "a", tree_bytes, cache, with_sync=False))
            samples.setdefault("a'", []).append(
                run("a'", case_baseline, tree, round_dir / "a2", tree_bytes, cache, with_sync=True))
            samples.setdefault("b", []).append(
                run("b", case_ingest, "`evidence-daemon ingest` → filesystem archive", tree, round_dir / "b",
                    tree_bytes, cache, {"backend": "filesystem", "path": str(round_dir / "b" / "archive")},
                    args.files))
            if with_rclone:
                with case_server() as server:
                    bucket = f"bench-rclone-{round_index}"
                    server.make_bucket(bucket)
                    samples.setdefault("c", []).append(
                        run("c", case_rclone, tree, round_dir / "c", tree_bytes, cache, server, bucket))
            if with_s3:
                with case_server() as server:
                    bucket = f"bench-ingest-{round_index}"
                    bucket_how = server.make_bucket(bucket)
                    samples.setdefault("d", []).append(
                        run("d", case_ingest, f"`evidence-daemon ingest` → S3 ({server_label})", tree,
                            round_dir / "d", tree_bytes, cache, s3_archive(server, bucket), args.files,
                            server))
            shutil.rmtree(round_dir, ignore_errors=True)
        report.rows = [combine(samples[label]) for label in ("a", "a'", "b") ]
        rclone_missing = s3_missing or "rclone missing (apt-get install rclone)"
        report.rows.append(combine(samples["c"]) if "c" in samples else Measurement(
            "c", "`rclone copy`", tree_bytes, skipped=rclone_missing))
        report.rows.append(combine(samples["d"]) if "d" in samples else Measurement(
            "d", "`evidence-daemon ingest` → S3", tree_bytes, skipped=s3_missing or ""))
        if with_s3:
            report.data += f" S3 buckets made fresh, with Object Lock, by {bucket_how}."
        report.references = reference_costs(paths)
        shutil.rmtree(tree)

        if rss_bytes:
            print(f"generating one {args.rss_gib:g} GiB file ...", flush=True)
            big_tree = workdir / "big"
            make_tree(big_tree, rss_bytes, 1, start=start + timedelta(hours=2))
            big = f"one {args.rss_gib:g} GiB file"
            report.rss_rows.append(run("e-fs", case_ingest, f"`evidence-daemon ingest` {big} → filesystem",
                                       big_tree, workdir / "e-fs", rss_bytes, cache,
                                       {"backend": "filesystem", "path": str(workdir / "e-fs" / "archive")}, 1))
            if with_s3:
                with case_server() as server:
                    server.make_bucket("bench-rss")
                    report.rss_rows.append(run(
                        "e-s3", case_ingest, f"`evidence-daemon ingest` {big} → S3 ({server_label})",
                        big_tree, workdir / "e-s3", rss_bytes, cache,
                        s3_archive(server, "bench-rss"), 1, server))
                if with_rclone:
                    with case_server() as server:
                        server.make_bucket("bench-rss-rclone")
                        report.rss_rows.append(run("e-rclone", case_rclone, big_tree, workdir / "e-rclone",
                                                   rss_bytes, cache, server, "bench-rss-rclone"))
                        report.rss_rows[-1].description = (f"`rclone copy` {big} → S3 ({server_label}), "
                                                           "for comparison")
                else:
                    report.rss_rows.append(Measurement("e-rclone", f"`rclone copy` {big}", rss_bytes,
                                                       skipped="rclone missing (apt-get install rclone)"))
            else:
                report.rss_rows.append(Measurement("e-s3", f"ingest {big} → S3", rss_bytes,
                                                   skipped=s3_missing or ""))
        report.load += f" → {load_average()}"
        run_stack.close()  # the RGW cluster, before the report (its daemons stop by PID)
        report.total_s = time.perf_counter() - run_started
        print_report(report)
        out = args.out if args.out.is_absolute() else Path.cwd() / args.out
        write_doc(out, markdown(report), BEGIN_MARK, END_MARK)
        print(f"\nwrote {out}")
        failed = [row.label for row in report.rows + report.rss_rows if not row.skipped and not row.ok]
        return 1 if failed else 0
    finally:
        run_stack.close()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
