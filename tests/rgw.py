"""A throw-away single-node Ceph cluster with the RADOS Gateway, a real S3 server for the tests.

moto stores whatever it is told (no Object Lock enforcement, no checksum or signature checks);
RGW enforces COMPLIANCE retention and legal holds and rejects a payload whose signed SHA-256 or
Content-MD5 does not match. One monitor, one bluestore OSD on a sparse file and radosgw (beast,
plain HTTP and HTTPS with a self-signed certificate) on 127.0.0.1, everything under one
directory, no systemd, no mgr, no authentication between the daemons. The settings that matter
are explained in ../shared/FACTS.md ("Ceph RGW") and below where they are not obvious.

It must never touch anything outside its directory (no /etc/ceph, no /var/lib/ceph: every
path is in the generated ceph.conf and every command is given ``-c``), and never outlive the
test session: the daemons run in the foreground as our children, die with us (PR_SET_PDEATHSIG)
and are stopped by PID in the order rgw, osd, mon (radosgw hangs on SIGTERM once the OSD is
gone).

Plain helpers only; the pytest fixture lives in ``s3_fixtures``.
"""

from __future__ import annotations

import ctypes
import datetime
import ipaddress
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import urllib3

BINARIES = ("monmaptool", "ceph-mon", "ceph-osd", "radosgw", "radosgw-admin", "ceph")
DEBIAN_PACKAGES = "ceph-mon ceph-osd radosgw ceph-common uuid-runtime"

ACCESS_KEY = "evidence-test"
SECRET_KEY = "evidence-test-secret-key"

START_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 20.0
# Sparse: only what the tests write takes disk space. Large enough that the OSD never reports
# itself near full (it refuses writes at 95 %) however many buckets a session leaves behind.
OSD_BLOCK_BYTES = 20 * 1024**3


def missing_reason() -> str | None:
    """Why this machine cannot run the cluster, or None."""
    missing = [name for name in BINARIES if shutil.which(name) is None]
    if missing:
        return (f"RGW tests need the Ceph binaries ({', '.join(missing)} missing): "
                f"apt-get install {DEBIAN_PACKAGES}")
    return None


@dataclass(frozen=True)
class RgwCluster:
    """Where the running gateway listens and how to log in."""

    endpoint: str  # host:port, plain HTTP
    tls_endpoint: str  # host:port, HTTPS with the certificate below
    ca_file: Path  # the self-signed certificate, to trust for ``tls_endpoint``
    access_key: str
    secret_key: str
    directory: Path

    @property
    def conf(self) -> Path:
        return self.directory / "ceph.conf"


@dataclass(frozen=True)
class RgwUser:
    """An RGW user of its own (not the bucket owner): what a bucket policy names."""

    uid: str
    access_key: str
    secret_key: str

    @property
    def principal(self) -> str:
        """The ARN a bucket policy names this user by (RGW users have no account id)."""
        return f"arn:aws:iam:::user/{self.uid}"


def create_user(cluster: RgwCluster, uid: str) -> RgwUser:
    """A new user with fresh keys and no access to anything until a bucket policy grants it.

    Objects an RGW 16 user uploads are owned by that user, not by the bucket owner: the bucket
    owner (``cluster.access_key``) cannot read them unless the bucket policy grants it too.
    """
    user = RgwUser(uid, f"{uid}-{uuid.uuid4().hex[:12]}", uuid.uuid4().hex)
    _run(cluster.conf, "radosgw-admin", "user", "create", f"--uid={uid}",
         f"--display-name={uid}", f"--access-key={user.access_key}",
         f"--secret={user.secret_key}")
    return user


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _die_with_parent() -> None:
    # Runs in the child before exec: a killed test session must not leave daemons behind.
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _ceph_conf(directory: Path, fsid: str, mon_port: int, http_port: int, https_port: int,
               certificate: Path, private_key: Path) -> str:
    return f"""\
[global]
fsid = {fsid}
mon host = v2:127.0.0.1:{mon_port}
mon initial members = a
auth cluster required = none
auth service required = none
auth client required = none
# Without it radosgw loops on "get_initial_auth_request returned -13" and gives up after 300 s.
ms mon client mode = crc
ms bind msgr1 = false
client mount timeout = 30
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
mon allow pool size one = true
mon warn on pool no redundancy = false
# Pool creation (radosgw makes a dozen) drops from ~9 s to under a second.
paxos propose interval = 0.05
paxos min wait = 0.01
run dir = {directory}/run
pid file = {directory}/run/$name.pid
admin socket = {directory}/run/$name.asok
log file = {directory}/log/$name.log
log to stderr = false
err to stderr = true
mon data = {directory}/mon/$cluster-$id
osd data = {directory}/osd/$cluster-$id
osd objectstore = bluestore
bluestore block create = true
bluestore block size = {OSD_BLOCK_BYTES}
bluestore fsck on mkfs = false
bluestore fsck on mount = false
bluestore cache size = 134217728
osd memory target = 939524096
keyring = {directory}/keyring

[client.rgw]
rgw data = {directory}/rgw
rgw frontends = beast endpoint=127.0.0.1:{http_port} ssl_endpoint=127.0.0.1:{https_port} ssl_certificate={certificate} ssl_private_key={private_key}
rgw thread pool size = 64
"""


def write_self_signed_certificate(certificate: Path, private_key: Path) -> None:
    """A certificate for 127.0.0.1 and localhost, valid for a day; it is its own CA."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "evidence-test RGW")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName([
            x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False)
        .sign(key, hashes.SHA256())
    )
    certificate.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    private_key.write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    private_key.chmod(0o600)


class _Daemons:
    """The cluster's processes, stopped in reverse start order (rgw, osd, mon)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.processes: list[tuple[str, subprocess.Popen[bytes]]] = []

    def start(self, name: str, *argv: str) -> subprocess.Popen[bytes]:
        log = (self.directory / "log" / f"{name}.stderr").open("ab")
        with log:
            process = subprocess.Popen(
                [*argv, "-f"], stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                preexec_fn=_die_with_parent, cwd=self.directory,
            )
        self.processes.append((name, process))
        return process

    def check_alive(self) -> None:
        for name, process in self.processes:
            if process.poll() is not None:
                raise RuntimeError(
                    f"{name} exited with {process.returncode} while the test cluster started; "
                    f"see {self.directory / 'log'}:\n{_tail(self.directory / 'log', name)}")

    def stop(self) -> None:
        for name, process in reversed(self.processes):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(STOP_TIMEOUT_S)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
        self.processes.clear()


def _tail(log_dir: Path, name: str, lines: int = 15) -> str:
    text = []
    for path in sorted(log_dir.glob(f"*{name}*")):
        text += path.read_text(errors="replace").splitlines()[-lines:]
    return "\n".join(text)


def _run(conf: Path, *argv: str, timeout_s: float = 60.0) -> str:
    result = subprocess.run([argv[0], "-c", str(conf), *argv[1:]], capture_output=True,
                            text=True, timeout=timeout_s, stdin=subprocess.DEVNULL)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({result.returncode}): "
                           f"{result.stderr.strip()[-2000:]}")
    return result.stdout


def _wait(what: str, ready: Callable[[], bool], daemons: _Daemons, deadline: float) -> None:
    while True:
        daemons.check_alive()
        if ready():
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"test cluster: {what} not ready after {START_TIMEOUT_S:.0f} s; "
                               f"logs in {daemons.directory / 'log'}")
        time.sleep(0.1)


def _s3_answers(endpoint: str) -> bool:
    try:
        response = urllib3.request("GET", f"http://{endpoint}/", timeout=2.0, retries=False)
    except urllib3.exceptions.HTTPError:
        return False
    return response.status in (200, 403)


@contextmanager
def rgw_cluster(directory: Path) -> Iterator[RgwCluster]:
    """Create, start and (on exit) stop a cluster under ``directory`` (which must be empty)."""
    for sub in ("run", "log", "mon", "osd", "rgw"):
        (directory / sub).mkdir(parents=True, exist_ok=True)
    conf = directory / "ceph.conf"
    certificate, private_key = directory / "rgw.crt", directory / "rgw.key"
    write_self_signed_certificate(certificate, private_key)
    fsid = str(uuid.uuid4())
    mon_port, http_port, https_port = _free_port(), _free_port(), _free_port()
    conf.write_text(_ceph_conf(directory, fsid, mon_port, http_port, https_port,
                               certificate, private_key))
    deadline = time.monotonic() + START_TIMEOUT_S
    with ExitStack() as stack:
        daemons = _Daemons(directory)
        stack.callback(daemons.stop)
        monmap = directory / "monmap"
        subprocess.run(["monmaptool", "--create", "--addv", "a", f"[v2:127.0.0.1:{mon_port}]",
                        "--fsid", fsid, str(monmap)], check=True, capture_output=True)
        _run(conf, "ceph-mon", "--mkfs", "-i", "a", "--monmap", str(monmap))
        daemons.start("mon.a", "ceph-mon", "-c", str(conf), "-i", "a")
        osd_uuid = str(uuid.uuid4())
        osd_id = _run(conf, "ceph", "osd", "new", osd_uuid).strip()
        (directory / "osd" / f"ceph-{osd_id}").mkdir()
        _run(conf, "ceph-osd", "-i", osd_id, "--mkfs", "--osd-uuid", osd_uuid, timeout_s=120)
        daemons.start(f"osd.{osd_id}", "ceph-osd", "-c", str(conf), "-i", osd_id)
        _wait("the OSD", lambda: f"osd.{osd_id} up" in _run(conf, "ceph", "osd", "dump"),
              daemons, deadline)
        daemons.start("client.rgw", "radosgw", "-c", str(conf), "-n", "client.rgw")
        endpoint = f"127.0.0.1:{http_port}"
        _wait("radosgw", lambda: _s3_answers(endpoint), daemons, deadline)
        _run(conf, "radosgw-admin", "user", "create", "--uid=evidence-test",
             "--display-name=evidence-test", f"--access-key={ACCESS_KEY}",
             f"--secret={SECRET_KEY}")
        yield RgwCluster(
            endpoint=endpoint,
            tls_endpoint=f"127.0.0.1:{https_port}",
            ca_file=certificate,
            access_key=ACCESS_KEY,
            secret_key=SECRET_KEY,
            directory=directory,
        )


if __name__ == "__main__":  # a manual smoke run: python -m tests.rgw
    import tempfile

    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="evidence-rgw-") as tmp, rgw_cluster(Path(tmp)) as rgw:
        print(f"S3-ready in {time.monotonic() - started:.1f} s: {rgw}")
        stopping = time.monotonic()
    print(f"stopped in {time.monotonic() - stopping:.1f} s")

