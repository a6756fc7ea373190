"""A recording's row in the API's catalog, computed from its manifest and its events. Pure.

``catalog_row`` reads the manifest (``custody.manifest.Manifest``) the recording is catalogued
from and applies every verified event of the recording in time order: viewing copies, flags,
holds, cases, notes and retention. The row is a function of those alone, so the order in which
writers are indexed never matters. Retention is never shortened (``later``); an event that does
not carry what it must (``entries.content_problem``) changes nothing.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any
from zoneinfo import ZoneInfo

from ..archive import keys
from ..clock import format_time
from ..custody.manifest import Manifest
from ..errors import IntegrityError
from .entries import content_problem, parse_any_time
from ..i18n import _

# The columns of ``recordings`` in api.db, in the order ``catalog_row`` fills them.
RECORDING_COLUMNS = (
    "sha256", "station", "device_id", "officer_id", "recorded_start", "recorded_end",
    "time_source", "timezone", "sort_time", "archive_deadline", "archived_at", "compliance",
    "size_bytes", "extension", "original_key", "manifest_key", "manifest_sha256", "manifest",
    "media", "flags", "flag_reasons", "proxy_key", "proxy_sha256", "poster_key",
    "poster_sha256", "held", "retain_until", "cases", "notes", "archived_by", "archived_seq",
    "indexed_at",
)


@dataclass(frozen=True)
class LedgerEvent:
    """A verified event of one recording, as the catalog state is computed from it."""

    writer: str
    seq: int
    time: str
    event: str
    details: Mapping[str, Any]


def _zone(name: str | None) -> ZoneInfo | timezone:
    try:
        return ZoneInfo(name) if name else timezone.utc
    except (ValueError, KeyError):  # ZoneInfoNotFoundError is a KeyError
        return timezone.utc


def catalog_row(recording: str, manifest_bytes: bytes, archived: LedgerEvent,
                events: Sequence[LedgerEvent], *, indexed_at: str) -> tuple[dict[str, Any], list[str]]:
    """The ``recordings`` row and the case ids of one recording, from its manifest (already
    checked against ``manifest_sha256``), the ``archived`` event it is catalogued from, and all
    its verified events in time order. ValueError (saying why) when the manifest is unusable."""
    try:
        manifest = Manifest.from_json(manifest_bytes)
    except IntegrityError as exc:
        raise ValueError(exc.message) from None
    if manifest.sha256 != recording or manifest.recording != recording:
        raise ValueError(_("manifest describes another recording"))
    try:
        original_key = keys.original_key(recording, manifest.extension)
    except ValueError:
        raise ValueError(_("manifest extension {extension!r} is not a safe extension").format(
            extension=manifest.extension)
                         ) from None
    if manifest.original_key != original_key:
        raise ValueError(_("manifest original_key {original_key!r} is not {original_key2}").format(
            original_key=manifest.original_key, original_key2=original_key))
    archived_at = manifest.verified_at
    archived_moment = parse_any_time(archived_at)
    if archived_moment is None:
        raise ValueError(_("manifest verified_at is not a date/time"))
    recorded_start, deadline = manifest.recorded_start, manifest.archive_deadline
    start_moment = None
    if recorded_start is not None:
        try:
            start_moment = datetime.fromisoformat(recorded_start)
        except ValueError:
            raise ValueError(_("manifest recorded_start {recorded_start!r} is not a date/time").format(
                recorded_start=recorded_start)) from None
        if start_moment.tzinfo is None:  # stations write offsets; a bare time is station-local
            start_moment = start_moment.replace(tzinfo=_zone(manifest.timezone))
    deadline_moment = parse_any_time(deadline)
    media = manifest.media
    flag_list = manifest.flags
    flag_reasons = manifest.flag_reasons

    flags = set(flag_list)
    reasons = {str(name): reason for name, reason in flag_reasons.items()}
    retain_until = manifest.storage.retain_until
    proxy: tuple[str, str] | None = None
    poster: tuple[str, str] | None = None
    placed: set[str] = set()
    released: set[str] = set()
    cases: set[str] = set()
    notes = 0
    for event in events:
        details = event.details
        if content_problem(event.event, recording, details):
            continue
        if event.event == "derived":
            if isinstance(details.get("proxy"), dict):
                proxy = (details["proxy"]["key"], details["proxy"]["sha256"])
            if isinstance(details.get("poster"), dict):
                poster = (details["poster"]["key"], details["poster"]["sha256"])
        elif event.event == "flagged":
            flags.add(details["flag"])
            reason = details.get("reason")
            reasons[details["flag"]] = reason if isinstance(reason, str) else reasons.get(details["flag"], "")
        elif event.event == "hold-placed":
            placed.add(details["hold_id"])
        elif event.event == "hold-released":
            released.add(details["hold_id"])
        elif event.event == "case-linked":
            cases.add(details["case_id"])
        elif event.event == "case-unlinked":
            cases.discard(details["case_id"])
        elif event.event == "note-added":
            notes += 1
        elif event.event == "retention-extended":
            retain_until = later(retain_until, details.get("in_force") or details["retain_until"])

    row = {
        "sha256": recording,
        "station": manifest.station,
        "device_id": manifest.device_id,
        "officer_id": manifest.officer_id,
        "recorded_start": recorded_start,
        "recorded_end": manifest.recorded_end,
        "time_source": manifest.time_source,
        "timezone": manifest.timezone,
        "sort_time": format_time(start_moment if start_moment is not None else archived_moment),
        "archive_deadline": deadline,
        "archived_at": archived_at,
        "compliance": "late" if deadline_moment is not None and archived_moment > deadline_moment
        else "on_time",
        "size_bytes": manifest.size_bytes,
        "extension": manifest.extension,
        "original_key": original_key,
        "manifest_key": keys.manifest_key(recording),
        "manifest_sha256": hashlib.sha256(manifest_bytes).hexdigest(),
        "manifest": manifest_bytes.decode("utf-8"),
        "media": json.dumps(media, ensure_ascii=False) if media is not None else None,
        "flags": json.dumps(sorted(flags)),
        "flag_reasons": json.dumps(reasons, ensure_ascii=False, sort_keys=True),
        "proxy_key": proxy[0] if proxy else None,
        "proxy_sha256": proxy[1] if proxy else None,
        "poster_key": poster[0] if poster else None,
        "poster_sha256": poster[1] if poster else None,
        "held": 1 if placed - released else 0,
        "retain_until": retain_until,
        "cases": json.dumps(sorted(cases), ensure_ascii=False),
        "notes": notes,
        "archived_by": archived.writer,
        "archived_seq": archived.seq,
        "indexed_at": indexed_at,
    }
    return row, sorted(cases)


def later(current: str | None, candidate: Any) -> str | None:
    """The later of two retain-until dates (as written); retention is never shortened."""
    candidate_moment = parse_any_time(candidate)
    if candidate_moment is None:
        return current
    current_moment = parse_any_time(current)
    if current_moment is None or candidate_moment > current_moment:
        return str(candidate)
    return current
