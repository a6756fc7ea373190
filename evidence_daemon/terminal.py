"""Text from devices, shown safely on an operator's terminal.

File names on a card, device labels and reasons that quote them are data from outside: a name
holding ESC sequences could repaint the screen, hide lines or change the window title when
printed raw. Everything printed for humans that may hold such text goes through ``safe``.
Machine output (``--json``) keeps the exact strings; JSON escapes control characters itself.
"""

from __future__ import annotations

import re

# C0 controls (tab and newline included: a name must stay on its line), DEL, C1 controls, and
# the Unicode bidi controls that can make a name read backwards ("Trojan Source").
_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def safe(text: object) -> str:
    """``text`` with every control character shown as an escape (``\\x1b``, ``\\u202e``).

    >>> safe("DCIM/\\x1b[2Jclip\\n.mp4")
    'DCIM/\\\\x1b[2Jclip\\\\x0a.mp4'
    """
    return _UNSAFE.sub(_escape, str(text))
