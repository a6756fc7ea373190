"""What goes into an evidence package, chosen from the catalog (pure, or catalog reads only):
the recordings asked for, the archive keys of their files, and which ledger entries go in.

What must never happen here: an archive key built from request text or followed from a catalog
row that disagrees with ``archive.keys`` (such a row is refused, not exported); an entry about
a recording outside the package chosen to go in full.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ...archive import keys
from ...custody.chain import Event
from ...errors import ConflictError, IntegrityError, NotFoundError, UsageError
from ...state.db import Database
from .format import is_sha256_hex
from ...i18n import _

_ID_PREFIX = re.compile(r"^[0-9a-f]{12,64}$")


@dataclass(frozen=True)
class Part:
    """One file of a recording to export: its archive key (also its name in the zip) and what
    the catalog says it must hash to."""

    key: str
    sha256: str | None  # None for the original: its id is its SHA-256
    size_bytes: int | None


@dataclass(frozen=True)
class PlannedRecording:
    sha256: str
    original: Part
    manifest: Part
    derived: tuple[Part, ...]  # proxy, poster: those asked for and present
    facts: Mapping[str, Any]  # station, device, officer, recorded times: for README and package.json


# -- choosing what goes in -------------------------------------------------------------------

def resolve_recordings(database: Database, requested: Sequence[str]) -> list[Any]:
    """Catalog rows of the requested recordings, in the order asked, each once.

    Each id is the full SHA-256 or a unique prefix of at least 12 hex digits. Raises
    ``UsageError`` (malformed), ``NotFoundError`` (unknown), ``ConflictError`` (ambiguous).
    """
    if not requested:
        raise UsageError(_("name at least one recording to export"))
    rows: list[Any] = []
    seen: set[str] = set()
    for text in requested:
        prefix = text.lower()
        if not _ID_PREFIX.fullmatch(prefix):
            raise UsageError(
                _("recording id {text!r}: give the SHA-256, or at least 12 of its hex digits").format(
                    text=text)
            )
        # Hex digits sort below 'g': this range is exactly the ids starting with the prefix.
        matches = database.query(
            "SELECT * FROM recordings WHERE sha256 >= ? AND sha256 < ? ORDER BY sha256 LIMIT 2",
            (prefix, prefix + "g"),
        )
        if not matches:
            raise NotFoundError(_("no recording {text}").format(text=text))
        if len(matches) > 1:
            raise ConflictError(_("recording id {text} is ambiguous: give more digits").format(
                text=text))
        if matches[0]["sha256"] not in seen:
            seen.add(matches[0]["sha256"])
            rows.append(matches[0])
    return rows


def plan_recording(row: Mapping[str, Any], *, include_proxies: bool) -> PlannedRecording:
    """What to export for one catalog row, with keys recomputed by ``archive.keys``.

    The catalog's stored keys must equal the computed ones: a row that disagrees was not
    written by the indexer and is refused (``IntegrityError``) rather than followed.
    """
    shown = str(row["sha256"])[:12]
    try:
        sha256 = keys.check_sha256(str(row["sha256"]))
        original_key = keys.original_key(sha256, str(row["extension"]))
    except ValueError as exc:
        raise IntegrityError(_("catalog row of recording {shown}: {exc}").format(
            shown=shown, exc=exc)) from None

    def require_key(column: str, expected: Collection[str]) -> str:
        value = row[column]
        if value not in expected:
            raise IntegrityError(
                _("catalog row of recording {shown}: {column} {value!r} is not a key of the "
                  "storage contract; reindex the catalog").format(
                      shown=shown, column=column, value=value)
            )
        return str(value)

    def require_sha256(column: str) -> str:
        value = row[column]
        if not is_sha256_hex(value):
            raise IntegrityError(_("catalog row of recording {shown}: {column} is not a SHA-256").format(
                shown=shown, column=column))
        return str(value)

    require_key("original_key", {original_key})
    manifest = Part(require_key("manifest_key", {keys.manifest_key(sha256)}),
                    require_sha256("manifest_sha256"), None)
    derived: list[Part] = []
    if include_proxies and row["proxy_key"] is not None:
        proxy_keys = {keys.proxy_key(sha256, "mp4"), keys.proxy_key(sha256, "m4a")}
        derived.append(Part(require_key("proxy_key", proxy_keys), require_sha256("proxy_sha256"),
                            None))
    if include_proxies and row["poster_key"] is not None:
        derived.append(Part(require_key("poster_key", {keys.poster_key(sha256)}),
                            require_sha256("poster_sha256"), None))
    facts = {name: row[name] for name in ("station", "device_id", "officer_id", "recorded_start",
                                          "recorded_end", "time_source", "extension")}
    return PlannedRecording(
        sha256=sha256,
        original=Part(original_key, None, int(row["size_bytes"])),
        manifest=manifest,
        derived=tuple(derived),
        facts=facts,
    )


def merge_runs(relevant: Mapping[str, tuple[int, int]], exporter: str,
               exported_seq: int) -> dict[str, tuple[int, int]]:
    """Per writer, the contiguous run of seqs to include: from its first to its last entry
    concerning the package, the exporter's run extended to the ``exported`` entry."""
    runs = dict(relevant)
    first, last = runs.get(exporter, (exported_seq, exported_seq))
    runs[exporter] = (min(first, exported_seq), max(last, exported_seq))
    return dict(sorted(runs.items()))


def ledger_runs(database: Database, recordings: Sequence[str], exporter: str,
                exported_seq: int) -> dict[str, tuple[int, int]]:
    marks = ",".join("?" for _ in recordings)
    rows = database.query(
        f"SELECT writer, MIN(seq) AS first_seq, MAX(seq) AS last_seq FROM events"
        f" WHERE recording IN ({marks}) GROUP BY writer",
        tuple(recordings),
    )
    relevant = {str(row["writer"]): (int(row["first_seq"]), int(row["last_seq"])) for row in rows}
    return merge_runs(relevant, exporter, exported_seq)


def proven_entries(database: Database, recordings: Sequence[str], exporter: str,
                   exported_seq: int) -> dict[str, set[int]]:
    """Per writer, the seqs of the entries a version-3 package carries in full (besides the
    checkpoints): every entry about its recordings, its own ``exported`` event, and each such
    writer's ``key-registered`` entries (its role, signed), from the catalog."""
    marks = ",".join("?" for _ in recordings)
    selected: dict[str, set[int]] = defaultdict(set)
    for row in database.query(f"SELECT writer, seq FROM events WHERE recording IN ({marks})",
                              tuple(recordings)):
        selected[str(row["writer"])].add(int(row["seq"]))
    selected[exporter].add(exported_seq)
    writers = sorted(selected)
    marks = ",".join("?" for _ in writers)
    for row in database.query(f"SELECT writer, seq FROM events WHERE event = ? AND writer IN "
                              f"({marks})", (str(Event.KEY_REGISTERED), *writers)):
        selected[str(row["writer"])].add(int(row["seq"]))
    return dict(sorted(selected.items()))
