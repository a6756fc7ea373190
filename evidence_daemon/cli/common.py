"""Helpers more than one command uses: times typed by an operator, who the operator is."""

from __future__ import annotations

import getpass
import os
from datetime import datetime
from zoneinfo import ZoneInfo

from ..errors import ConfigError
from ..i18n import _


def _parse_time(text: str, option: str, zone: ZoneInfo) -> datetime:
    """ISO 8601; a time without an offset is wall-clock time in the station's zone."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ConfigError(_("{option} {text!r}: not an ISO 8601 time (for example "
                            "2026-11-25T08:30, or 2026-11-25T08:30+08:00)").format(
                                option=option, text=text)) from None
    return moment.replace(tzinfo=zone) if moment.tzinfo is None else moment


def _operator() -> str | None:
    """Who typed the command, for the ledger (the login behind sudo, when there is one)."""
    try:
        return os.environ.get("SUDO_USER") or getpass.getuser()
    except (OSError, KeyError):
        return None
