"""Text from devices, shown safely on an operator's terminal.

File names on a card, device labels and reasons that quote them are data from outside: a name
holding ESC sequences could repaint the screen, hide lines or change the window title when
printed raw. Everything printed for humans that may hold such text goes through ``safe``.
Machine output (``--json``) keeps the exact strings; JSON escapes control characters itself.

Tables are laid out by display width (``display_width``, ``pad``, ``clip``), not by character
count: a Chinese header or officer name takes two columns per character on a terminal.
"""

from __future__ import annotations

import re
import unicodedata

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


def display_width(text: str) -> int:
    """Columns ``text`` takes on a terminal: wide and full-width characters (CJK) take two,
    combining marks none — so a table with Chinese headers or names still lines up.

    >>> display_width("状态 OK")
    7
    """
    width = 0
    for char in text:
        if unicodedata.combining(char):
            continue
        width += 2 if unicodedata.east_asian_width(char) in ("W", "F") else 1
    return width


def clip(text: str, columns: int) -> str:
    """``text`` cut to at most ``columns`` display columns (a wide character is never split)."""
    if display_width(text) <= columns:
        return text
    kept, width = [], 0
    for char in text:
        step = 0 if unicodedata.combining(char) else \
            2 if unicodedata.east_asian_width(char) in ("W", "F") else 1
        if width + step > columns:
            break
        kept.append(char)
        width += step
    return "".join(kept)


def pad(text: object, columns: int, align: str = "<") -> str:
    """``text`` padded with spaces to ``columns`` display columns; ``align`` ``<`` (left) or
    ``>`` (right). Longer text is kept whole, as ``str.format`` does."""
    shown = str(text)
    fill = " " * max(columns - display_width(shown), 0)
    return fill + shown if align == ">" else shown + fill


def columns(cells: list[tuple[object, int] | tuple[object, int, str]], sep: str = "  ") -> str:
    """One table line: each cell ``(text, columns)`` or ``(text, columns, ">")`` padded by
    display width, joined with ``sep``; a last cell of width 0 is written as it is."""
    return sep.join(pad(cell[0], cell[1], cell[2] if len(cell) > 2 else "<")
                    for cell in cells).rstrip(" ")
