"""Time: the injectable clock, and the one way times are written and read back.

Every stored time (SQLite rows, ledger entries, manifests, object metadata) is UTC ISO 8601
written by ``format_time`` and read by ``parse_time``. A module that needs "now" takes a
``Clock`` so tests and fault injection can lie to it; only ``utc_now`` reads the system clock.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Callable
from .i18n import _

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def format_time(moment: datetime) -> str:
    """The stored form: UTC, microseconds, with offset (``2026-11-30T08:00:00.000000+00:00``)."""
    return moment.astimezone(timezone.utc).isoformat(timespec="microseconds")


def format_seconds(moment: datetime) -> str:
    """UTC to the second, for headers and metadata read by people and other tools."""
    return moment.astimezone(timezone.utc).isoformat(timespec="seconds")


def parse_time(text: str) -> datetime:
    """Read an ISO 8601 time (a trailing ``Z`` allowed); a time without offset is UTC.

    Raises ValueError naming the text when it is not a time.
    """
    try:
        parsed = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(_("not an ISO 8601 time: {text!r}").format(text=text)) from None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=timezone.utc)


def parse_optional(text: str | None) -> datetime | None:
    """``parse_time`` for a column or field that may be empty."""
    return parse_time(text) if text else None
