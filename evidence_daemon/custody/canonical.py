"""The canonical form of ledger entries. Pure functions.

An entry is ``{seq, prev, time, writer, event, recording, actor, details}``. Its canonical bytes
are JSON with sorted keys, UTF-8, no insignificant spaces; ``prev`` is the SHA-256 of the
previous entry's canonical bytes (64 zeros for the first), and the stored object adds ``sig``:
Ed25519 over the canonical bytes, base64. Anyone holding the archive and the public keys can
recompute all of it; nothing here may depend on local state.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping
from typing import Any
from ..i18n import _

ENTRY_FIELDS = ("seq", "prev", "time", "writer", "event", "recording", "actor", "details")
GENESIS_PREV = "0" * 64


def canonical_json(document: Mapping[str, Any]) -> bytes:
    """Sorted keys, UTF-8, no insignificant spaces: the one form of every signed or hashed
    JSON document (ledger entries, redaction stubs)."""
    return json.dumps(document, sort_keys=True, ensure_ascii=False,
                      separators=(",", ":")).encode()


def canonical_bytes(entry: Mapping[str, Any]) -> bytes:
    """The signed bytes: only the entry fields, whatever else the dict carries."""
    missing = [name for name in ENTRY_FIELDS if name not in entry]
    if missing:
        raise ValueError(_("ledger entry lacks {join}").format(join=', '.join(missing)))
    return canonical_json({name: entry[name] for name in ENTRY_FIELDS})


def entry_hash(entry: Mapping[str, Any]) -> str:
    return hashlib.sha256(canonical_bytes(entry)).hexdigest()


def stored_bytes(entry: Mapping[str, Any], signature: bytes) -> bytes:
    """What goes into ``ledger/<writer>/<seq>.json``: the entry plus its signature."""
    body = {name: entry[name] for name in ENTRY_FIELDS}
    body["sig"] = base64.b64encode(signature).decode("ascii")
    return canonical_json(body)


def parse_stored(data: bytes) -> tuple[dict[str, Any], bytes]:
    """(entry, signature) from stored bytes; ValueError when they are not a ledger entry."""
    try:
        body = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(_("not JSON: {exc}").format(exc=exc)) from None
    except RecursionError:  # nested past the interpreter's limit: hostile, never written by us
        raise ValueError(_("not JSON this software writes: nested too deeply")) from None
    if not isinstance(body, dict) or not isinstance(body.get("sig"), str):
        raise ValueError(_("not a signed ledger entry"))
    try:
        signature = base64.b64decode(body.pop("sig"), validate=True)
    except ValueError:
        raise ValueError(_("signature is not base64")) from None
    extra = set(body) - set(ENTRY_FIELDS)
    if extra:
        raise ValueError(_("unexpected fields {extra}").format(extra=sorted(extra)))
    canonical_bytes(body)  # raises on missing fields
    return body, signature


def dedupe_key(event: str, recording: str | None, details: dict[str, Any]) -> str:
    """Identity of a once-only event, so a retry after a crash never appends it twice."""
    return f"{event}|{recording or ''}|{details.get('source_key', '')}"
