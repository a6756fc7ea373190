"""States of a source file in the work queue, and which moves between them are allowed. Pure.

::

    discovered ──copy+hash+fsync──> spooled ──upload+verify+manifest+ledger──> archived
        │                              ├──content already archived──────────> duplicate
        │                              └──spool copy lost────────────────────> failed
        ├──cannot be read / changed while read──> failed ──seen again──> discovered
        └──symlink, device node, fifo───────────> skipped

``archived``, ``duplicate`` and ``skipped`` are final: a source in one of them is never read
again. ``failed`` is retried the next time the file is seen (a card re-docked, a new run).
"""

from __future__ import annotations

from enum import StrEnum
from ..i18n import _


class SourceState(StrEnum):
    """The ``sources.state`` column; the values are stored and must never change."""

    DISCOVERED = "discovered"
    SPOOLED = "spooled"
    ARCHIVED = "archived"
    DUPLICATE = "duplicate"
    FAILED = "failed"
    SKIPPED = "skipped"


# Short names for the callers that spell states as ``st.SPOOLED``.
DISCOVERED = SourceState.DISCOVERED
SPOOLED = SourceState.SPOOLED
ARCHIVED = SourceState.ARCHIVED
DUPLICATE = SourceState.DUPLICATE
FAILED = SourceState.FAILED
SKIPPED = SourceState.SKIPPED

STATES: tuple[str, ...] = tuple(SourceState)
FINAL_STATES = frozenset({ARCHIVED, DUPLICATE, SKIPPED})
# States whose bytes are not yet proven in the archive: what "pending" means to an operator.
PENDING_STATES = frozenset({DISCOVERED, SPOOLED, FAILED})

_ALLOWED: dict[str, frozenset[SourceState]] = {
    DISCOVERED: frozenset({SPOOLED, FAILED, SKIPPED}),
    # SPOOLED->SPOOLED: an upload attempt failed; SPOOLED->FAILED: the spool copy was lost
    SPOOLED: frozenset({ARCHIVED, DUPLICATE, SPOOLED, FAILED}),
    FAILED: frozenset({DISCOVERED, SPOOLED, FAILED, SKIPPED}),
    ARCHIVED: frozenset(),
    DUPLICATE: frozenset(),
    SKIPPED: frozenset(),
}


def can_move(current: str, target: str) -> bool:
    """True when a source in ``current`` may move to ``target``."""
    if current not in _ALLOWED:
        raise ValueError(_("unknown source state {current!r}").format(current=current))
    if target not in _ALLOWED:
        raise ValueError(_("unknown source state {target!r}").format(target=target))
    return target in _ALLOWED[current]


def needs_copy(state: str | None) -> bool:
    """Whether a file seen on a device must be (re)read into the spool."""
    return state is None or state in (DISCOVERED, FAILED)
