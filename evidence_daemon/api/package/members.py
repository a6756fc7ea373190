"""Reading a package to verify it: every member hashed once, in chunks, and the small ones kept
for parsing; and ``CheckState``, what the checks of ``verify`` and ``verify_ledger`` share.

What must never happen here: a member extracted or its name used as a path (names are only
compared); a member read whole beyond its size limit (a hostile package must not make the
verifier allocate without bound); a member refused or unreadable without a problem naming it.
"""

from __future__ import annotations

import hashlib
import re
import zipfile
import zlib
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ...archive import keys
from ...archive.base import READ_CHUNK_BYTES
from ...custody.timestamp import TsaTrust
from .format import MAX_PACKAGE_JSON_BYTES, MAX_SMALL_MEMBER_BYTES, PACKAGE_JSON, PACKAGE_SIG, PROOFS_PREFIX
from .report import PackageReport
from ...i18n import _

_DRIVE = re.compile(r"^[A-Za-z]:")
Parsed = TypeVar("Parsed")


@dataclass(frozen=True)
class Member:
    size_bytes: int
    sha256: str
    data: bytes | None  # kept only for the small members that are parsed


def unsafe_member_name(name: str) -> str | None:
    """Why a member name is refused, or None. Names are never used as paths here, but a
    package carrying such a name is not one this software wrote, and unzip tools might."""
    if not name:
        return "empty name"
    if not name.isprintable():
        return "control characters in the name"
    if "\\" in name:
        return "backslash in the name"
    if name.startswith("/") or _DRIVE.match(name):
        return "absolute path"
    parts = name.split("/")
    if ".." in parts:
        return "'..' in the path"
    if any(part in ("", ".") for part in parts[:-1]) or parts[-1] == ".":
        return "empty or '.' path component"
    return None


def display(name: str) -> str:
    return name if name.isprintable() else ascii(name)


def _keeps_bytes(name: str) -> int | None:
    """How many bytes of this member to keep for parsing (None: stream-hash only)."""
    if name == PACKAGE_JSON:
        return MAX_PACKAGE_JSON_BYTES
    if name == PACKAGE_SIG or name.startswith((keys.KEYS_PREFIX, keys.LEDGER_PREFIX,
                                               PROOFS_PREFIX, keys.CHECKPOINTS_PREFIX)):
        return MAX_SMALL_MEMBER_BYTES
    parsed = keys.parse_recording_key(name)
    if parsed is not None and parsed[1] == "manifest.json":
        return MAX_SMALL_MEMBER_BYTES
    return None


def read_members(archive: zipfile.ZipFile, report: PackageReport) -> tuple[dict[str, Member], set[str]]:
    """Hash every member once, in chunks; returns (readable members, names already reported)."""
    members: dict[str, Member] = {}
    reported: set[str] = set()
    counts: dict[str, int] = defaultdict(int)
    for info in archive.infolist():
        counts[info.filename] += 1
    for info in archive.infolist():
        name = info.filename
        why = unsafe_member_name(name)
        refusal = (
            f"refused: {why}" if why
            else "appears more than once in the zip" if counts[name] > 1
            else "unexpected directory entry" if info.is_dir()
            else "encrypted" if info.flag_bits & 0x1
            else f"unsupported compression method {info.compress_type}"
            if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED)
            else None
        )
        if refusal is not None:
            if name not in reported:
                report.problem(display(name), refusal)
            reported.add(name)
            continue
        limit = _keeps_bytes(name)
        digest = hashlib.sha256()
        size_bytes = 0
        kept = bytearray() if limit is not None else None
        try:
            with archive.open(info) as stream:
                while chunk := stream.read(READ_CHUNK_BYTES):
                    digest.update(chunk)
                    size_bytes += len(chunk)
                    if kept is not None and limit is not None:
                        if size_bytes > limit:
                            raise ValueError(_("larger than {limit} bytes").format(limit=limit))
                        kept += chunk
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError,
                RuntimeError, NotImplementedError) as exc:
            report.problem(name, _("cannot be read from the zip ({exc}): damaged or altered").format(
                exc=exc))
            reported.add(name)
            continue
        members[name] = Member(size_bytes, digest.hexdigest(),
                                bytes(kept) if kept is not None else None)
    report.files_checked = len(members)
    return members, reported


class CheckState:
    """The members read, the report being filled, and what one check leaves for the next:
    the writers' public keys, verified entries, the names package.json lists."""

    def __init__(self, members: dict[str, Member], reported: set[str], report: PackageReport,
                 trusted: frozenset[str], tsa_trust: TsaTrust | None = None) -> None:
        self.tsa_trust = tsa_trust
        self.members = members
        self.reported = reported
        self.report = report
        self.trusted = trusted
        self.public_keys: dict[str, Ed25519PublicKey] = {}
        # verified entries that later checks rely on, by (writer, seq)
        self.entries: dict[tuple[str, int], dict[str, Any]] = {}
        self.listed: set[str] | None = None  # names package.json lists, once it was read

    def problem(self, subject: str, message: str, recording: str | None = None) -> None:
        self.report.problem(subject, message, recording)

    def unexpected(self, name: str, message: str, recording: str | None = None) -> None:
        """A file outside the layout. One that package.json does not list was reported as
        added already; one it lists was put there by the exporter, which is reported here."""
        if self.listed is None or name in self.listed:
            self.problem(name, message, recording)

    def data(self, name: str) -> bytes:
        """The bytes of a member that is parsed (``keeps_bytes`` kept them)."""
        data = self.members[name].data
        assert data is not None
        return data

    def parsed(self, name: str, parse: Callable[[bytes], Parsed], what: str) -> Parsed | None:
        """Member ``name`` parsed by ``parse``; None, with a problem naming it, when ``parse``
        refuses it (ValueError, or the RecursionError of ``json`` on too deep nesting): it is
        not a valid ``what``."""
        try:
            return parse(self.data(name))
        except (ValueError, RecursionError) as exc:  # json's error for too deep nesting
            self.problem(name, _("not a valid {what} ({exc}): altered").format(what=what, exc=exc))
            return None

    def verified_events(self, event: str, recording: str) -> list[dict[str, Any]]:
        return [entry for entry in self.entries.values()
                if entry["event"] == event and entry["recording"] == recording]
