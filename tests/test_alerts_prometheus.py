"""End to end with a real Prometheus on 127.0.0.1 (Debian package ``prometheus``).

The daemon runs in this process with an injected clock and an archive made unreachable: the
S3 test server stopped, or a filesystem archive whose parent directory is a plain file. Prometheus scrapes the daemon every second
and evaluates a copy of the shipped rules with every ``for:`` shortened to 1 s. A recording
passes its deadline: the overdue alert fires. The archive comes back: the retry job archives
the recording as late, the overdue alert resolves and the late-archive alert fires.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import socket
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, Protocol

import pytest
from minio import Minio
from moto.server import ThreadedMotoServer
from prometheus_client import CollectorRegistry

from evidence_daemon.dock.manager import DockManager
from evidence_daemon.ingest.pipeline import Origin
from evidence_daemon.metrics.station import StationMetrics
from evidence_daemon.sources.mounter import Mounter
from evidence_daemon.station import build_daemon

from .s3_fixtures import TEST_S3_ENDPOINT
from .s3server import MOTO_ACCESS_KEY, MOTO_SECRET_KEY, unique_bucket_name
from .test_compliance_support import T0, SteppedClock, make_station, write_footage

PROMETHEUS = shutil.which("prometheus")
RULES = Path(__file__).resolve().parents[1] / "config" / "prometheus" / "evidence-alerts.yml"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(PROMETHEUS is None, reason="prometheus missing: apt-get install prometheus"),
]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


@dataclass
class PrometheusServer:
    url: str
    process: subprocess.Popen[bytes]

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(self.url + path, timeout=5) as reply:
            return json.loads(reply.read())

    def alerts(self) -> dict[str, str]:
        """alertname -> state (pending|firing) of the active alerts."""
        return {alert["labels"]["alertname"]: alert["state"]
                for alert in self.get("/api/v1/alerts")["data"]["alerts"]}

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(self.url + "/-/ready", timeout=2) as reply:
                return bool(reply.status == 200)
        except OSError:
            return False


@pytest.fixture
def prometheus_for(tmp_path: Path) -> Iterator[Callable[[int], PrometheusServer]]:
    started: list[PrometheusServer] = []

    def start(metrics_port: int) -> PrometheusServer:
        assert PROMETHEUS is not None
        rules = tmp_path / "prom" / "rules.yml"
        rules.parent.mkdir()
        rules.write_text(re.sub(r"for: \w+", "for: 1s", RULES.read_text(encoding="utf-8")),
                         encoding="utf-8")
        config = tmp_path / "prom" / "prometheus.yml"
        config.write_text(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
            f"rule_files:\n  - {rules}\n"
            "scrape_configs:\n  - job_name: evidence\n    static_configs:\n"
            f"      - targets: ['127.0.0.1:{metrics_port}']\n", encoding="utf-8")
        port = free_port()
        with (tmp_path / "prom" / "prometheus.log").open("wb") as log:
            process = subprocess.Popen(
                [PROMETHEUS, f"--config.file={config}",
                 f"--storage.tsdb.path={tmp_path / 'prom' / 'data'}",
                 f"--web.listen-address=127.0.0.1:{port}"], stdout=log, stderr=log)
        server = PrometheusServer(f"http://127.0.0.1:{port}", process)
        started.append(server)
        wait_for(server.ready, 20, "Prometheus to be ready")
        return server

    yield start
    for server in started:
        server.process.terminate()
        try:
            server.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait()


class Silent:
    def notify(self, state: str) -> None:
        pass


class Outage(Protocol):
    archive: dict[str, Any]

    def begin(self) -> None: ...

    def end(self) -> None: ...


class BlockedDirectory:
    """A filesystem archive whose parent directory is, for a while, a plain file."""

    def __init__(self, tmp_path: Path) -> None:
        self.blocker = tmp_path / "archive-host"
        self.archive = {"backend": "filesystem", "path": str(self.blocker / "archive")}

    def begin(self) -> None:
        self.blocker.write_bytes(b"a plain file where the archive's parent directory should be")

    def end(self) -> None:
        self.blocker.unlink()


class StoppedS3Server:
    """The S3 test server (moto) stopped, then started again on the same port. moto keeps its
    buckets in this process, so the archive comes back as it was."""

    def __init__(self) -> None:
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        self.port = free_port()
        self.server = self._start()
        bucket = unique_bucket_name()
        Minio(f"127.0.0.1:{self.port}", access_key=MOTO_ACCESS_KEY, secret_key=MOTO_SECRET_KEY,
              secure=False).make_bucket(bucket, object_lock=True)
        self.archive = {"backend": "s3", "endpoint": f"127.0.0.1:{self.port}", "bucket": bucket,
                        "access_key": MOTO_ACCESS_KEY, "secret_key": MOTO_SECRET_KEY,
                        "secure": False, "retries": 1, "retention_days": 1}

    def _start(self) -> ThreadedMotoServer:
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        server.start()
        return server

    def begin(self) -> None:
        self.server.stop()

    def end(self) -> None:
        self.server = self._start()

    def close(self) -> None:
        self.server.stop()


@pytest.fixture(params=["filesystem", "s3"])
def outage(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Outage]:
    if request.param == "filesystem":
        yield BlockedDirectory(tmp_path)
        return
    if TEST_S3_ENDPOINT:
        pytest.skip("needs the in-process S3 test server (moto), not EVIDENCE_TEST_S3_ENDPOINT")
    server = StoppedS3Server()
    try:
        yield server
    finally:
        server.close()


def test_overdue_alert_fires_then_resolves_when_the_archive_returns(
    tmp_path: Path, prometheus_for: Callable[[int], PrometheusServer], outage: Outage
) -> None:
    metrics_port = free_port()
    clock = SteppedClock(T0 + timedelta(hours=23))  # the footage below ended at T0: at risk
    station = make_station(tmp_path, clock, archive=outage.archive, extra=f"""
[metrics]
listen = "127.0.0.1:{metrics_port}"

[upkeep]
compliance_scan_s = 1
retry_base_s = 1
retry_max_s = 2

[dock]
runtime_dir = "{tmp_path / 'run'}"
""")
    outage.begin()
    write_footage(tmp_path / "card", "DSJ-0001.mp4", b"footage that must reach the archive")
    summary = station.ingestor().ingest(Origin(tmp_path / "card"),
                                        archive_error="archive unreachable (test)")
    assert summary.pending == 1

    metrics = StationMetrics(station.config, station.database, clock=clock,
                             registry=CollectorRegistry())
    stop = threading.Event()
    ingestor = station.ingestor()
    ingestor.metrics = metrics.pipeline
    manager = DockManager(station.config, ingestor, station.devices(), Mounter(station.config.dock),
                          station.database, station.ledger, stop=stop)
    daemon = build_daemon(station, manager, [], metrics=metrics, stop=stop, notifier=Silent())
    runner = threading.Thread(target=daemon.run, name="daemon", daemon=True)
    runner.start()
    try:
        prometheus = prometheus_for(metrics_port)
        wait_for(lambda: prometheus.alerts().get("EvidenceDeadlineAtRisk") == "firing", 20,
                 "the at-risk alert")
        wait_for(lambda: prometheus.alerts().get("EvidenceArchiveUnreachable") == "firing", 20,
                 "the archive alert")
        assert "EvidenceRecordingsOverdue" not in prometheus.alerts()

        clock.advance(hours=2)  # past the deadline, still unreachable
        wait_for(lambda: prometheus.alerts().get("EvidenceRecordingsOverdue") == "firing", 20,
                 "the overdue alert to fire")

        outage.end()  # the archive is back; the retry job (backoff <= 2 s) archives it
        wait_for(lambda: station.recordings()[0]["compliance"] == "late", 20,
                 "the recording to be archived late")
        wait_for(lambda: "EvidenceRecordingsOverdue" not in prometheus.alerts(), 20,
                 "the overdue alert to resolve")
        wait_for(lambda: prometheus.alerts().get("EvidenceLateArchive") == "firing", 20,
                 "the late-archive alert")
        wait_for(lambda: "EvidenceArchiveUnreachable" not in prometheus.alerts(), 20,
                 "the archive alert to resolve")
        query = prometheus.get("/api/v1/query?query=evidence_recordings%7Bstate%3D%22late%22%7D")
        assert query["data"]["result"][0]["value"][1] == "1"
    finally:
        stop.set()
        runner.join(timeout=30)
        station.close()
    assert not runner.is_alive()
