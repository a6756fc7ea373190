"""HTTP byte ranges (RFC 9110 §14): one pure function, table-tested.

One range is served (206). A header this module cannot read, or one asking for several
ranges, is ignored and the whole object is sent (200), as the RFC allows; a well-formed range
that lies wholly outside the object is refused (416), so a client never gets bytes it did
not ask for.
"""

from __future__ import annotations

import re

_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


class RangeNotSatisfiable(Exception):
    """The range is well formed but outside the object."""


def parse_range(header: str | None, size_bytes: int) -> tuple[int, int] | None:
    """``(first, last)`` byte positions, inclusive; None means "send everything".

    >>> parse_range("bytes=0-99", 1000), parse_range("bytes=900-", 1000), parse_range("bytes=-10", 1000)
    ((0, 99), (900, 999), (990, 999))
    """
    if header is None:
        return None
    match = _RANGE.match(header.strip().replace(" ", ""))
    if match is None:
        return None  # unreadable or several ranges: ignored (RFC 9110 §14.2)
    first_text, last_text = match.groups()
    if not first_text and not last_text:
        return None
    if not first_text:  # suffix: the last N bytes
        suffix = int(last_text)
        if suffix == 0 or size_bytes == 0:
            raise RangeNotSatisfiable
        return max(0, size_bytes - suffix), size_bytes - 1
    first = int(first_text)
    if last_text and int(last_text) < first:
        return None  # invalid syntax per the RFC: ignore the header
    if first >= size_bytes:
        raise RangeNotSatisfiable
    last = int(last_text) if last_text else size_bytes - 1
    return first, min(last, size_bytes - 1)
