"""Named crash points for the crash-safety tests.

``EVIDENCE_FAILPOINTS=ingest.after_spool`` (comma-separated names) makes the process kill itself
with SIGKILL the first time it reaches that point, which is how the tests prove that a crash at
any instant is recoverable. Unset (always, in production) this is one set lookup.
"""

from __future__ import annotations

import os
import signal

_ACTIVE = frozenset(
    name.strip() for name in os.environ.get("EVIDENCE_FAILPOINTS", "").split(",") if name.strip()
)

POINTS = (
    "ingest.mid_copy",  # part of a file copied into the spool
    "ingest.after_spool",  # spool file durable, state not yet committed
    "archive.mid_upload",  # part of an original sent to the archive
    "archive.after_upload",  # original stored and verified, manifest not yet written
    "archive.after_manifest",  # manifest written, ledger event not yet appended
    "ledger.after_write",  # ledger object written, local index not yet updated
    "ingest.before_commit",  # everything durable in the archive, SQLite not yet updated
    "dock.released",  # a device's job ended (unmounted); its uploads may still be under way
)


def failpoint(name: str) -> None:
    if name in _ACTIVE:
        os.kill(os.getpid(), signal.SIGKILL)
