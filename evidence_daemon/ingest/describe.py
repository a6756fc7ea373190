"""What the station states about a spooled recording: its catalog entry and its manifest.

``describe_pending`` derives the facts of a recording from its spool copy and its source (the
recorder's times and whether its clock is believed, the deadline, media facts, the officer it
is attributed to, and flags saying what is doubtful); ``manifest_for`` turns the catalogued
facts into the manifest stored beside the original. Neither writes anything: the pipeline
stores what they return. A file whose facts cannot be read is still described (with a flag
saying why), never refused: the recording is evidence whatever its metadata says.
"""

from __future__ import annotations

import logging
import zoneinfo
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from .. import __version__
from ..archive import keys
from ..compliance.rules import FLAG_TIME_IMPLAUSIBLE, archive_deadline
from ..config import Config
from ..clock import Clock, format_time
from ..custody.manifest import Manifest, Storage
from ..devices.attribution import attribute
from ..errors import MediaError
from ..state.catalog import Recording
from ..state.queue import Source
from .naming import parse_file_name
from .timing import ClockWindow, derive_times, judge_clock, parse_iso_time
from ..i18n import _

log = logging.getLogger(__name__)

Prober = Callable[[Path], dict[str, Any]]
# (device id, recorded time) -> the officer assigned that device then, if any
OfficerLookup = Callable[[str, datetime], str | None]


def _iso(moment: datetime | None, zone: zoneinfo.ZoneInfo) -> str | None:
    """ISO 8601 in the station's time zone: what the officer's clock showed, with its offset."""
    return moment.astimezone(zone).isoformat() if moment is not None else None


@dataclass(frozen=True)
class Describer:
    """Everything ``describe_pending`` needs besides the source (the pipeline's collaborators)."""

    config: Config
    prober: Prober
    officer_lookup: OfficerLookup | None

    @property
    def zone(self) -> zoneinfo.ZoneInfo:
        return zoneinfo.ZoneInfo(self.config.station.timezone)

    def clock_window(self, seen_at: datetime) -> ClockWindow:
        """When a recorder's time is believed, for a file the station saw at ``seen_at``."""
        compliance = self.config.compliance
        return ClockWindow(
            earliest=compliance.earliest_plausible_at(self.zone), seen_at=seen_at,
            tolerance=timedelta(hours=compliance.clock_tolerance_hours),
        )

    def describe_pending(self, source: Source, *, clock: Clock) -> Recording:
        """The pending catalog entry of a spooled source's recording. ffprobe takes ~0.15 s a
        file: the pipeline calls this on an upload worker, off the copy's path."""
        assert source.sha256 is not None and source.spool_path is not None, "spooled"
        zone = self.zone
        size_bytes = int(source.size_bytes or 0)
        flags: dict[str, str] = {}
        media: dict[str, Any] | None = None
        if size_bytes == 0:
            flags["empty"] = "the file has no bytes (0-byte file on the device)"
        elif self.config.ingest.probe:
            try:
                media = self.prober(Path(source.spool_path))
            except MediaError as exc:
                flags["unplayable"] = exc.untranslated  # the manifest is English
        file_name = source.rel_path.rpartition("/")[2]
        name_facts = parse_file_name(file_name, self.config.ingest.filename_patterns, zone)
        times = derive_times(
            name_start=name_facts.recorded_start if name_facts else None,
            creation_time=parse_iso_time(media.get("creation_time")) if media else None,
            duration_s=media.get("duration_s") if media else None,
            mtime=datetime.fromtimestamp((source.mtime_ns or 0) / 1e9, tz=timezone.utc),
        )
        first_seen_at = clock()
        verdict = judge_clock(
            times, self.clock_window(first_seen_at),
            invalid_name_time=name_facts.invalid_start if name_facts else None, zone=zone,
        )
        if verdict.implausible is not None:
            # Kept apart from real lateness: the deadline counts from when the station saw it.
            flags[FLAG_TIME_IMPLAUSIBLE] = verdict.implausible
            log.warning(_("%s: recorder clock not believed: %s"), source.rel_path, verdict.implausible)
        deadline = archive_deadline(verdict.counts_from, self.config.compliance.deadline_hours)
        device_id = (name_facts.device_id if name_facts else None) or source.device_id
        # The assignment is that of the physical device docked (the source's), at the time the
        # recording started: a device handed over mid-recording stays with who started it.
        # A recorder clock that is not believed says nothing about who held the device; the
        # holder when the station first saw the file (usually whoever docked it) is the best known.
        recorded_at = (times.recorded_start or times.recorded_end if verdict.implausible is None
                       else first_seen_at)
        assigned_officer = (
            self.officer_lookup(source.device_id, recorded_at)
            if self.officer_lookup is not None and source.device_id and recorded_at is not None
            else None
        )
        officer_id, officer_flags = attribute(
            name_officer=name_facts.officer_id if name_facts else None,
            assigned_officer=assigned_officer,
            default_officer=source.officer_id,
        )
        flags.update(officer_flags)
        extension = keys.safe_extension(file_name)
        return Recording(
            sha256=source.sha256, sm3=source.sm3, size_bytes=size_bytes, extension=extension,
            object_key=keys.original_key(source.sha256, extension), device_id=device_id,
            officer_id=officer_id, recorded_start=_iso(times.recorded_start, zone),
            recorded_end=_iso(times.recorded_end, zone), time_source=times.time_source,
            archive_deadline=_iso(deadline, zone), first_seen_at=format_time(first_seen_at),
            flags=tuple(sorted(flags)), flag_reasons=flags, media=media,
        )


def manifest_for(recording: Recording, source: Source, *, station: str, zone_name: str,
                 verified_at: str, storage: Storage) -> Manifest:
    """The manifest of a recording whose original was just stored and verified."""
    return Manifest(
        recording=recording.sha256, sha256=recording.sha256, sm3=recording.sm3,
        size_bytes=recording.size_bytes, original_key=recording.object_key,
        extension=recording.extension, station=station, device_id=recording.device_id,
        officer_id=recording.officer_id, recorded_start=recording.recorded_start,
        recorded_end=recording.recorded_end, time_source=recording.time_source,
        timezone=zone_name, archive_deadline=recording.archive_deadline,
        source=source.custody_details(), media=recording.media, flags=recording.flags,
        flag_reasons=recording.flag_reasons, first_seen_at=recording.first_seen_at,
        verified_at=verified_at, storage=storage,
        software={"name": "evidence-daemon", "version": __version__},
    )
