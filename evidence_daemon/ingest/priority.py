"""Which waiting file is uploaded first: files a recorder marked important, then the earliest
24-hour deadline, then the one the station saw first (earliest deadline first, EDF).

``upload_key`` is the whole decision, a pure function over plain facts; the pipeline sorts its
copy list, its resume list and its upload queue by it, and the backlog forecast
(``compliance.forecast``) simulates the same order.

What a key can know: the deadline is certain only once ``Ingestor._catalog_pending`` has run
(ffprobe gives the duration and the container's time), which happens on an upload worker, after
the file is queued. A file is therefore queued by what is known then: its catalogued deadline if
it has one (the resume list), else an estimate from the file name's start time, else from its
modification time (the recorder closes the file when the recording ends), judged like the catalog
judges it (``timing.judge_clock``: a reset or racing recorder clock counts from when the station
first saw the file). A name time without the duration gives a deadline at most one recording
length earlier than the true one: such a file may go a little early, never late.

"Important" is a vendor's marker in the path on the device (重要/重点 folders or names, ``_IMP_``
in the name), matched by ``ingest.priority_patterns`` (shell patterns on the whole relative
path, case-sensitive, ``*`` also spans folders).

This module only orders: it never decides whether a file is archived, and it must never drop,
duplicate or hold back an item it was given. ``UploadQueue`` is the bounded queue between the
copy thread and the upload workers, in key order, with the stop markers after every real item.
"""

from __future__ import annotations

import fnmatch
import itertools
import math
import queue
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Generic, TypeVar
from zoneinfo import ZoneInfo

from ..compliance.rules import archive_deadline
from ..config import Config
from .naming import parse_file_name
from .timing import ClockWindow, derive_times, judge_clock

# (0 when important else 1, deadline as POSIX seconds or +inf when unknown, first seen)
UploadKey = tuple[int, float, int]

_STOP_KEY: UploadKey = (2, math.inf, 0)  # after every real item: workers finish the queue first

T = TypeVar("T")


@dataclass(frozen=True)
class OrderRules:
    """What the order needs from the configuration."""

    priority_patterns: tuple[str, ...]
    filename_patterns: tuple[str, ...]
    zone: ZoneInfo
    deadline_hours: float
    earliest_plausible: datetime
    clock_tolerance: timedelta

    @classmethod
    def from_config(cls, config: Config) -> OrderRules:
        zone = ZoneInfo(config.station.timezone)
        compliance = config.compliance
        return cls(
            priority_patterns=config.ingest.priority_patterns,
            filename_patterns=config.ingest.filename_patterns,
            zone=zone,
            deadline_hours=compliance.deadline_hours,
            earliest_plausible=compliance.earliest_plausible_at(zone),
            clock_tolerance=timedelta(hours=compliance.clock_tolerance_hours),
        )


def is_important(rel_path: str, patterns: Sequence[str]) -> bool:
    """Did the recorder mark this file important (a pattern matches its path on the device)?"""
    return any(fnmatch.fnmatchcase(rel_path, pattern) for pattern in patterns)


def estimated_deadline(
    rel_path: str, mtime_ns: int | None, *, seen_at: datetime, rules: OrderRules
) -> datetime | None:
    """The deadline a file will get, from what is known before it is probed (see module doc)."""
    name = parse_file_name(rel_path.rpartition("/")[2], rules.filename_patterns, rules.zone)
    mtime = datetime.fromtimestamp(mtime_ns / 1e9, tz=timezone.utc) if mtime_ns is not None else None
    times = derive_times(
        name_start=name.recorded_start if name else None, creation_time=None, duration_s=None,
        mtime=mtime,
    )
    verdict = judge_clock(
        times, ClockWindow(rules.earliest_plausible, seen_at, rules.clock_tolerance),
        invalid_name_time=name.invalid_start if name else None, zone=rules.zone,
    )
    return archive_deadline(verdict.counts_from, rules.deadline_hours)


def upload_key(*, important: bool, deadline: datetime | None, first_seen: int) -> UploadKey:
    """The upload order: important first, then the earliest deadline (none known: last), then
    the one seen first."""
    return (0 if important else 1, deadline.timestamp() if deadline is not None else math.inf,
            first_seen)


def key_for(
    rel_path: str, mtime_ns: int | None, *, first_seen: int, seen_at: datetime,
    rules: OrderRules, deadline: datetime | None = None,
) -> UploadKey:
    """``upload_key`` of a file on the device: its catalogued ``deadline`` when known, else the
    estimate."""
    if deadline is None:
        deadline = estimated_deadline(rel_path, mtime_ns, seen_at=seen_at, rules=rules)
    return upload_key(important=is_important(rel_path, rules.priority_patterns),
                      deadline=deadline, first_seen=first_seen)


class UploadQueue(Generic[T]):
    """A bounded queue handing out items in ``UploadKey`` order (thread-safe).

    Keeps ``queue.Queue``'s contract the pipeline relies on: ``put`` blocks while full,
    ``task_done``/``join``/``unfinished_tasks`` count work in progress, and ``get`` returns
    ``None`` once ``close`` has been called and every real item before it has been taken.
    """

    def __init__(self, maxsize: int) -> None:
        self._queue: queue.PriorityQueue[tuple[UploadKey, int, T | None]] = queue.PriorityQueue(maxsize)
        self._order = itertools.count()  # ties never compare the items themselves
        self._order_lock = threading.Lock()

    def _next(self) -> int:
        with self._order_lock:
            return next(self._order)

    def put(self, key: UploadKey, item: T) -> None:
        self._queue.put((key, self._next(), item))

    def close(self, workers: int) -> None:
        """One stop marker per worker; each sorts after every real item."""
        for _ in range(workers):
            self._queue.put((_STOP_KEY, self._next(), None))

    def get(self) -> T | None:
        return self._queue.get()[2]

    def task_done(self) -> None:
        self._queue.task_done()

    def join(self) -> None:
        self._queue.join()

    @property
    def unfinished_tasks(self) -> int:
        return self._queue.unfinished_tasks
