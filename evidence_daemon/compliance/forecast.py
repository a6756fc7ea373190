"""Pure: will every recording waiting in the spool reach the archive before its deadline?

The station uploads earliest deadline first (``ingest.priority``), one link shared by all
uploads. So the forecast is a simulation of that schedule: the recordings, in upload order,
each finishing when the bytes before it and its own have gone up at the upload rate; a
recording finishing after its deadline would miss it. Recordings already overdue still take
their turn on the link but are not counted again (``evidence_recordings{state="overdue"}`` has
them). The rate is the measured one, never more than the configured cap (a short measurement
includes the cap's start-up burst), or the cap alone before anything was measured; with
neither, there is no forecast.

What the forecast leaves out, and why it is still worth an alert: files still on docked devices
(not yet in the spool), per-file overhead (manifest, ledger: small beside minutes of video),
and a rate that changes (daytime traffic). It is an early warning, hours before the at-risk
margin, not a promise. Never reads the database or the clock: callers pass rows and ``now``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal


@dataclass(frozen=True)
class Waiting:
    """One recording waiting in the spool for its upload."""

    size_bytes: int
    deadline: datetime | None
    important: bool = False


@dataclass(frozen=True)
class Forecast:
    recordings: int  # the backlog: recordings waiting in the spool
    size_bytes: int
    rate_bytes_per_s: float | None  # what the forecast assumed (None: nothing to assume)
    drain_s: float | None  # until the whole backlog is archived at that rate
    missed_recordings: int | None  # not yet overdue, but would be archived after the deadline
    missed_bytes: int | None
    first_miss: datetime | None = None  # the earliest deadline that would be missed
    rate_source: RateSource | None = None


RateSource = Literal["measured", "cap", "measured, held to the cap"]


def upload_rate(
    measured_bytes_per_s: float | None, cap_bytes_per_s: float | None
) -> tuple[float | None, RateSource | None]:
    """The rate to forecast with, and where it comes from: the measured one, never above the
    cap; else the cap; else none."""
    if measured_bytes_per_s is None or measured_bytes_per_s <= 0:
        return (cap_bytes_per_s, "cap") if cap_bytes_per_s else (None, None)
    if cap_bytes_per_s and measured_bytes_per_s > cap_bytes_per_s:
        return cap_bytes_per_s, "measured, held to the cap"
    return measured_bytes_per_s, "measured"


def forecast(
    waiting: Sequence[Waiting], *, now: datetime, rate_bytes_per_s: float | None,
    rate_source: RateSource | None = None,
) -> Forecast:
    """Simulate the upload of ``waiting`` (in upload order) from ``now`` at the rate."""
    total_bytes = sum(item.size_bytes for item in waiting)
    if rate_bytes_per_s is None or rate_bytes_per_s <= 0:
        empty = 0 if not waiting else None
        return Forecast(len(waiting), total_bytes, None, 0.0 if not waiting else None, empty, empty)
    sent_bytes = 0
    missed_recordings = missed_bytes = 0
    first_miss: datetime | None = None
    for item in waiting:
        sent_bytes += item.size_bytes
        if item.deadline is None:
            continue
        remaining_s = (item.deadline - now).total_seconds()
        if remaining_s < 0:
            continue  # already overdue: counted as such, not as a forecast
        if sent_bytes / rate_bytes_per_s > remaining_s:
            missed_recordings += 1
            missed_bytes += item.size_bytes
            if first_miss is None or item.deadline < first_miss:
                first_miss = item.deadline
    return Forecast(len(waiting), total_bytes, rate_bytes_per_s, total_bytes / rate_bytes_per_s,
                    missed_recordings, missed_bytes, first_miss, rate_source)
