"""Streaming an original through the auditors' API, beside reading it straight from the archive.

Usage (from the repository root)::

    .venv/bin/python benchmarks/api_range.py [--gib 1] [--range-mib 256] [--repeat 3]
                                             [--s3 rgw|moto] [--skip-s3 | --skip-fs]
                                             [--workdir DIR]
                                             [--out docs/performance.md]
                                             [--results benchmarks/results/api_range.json]

Set-up, once per backend: a ``--gib`` GiB file of random bytes named like a body-camera file
is ingested by a station with the real CLI (``evidence-daemon ingest``), so the archive holds
the original, its manifest and signed ledger entries exactly as in production; then
``evidence-daemon serve`` (its own process) indexes it and one auditor is added.

Cases, each timed wall-clock in this process (also: time to the first body byte, and the CPU
of this process, the API's and the S3 server's), ``--repeat`` rounds, interleaved (the order
within a round rotates), medians reported:

  S3 (``--s3``: ``rgw``, the default, the tests' throw-away Ceph RADOS Gateway from
  ``tests/rgw.py`` through ``benchmarks/common.py``, a real server that is not the
  bottleneck; or ``moto``, the tests' moto server (``tests/s3server.py``) in its own
  process, bound by its own CPU; one bucket with Object Lock; the object is stored once):
    (s-direct)       ``Minio.get_object`` of the whole object, ``stream(1 MiB)`` to nowhere
    (s-api)          ``GET /api/v1/recordings/{id}/content/original?reason=...`` with httpx
                     (streamed, ``iter_raw``) -- through the API, which reads the same object
                     with the minio SDK
    (s-api-u3)       context: the same request with urllib3 (``stream(1 MiB)``), the HTTP
                     client the minio SDK uses, so client and baseline read alike
    (s-direct-range) the same as (s-direct) for ``--range-mib`` MiB in the middle
                     (``offset``/``length``)
    (s-api-range), (s-api-range-u3)  the same as (s-api), (s-api-u3) with
                     ``Range: bytes=a-b`` (206)
  Filesystem archive:
    (f-direct), (f-direct-range)  ``open`` + ``read(1 MiB)`` of the archive's file (page cache
                     warm: the file was just written and is read again and again)
    (f-api), (f-api-u3), (f-api-range), (f-api-range-u3)  through the API as above

Target: (s-api) >= 0.8 x the throughput of (s-direct). Every content request also writes
its ``accessed`` event to the archive before the first byte, as in production; that is part
of the API's time. Byte counts are checked on every run, and one untimed warm-up per path
checks the SHA-256 of the range against the local file.

Its section of ``--out``, raw figures in ``--results`` (JSON), data in a temporary directory
(deleted): as every benchmark here, see ``benchmarks/README.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import httpx  # noqa: E402
import urllib3  # noqa: E402

from benchmarks.common import (  # noqa: E402
    GIB, MB, MIB, ApiServer, S3Server, cpu_s, free_port, load_average, machine, moto_server,
    peak_rss_mb, rgw_missing_reason, rgw_server, run_cli, section_head, versions,
    command_line, output_arguments, publish, run_at,
)
from evidence_daemon.api.routes import content as api_content  # noqa: E402

BEGIN = "<!-- BEGIN benchmarks/api_range.py (generated: rerun the script to update) -->"
END = "<!-- END benchmarks/api_range.py -->"

READ_BYTES = MIB  # the direct readers' chunk size
RATIO_TARGET = 0.8
BUCKET = "bench-api-range"
REASON = "benchmark: streaming throughput"
FILE_NAME = "DSJ001_10086_20261125083000_0001.MP4"


def toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value) if isinstance(value, str) else str(value)


def write_configs(directory: Path, archive: dict[str, object]) -> tuple[Path, Path, int]:
    """(station config, API config, API port) sharing one archive."""
    directory.mkdir(parents=True, exist_ok=True)
    archive_lines = ["[archive]"] + [f"{key} = {toml_value(value)}" for key, value in archive.items()]
    station = directory / "station.toml"
    station.write_text("\n".join([
        "[station]", 'id = "bench-station"', f"state_dir = {toml_value(str(directory / 'station'))}",
        "timezone = \"Asia/Shanghai\"", *archive_lines]) + "\n", encoding="utf-8")
    port = free_port()
    api = directory / "api.toml"
    api.write_text("\n".join([
        *archive_lines, "[api]", 'id = "api-bench"',
        f"state_dir = {toml_value(str(directory / 'api-state'))}",
        f'listen = "127.0.0.1:{port}"',
        "poll_s = 86400"]) + "\n", encoding="utf-8")  # one poll at start-up, then idle
    return station, api, port


# -- data ----------------------------------------------------------------------------------------

def make_footage(path: Path, size: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb", buffering=0) as handle:
        remaining = size
        while remaining:
            chunk = os.urandom(min(16 * MIB, remaining))
            handle.write(chunk)
            remaining -= len(chunk)


def sha256_of(path: Path, offset: int, length: int) -> str:
    digest = hashlib.sha256()
    with path.open("rb", buffering=0) as handle:
        handle.seek(offset)
        remaining = length
        while remaining:
            chunk = handle.read(min(READ_BYTES, remaining))
            digest.update(chunk)
            remaining -= len(chunk)
    return digest.hexdigest()


# -- the readers ---------------------------------------------------------------------------------

class Sink:
    """Where a reader puts what it receives: counts it, notes when the first byte came, and
    hashes it when asked to (warm-up only, so hashing never costs the timed runs)."""

    def __init__(self, *, hashing: bool = False) -> None:
        self.received = 0
        self.first_at: float | None = None
        self.digest = hashlib.sha256() if hashing else None

    def __call__(self, chunk: bytes) -> None:
        if self.first_at is None:
            self.first_at = time.perf_counter()
        self.received += len(chunk)
        if self.digest is not None:
            self.digest.update(chunk)


Reader = Callable[[int, "int | None", Sink], None]  # (offset, length or None for all, sink)


def api_reader(client: httpx.Client, recording: str) -> Reader:
    def read(offset: int, length: int | None, sink: Sink) -> None:
        headers = {} if length is None else {"Range": f"bytes={offset}-{offset + length - 1}"}
        with client.stream("GET", f"/api/v1/recordings/{recording}/content/original",
                           params={"reason": REASON}, headers=headers) as response:
            if response.status_code != (200 if length is None else 206):
                raise RuntimeError(f"API answered {response.status_code}: {response.read()[:300]!r}")
            for chunk in response.iter_raw():
                sink(chunk)
    return read


def urllib3_api_reader(base_url: str, token: str, recording: str) -> Reader:
    """The API through urllib3, reading like the minio SDK does (``stream(1 MiB)``)."""
    pool = urllib3.PoolManager(maxsize=1)
    url = f"{base_url}/api/v1/recordings/{recording}/content/original"

    def read(offset: int, length: int | None, sink: Sink) -> None:
        headers = {"Authorization": f"Bearer {token}"}
        if length is not None:
            headers["Range"] = f"bytes={offset}-{offset + length - 1}"
        response = pool.request("GET", url, fields={"reason": REASON}, headers=headers,
                                preload_content=False, timeout=urllib3.Timeout(connect=10, read=120))
        try:
            if response.status != (200 if length is None else 206):
                raise RuntimeError(f"API answered {response.status}: {response.read()[:300]!r}")
            for chunk in response.stream(READ_BYTES):
                sink(chunk)
        finally:
            response.release_conn()
    return read


def s3_reader(client: Any, bucket: str, key: str) -> Reader:
    def read(offset: int, length: int | None, sink: Sink) -> None:
        response = client.get_object(bucket, key, offset=offset, length=length or 0)
        try:
            for chunk in response.stream(READ_BYTES):
                sink(chunk)
        finally:
            response.close()
            response.release_conn()
    return read


def file_reader(path: Path) -> Reader:
    def read(offset: int, length: int | None, sink: Sink) -> None:
        with path.open("rb", buffering=0) as handle:
            handle.seek(offset)
            remaining = length
            while remaining is None or remaining > 0:
                chunk = handle.read(READ_BYTES if remaining is None else min(READ_BYTES, remaining))
                if not chunk:
                    break
                if remaining is not None:
                    remaining -= len(chunk)
                sink(chunk)
    return read


@dataclass
class Case:
    label: str
    description: str
    size_bytes: int
    runs_s: list[float] = field(default_factory=list)
    first_byte_s: list[float] = field(default_factory=list)
    client_cpu_s: list[float] = field(default_factory=list)
    api_cpu_s: list[float] = field(default_factory=list)
    server_cpu_s: list[float] = field(default_factory=list)  # the S3 server's

    @property
    def seconds(self) -> float:
        return statistics.median(self.runs_s)

    @property
    def mb_per_s(self) -> float:
        return self.size_bytes / MB / self.seconds

    @property
    def after_first_mb_per_s(self) -> float:
        """Throughput once the first byte has come (the median run's)."""
        run = sorted(range(len(self.runs_s)), key=self.runs_s.__getitem__)[(len(self.runs_s) - 1) // 2]
        streaming_s = self.runs_s[run] - self.first_byte_s[run]
        return self.size_bytes / MB / streaming_s if streaming_s > 0 else float("inf")

    def median_of(self, values: list[float]) -> float | None:
        return statistics.median(values) if values else None

    def figures(self) -> dict[str, Any]:
        return {"label": self.label, "description": self.description,
                "size_bytes": self.size_bytes, "runs_s": self.runs_s,
                "median_s": self.seconds, "mb_per_s": self.mb_per_s,
                "first_byte_s": self.first_byte_s,
                "after_first_mb_per_s": self.after_first_mb_per_s,
                "client_cpu_s": self.client_cpu_s, "api_cpu_s": self.api_cpu_s,
                "server_cpu_s": self.server_cpu_s}


def measure(case: Case, reader: Reader, offset: int, length: int | None,
            api: subprocess.Popen[bytes] | None, server_cpu: Callable[[], float] | None) -> None:
    api_before = cpu_s(api.pid) if api else 0.0
    server_before = server_cpu() if server_cpu else 0.0
    client_before = time.process_time()
    sink = Sink()
    started = time.perf_counter()
    reader(offset, length, sink)
    elapsed = time.perf_counter() - started
    if sink.received != case.size_bytes or sink.first_at is None:
        raise RuntimeError(f"({case.label}): {sink.received} bytes, expected {case.size_bytes}")
    case.runs_s.append(elapsed)
    case.first_byte_s.append(sink.first_at - started)
    case.client_cpu_s.append(time.process_time() - client_before)
    if api:
        case.api_cpu_s.append(cpu_s(api.pid) - api_before)
    if server_cpu:
        case.server_cpu_s.append(server_cpu() - server_before)
    print(f"  ({case.label}) {elapsed:6.2f} s  {case.size_bytes / MB / elapsed:6.0f} MB/s  "
          f"first byte {sink.first_at - started:5.2f} s", flush=True)


def run_backend(prefix: str, what: str, direct: Reader, api: Reader, api_u3: Reader, *,
                size: int, range_offset: int, range_length: int, repeat: int, local_file: Path,
                api_process: subprocess.Popen[bytes], server_cpu: Callable[[], float] | None
                ) -> list[Case]:
    expected = sha256_of(local_file, range_offset, range_length)
    for name, reader in (("direct", direct), ("API", api), ("API (urllib3)", api_u3)):
        sink = Sink(hashing=True)  # untimed warm-up, and a check of the bytes
        reader(range_offset, range_length, sink)
        if sink.digest is None or sink.digest.hexdigest() != expected:
            raise RuntimeError(f"{what} {name}: the range read back is not the file's bytes")
    range_text = f"{range_length // MIB} MiB at offset {range_offset // MIB} MiB"
    direct_text = "`Minio.get_object`" if prefix == "s" else "`open` + `read`"
    cases = {
        "direct": Case(f"{prefix}-direct", f"{what}: direct ({direct_text}), whole object", size),
        "api": Case(f"{prefix}-api", f"{what}: through the API (httpx), whole object", size),
        "api-u3": Case(f"{prefix}-api-u3", f"(context) {what}: through the API with urllib3, "
                       "whole object", size),
        "direct-range": Case(f"{prefix}-direct-range", f"{what}: direct, {range_text}",
                             range_length),
        "api-range": Case(f"{prefix}-api-range",
                          f"{what}: through the API (httpx), `Range:` {range_text}", range_length),
        "api-range-u3": Case(f"{prefix}-api-range-u3", f"(context) {what}: through the API with "
                             f"urllib3, `Range:` {range_text}", range_length),
    }
    whole: list[tuple[str, Reader, int, int | None]] = [
        ("direct", direct, 0, None), ("api", api, 0, None), ("api-u3", api_u3, 0, None)]
    ranged: list[tuple[str, Reader, int, int | None]] = [
        ("direct-range", direct, range_offset, range_length),
        ("api-range", api, range_offset, range_length),
        ("api-range-u3", api_u3, range_offset, range_length)]
    for round_number in range(repeat):
        print(f"{what}: round {round_number + 1} of {repeat}", flush=True)
        rotation = round_number % 3  # each reader goes first, second and third in turn
        order = whole[rotation:] + whole[:rotation] + ranged[rotation:] + ranged[:rotation]
        for name, reader, offset, length in order:
            measure(cases[name], reader, offset, length,
                    api_process if name.startswith("api") else None, server_cpu)
    return list(cases.values())


# -- the two backends -----------------------------------------------------------------------------

def ingest_and_serve(directory: Path, archive: dict[str, object], footage: Path
                     ) -> tuple[ApiServer, str, str, float]:
    """Ingest ``footage`` with a station, start the API; (server, token, recording id, ingest s)."""
    station, api_config, port = write_configs(directory, archive)
    started = time.perf_counter()
    run_cli("--config", str(station), "ingest", str(footage.parent), "--device-id", "DSJ001")
    ingest_s = time.perf_counter() - started
    token = run_cli("--config", str(api_config), "users", "add", "bench-auditor", "--role",
                    "auditor").strip().splitlines()[0]
    server = ApiServer(api_config, port, directory / "serve.log")
    items = httpx.get(f"{server.base_url}/api/v1/recordings", timeout=30,
                      headers={"Authorization": f"Bearer {token}"}).json()["items"]
    return server, token, items[0]["id"], ingest_s


def filesystem_cases(work: Path, footage: Path, args: argparse.Namespace, size: int,
                     range_offset: int, range_length: int, notes: dict[str, Any]) -> list[Case]:
    archive_dir = work / "fs" / "archive"
    server, token, recording, ingest_s = ingest_and_serve(
        work / "fs", {"backend": "filesystem", "path": str(archive_dir)}, footage)
    print(f"filesystem: ingested in {ingest_s:.1f} s; recording {recording[:12]}", flush=True)
    stored = archive_dir / "recordings" / recording / "original.mp4"
    try:
        with httpx.Client(base_url=server.base_url, timeout=120,
                          headers={"Authorization": f"Bearer {token}"}) as client:
            cases = run_backend(
                "f", "filesystem", file_reader(stored), api_reader(client, recording),
                urllib3_api_reader(server.base_url, token, recording), size=size,
                range_offset=range_offset, range_length=range_length, repeat=args.repeat,
                local_file=footage, api_process=server.process, server_cpu=None)
        notes["fs_api_peak_rss_mb"] = peak_rss_mb(server.process.pid)
        return cases
    finally:
        server.stop()
        shutil.rmtree(work / "fs", ignore_errors=True)


def s3_cases(work: Path, footage: Path, args: argparse.Namespace, size: int,
             range_offset: int, range_length: int, notes: dict[str, Any]) -> list[Case]:
    with contextlib.ExitStack() as stack:
        s3: S3Server = stack.enter_context(rgw_server(work) if args.s3 == "rgw" else moto_server())
        notes["s3_server"] = s3.label
        stack.callback(shutil.rmtree, work / "s3", ignore_errors=True)
        s3.make_bucket(BUCKET)
        server, token, recording, ingest_s = ingest_and_serve(
            work / "s3", s3.archive_settings(BUCKET), footage)
        stack.callback(server.stop)
        notes["s3_ingest_s"] = ingest_s
        print(f"S3: ingested in {ingest_s:.1f} s; recording {recording[:12]}; {s3.label} RSS "
              f"{s3.rss_mb():.0f} MB", flush=True)
        key = f"recordings/{recording}/original.mp4"
        with httpx.Client(base_url=server.base_url, timeout=120,
                          headers={"Authorization": f"Bearer {token}"}) as api_client:
            cases = run_backend(
                "s", f"S3 ({s3.label})", s3_reader(s3.server.client(), BUCKET, key),
                api_reader(api_client, recording),
                urllib3_api_reader(server.base_url, token, recording), size=size,
                range_offset=range_offset, range_length=range_length, repeat=args.repeat,
                local_file=footage, api_process=server.process, server_cpu=s3.cpu_s)
        notes["server_rss_mb"] = s3.rss_mb()
        notes["s3_api_peak_rss_mb"] = peak_rss_mb(server.process.pid)
        return cases


# -- report ----------------------------------------------------------------------------------------

def report_versions() -> dict[str, str]:
    return versions(("uvicorn", "starlette", "httpx", "minio", "urllib3", "moto"),
                    {"HTTP server": "asyncio + h11"})


def ratio(cases: dict[str, Case], label: str, base: str) -> float | None:
    if label not in cases or base not in cases:
        return None
    return cases[label].mb_per_s / cases[base].mb_per_s


def _cpu(case: Case, values: list[float]) -> str:
    value = case.median_of(values)
    return "–" if value is None else f"{value:.1f}"


def markdown(*, run_at: str, total_s: float, command: str, cases: list[Case], args: argparse.Namespace,
             notes: dict[str, Any]) -> str:
    by_label = {case.label: case for case in cases}
    server = str(notes.get("s3_server", "moto"))
    bases = {f"{prefix}-api{variant}": f"{prefix}-direct" for prefix in "sf" for variant in ("", "-u3")}
    bases.update({f"{prefix}-api-range{variant}": f"{prefix}-direct-range"
                  for prefix in "sf" for variant in ("", "-u3")})
    memory = ", ".join(f"{what} {notes[key]:.0f} MB" for key, what in (
        ("s3_api_peak_rss_mb", "S3"), ("fs_api_peak_rss_mb", "filesystem")) if notes.get(key))
    lines = [
        *section_head(BEGIN, "### Range streaming (`benchmarks/api_range.py`)", run_at=run_at,
                      total_s=total_s, command=command, found_versions=report_versions()),
        f"- Data: one {args.gib:g} GiB file of random bytes (`{FILE_NAME}`), ingested by a station "
        "with `evidence-daemon ingest` into each archive, then served by `evidence-daemon serve` "
        "(its own process, poller idle after its first poll). "
        f"`STREAM_CHUNK_BYTES` = {api_content.STREAM_CHUNK_BYTES // 1024} KiB.",
        ("- S3: the tests' moto server (`tests/s3server.py`) in its own process (no MinIO on this machine), one bucket with "
         "Object Lock. moto is CPU-bound and copies the whole object out of its store on every GET, "
         "ranged or not, so the S3 lines compare the two readers with each other in this run, not "
         "with a real MinIO." if server == "moto" else
         "- S3: the tests' throw-away single-node Ceph RADOS Gateway (`tests/rgw.py`: one monitor, "
         "one bluestore OSD on a sparse file in the work directory, radosgw over plain HTTP on "
         "127.0.0.1), one bucket with Object Lock. Its daemons share the 2 CPUs with the API and "
         "the client (their CPU is the last column).")
        + (f" S3 ingest took {notes['s3_ingest_s']:.0f} s; {server} RSS afterwards "
           f"{notes.get('server_rss_mb', 0):.0f} MB." if "s3_ingest_s" in notes else ""),
        "- Direct readers: S3 `Minio.get_object(...).stream(1 MiB)`; filesystem `open` + "
        "`read(1 MiB)` of the archive's file (page cache warm). API: httpx `stream` + `iter_raw` "
        "(the target's case), and as context urllib3 `stream(1 MiB)` — the client stack the "
        "minio SDK uses, so that line and the direct line read alike; one keep-alive connection "
        "each; every request writes its `accessed` event first, as in production."
        + (f" Peak RSS of the API process: {memory}." if memory else ""),
        f"- {args.repeat} rounds, cases interleaved (the order rotating); seconds are the median "
        "(min–max); first byte: median seconds until the first body byte arrived (for the API "
        "that includes writing the `accessed` event and the API's own GET to the archive); "
        "MB/s after the first byte: the median run's bytes over its time after that; CPU is the "
        "median run's user+sys of each process (client = this process). "
        f"MB = 10^6 bytes. Load average at start {notes.get('load_start', '?')}, at the end "
        f"{notes.get('load_end', '?')} (2 CPUs: {server}, the API and the client share them).",
        "",
        "| case | what | bytes | seconds | first byte s | MB/s | vs direct | MB/s after the first byte "
        f"| client CPU s | API CPU s | {server} CPU s |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for case in cases:
        base = bases.get(case.label)
        versus = (f"{case.mb_per_s / by_label[base].mb_per_s:.2f}×" if base in by_label else "1.00×")
        span = f"{case.seconds:.2f} ({min(case.runs_s):.2f}–{max(case.runs_s):.2f})"
        first = statistics.median(case.first_byte_s)
        lines.append(
            f"| ({case.label}) | {case.description} | {case.size_bytes / MIB:,.0f} MiB | {span} | "
            f"{first:.2f} | {case.mb_per_s:.0f} | {versus} | {case.after_first_mb_per_s:.0f} | "
            f"{_cpu(case, case.client_cpu_s)} | {_cpu(case, case.api_cpu_s)} | "
            f"{_cpu(case, case.server_cpu_s)} |")
    lines += ["", "Targets:", ""]
    def target(what: str, label: str, base: str) -> str:
        found = ratio(by_label, label, base)
        if found is None:
            return f"- {what}: not measured in this run"
        return (f"- {what}: **{'met' if found >= RATIO_TARGET else 'MISSED'}** — {found:.2f}× "
                f"({by_label[label].mb_per_s:.0f} vs {by_label[base].mb_per_s:.0f} MB/s)")

    lines.append(target(f"API ≥ {RATIO_TARGET}× a direct S3 GET, whole {args.gib:g} GiB original",
                        "s-api", "s-direct"))
    if "s-api-range" in by_label:
        lines.append(target(f"the same for the {args.range_mib} MiB range", "s-api-range",
                            "s-direct-range"))
    same_client = ratio(by_label, "s-api-u3", "s-direct")
    if same_client is not None:
        lines.append(
            f"- (context) the same with the same HTTP client as the direct GET (urllib3): "
            f"{same_client:.2f}× ({by_label['s-api-u3'].mb_per_s:.0f} vs "
            f"{by_label['s-direct'].mb_per_s:.0f} MB/s), "
            f"{'within' if same_client >= RATIO_TARGET else 'below'} {RATIO_TARGET}×")
    if "s-api" in by_label and "s-direct" in by_label:
        api_case, direct_case = by_label["s-api"], by_label["s-direct"]
        lines.append(
            f"- (context) the same counted from the first byte on ({server} needs "
            f"{statistics.median(direct_case.first_byte_s):.2f} s to start a direct GET of this "
            f"object): {api_case.after_first_mb_per_s / direct_case.after_first_mb_per_s:.2f}× "
            f"({api_case.after_first_mb_per_s:.0f} vs {direct_case.after_first_mb_per_s:.0f} MB/s)")
    fs_ratio = ratio(by_label, "f-api", "f-direct")
    if fs_ratio is not None:
        lines.append(
            f"- (context, no target) filesystem archive: the API delivers {fs_ratio:.2f}× the "
            f"throughput of reading the file ({by_label['f-api'].mb_per_s:.0f} vs "
            f"{by_label['f-direct'].mb_per_s:.0f} MB/s)")
    lines += ["", END]
    return "\n".join(lines) + "\n"


# -- main --------------------------------------------------------------------------------------------

def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gib", type=float, default=1.0, help="size of the original (default 1)")
    parser.add_argument("--range-mib", type=int, default=256,
                        help="size of the range in the middle (default 256)")
    parser.add_argument("--repeat", type=int, default=3, help="rounds; medians reported (default 3)")
    parser.add_argument("--skip-s3", action="store_true", help="the filesystem archive only")
    parser.add_argument("--s3", choices=("rgw", "moto"), default="rgw",
                        help="the S3 server: the tests' Ceph RGW cluster (default) or moto_server")
    parser.add_argument("--skip-fs", action="store_true", help="the S3 archive only")
    output_arguments(parser, "api_range.py")
    args = parser.parse_args(argv)
    size = int(args.gib * GIB)
    range_length = args.range_mib * MIB
    if size <= 0 or args.repeat < 1 or not 0 < range_length <= size:
        parser.error("need --gib > 0, --repeat >= 1 and 0 < --range-mib <= the original's size")
    if args.skip_s3 and args.skip_fs:
        parser.error("--skip-s3 and --skip-fs together leave nothing to measure")
    if not args.skip_s3 and args.s3 == "rgw" and (missing := rgw_missing_reason()) is not None:
        parser.error(f"{missing}; or give --s3 moto or --skip-s3")
    range_offset = (size - range_length) // 2
    began = time.perf_counter()
    started_at = run_at()
    command = command_line("api_range.py", argv)
    work = Path(tempfile.mkdtemp(prefix="api-range-bench-", dir=args.workdir or "/var/tmp"))
    notes: dict[str, Any] = {"load_start": load_average()}
    try:
        footage = work / "card" / FILE_NAME
        print(f"generating {args.gib:g} GiB in {footage} ...", flush=True)
        make_footage(footage, size)
        cases: list[Case] = []
        if not args.skip_s3:
            cases += s3_cases(work, footage, args, size, range_offset, range_length, notes)
        if not args.skip_fs:
            cases += filesystem_cases(work, footage, args, size, range_offset, range_length, notes)
        notes["load_end"] = load_average()
        section = markdown(run_at=started_at, total_s=time.perf_counter() - began,
                           command=command, cases=cases, args=args, notes=notes)
        publish(section, BEGIN, END, args.out, args.results, {
            "run_at": started_at, "command": command, "machine": machine(),
            "versions": report_versions(), "stream_chunk_bytes": api_content.STREAM_CHUNK_BYTES,
            "notes": notes, "cases": [case.figures() for case in cases]})
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
