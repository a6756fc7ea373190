"""RFC 3161 timestamps against a real TSA on loopback (OpenSSL's ``openssl ts -reply``).

A token is obtained, checked on receipt and again offline; every tampering with it, or with
whom it is checked against, is an IntegrityError (exit 7) and recorded in the fault matrix; a
TSA that cannot be reached, hangs, refuses or answers nonsense is a StorageError (exit 6) and
nothing is returned to be stored.
"""

from __future__ import annotations

import hashlib
import re
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from rfc3161_client import HashAlgorithm, TimestampRequestBuilder

from evidence_daemon.config import TimestampConfig, load_config
from evidence_daemon.custody.timestamp import (
    TsaTrust,
    load_tsa_trust,
    request_timestamp,
    verify_timestamp,
)
from evidence_daemon.errors import ConfigError, IntegrityError, StorageError

from .faultlog import FaultLog
from .tsa_fixtures import POLICY_OID, LoopbackTsa, TsaPki

CHECKPOINT = b'{"seq":41,"tree_head":"5dc9da79a70659a9","writer":"station-1"}'
TAMPER = "tamper: timestamp"


def stamp(tsa: LoopbackTsa, message: bytes = CHECKPOINT) -> bytes:
    token, _ = request_timestamp(message, url=tsa.url, trust=tsa.trust, timeout_s=10)
    return token


def test_a_token_is_obtained_verified_and_verifies_offline(tsa: LoopbackTsa,
                                                           tmp_path: Path) -> None:
    before = datetime.now(timezone.utc)
    token, stamped = request_timestamp(CHECKPOINT, url=tsa.url, trust=tsa.trust, timeout_s=10)
    assert len(tsa.queries) == 1
    assert before - timedelta(seconds=2) <= stamped.time <= datetime.now(timezone.utc)
    assert "Loopback Time-Stamping Authority" in stamped.tsa
    assert stamped.policy == POLICY_OID

    # Offline, from the configured file, as verify will: the same facts.
    trust = load_tsa_trust(tsa.pki.chain_file)
    assert trust.tsa_certificate == tsa.pki.tsa_cert and trust.roots == (tsa.pki.ca_cert,)
    assert verify_timestamp(token, CHECKPOINT, trust) == stamped
    # The root alone accepts any TSA it certified.
    assert verify_timestamp(token, CHECKPOINT, load_tsa_trust(tsa.pki.ca_file)) == stamped

    # And an examiner with nothing but OpenSSL gets the same answer from the stored bytes.
    (tmp_path / "checkpoint").write_bytes(CHECKPOINT)
    (tmp_path / "checkpoint.tsr").write_bytes(token)
    checked = subprocess.run(
        ["openssl", "ts", "-verify", "-data", str(tmp_path / "checkpoint"),
         "-in", str(tmp_path / "checkpoint.tsr"), "-CAfile", str(tsa.pki.ca_file)],
        capture_output=True, text=True, check=False)
    assert checked.returncode == 0 and "Verification: OK" in checked.stdout, checked.stderr


def _flip_gen_time(token: bytes) -> bytes:
    match = re.search(rb"\x18\x0f(\d{14})Z", token)  # TSTInfo genTime, GeneralizedTime
    assert match is not None
    year_digit = match.start(1) + 3  # 2026 -> 2027 (or ...9 -> ...8): still a valid time
    replacement = b"8" if token[year_digit:year_digit + 1] == b"9" else bytes(
        [token[year_digit] + 1])
    return token[:year_digit] + replacement + token[year_digit + 1:]


def _flip_imprint(token: bytes) -> bytes:
    digest = hashlib.sha256(CHECKPOINT).digest()
    at = token.index(digest)
    return token[:at] + bytes([token[at] ^ 0x01]) + token[at + 1:]


def _flip_last_byte(token: bytes) -> bytes:
    return token[:-1] + bytes([token[-1] ^ 0x01])


def _rejected_status(token: bytes) -> bytes:
    granted = b"\x30\x03\x02\x01\x00"  # PKIStatusInfo { status granted(0) }: outside the signature
    at = token.index(granted)
    assert at <= 4
    return token[:at] + b"\x30\x03\x02\x01\x02" + token[at + len(granted):]


TOKEN_TAMPERING: list[tuple[str, Callable[[bytes], bytes], str]] = [
    ("time changed in the signed token info", _flip_gen_time, "genTime year +1 in the DER"),
    ("message imprint changed", _flip_imprint, "one bit of the SHA-256 imprint"),
    ("signature value changed", _flip_last_byte, "last byte of the CMS signature"),
    ("response status changed to rejection", _rejected_status, "PKIStatus 0 -> 2"),
    ("token truncated", lambda token: token[: len(token) // 2], "second half cut off"),
    ("token replaced by text", lambda token: b"timestamp: 2020-01-01 00:00 UTC", "not DER"),
]


@pytest.mark.parametrize(("case", "tamper", "injected_by"), TOKEN_TAMPERING,
                         ids=[case for case, _, _ in TOKEN_TAMPERING])
def test_a_tampered_token_does_not_verify(tsa: LoopbackTsa, fault_log: FaultLog, case: str,
                                          tamper: Callable[[bytes], bytes],
                                          injected_by: str) -> None:
    token = stamp(tsa)
    tampered = tamper(token)
    assert tampered != token
    with pytest.raises(IntegrityError) as caught:
        verify_timestamp(tampered, CHECKPOINT, tsa.trust)
    assert caught.value.exit_code == 7
    assert "timestamp" in caught.value.message
    verify_timestamp(token, CHECKPOINT, tsa.trust)  # the untouched token still does
    fault_log(TAMPER, case, injected_by=injected_by, files_lost=0, wrongly_archived=0,
              duplicates=0, exit_code=caught.value.exit_code, message=caught.value.message)


def test_a_stored_refusal_is_no_token(tsa: LoopbackTsa, fault_log: FaultLog) -> None:
    """A TSA's "rejection" answer kept in place of a token (it carries no signed time)."""
    sha512_only = tsa.pki.config_file.with_name("ts-sha512.cnf")
    sha512_only.write_text(tsa.pki.config_file.read_text().replace(
        "digests = sha256, sha384, sha512", "digests = sha512"))
    query = TimestampRequestBuilder().data(CHECKPOINT).hash_algorithm(HashAlgorithm.SHA256).build()
    status, refusal = tsa.openssl_reply(query.as_bytes(), sha512_only)
    assert status == 200
    with pytest.raises(IntegrityError, match="does not verify") as caught:
        verify_timestamp(refusal, CHECKPOINT, tsa.trust)
    fault_log(TAMPER, "TSA refusal stored in place of a token",
              injected_by="openssl ts -reply rejecting the digest (badAlg)", files_lost=0,
              wrongly_archived=0, duplicates=0, exit_code=caught.value.exit_code,
              message=caught.value.message)


def test_a_token_for_other_bytes_does_not_verify(tsa: LoopbackTsa, fault_log: FaultLog) -> None:
    token = stamp(tsa)
    other_checkpoint = CHECKPOINT.replace(b'"seq":41', b'"seq":40')
    with pytest.raises(IntegrityError, match="Mismatch between messages") as caught:
        verify_timestamp(token, other_checkpoint, tsa.trust)
    fault_log(TAMPER, "genuine token presented for another checkpoint",
              injected_by="token of seq 41 checked against the bytes of seq 40", files_lost=0,
              wrongly_archived=0, duplicates=0, exit_code=caught.value.exit_code,
              message=caught.value.message)
    # ... and the token of the other checkpoint does not vouch for this one either.
    swapped = stamp(tsa, other_checkpoint)
    with pytest.raises(IntegrityError):
        verify_timestamp(swapped, CHECKPOINT, tsa.trust)


def test_a_token_checked_against_another_tsa_fails(
        tsa: LoopbackTsa, tsa_pki_factory: Callable[[str], TsaPki], fault_log: FaultLog) -> None:
    token = stamp(tsa)
    other = tsa_pki_factory("Other")
    with pytest.raises(IntegrityError) as caught:
        verify_timestamp(token, CHECKPOINT, load_tsa_trust(other.chain_file))
    assert "Other Time-Stamping Authority" in caught.value.message
    fault_log(TAMPER, "token checked against another TSA's certificate chain",
              injected_by="tsa_cert_file of an unrelated TSA", files_lost=0,
              wrongly_archived=0, duplicates=0, exit_code=caught.value.exit_code,
              message=caught.value.message)
    # The right root but another TSA certificate pinned: still refused.
    pinned_other = TsaTrust(roots=(tsa.pki.ca_cert,), tsa_certificate=other.tsa_cert)
    with pytest.raises(IntegrityError, match="does not match"):
        verify_timestamp(token, CHECKPOINT, pinned_other)


def test_an_impostor_tsa_is_refused_on_receipt(
        tsa: LoopbackTsa, tsa_pki_factory: Callable[[str], TsaPki], fault_log: FaultLog) -> None:
    impostor = LoopbackTsa(tsa_pki_factory("Impostor"))
    try:
        with pytest.raises(IntegrityError) as caught:
            request_timestamp(CHECKPOINT, url=impostor.url, trust=tsa.trust, timeout_s=10)
    finally:
        impostor.stop()
    assert len(impostor.queries) == 1
    fault_log(TAMPER, "TSA URL answered by another TSA (impostor or redirected)",
              injected_by="genuine OpenSSL TSA with its own CA at the configured URL",
              files_lost=0, wrongly_archived=0, duplicates=0,
              exit_code=caught.value.exit_code, message=caught.value.message)


def test_a_replayed_answer_is_refused_on_receipt(tsa: LoopbackTsa, fault_log: FaultLog) -> None:
    first = stamp(tsa)
    tsa.responder = lambda query: (200, first)  # the same genuine token, for the same bytes
    with pytest.raises(IntegrityError, match="Nonce mismatch") as caught:
        stamp(tsa)
    fault_log(TAMPER, "TSA answer replayed (same bytes, earlier token)",
              injected_by="HTTP handler returning the previous response", files_lost=0,
              wrongly_archived=0, duplicates=0, exit_code=caught.value.exit_code,
              message=caught.value.message)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_an_unreachable_tsa_is_a_storage_error(tsa: LoopbackTsa, fault_log: FaultLog) -> None:
    url = f"http://127.0.0.1:{_closed_port()}/tsa"
    with pytest.raises(StorageError) as caught:
        request_timestamp(CHECKPOINT, url=url, trust=tsa.trust, timeout_s=5)
    message = caught.value.message
    assert caught.value.exit_code == 6
    assert url in message and "unreachable" in message and "cannot connect" in message
    fault_log("timestamp authority unreachable", "nothing listening at the TSA URL",
              injected_by="closed loopback port", files_lost=0, wrongly_archived=0,
              duplicates=0, exit_code=caught.value.exit_code, message=message)


def test_a_hanging_tsa_times_out(tsa: LoopbackTsa, fault_log: FaultLog) -> None:
    release = threading.Event()

    def hang(query: bytes) -> tuple[int, bytes]:
        release.wait(10)
        return 503, b""

    tsa.responder = hang
    started = time.monotonic()
    try:
        with pytest.raises(StorageError, match="timed out") as caught:
            request_timestamp(CHECKPOINT, url=tsa.url, trust=tsa.trust, timeout_s=0.5)
    finally:
        release.set()
    assert time.monotonic() - started < 5
    fault_log("timestamp authority unreachable", "TSA accepts and never answers",
              injected_by="HTTP handler blocking; timeout_s = 0.5", files_lost=0,
              wrongly_archived=0, duplicates=0, exit_code=caught.value.exit_code,
              message=caught.value.message)


@pytest.mark.parametrize(("answer", "expected"), [
    ((503, b"busy"), "answered HTTP 503"),
    ((200, b"<html>captive portal</html>"), "not a DER RFC 3161 timestamp response"),
])
def test_a_tsa_answering_nonsense_is_a_storage_error(tsa: LoopbackTsa, answer: tuple[int, bytes],
                                                     expected: str) -> None:
    tsa.responder = lambda query: answer
    with pytest.raises(StorageError, match=re.escape(expected)):
        stamp(tsa)


def test_a_refusing_tsa_is_a_storage_error(tsa: LoopbackTsa) -> None:
    sha512_only = tsa.pki.config_file.with_name("ts-sha512.cnf")
    sha512_only.write_text(tsa.pki.config_file.read_text().replace(
        "digests = sha256, sha384, sha512", "digests = sha512"))
    tsa.responder = lambda query: tsa.openssl_reply(query, sha512_only)
    with pytest.raises(StorageError, match="did not grant the request .status 2"):
        stamp(tsa)


# --- trust bundles and configuration ---------------------------------------------------------

def test_trust_bundles_that_cannot_check_anything_are_refused(
        tsa_pki_factory: Callable[[str], TsaPki], tmp_path: Path) -> None:
    pki, other = tsa_pki_factory("One"), tsa_pki_factory("Two")
    with pytest.raises(ConfigError, match="timestamp.tsa_cert_file: .*no root"):
        load_tsa_trust(pki.tsa_cert_file)
    both = tmp_path / "two-tsas.pem"
    both.write_bytes(pki.chain_file.read_bytes() + other.tsa_cert_file.read_bytes())
    with pytest.raises(ConfigError, match="2 time-stamping certificates"):
        load_tsa_trust(both)
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    with pytest.raises(ConfigError, match="no PEM certificate"):
        load_tsa_trust(junk)
    with pytest.raises(ConfigError, match="cannot read"):
        load_tsa_trust(tmp_path / "missing.pem")


def test_timestamp_configuration_is_validated_by_name(tsa_pki_factory: Callable[[str], TsaPki],
                                                      tmp_path: Path) -> None:
    assert load_config(None, environ={}).timestamp == TimestampConfig()
    pki = tsa_pki_factory("Config")
    config = load_config(None, environ={"EVIDENCE_TIMESTAMP_URL": "https://tsa.example/tsr",
                                        "EVIDENCE_TIMESTAMP_TSA_CERT_FILE": str(pki.chain_file),
                                        "EVIDENCE_TIMESTAMP_TIMEOUT_S": "3"})
    assert config.timestamp == TimestampConfig(url="https://tsa.example/tsr", tsa_cert_file=pki.chain_file,
                                               timeout_s=3.0)
    cases = [
        ({"url": "tsa.example"}, "timestamp.url"),
        ({"url": "http://tsa.example"}, "timestamp.tsa_cert_file: required"),
        ({"tsa_cert_file": str(tmp_path / "missing.pem")}, "timestamp.tsa_cert_file"),
        ({"timeout_s": "0"}, "timestamp.timeout_s"),
    ]
    for values, message in cases:
        with pytest.raises(ConfigError) as caught:
            load_config(None, environ={}, overrides={f"timestamp.{k}": v for k, v in values.items()})
        assert message in caught.value.message
