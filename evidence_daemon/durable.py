"""Writing bytes so that a short write can never pass for a whole one.

``os.write`` (and an unbuffered file's ``write``) may store fewer bytes than asked — near a
full disk, over a quota or past RLIMIT_FSIZE — and report it only in the count it returns. A
copy that ignores the count is short yet looks complete. Every copy of evidence bytes (the
spool, the filesystem archive) writes through ``write_all``, which finishes the write or raises.
"""

from __future__ import annotations

import errno
import os

# A write that fails with one of these means the target is out of space, not that the source
# is bad: the same write will fail for every later file too.
NO_SPACE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})


def write_all(fd: int, data: bytes | bytearray | memoryview) -> None:
    """Write every byte of ``data`` to ``fd`` or raise OSError (ENOSPC when the disk takes
    nothing more)."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        if written <= 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        view = view[written:]
