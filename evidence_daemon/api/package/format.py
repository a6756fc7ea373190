"""The evidence package format: its versions, member names and the redaction stub, shared by
the exporter (``export``) and the offline verifier (``verify``), which must agree on every name.

A package is one zip whose member names equal archive keys (``archive.keys``), plus::

    README.txt                           plain language, English then Chinese
    package.json                         every other file with size and SHA-256
    package.sig                          base64 Ed25519 over the package.json bytes (exporter)
    proofs/<writer>/<seq:012d>.json      version 3: inclusion proof of that ledger entry
    ledger/<writer>/<seq:012d>.redacted.json  version 2: a redaction stub

What must never happen here: a name built from anything but a validated writer id and seq
(``keys.check_writer``), or a stub that can carry more than the hash and link of its entry.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Collection, Mapping
from typing import Any, TypeGuard

from ...archive import keys
from ...custody import canonical
from ...i18n import _

FORMAT = "evidence-daemon-package"
# 2: ledger runs may hold redaction stubs. Version 1 packages (all entries in full) still verify.
# 3: each entry proven by an inclusion proof against its writer's signed checkpoint; no runs.
# Version 1 and 2 packages still verify; version 2 is still written on request (tests).
FORMAT_VERSION = 3
SUPPORTED_FORMAT_VERSIONS = frozenset({1, 2, 3})
WRITABLE_FORMAT_VERSIONS = frozenset({2, 3})
README_NAME = "README.txt"
PACKAGE_JSON = "package.json"
PACKAGE_SIG = "package.sig"
# Members read whole when verifying (package.json, ledger entries, keys, manifests). Anything
# larger is refused, so a hostile package cannot make the verifier allocate without bound.
MAX_PACKAGE_JSON_BYTES = 64 * 1024 * 1024
MAX_SMALL_MEMBER_BYTES = 16 * 1024 * 1024
DERIVED_NAMES = frozenset({"proxy.mp4", "proxy.m4a", "poster.jpg"})
REDACTED_SUFFIX = ".redacted.json"
PROOFS_PREFIX = "proofs/"

_SHA256_HEX = re.compile(r"[0-9a-f]{64}")
_REDACTED_NAME = re.compile(r"(\d{12})\.redacted\.json")
_PROOF_NAME = re.compile(r"(\d{12})\.json")


def is_sha256_hex(value: object) -> TypeGuard[str]:
    """A SHA-256 in lower-case hex, as recording ids and entry hashes are written."""
    return isinstance(value, str) and _SHA256_HEX.fullmatch(value) is not None


def load_json(data: bytes) -> Any:
    """``json.loads`` of a member, raising ValueError for whatever a hostile package holds:
    bytes that are not UTF-8 or JSON, and nesting deeper than Python's recursion limit (which
    ``json`` reports as RecursionError)."""
    try:
        return json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ValueError(str(exc)) from None


def is_relevant(entry: Mapping[str, Any], recordings: Collection[str],
                exported: tuple[str, int] | None) -> bool:
    """Whether a ledger entry goes into the package in full: it concerns one of the package's
    recordings, or it is the package's own ``exported`` event (writer, seq). The same test
    chooses the entries (``select``) and is checked by ``verify_package``."""
    recording = entry.get("recording")
    if isinstance(recording, str) and recording in recordings:
        return True
    return exported is not None and (entry.get("writer"), entry.get("seq")) == exported


# -- member names ----------------------------------------------------------------------------

def _parse_writer_seq(name: str, folder: str, file_name: re.Pattern[str]) -> tuple[str, int] | None:
    """``<folder>/<writer>/<file>`` -> (writer, seq from the file name); None otherwise."""
    parts = name.split("/")
    match = file_name.fullmatch(parts[-1])
    if len(parts) != 3 or parts[0] != folder or match is None:
        return None
    try:
        keys.check_writer(parts[1])
    except ValueError:
        return None
    return parts[1], int(match.group(1))


def redacted_key(writer: str, seq: int) -> str:
    """``ledger/<writer>/<seq:012d>.redacted.json``, next to where the full entry would be."""
    return keys.ledger_key(writer, seq).removesuffix(".json") + REDACTED_SUFFIX


def parse_redacted_key(name: str) -> tuple[str, int] | None:
    """``ledger/<writer>/<seq>.redacted.json`` -> (writer, seq); None for anything else."""
    return _parse_writer_seq(name, "ledger", _REDACTED_NAME)


def proof_name(writer: str, seq: int) -> str:
    """``proofs/<writer>/<seq:012d>.json``: the inclusion proof of ledger entry ``seq``."""
    if seq < 1:
        raise ValueError(_("ledger sequence numbers start at 1, got {seq}").format(seq=seq))
    return f"{PROOFS_PREFIX}{keys.check_writer(writer)}/{seq:012d}.json"


def parse_proof_name(name: str) -> tuple[str, int] | None:
    """``proofs/<writer>/<seq>.json`` -> (writer, seq); None for anything else."""
    return _parse_writer_seq(name, PROOFS_PREFIX.rstrip("/"), _PROOF_NAME)


# -- redaction stubs (version 2) -------------------------------------------------------------

# Each field of a stub and what its value must be; a stub carries these and nothing else.
STUB_VALUES: Mapping[str, Callable[[Any], bool]] = {
    "entry_hash": is_sha256_hex,
    "prev": is_sha256_hex,
    "redacted": lambda value: value is True,
    "seq": lambda value: type(value) is int and value >= 1,
    "writer": lambda value: isinstance(value, str),
}
STUB_FIELDS = frozenset(STUB_VALUES)


def stub_bytes(entry: Mapping[str, Any]) -> bytes:
    """The redaction stub of a (verified) ledger entry: what a verifier needs to carry the
    ``prev`` chain across it, and nothing of what it says."""
    return canonical.canonical_json({
        "entry_hash": canonical.entry_hash(dict(entry)), "prev": entry["prev"],
        "redacted": True, "seq": entry["seq"], "writer": entry["writer"],
    })


def parse_stub(data: bytes) -> dict[str, Any]:
    """The fields of a redaction stub; ValueError unless ``data`` is exactly what
    ``stub_bytes`` writes (so a stub can carry nothing else)."""
    try:
        body = load_json(data)
    except ValueError as exc:
        raise ValueError(_("not JSON: {exc}").format(exc=exc)) from None
    # Byte-exact canonical form first: then the fields below are all a stub can say.
    if canonical.canonical_json(body) != data:
        raise ValueError(_("not in canonical form"))
    if not isinstance(body, dict) or set(body) != STUB_FIELDS:
        raise ValueError(_("its fields must be exactly {join}").format(
            join=', '.join(sorted(STUB_FIELDS))))
    malformed = [name for name, valid in STUB_VALUES.items() if not valid(body[name])]
    if malformed:
        raise ValueError(_("{join} malformed (entry_hash and prev: SHA-256 in lower-case hex; "
                           "redacted: true; seq: from 1)").format(join=', '.join(malformed)))
    return body
