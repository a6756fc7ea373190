"""Trusted time (可信时间戳): RFC 3161 timestamp tokens over checkpoints, obtained and checked.

A time-stamping authority (TSA) signs "these bytes existed at this time"; a token over a
checkpoint's signed bytes fixes the checkpoint, and so every entry under its tree head, in
time, independently of any clock the archive's writers control. Chinese internet courts
presume data secured by a trusted timestamp untampered; GB/T 20520 is the national profile.

- ``request_timestamp`` sends a ``TimeStampReq`` (SHA-256 message imprint, a fresh nonce,
  the TSA's certificate requested) to ``[timestamp] url`` as ``application/timestamp-query``
  and checks the answer before returning it: status granted, the signature and chain against
  the configured trust, our digest, our nonce. What it returns — the DER ``TimeStampResp``
  exactly as the TSA sent it — is what is stored next to the checkpoint (``.tsr``). An
  examiner can check it with OpenSSL alone:
  ``openssl ts -verify -data checkpoint -in checkpoint.tsr -CAfile tsa-chain.pem``.
- ``verify_timestamp`` checks a stored token offline against the bytes and the trust
  (``TsaTrust``: the TSA's root CA certificate(s), any intermediates and, when the file holds
  it, the TSA's own signing certificate, pinned). Certificates are judged at the token's own
  time, so a TSA certificate that expired since still verifies its old tokens.

ASN.1 and CMS are the maintained ``rfc3161-client`` (Trail of Bits; its verification runs in
OpenSSL), never hand-written here. Errors are translated once, here: a TSA that cannot be
reached, refuses or answers nonsense is a ``StorageError`` (nothing was stamped; try again
later); a token that does not verify is an ``IntegrityError`` naming why.

What this module must never do: return or accept a token it has not verified against the
configured trust, believe a certificate a token carries merely because it carries it, or check
revocation or the TSA's clock online (offline verification is the point; see
docs/architecture.md for what a token does and does not prove).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import certifi
import urllib3
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.x509.oid import ExtendedKeyUsageOID
from rfc3161_client import (
    HashAlgorithm,
    PKIStatus,
    TimeStampResponse,
    TimestampRequestBuilder,
    VerificationError,
    VerifierBuilder,
    decode_timestamp_response,
)

from ..errors import ConfigError, IntegrityError, StorageError
from ..http_errors import describe
from ..i18n import _

QUERY_TYPE = "application/timestamp-query"
REPLY_TYPE = "application/timestamp-reply"
MAX_REPLY_BYTES = 1 << 20  # a token with a long chain is a few KiB; more is not a TSA


@dataclass(frozen=True)
class TsaTrust:
    """Whom a token must chain to: root CA(s), intermediates, and optionally the TSA itself.

    Built from one PEM bundle as TSAs publish it. Self-signed certificates are the roots (at
    least one is needed); a certificate for the time-stamping purpose is the TSA's own and is
    pinned, so a token from any other TSA fails even under the same CA; the rest are
    intermediates. A bundle without a TSA certificate accepts any TSA its roots certify.
    """

    roots: tuple[x509.Certificate, ...]
    intermediates: tuple[x509.Certificate, ...] = ()
    tsa_certificate: x509.Certificate | None = None
    source: str = "the configured TSA certificates"

    @classmethod
    def from_pem(cls, data: bytes, *, source: str = "the configured TSA certificates") -> TsaTrust:
        """ValueError when the bundle holds no certificate, no root, or several TSA certs."""
        try:
            certificates = x509.load_pem_x509_certificates(data)
        except ValueError:
            raise ValueError(_("{source} holds no PEM certificate").format(source=source)) from None
        return cls.of(certificates, source=source)

    @classmethod
    def of(cls, certificates: Iterable[x509.Certificate], *,
           source: str = "the configured TSA certificates") -> TsaTrust:
        roots: list[x509.Certificate] = []
        intermediates: list[x509.Certificate] = []
        signers: list[x509.Certificate] = []
        for certificate in certificates:
            if _self_signed(certificate):
                roots.append(certificate)
            elif _for_time_stamping(certificate):
                signers.append(certificate)
            else:
                intermediates.append(certificate)
        if not roots:
            raise ValueError(_("{source} holds no root (self-signed) CA certificate: a TSA "
                               "certificate alone cannot be checked; add the CA that issued it").format(
                                   source=source))
        if len(signers) > 1:
            raise ValueError(_("{source} holds {count} time-stamping certificates; keep the one "
                               "this TSA signs with (or none, to accept any under the CA)").format(
                                   source=source, count=len(signers)))
        return cls(tuple(roots), tuple(intermediates), signers[0] if signers else None, source)

    def describe(self) -> str:
        if self.tsa_certificate is not None:
            return f"TSA {self.tsa_certificate.subject.rfc4514_string()}"
        return "any TSA under " + ", ".join(root.subject.rfc4514_string() for root in self.roots)


def load_tsa_trust(path: Path, *, setting: str = "timestamp.tsa_cert_file") -> TsaTrust:
    """The trust bundle of ``[timestamp] tsa_cert_file``; ConfigError naming the key."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(_("{setting}: cannot read {path}: {strerror}").format(
            setting=setting, path=path, strerror=exc.strerror)) from exc
    try:
        return TsaTrust.from_pem(data, source=str(path))
    except ValueError as exc:
        raise ConfigError(f"{setting}: {exc}") from None


def _self_signed(certificate: x509.Certificate) -> bool:
    if certificate.issuer != certificate.subject:
        return False
    try:
        certificate.verify_directly_issued_by(certificate)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _for_time_stamping(certificate: x509.Certificate) -> bool:
    try:
        usage = certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
    except x509.ExtensionNotFound:
        return False
    return ExtendedKeyUsageOID.TIME_STAMPING in usage.value


@dataclass(frozen=True)
class StampedTime:
    """What a verified token states."""

    time: datetime  # genTime, UTC, as the TSA's clock had it
    tsa: str  # subject of the certificate that signed the token
    serial_number: int  # the TSA's serial number of this token
    policy: str  # the TSA policy OID the token was issued under


def verify_timestamp(token: bytes, message: bytes, trust: TsaTrust) -> StampedTime:
    """Check a stored ``TimeStampResp`` over ``message`` offline; IntegrityError when it fails."""
    response = _parse(token, what="the stored timestamp token", error=IntegrityError)
    return _verify(response, message, trust, nonce=None)


def _parse(data: bytes, *, what: str, error: type[IntegrityError] | type[StorageError],
           ) -> TimeStampResponse:
    try:
        return decode_timestamp_response(data)
    except ValueError as exc:
        raise error(f"{what} is not a DER RFC 3161 timestamp response ({exc})") from None


def _verify(response: TimeStampResponse, message: bytes, trust: TsaTrust,
            nonce: int | None) -> StampedTime:
    builder = VerifierBuilder(
        tsa_certificate=trust.tsa_certificate,
        roots=list(trust.roots),
        intermediates=list(trust.intermediates),
        nonce=nonce,
    )
    try:
        info = response.tst_info
        builder.build().verify_message(response, message)
        signer = _signer_subject(response, trust)
    except (VerificationError, ValueError) as exc:
        raise IntegrityError(
            _("timestamp token does not verify against {describe} ({source}): "
              "{verification_reason}").format(
                  describe=trust.describe(), source=trust.source, verification_reason=_verification_reason(exc))) from None
    return StampedTime(time=info.gen_time, tsa=signer, serial_number=info.serial_number,
                       policy=info.policy.dotted_string)


def _verification_reason(exc: BaseException) -> str:
    """The library's reason, with OpenSSL's error stack cut down to what a person can act on."""
    text = str(exc)
    if "ErrorStack" not in text:
        return text
    reasons = re.findall(r'reason: "([^"]+)"', text)
    details = re.findall(r'data: "([^"]+)"', text)
    said = "; ".join(dict.fromkeys(reasons + details)) or "OpenSSL refused it"
    return f"signature or certificate chain does not verify ({said})"


def _signer_subject(response: TimeStampResponse, trust: TsaTrust) -> str:
    """The subject of the certificate the SignerInfo names (verify_message already checked it)."""
    signer_info = next(iter(response.signed_data.signer_infos))
    for der in response.signed_data.certificates:
        certificate = x509.load_der_x509_certificate(der)
        if (certificate.issuer == signer_info.issuer
                and certificate.serial_number == signer_info.serial_number):
            return certificate.subject.rfc4514_string()
    if trust.tsa_certificate is not None:  # a token without certificates, checked by the pin
        return trust.tsa_certificate.subject.rfc4514_string()
    return signer_info.issuer.rfc4514_string() + f" serial {signer_info.serial_number}"


def default_http() -> urllib3.PoolManager:
    return urllib3.PoolManager(
        cert_reqs="CERT_REQUIRED",
        ca_certs=os.environ.get("SSL_CERT_FILE") or certifi.where(),
        retries=False,  # the next checkpoint is the retry; no multiplied waits here
    )


def request_timestamp(
    message: bytes,
    *,
    url: str,
    trust: TsaTrust,
    timeout_s: float,
    http: urllib3.PoolManager | None = None,
) -> tuple[bytes, StampedTime]:
    """Ask the TSA at ``url`` to stamp ``message``; the verified response bytes and what they say.

    StorageError when the TSA cannot be reached, refuses, or answers something that is not a
    timestamp response; IntegrityError when its answer does not verify (wrong signer, digest
    or nonce): that answer is never returned, so it is never stored.
    """
    request = (TimestampRequestBuilder().data(message).hash_algorithm(HashAlgorithm.SHA256)
               .nonce(nonce=True).cert_request(cert_request=True).build())
    client = http if http is not None else default_http()
    try:
        reply = client.request(
            "POST", url, body=request.as_bytes(),
            headers={"Content-Type": QUERY_TYPE, "Accept": REPLY_TYPE},
            timeout=urllib3.Timeout(total=timeout_s), preload_content=False, redirect=False,
        )
        try:
            data = reply.read(MAX_REPLY_BYTES + 1)
        finally:
            reply.release_conn()
    except urllib3.exceptions.HTTPError as exc:
        raise StorageError(_("time-stamping authority {url} unreachable: {describe}; nothing was "
                             "stamped").format(url=url, describe=describe(exc))) from exc
    if reply.status != 200:
        raise StorageError(_("time-stamping authority {url} answered HTTP {status}; nothing was "
                             "stamped").format(url=url, status=reply.status))
    if len(data) > MAX_REPLY_BYTES:
        raise StorageError(_("time-stamping authority {url} answered more than {MAX_REPLY_BYTES} "
                             "bytes: not a timestamp response").format(
                                 url=url, MAX_REPLY_BYTES=MAX_REPLY_BYTES))
    response = _parse(data, what=f"the answer of {url}", error=StorageError)
    if response.status != PKIStatus.GRANTED:
        # grantedWithMods too: a token whose terms the TSA changed is not one we asked for.
        reason = "; ".join(response.status_string) or "no reason given"
        raise StorageError(_("time-stamping authority {url} did not grant the request (status "
                             "{status}: {reason}); nothing was stamped").format(
                                 url=url, status=response.status, reason=reason))
    stamped = _verify(response, message, trust, nonce=request.nonce)
    return data, stamped
