"""Proxy (viewing copy) cost, beside baselines measured in the same run.

Usage (from the repository root)::

    .venv/bin/python benchmarks/proxy.py [--seconds 60] [--height 1080] [--batch 10]
                                         [--batch-seconds 10] [--repeat 3] [--out docs/performance.md]

Cases:

  (p0) the plain ``ffmpeg`` command with exactly the proxy's arguments (as recorded in the
       ``derived`` event), on a ``--seconds`` s ``--height``p30 H.264/AAC clip
  (p1) ``ProxyWorker.run_pending()`` on the same clip, already ingested: ffmpeg (``nice``d) plus
       checking the proxy with ffprobe, hashing, storing it create-only, the poster frame and the
       signed ``derived`` event. Target: (p1) <= 1.05 x (p0).
  (b0) ``evidence-daemon ingest`` of ``--batch`` clips with proxies disabled: time until every
       original is archived (the command exits only then)
  (b1) the same with a ``ProxyWorker`` running meanwhile (polling every 0.2 s, so it starts on
       the first archived recording while the rest are still being ingested).
       Target: (b1) <= 1.1 x (b0).

(p0)/(p1) and (b0)/(b1) alternate ``--repeat`` times; the table shows medians. Each case uses a
fresh station (state and filesystem archive) in one temporary directory, deleted at the end.
A benchmark, not a test: it asserts nothing. It writes its table into ``--out`` between the
``BEGIN/END benchmarks/proxy.py`` markers, leaving the rest of the file alone.
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.common import DAEMON, command_line, machine, run_at, write_doc  # noqa: E402
from evidence_daemon.config import load_config  # noqa: E402
from evidence_daemon.media import jobs, transcode  # noqa: E402
from evidence_daemon.media import proxy as px  # noqa: E402
from evidence_daemon.station import open_station  # noqa: E402

BEGIN = "<!-- BEGIN benchmarks/proxy.py (generated: rerun the script to update) -->"
END = "<!-- END benchmarks/proxy.py -->"


def ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-hide_banner", "-nostdin", "-v", "error", "-y", *args], check=True)


def make_clip(path: Path, seconds: float, height: int) -> None:
    width = height * 16 // 9
    ffmpeg("-f", "lavfi", "-i", f"testsrc2=size={width}x{height}:rate=30:duration={seconds}",
           "-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=48000:duration={seconds}",
           "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-g", "30",
           "-c:a", "aac", "-b:a", "128k", str(path))


def new_station(base: Path, name: str, *, proxy: bool = True) -> Path:
    directory = base / name
    directory.mkdir(parents=True)
    config = directory / "config.toml"
    config.write_text(
        f'[station]\nid = "bench"\nstate_dir = "{directory / "state"}"\ntimezone = "Asia/Shanghai"\n'
        f'[archive]\nbackend = "filesystem"\npath = "{directory / "archive"}"\n'
        f"[media]\nproxy = {'true' if proxy else 'false'}\n", encoding="utf-8")
    return config


def ingest(config: Path, tree: Path) -> tuple[float, float]:
    """(seconds until the last original was archived — its ``archived_at`` —, seconds until
    the command exited)."""
    started_at = datetime.now(timezone.utc)
    started = time.monotonic()
    subprocess.run([str(DAEMON), "--config", str(config), "ingest", str(tree)], check=True,
                   stdout=subprocess.DEVNULL)
    exited_s = time.monotonic() - started
    connection = sqlite3.connect(config.parent / "state" / "state.sqlite3")
    try:
        last, missing = connection.execute(
            "SELECT MAX(archived_at), SUM(archived_at IS NULL) FROM recordings").fetchone()
    finally:
        connection.close()
    assert not missing, "not every original was archived"
    return (datetime.fromisoformat(last) - started_at).total_seconds(), exited_s


def proxy_case(base: Path, clip_dir: Path, round_number: int) -> tuple[float, float]:
    clip = next(clip_dir.iterdir())
    settings = load_config(new_station(base, f"plain{round_number}")).media
    out = base / f"plain{round_number}.mp4"
    started = time.monotonic()
    subprocess.run(["ffmpeg", *transcode.fill(transcode.proxy_arguments(jobs.ProxyKind.VIDEO, settings), clip, out)],
                   check=True)
    plain_s = time.monotonic() - started

    config_path = new_station(base, f"worker{round_number}")
    ingest(config_path, clip_dir)
    station = open_station(load_config(config_path))
    try:
        worker = px.ProxyWorker.from_station(station)
        started = time.monotonic()
        result = worker.run_pending()
        worker_s = time.monotonic() - started
    finally:
        station.close()
    assert result == {"done": 1}, result
    return plain_s, worker_s


def batch_case(base: Path, batch_dir: Path, round_number: int) -> tuple[float, float, float, float, float]:
    off_s, off_exit_s = ingest(new_station(base, f"off{round_number}", proxy=False), batch_dir)
    config_path = new_station(base, f"on{round_number}")
    station = open_station(load_config(config_path))
    try:
        worker = px.ProxyWorker.from_station(station, poll_s=0.2)
        worker.start()
        started = time.monotonic()
        try:
            on_s, on_exit_s = ingest(config_path, batch_dir)
            queue = jobs.ProxyQueue(station.database)
            while queue.report()["counts"]["done"] < len(list(batch_dir.iterdir())):
                time.sleep(0.2)
            all_proxies_s = time.monotonic() - started
        finally:
            worker.stop()
    finally:
        station.close()
    return off_s, on_s, all_proxies_s, off_exit_s, on_exit_s


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--height", type=int, default=1080)
    parser.add_argument("--batch", type=int, default=10)
    parser.add_argument("--batch-seconds", type=float, default=10)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "performance.md")
    args = parser.parse_args()
    began = time.monotonic()
    started_at = run_at()
    with tempfile.TemporaryDirectory(prefix="proxy-bench-", dir="/var/tmp") as temp:
        base = Path(temp)
        clip_dir = base / "clip"
        clip_dir.mkdir()
        make_clip(clip_dir / "DSJ001_10086_20261125083000_0001.MP4", args.seconds, args.height)
        batch_dir = base / "batch"
        batch_dir.mkdir()
        make_clip(base / "one.mp4", args.batch_seconds, args.height)
        for number in range(1, args.batch + 1):  # distinct bytes, same content to transcode
            ffmpeg("-i", str(base / "one.mp4"), "-c", "copy", "-metadata", f"comment=clip {number}",
                   str(batch_dir / f"DSJ001_10086_20261125083000_{number:04d}.MP4"))
        clip_mb = sum(p.stat().st_size for p in clip_dir.iterdir()) / 1e6
        batch_mb = sum(p.stat().st_size for p in batch_dir.iterdir()) / 1e6
        proxy_runs = [proxy_case(base, clip_dir, n) for n in range(args.repeat)]
        batch_runs = [batch_case(base, batch_dir, n) for n in range(args.repeat)]

    def med(values: list[float]) -> float:
        return statistics.median(values)

    def span(values: list[float]) -> str:
        return f"{med(values):.2f} ({min(values):.2f}–{max(values):.2f})"

    plain = [run[0] for run in proxy_runs]
    worker = [run[1] for run in proxy_runs]
    off = [run[0] for run in batch_runs]
    on = [run[1] for run in batch_runs]
    all_proxies = [run[2] for run in batch_runs]
    off_exit = [run[3] for run in batch_runs]
    on_exit = [run[4] for run in batch_runs]
    proxy_ratio = med(worker) / med(plain)
    batch_ratio = med(on) / med(off)
    command = command_line("proxy.py", None)
    section = f"""{BEGIN}
## Proxies (`benchmarks/proxy.py`)

Run {started_at}, {time.monotonic() - began:.0f} s in all:

```
{command}
```

- Machine: {machine()}; {subprocess.run(["ffmpeg", "-version"], capture_output=True, text=True).stdout.splitlines()[0]}
- Clip: {args.seconds:g} s {args.height}p30 H.264 (ultrafast) + AAC, {clip_mb:.1f} MB. Batch: {args.batch} files of {args.batch_seconds:g} s {args.height}p30, {batch_mb:.1f} MB in all.
- Proxy settings: the defaults (fit 1280x720, libx264 veryfast CRF 23 capped at 1500 kbit/s, AAC 96 kbit/s, faststart), `proxy_workers = 1`, `proxy_nice = 10`.
- {args.repeat} rounds, cases alternating; seconds are the median (min–max).

| case | what | seconds | vs baseline |
|---|---|---:|---:|
| (p0) | plain `ffmpeg` with the proxy's arguments | {span(plain)} | 1.00× |
| (p1) | `ProxyWorker.run_pending()`: proxy + check + hash + store + poster + ledger | {span(worker)} | {proxy_ratio:.2f}× |
| (b0) | `evidence-daemon ingest` of the batch, proxies off: until the last original is archived (its `archived_at`) | {span(off)} | 1.00× |
| (b1) | the same with the proxy worker running | {span(on)} | {batch_ratio:.2f}× |
| (b0') | (context) (b0) until the `ingest` command exited | {span(off_exit)} | – |
| (b1'') | (context) (b1) until the `ingest` command exited | {span(on_exit)} | {med(on_exit) / med(off_exit):.2f}× |
| (b1') | (context) from the start of (b1) until every proxy is stored | {span(all_proxies)} | – |

Targets:

- proxy time ≤ 1.05× the plain ffmpeg command: **{"met" if proxy_ratio <= 1.05 else "MISSED"}** — {proxy_ratio:.2f}×
- originals of a {args.batch}-file batch archived with transcoding ≤ 1.1× without: **{"met" if batch_ratio <= 1.1 else "MISSED"}** — {batch_ratio:.2f}×

{END}"""
    print(section)
    write_doc(args.out, section, BEGIN, END)
    return 0


if __name__ == "__main__":
    sys.exit(main())
