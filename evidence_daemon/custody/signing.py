"""Ed25519 keys of a ledger writer (a station or an API node).

The private key lives in one file, mode 0600, created once and never rewritten; losing it means
the writer can no longer extend its chain, so it is written crash-safely and never replaced.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ..durable import save_new
from ..errors import ConfigError, EvidenceError, IntegrityError
from ..i18n import _


def load_or_create_private_key(path: Path) -> Ed25519PrivateKey:
    if path.exists():
        return load_private_key(path)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    try:
        save_new(path, pem, mode=0o600)
    except FileExistsError:
        pass  # another process created the key meanwhile: never replace it, use it
    return load_private_key(path)


def load_private_key(path: Path) -> Ed25519PrivateKey:
    try:
        mode = path.stat().st_mode & 0o777
        if mode & 0o077:
            raise ConfigError(_("{path}: private key is readable by others (mode {mode:o}); chmod "
                                "600").format(path=path, mode=mode))
        pem = path.read_bytes()
    except OSError as exc:
        raise ConfigError(_("cannot read signing key {path}: {strerror}").format(
            path=path, strerror=exc.strerror)) from exc
    key = _read_pem(lambda: serialization.load_pem_private_key(pem, password=None),
                    f"{path} is not a PEM private key", ConfigError)
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError(_("{path} is not an Ed25519 key").format(path=path))
    return key


def _read_pem(load: Callable[[], object], refusal: str, error: type[EvidenceError]) -> object:
    """The key ``load`` parses, or ``error(refusal)`` when it is no PEM key."""
    try:
        return load()
    except ValueError as exc:
        raise error(refusal) from exc


def public_pem(key: Ed25519PrivateKey | Ed25519PublicKey) -> bytes:
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def load_public_pem(data: bytes, *, what: str) -> Ed25519PublicKey:
    key = _read_pem(lambda: serialization.load_pem_public_key(data),
                    f"{what} is not a PEM public key", IntegrityError)
    if not isinstance(key, Ed25519PublicKey):
        raise IntegrityError(_("{what} is not an Ed25519 public key").format(what=what))
    return key


def fingerprint(key: Ed25519PrivateKey | Ed25519PublicKey) -> str:
    """SHA-256 of the raw public key, for pinning a writer's key out of band."""
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return "SHA256:" + base64.b64encode(hashlib.sha256(raw).digest()).decode().rstrip("=")


def signature_valid(key: Ed25519PublicKey, signature: bytes, data: bytes) -> bool:
    try:
        key.verify(signature, data)
    except InvalidSignature:
        return False
    return True
