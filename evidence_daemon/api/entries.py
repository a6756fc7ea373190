"""Ledger entries as the API's catalog stores them: read, checked, and judged. Pure.

``read_entry`` parses and signature-checks one stored entry on its own (``custody.chain``),
``link_entry`` checks it against the chain read so far, ``WriterStanding`` judges whether a
verified entry counts (trusted key, within the writer's role), and ``content_problem`` says
why an event cannot change a recording's catalog row. Nothing here reads the archive or the
database; a malformed entry becomes a stated problem, never an exception.

An entry is verified when its Ed25519 signature checks with the writer's key as first indexed
and it continues the chain (``seq`` = head + 1, ``prev`` = hash of the entry before);
otherwise its problem says what is wrong: altered, chain broken, entries missing, unreadable.
A verified entry can still carry a problem about what it *describes*: a manifest key that is
not the one ``archive.keys`` gives for that recording, a hold without an id.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ..archive import keys
from ..clock import parse_time
from ..custody import chain
from ..custody.chain import Head, Role

SHA256_TEXT = re.compile(r"^[0-9a-f]{64}$")

# Events that change a recording's catalog row (``content_problem``: what each must carry).
RECORDING_EVENTS = frozenset({
    "archived", "derived", "flagged", "hold-placed", "hold-released", "case-linked",
    "case-unlinked", "note-added", "retention-extended",
})



@dataclass(frozen=True)
class ReadEntry:
    """A stored ledger entry in the form it goes into ``events``, checked as far as it can be
    on its own by the custody core (``chain.read_entry``)."""

    writer: str
    seq: int  # from its key
    entry_hash: str  # canonical hash; SHA-256 of the raw bytes when unreadable
    readable: bool
    prev: str
    time: str
    event: str
    recording: str | None
    actor: str
    details: dict[str, Any]
    details_json: str
    sig: str
    problems: tuple[str, ...]  # about the entry itself: unreadable, altered, misplaced
    content_problem: str | None  # about what it describes (see ``content_problem``)
    checked: chain.ReadEntry


@dataclass(frozen=True)
class CheckedEntry:
    """One ledger entry as it goes into ``events``."""

    entry: ReadEntry
    chain_hash: str  # what the next entry's prev must be ('' when unknown)
    verified: bool
    problem: str | None


def read_entry(writer: str, seq: int, data: bytes, public_key: Ed25519PublicKey,
               *, key_note: str = "") -> ReadEntry:
    """Parse the stored bytes of ``ledger/<writer>/<seq>.json`` and check its signature with
    the writer's key (``chain.read_entry``). ``key_note`` is added to a failed signature's
    problem (e.g. that the archive now holds a different key for this writer)."""
    read = chain.read_entry(writer, seq, data, public_key, key_note=key_note)
    problems = tuple(problem.message for problem in read.problems)
    raw = read.raw
    if raw is None:
        return ReadEntry(
            writer=writer, seq=seq, entry_hash=read.entry_hash, readable=False, prev="",
            time="", event="unreadable", recording=None, actor="", details={},
            details_json="{}", sig="", problems=problems, content_problem=None, checked=read)
    recording = read.recording
    details = raw["details"] if isinstance(raw["details"], dict) else {
        "invalid_details": raw["details"]}
    event = _text(raw["event"])
    return ReadEntry(
        writer=writer, seq=seq, entry_hash=read.entry_hash, readable=True,
        prev=_text(raw["prev"]), time=_text(raw["time"]), event=event, recording=recording,
        actor=_text(raw["actor"]), details=details,
        details_json=json.dumps(details, sort_keys=True, ensure_ascii=False),
        sig=base64.b64encode(read.signature).decode("ascii"), problems=problems,
        content_problem=content_problem(event, recording, details), checked=read,
    )


def link_entry(entry: ReadEntry, head: Head, *, judged: str | None = None) -> CheckedEntry:
    """Check an entry against the chain read so far (``chain.link_entry``). ``judged`` is why
    the writer's entry does not count although it verifies (key not trusted, outside the
    writer's role): it is then stored as not verified, with that reason."""
    checked = chain.link_entry(entry.checked, head)
    problems = [problem.message for problem in checked.problems]
    verified = checked.verified
    if verified and judged:
        problems.append(judged)
        verified = False
    if entry.content_problem:
        problems.append(entry.content_problem)
    return CheckedEntry(entry, checked.head.hash or "", verified, "; ".join(problems) or None)


def check_entry(writer: str, seq: int, data: bytes, public_key: Ed25519PublicKey, head: Head,
                *, key_note: str = "") -> CheckedEntry:
    """``read_entry`` then ``link_entry``: everything about one stored entry."""
    return link_entry(read_entry(writer, seq, data, public_key, key_note=key_note), head)


@dataclass
class WriterStanding:
    """What the catalog believes of a writer while reading its chain: is its key a trust
    anchor (None: no anchors configured) and its role so far (``chain.judge_entry``)."""

    fingerprint: str
    trusted: bool | None
    role: Role | None = None
    registered: bool = False

    def judge(self, checked: CheckedEntry) -> str | None:
        """Why a verified entry does not count, or None; advances the role."""
        entry = checked.entry.checked.entry
        if entry is None:
            return None
        self.role, self.registered, problem = chain.judge_entry(
            checked.entry.writer, self.fingerprint, self.role, self.registered, entry)
        if self.trusted is False:
            return chain.untrusted_problem(checked.entry.writer, self.fingerprint).message
        return problem.message if problem is not None else None


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def parse_any_time(value: Any) -> datetime | None:
    """An aware datetime from what an entry or a manifest holds (``clock.parse_time``: naive
    means UTC), or None when it is not a time."""
    if not isinstance(value, str):
        return None
    try:
        return parse_time(value)
    except ValueError:
        return None


def content_problem(event: str, recording: str | None, details: Mapping[str, Any]) -> str | None:
    """Why an event cannot change the catalog as it stands, or None. Keys are never taken
    from an entry: they must be the ones ``archive.keys`` gives for its recording."""
    if event not in RECORDING_EVENTS:
        return None
    if recording is None or not SHA256_TEXT.fullmatch(recording):
        return f"'{event}' event without a recording id: ignored"
    if event == "archived":
        expected = keys.manifest_key(recording)
        if details.get("manifest_key") != expected:
            return f"manifest_key {details.get('manifest_key')!r} is not {expected}: ignored"
        if not isinstance(details.get("manifest_sha256"), str):
            return "archived event without manifest_sha256: ignored"
    elif event == "derived":
        allowed = {
            "proxy": {keys.proxy_key(recording, "mp4"), keys.proxy_key(recording, "m4a")},
            "poster": {keys.poster_key(recording)},
        }
        for part, names in allowed.items():
            described = details.get(part)
            if described is None:
                continue
            if (not isinstance(described, dict) or described.get("key") not in names
                    or not isinstance(described.get("sha256"), str)
                    or not SHA256_TEXT.fullmatch(described["sha256"])):
                key = described.get("key") if isinstance(described, dict) else described
                return f"{part} {key!r} is not this recording's {part} with a SHA-256: ignored"
    elif event == "flagged":
        if not isinstance(details.get("flag"), str) or not details["flag"]:
            return "flagged event without a flag: ignored"
    elif event in ("hold-placed", "hold-released"):
        if not isinstance(details.get("hold_id"), str) or not details["hold_id"]:
            return f"{event} event without a hold_id: ignored"
    elif event in ("case-linked", "case-unlinked"):
        if not isinstance(details.get("case_id"), str) or not details["case_id"]:
            return f"{event} event without a case_id: ignored"
    elif event == "retention-extended":
        until = details.get("in_force") or details.get("retain_until")
        if parse_any_time(until) is None:
            return "retention-extended event without a valid date: ignored"
    return None
