"""A real RFC 3161 time-stamping authority on loopback: OpenSSL's TSA behind a tiny HTTP handler.

``make_tsa_pki`` makes a throw-away root CA and a TSA certificate under it (EC P-256,
extendedKeyUsage timeStamping, critical, as RFC 3161 2.3 requires) plus an ``openssl ts``
configuration; ``LoopbackTsa`` answers each ``application/timestamp-query`` POST by running
``openssl ts -reply`` on it. Nothing is mocked: the tokens are OpenSSL's, checked by
``rfc3161-client`` (and, in the tests, by ``openssl ts -verify`` too).

Fixtures: ``tsa`` (a running TSA; ``tsa.url``, ``tsa.pki.chain_file`` for
``[timestamp] tsa_cert_file``, ``tsa.trust``) and ``tsa_pki_factory`` (more PKIs, for "another
TSA" cases). Tests only: the daemon itself never serves HTTP for this.
"""

from __future__ import annotations

import datetime
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from evidence_daemon.custody.timestamp import TsaTrust

POLICY_OID = "1.3.6.1.4.1.55555.3161.1"


@dataclass(frozen=True)
class TsaPki:
    directory: Path
    ca_cert: x509.Certificate
    tsa_cert: x509.Certificate
    ca_file: Path  # the root alone
    tsa_cert_file: Path  # the TSA certificate alone
    chain_file: Path  # TSA certificate + root: what [timestamp] tsa_cert_file points at
    config_file: Path  # openssl ts configuration

    @property
    def trust(self) -> TsaTrust:
        return TsaTrust.of([self.tsa_cert, self.ca_cert], source=str(self.chain_file))


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "evidence-daemon tests"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _pem(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.PEM)


def make_tsa_pki(directory: Path, label: str = "Test") -> TsaPki:
    """A root CA and a TSA certificate it issued, valid from yesterday for 30 days."""
    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.timezone.utc)
    start, end = now - datetime.timedelta(days=1), now + datetime.timedelta(days=30)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = (
        x509.CertificateBuilder().subject_name(_name(f"{label} TSA Root CA"))
        .issuer_name(_name(f"{label} TSA Root CA")).public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(start).not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=False, content_commitment=False, key_encipherment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
            encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()),
                       critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    tsa_key = ec.generate_private_key(ec.SECP256R1())
    tsa_cert = (
        x509.CertificateBuilder().subject_name(_name(f"{label} Time-Stamping Authority"))
        .issuer_name(ca_cert.subject).public_key(tsa_key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(start).not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=True, content_commitment=True, key_encipherment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
            encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.TIME_STAMPING]), critical=True)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                       critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    ca_file, tsa_cert_file = directory / "ca.pem", directory / "tsa.pem"
    chain_file, key_file = directory / "tsa-chain.pem", directory / "tsa.key"
    ca_file.write_bytes(_pem(ca_cert))
    tsa_cert_file.write_bytes(_pem(tsa_cert))
    chain_file.write_bytes(_pem(tsa_cert) + _pem(ca_cert))
    key_file.write_bytes(tsa_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    key_file.chmod(0o600)
    (directory / "serial").write_text("01\n")
    config_file = directory / "ts.cnf"
    # No "certs =": OpenSSL would add the root after the TSA certificate, out of DER SET OF
    # order, and rfc3161-client refuses such (non-DER) tokens. The token carries the TSA
    # certificate (certReq); the verifier brings the root.
    config_file.write_text(f"""\
[ tsa ]
default_tsa = tsa_config

[ tsa_config ]
dir = {directory}
serial = $dir/serial
crypto_device = builtin
signer_cert = $dir/tsa.pem
signer_key = $dir/tsa.key
signer_digest = sha256
default_policy = {POLICY_OID}
other_policies = {POLICY_OID}.2
digests = sha256, sha384, sha512
accuracy = secs:1
ordering = no
tsa_name = yes
ess_cert_id_chain = no
ess_cert_id_alg = sha256
""")
    return TsaPki(directory, ca_cert, tsa_cert, ca_file, tsa_cert_file, chain_file, config_file)


Responder = Callable[[bytes], tuple[int, bytes]]


class LoopbackTsa:
    """``openssl ts -reply`` behind an HTTP server on 127.0.0.1 (a thread; stop() ends it)."""

    def __init__(self, pki: TsaPki) -> None:
        self.pki = pki
        self.queries: list[bytes] = []
        # A test may replace the answer (fault injection): query bytes -> (HTTP status, body).
        self.responder: Responder = self.openssl_reply
        self._lock = threading.Lock()  # openssl ts -reply rewrites the serial file
        tsa = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                length = int(self.headers.get("Content-Length") or 0)
                query = self.rfile.read(min(length, 65536))
                tsa.queries.append(query)
                status, body = tsa.responder(query)
                self.send_response(status)
                self.send_header("Content-Type", "application/timestamp-reply")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,),
                                        name="loopback-tsa", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/tsa"

    @property
    def trust(self) -> TsaTrust:
        return self.pki.trust

    def openssl_reply(self, query: bytes, config_file: Path | None = None) -> tuple[int, bytes]:
        """OpenSSL's answer to ``query`` (its own configuration unless another is given)."""
        config_file = config_file or self.pki.config_file
        with self._lock, tempfile.TemporaryDirectory(dir=self.pki.directory) as work:
            query_file, reply_file = Path(work) / "query.tsq", Path(work) / "reply.tsr"
            query_file.write_bytes(query)
            done = subprocess.run(
                ["openssl", "ts", "-reply", "-config", str(config_file),
                 "-queryfile", str(query_file), "-out", str(reply_file)],
                capture_output=True, text=True, timeout=30, check=False,
            )
            if done.returncode != 0 or not reply_file.exists():
                return 500, done.stderr.encode()
            return 200, reply_file.read_bytes()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


@pytest.fixture
def tsa_pki_factory(tmp_path: Path) -> Callable[[str], TsaPki]:
    def make(label: str) -> TsaPki:
        return make_tsa_pki(tmp_path / "tsa-pki" / label.replace(" ", "-"), label)

    return make


@pytest.fixture
def tsa(tsa_pki_factory: Callable[[str], TsaPki]) -> Iterator[LoopbackTsa]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed (apt-get install openssl): no loopback TSA")
    server = LoopbackTsa(tsa_pki_factory("Loopback"))
    try:
        yield server
    finally:
        server.stop()
