"""Object keys of the storage contract. Pure functions; nothing here touches storage.

::

    recordings/<sha256>/original<.ext>
    recordings/<sha256>/manifest.json
    recordings/<sha256>/proxy.mp4       (video; proxy.m4a for audio-only recordings)
    recordings/<sha256>/poster.jpg
    ledger/<writer-id>/<seq:012d>.json
    keys/<writer-id>.pub
    checkpoints/<writer-id>/<seq:012d>.tsr   (RFC 3161 token over checkpoint entry <seq>)

Keys are built only from a SHA-256, a sanitised extension and a validated writer id, never from
a device file name, so no name on a card can steer where anything is written.
"""

from __future__ import annotations

import re
from ..i18n import _

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_EXTENSION = re.compile(r"^[a-z0-9]{1,8}$")
_WRITER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_LEDGER_NAME = re.compile(r"^(\d{12})\.json$")

RECORDINGS_PREFIX = "recordings/"
LEDGER_PREFIX = "ledger/"
KEYS_PREFIX = "keys/"
CHECKPOINTS_PREFIX = "checkpoints/"
_TIMESTAMP_NAME = re.compile(r"^(\d{12})\.tsr$")


def check_sha256(sha256: str) -> str:
    if not _SHA256.fullmatch(sha256):
        raise ValueError(_("not a lower-case hex SHA-256: {sha256!r}").format(sha256=sha256))
    return sha256


def check_writer(writer: str) -> str:
    if not _WRITER.fullmatch(writer):
        raise ValueError(_("not a valid writer id: {writer!r}").format(writer=writer))
    return writer


def is_writer(writer: str) -> bool:
    return bool(_WRITER.fullmatch(writer))


def safe_extension(file_name: str) -> str:
    """The original's extension, lower-cased, or '' when it is missing or odd.

    >>> safe_extension("DSJ_0001.MP4"), safe_extension("a.tar.gz"), safe_extension("../x.m p4")
    ('mp4', 'gz', '')
    """
    _, dot, extension = file_name.rpartition(".")
    if not dot or not _EXTENSION.fullmatch(extension.lower()):
        return ""
    return extension.lower()


def recording_prefix(sha256: str) -> str:
    return f"{RECORDINGS_PREFIX}{check_sha256(sha256)}/"


def original_key(sha256: str, extension: str) -> str:
    if extension and not _EXTENSION.fullmatch(extension):
        raise ValueError(_("not a safe extension: {extension!r}").format(extension=extension))
    suffix = f".{extension}" if extension else ""
    return f"{recording_prefix(sha256)}original{suffix}"


def manifest_key(sha256: str) -> str:
    return f"{recording_prefix(sha256)}manifest.json"


def proxy_key(sha256: str, extension: str = "mp4") -> str:
    """The viewing copy: ``proxy.mp4`` (video) or ``proxy.m4a`` (audio only)."""
    if extension not in ("mp4", "m4a"):
        raise ValueError(_("not a proxy extension: {extension!r}").format(extension=extension))
    return f"{recording_prefix(sha256)}proxy.{extension}"


def poster_key(sha256: str) -> str:
    return f"{recording_prefix(sha256)}poster.jpg"


def ledger_prefix(writer: str) -> str:
    return f"{LEDGER_PREFIX}{check_writer(writer)}/"


def _seq_name(seq: int, extension: str) -> str:
    """``<seq:012d>.<extension>``: the file name of a ledger entry or of its token."""
    if seq < 1:
        raise ValueError(_("ledger sequence numbers start at 1, got {seq}").format(seq=seq))
    return f"{seq:012d}.{extension}"


def ledger_key(writer: str, seq: int) -> str:
    return f"{ledger_prefix(writer)}{_seq_name(seq, 'json')}"


def public_key_key(writer: str) -> str:
    return f"{KEYS_PREFIX}{check_writer(writer)}.pub"


def timestamp_key(writer: str, seq: int) -> str:
    """Where the RFC 3161 token over ``writer``'s checkpoint entry ``seq`` is stored."""
    return f"{CHECKPOINTS_PREFIX}{check_writer(writer)}/{_seq_name(seq, 'tsr')}"


def _parse_writer_seq(key: str, top: str, name: re.Pattern[str]) -> tuple[str, int] | None:
    """``<top>/<writer>/<seq><ext>`` -> (writer, seq); None for anything else."""
    parts = key.split("/")
    if len(parts) != 3 or parts[0] != top or not _WRITER.fullmatch(parts[1]):
        return None
    match = name.fullmatch(parts[2])
    return (parts[1], int(match.group(1))) if match else None


def parse_timestamp_key(key: str) -> tuple[str, int] | None:
    """``checkpoints/<writer>/<seq>.tsr`` -> (writer, seq); None for anything else."""
    return _parse_writer_seq(key, "checkpoints", _TIMESTAMP_NAME)


def parse_ledger_key(key: str) -> tuple[str, int] | None:
    """``ledger/<writer>/<seq>.json`` -> (writer, seq); None for anything else."""
    return _parse_writer_seq(key, "ledger", _LEDGER_NAME)


def parse_recording_key(key: str) -> tuple[str, str] | None:
    """``recordings/<sha>/<name>`` -> (sha256, name); None for anything else."""
    parts = key.split("/")
    if len(parts) != 3 or parts[0] != "recordings" or not _SHA256.fullmatch(parts[1]) or not parts[2]:
        return None
    return parts[1], parts[2]


def is_original_name(name: str) -> bool:
    return name == "original" or (
        name.startswith("original.") and bool(_EXTENSION.fullmatch(name[len("original."):]))
    )
