"""Footage coverage of dispatched incidents at county scale, and the console's incidents page.

Usage (from the repository root)::

    .venv/bin/python benchmarks/coverage.py [--incidents 100000] [--recordings 700000]
                                            [--requests 200] [--seed 1] [--workdir DIR]
                                            [--out docs/performance.md]
                                            [--results benchmarks/results/coverage.json]

What it does:

1. Builds a fresh API database (``open_api_database``) holding ``--recordings`` recordings of
   800 officers over six months (1-30 minutes each, by file-name time), and imports
   ``--incidents`` incidents of 1-3 officers each through ``IncidentBook.apply_import``: about
   70 % placed where their officers recorded (some only partly), the rest anywhere.
2. Ours: ``IncidentBook.refresh`` — every incident's coverage computed (``incidents.coverage``:
   per officer, margin, seams, clock lead) and stored, as the API node does after a poll.
   Issue 15's target: under 10 s for 100,000 incidents against 700,000 recordings.
3. The baseline, measured in the same run on the same database: one SQL join that only asks
   whether any recording of an incident's officers overlaps its window (the obvious query,
   on the ``(officer_id, sort_time)`` index) — less than coverage, which also measures the
   share, the gaps and each officer's part.
4. The console's incidents page: ``evidence-daemon serve`` on that database (its own process),
   ``GET /api/v1/incidents`` ``--requests`` times each for missing incidents (first page), one
   officer's incidents, and the 10th page by cursor; beside ``GET /api/v1/me`` on the same
   server (the floor of any request). Target: p95 ≤ 50 ms.

Its section of ``--out``, raw figures in ``--results`` (JSON), data in a temporary directory
(deleted): as every benchmark here, see ``benchmarks/README.md``.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.api_search import percentile, write_api_config  # noqa: E402
from benchmarks.common import (  # noqa: E402
    ApiServer, command_line, free_port, load_average, machine, output_arguments, publish,
    run_at, section_head, versions,
)
from evidence_daemon.api.auth import SUPERVISOR, Users  # noqa: E402
from evidence_daemon.api.db import open_api_database  # noqa: E402
from evidence_daemon.api.incidents import IncidentBook  # noqa: E402
from evidence_daemon.clock import format_time  # noqa: E402
from evidence_daemon.incidents.coverage import Coverage  # noqa: E402
from evidence_daemon.incidents.records import Incident  # noqa: E402
from evidence_daemon.state.db import Database  # noqa: E402

BEGIN = "<!-- BEGIN benchmarks/coverage.py (generated: rerun the script to update) -->"
END = "<!-- END benchmarks/coverage.py -->"
LOCAL = timezone(timedelta(hours=8))
START = datetime(2026, 5, 1, tzinfo=LOCAL)
DAYS = 182
OFFICERS = 800

BASELINE_SQL = """
    SELECT COUNT(*) FROM (
        SELECT i.incident_id FROM incidents i
        JOIN incident_officers o ON o.incident_id = i.incident_id
        WHERE EXISTS (SELECT 1 FROM recordings r
                      WHERE r.officer_id = o.officer_id
                        AND r.sort_time >= ? AND r.sort_time < i.end
                        AND r.sort_time >= strftime('%Y-%m-%dT%H:%M:%f+00:00', i.start, '-30 minutes')
                        AND r.recorded_end > i.start)
        GROUP BY i.incident_id)
"""


def build_recordings(database: Database, count: int, rng: random.Random) -> list[tuple[str, datetime, datetime]]:
    """``count`` recordings straight into the catalog table; returns (officer, start, end)."""
    rows = []
    spans = []
    for n in range(count):
        officer = f"P{rng.randrange(OFFICERS):04d}"
        start = START + timedelta(seconds=rng.uniform(0, DAYS * 86400))
        end = start + timedelta(seconds=rng.uniform(60, 1800))
        sha = f"{n:064x}"
        rows.append((sha, "st-1", f"DSJ{officer[1:]}", officer, start.isoformat(),
                     end.isoformat(), format_time(start), format_time(end), "on_time", 1, "mp4",
                     "k", "m", "h", "{}", "[]", "st-1", n + 1, format_time(end)))
        spans.append((officer, start, end))
    with database.transaction() as conn:
        conn.executemany(
            "INSERT INTO recordings (sha256, station, device_id, officer_id, recorded_start,"
            " recorded_end, sort_time, archived_at, compliance, size_bytes, extension,"
            " original_key, manifest_key, manifest_sha256, manifest, flags, archived_by,"
            " archived_seq, indexed_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?,"
            " ?, ?, ?)", rows)
    return spans


def make_incidents(count: int, spans: Sequence[tuple[str, datetime, datetime]],
                   rng: random.Random) -> list[Incident]:
    incidents = []
    for n in range(count):
        if rng.random() < 0.7:  # where an officer recorded: covered or partly
            officer, start, end = rng.choice(spans)
            begin = start + timedelta(seconds=rng.uniform(-120, 120))
            finish = begin + (end - start) * rng.choice((0.5, 1.0, 1.0, 1.5))
            others = {f"P{rng.randrange(OFFICERS):04d}" for _ in range(rng.choice((0, 0, 1, 2)))}
            officers = (officer, *sorted(others - {officer}))
        else:
            begin = START + timedelta(seconds=rng.uniform(0, DAYS * 86400))
            finish = begin + timedelta(minutes=rng.uniform(5, 90))
            officers = tuple(sorted({f"P{rng.randrange(OFFICERS):04d}"
                                     for _ in range(rng.choice((1, 1, 2, 3)))}))
        incidents.append(Incident(f"JQ-{n:07d}", officers, begin.astimezone(timezone.utc),
                                  max(finish, begin).astimezone(timezone.utc),
                                  rng.choice(("纠纷", "交通", "盗窃", "求助")), "某路", "st-1"))
    return incidents


def timed(samples: list[float], client: httpx.Client, path: str, params: dict[str, str]) -> Any:
    began = time.perf_counter()
    response = client.get(path, params=params)
    samples.append((time.perf_counter() - began) * 1000)
    response.raise_for_status()
    return response.json()


def page_latencies(server: ApiServer, token: str, requests: int,
                   rng: random.Random) -> dict[str, list[float]]:
    samples: dict[str, list[float]] = {"missing, first page": [], "one officer": [],
                                       "page 10 by cursor": [], "GET /api/v1/me": []}
    with httpx.Client(base_url=server.base_url, timeout=30,
                      headers={"Authorization": f"Bearer {token}"}) as client:
        for _ in range(3):
            client.get("/api/v1/incidents", params={"coverage": "missing"})
        for _ in range(requests):
            timed(samples["missing, first page"], client, "/api/v1/incidents",
                  {"coverage": "missing", "limit": "50"})
            timed(samples["one officer"], client, "/api/v1/incidents",
                  {"officer": f"P{rng.randrange(OFFICERS):04d}", "limit": "50"})
            cursor = None
            for depth in range(10):
                params = {"limit": "50", **({"cursor": cursor} if cursor else {})}
                if depth == 9:
                    body = timed(samples["page 10 by cursor"], client, "/api/v1/incidents", params)
                else:
                    body = client.get("/api/v1/incidents", params=params).json()
                cursor = body["next_cursor"]
            timed(samples["GET /api/v1/me"], client, "/api/v1/me", {})
    return samples


def markdown(*, started_at: str, total_s: float, command: str, args: argparse.Namespace,
             figures: dict[str, Any], latencies: dict[str, list[float]]) -> str:
    lines = section_head(BEGIN, "## Incident coverage (issue 15)", run_at=started_at,
                         total_s=total_s, command=command, found_versions=versions(["sqlite3"]))
    lines += [
        f"- Load average before / after: {figures['load_start']} / {figures['load_end']}",
        f"- Data: {args.recordings:,} recordings of {OFFICERS} officers over {DAYS} days, "
        f"{args.incidents:,} incidents ({figures['incident_officers']:,} incident-officer pairs); "
        f"built in {figures['build_s']:.0f} s",
        "",
        "| step | ours | baseline (same run) | ratio |",
        "|---|---:|---:|---:|",
        f"| coverage of every incident: computed and stored (`IncidentBook.refresh`) vs one SQL "
        f"join asking only \"any overlapping recording?\" | {figures['refresh_s']:.2f} s | "
        f"{figures['baseline_s']:.2f} s | {figures['refresh_s'] / figures['baseline_s']:.2f}× |",
        "",
        f"Target: under 10 s — **{'met' if figures['refresh_s'] < 10 else 'missed'}** "
        f"({figures['refresh_s']:.2f} s; import of the incidents {figures['import_s']:.1f} s; peak "
        f"RSS of the benchmark process {figures['peak_rss_mb']:.0f} MB). Outcome: "
        + ", ".join(f"{figures['counts'][state]:,} {state}" for state in Coverage)
        + f"; the baseline found footage for {figures['baseline_with_footage']:,} incidents.",
        "",
        f"The console's incidents page, `evidence-daemon serve` on the same database, "
        f"{args.requests} requests each (ms, client side, loopback):",
        "",
        "| request | p50 | p95 | max |",
        "|---|---:|---:|---:|",
    ]
    for name, values in latencies.items():
        lines.append(f"| {name} | {percentile(values, 0.5):.1f} | {percentile(values, 0.95):.1f} "
                     f"| {max(values):.1f} |")
    worst = max(percentile(values, 0.95) for name, values in latencies.items()
                if name != "GET /api/v1/me")
    lines += ["", f"Target p95 ≤ 50 ms — **{'met' if worst <= 50 else 'missed'}** (worst "
              f"{worst:.1f} ms).", "", END, ""]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--incidents", type=int, default=100_000)
    parser.add_argument("--recordings", type=int, default=700_000)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--seed", type=int, default=1)
    output_arguments(parser, "coverage.py")
    args = parser.parse_args(argv)
    began = time.perf_counter()
    started_at = run_at()
    command = command_line("coverage.py", argv)
    rng = random.Random(args.seed)
    workdir = Path(tempfile.mkdtemp(prefix="coverage-bench-", dir=args.workdir or "/var/tmp"))
    figures: dict[str, Any] = {"load_start": load_average()}
    server: ApiServer | None = None
    try:
        state_dir = workdir / "api-state"
        archive = workdir / "archive"
        archive.mkdir()
        database = open_api_database(state_dir / "catalog.sqlite3")
        print(f"building {args.recordings:,} recordings and {args.incidents:,} incidents ...",
              flush=True)
        step = time.perf_counter()
        spans = build_recordings(database, args.recordings, rng)
        incidents = make_incidents(args.incidents, spans, rng)
        figures["build_s"] = time.perf_counter() - step
        book = IncidentBook(database)
        step = time.perf_counter()
        for first in range(0, len(incidents), 10_000):
            book.apply_import(incidents[first:first + 10_000], document="dispatch/bench.json",
                              writer="api-bench", seq=1)
        figures["import_s"] = time.perf_counter() - step
        figures["incident_officers"] = sum(len(incident.officers) for incident in incidents)
        now = START + timedelta(days=DAYS + 30)
        step = time.perf_counter()
        refreshed = book.refresh(now)
        figures["refresh_s"] = time.perf_counter() - step
        assert refreshed == len(incidents), refreshed
        figures["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        figures["counts"] = {str(state): n for state, n in book.counts().items()}
        step = time.perf_counter()
        figures["baseline_with_footage"] = int(database.scalar(
            BASELINE_SQL, (format_time(START - timedelta(days=1)),)))
        figures["baseline_s"] = time.perf_counter() - step
        print(f"  refresh {figures['refresh_s']:.2f} s, baseline {figures['baseline_s']:.2f} s; "
              f"{figures['counts']}", flush=True)
        token = Users(database).add("bench-supervisor", SUPERVISOR)
        database.close()

        port = free_port()
        config = write_api_config(workdir, archive, state_dir, port)
        print("starting evidence-daemon serve ...", flush=True)
        server = ApiServer(config, port, workdir / "serve.log", expect_recordings=args.recordings)
        latencies = page_latencies(server, token, args.requests, rng)
        figures["load_end"] = load_average()
        section = markdown(started_at=started_at, total_s=time.perf_counter() - began,
                           command=command, args=args, figures=figures, latencies=latencies)
        publish(section, BEGIN, END, args.out, args.results, {
            "run_at": started_at, "command": command, "machine": machine(), **figures,
            "latency_ms": latencies})
        return 0
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
