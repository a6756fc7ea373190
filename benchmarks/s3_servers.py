"""The Ceph RADOS Gateway as the benchmarks' S3 server, shared by ``ingest.py`` and
``api_range.py``: the tests' throw-away single-node cluster (``tests/rgw.py``), started once per
benchmark run under its work directory and stopped (by PID) at the end.

moto, the other S3 server the benchmarks know, is bound by its own CPU, so against moto a
benchmark measures moto. RGW (bluestore on a sparse file) is not the bottleneck: there the
figures compare clients (the station, rclone, a direct GET) on a real server. Its daemons
(monitor, OSD, radosgw) share the machine's CPUs with the client being measured; ``cpu_s``
reports what they used.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests import rgw  # noqa: E402

DAEMONS = ("ceph-mon", "ceph-osd", "radosgw")
MB = 1_000_000


def missing_reason() -> str | None:
    """Why RGW cannot run here (the Ceph packages to install), or None."""
    return rgw.missing_reason()


@dataclass(frozen=True)
class RgwServer:
    cluster: rgw.RgwCluster
    label: str = "Ceph RGW"

    @property
    def endpoint(self) -> str:
        return self.cluster.endpoint

    @property
    def access_key(self) -> str:
        return self.cluster.access_key

    @property
    def secret_key(self) -> str:
        return self.cluster.secret_key

    def pids(self) -> list[int]:
        """The cluster's daemons: our children (radosgw writes no PID file in the foreground)."""
        parent = os.getpid()
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text(encoding="ascii")
            except OSError:
                continue
            comm = stat[stat.index("(") + 1:stat.rindex(")")]
            ppid = int(stat.rpartition(")")[2].split()[1])
            if ppid == parent and comm in DAEMONS:
                found.append(int(entry.name))
        return found

    def cpu_s(self) -> float:
        """User + system CPU seconds of the cluster's daemons so far."""
        total = 0
        for pid in self.pids():
            with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
                fields = stat.read().rpartition(")")[2].split()
            total += int(fields[11]) + int(fields[12])
        return total / os.sysconf("SC_CLK_TCK")

    def rss_mb(self) -> float:
        total_kb = 0
        for pid in self.pids():
            with open(f"/proc/{pid}/status", encoding="ascii") as status:
                for line in status:
                    if line.startswith("VmRSS:"):
                        total_kb += int(line.split()[1])
        return total_kb * 1024 / MB

    def make_bucket(self, bucket: str, *, object_lock: bool = True) -> str:
        """A fresh bucket, with Object Lock (hence versioning) as a station's is made; how."""
        from minio import Minio

        Minio(self.endpoint, access_key=self.access_key, secret_key=self.secret_key,
              secure=False, region="us-east-1").make_bucket(bucket, object_lock=object_lock)
        return "`Minio.make_bucket(object_lock=True)`"


@contextmanager
def rgw_server(workdir: Path) -> Iterator[RgwServer]:
    """Start a cluster under ``workdir/rgw`` (on a real disk: the OSD's block file is there)."""
    directory = workdir / "rgw"
    directory.mkdir(parents=True)
    with rgw.rgw_cluster(directory) as cluster:
        yield RgwServer(cluster)
