"""What a person may write into the audit chain: reasons for an access or a change, and notes.

These texts are kept for good in signed ledger entries and read back by auditors, in packages
and in court, so they are checked here, once, for every caller (request bodies, query
parameters, headers, the ``export`` command). Surrounding white space is trimmed; a blank or
too short text is refused (a reason of spaces says nothing), and so is any control character:
C0 (NUL, tab, newline, ESC ...), DEL, C1, the Unicode line and paragraph separators and the
bidirectional overrides, which can hide or reorder what a reader sees or forge a line in a log
or a report. A text that fails is refused with a message naming the field and never recorded;
nothing is ever silently cleaned (that would record words nobody wrote).
"""

from __future__ import annotations

import unicodedata

from ..errors import UsageError
from ..i18n import _

REASON_MIN_CHARS = 3
REASON_MAX_CHARS = 500
NOTE_MAX_CHARS = 4000
CASE_ID_MAX_CHARS = 100

_SEPARATORS = frozenset({"Zl", "Zp", "Cc"})  # line/paragraph separators; C0, DEL and C1
_BIDI_CONTROLS = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e"
                           "\u2066\u2067\u2068\u2069")


def text_problem(text: str, *, min_chars: int, max_chars: int) -> str | None:
    """What is wrong with ``text`` (already trimmed) as audit text, or None. The message
    never quotes the text: it may be huge or hostile."""
    if not text:
        return "must not be blank"
    if len(text) > max_chars:
        return f"at most {max_chars} characters, got {len(text)}"
    if len(text) < min_chars:
        return f"at least {min_chars} characters (not counting surrounding spaces)"
    for position, char in enumerate(text, start=1):
        if unicodedata.category(char) in _SEPARATORS or char in _BIDI_CONTROLS:
            return (f"control character U+{ord(char):04X} at character {position} is not "
                    "allowed (no line breaks, tabs, escapes or direction overrides)")
    return None


def checked_text(text: str, field: str, *, min_chars: int = REASON_MIN_CHARS,
                 max_chars: int = REASON_MAX_CHARS) -> str:
    """``text`` trimmed, or ``UsageError`` naming ``field`` and what is wrong."""
    stripped = text.strip()
    problem = text_problem(stripped, min_chars=min_chars, max_chars=max_chars)
    if problem is not None:
        raise UsageError(f"{field}: {problem}")
    return stripped


def checked_reason(text: str, field: str = "reason") -> str:
    return checked_text(text, field)


def checked_note(text: str, field: str = "text") -> str:
    return checked_text(text, field, min_chars=1, max_chars=NOTE_MAX_CHARS)


def checked_case_id(text: str) -> str:
    """A case id as it goes into the audit chain: audit text without '/' or '\\' (it appears
    in search filters and package paths)."""
    case_id = checked_text(text, "case_id", min_chars=1, max_chars=CASE_ID_MAX_CHARS)
    if "/" in case_id or "\\" in case_id:
        raise UsageError(_("case_id: no '/' or '\\'"))
    return case_id
