"""The exit codes of ``evidence-daemon``: a contract, documented in README's command table.

The values equal the ``exit_code`` of the ``errors.py`` classes (tests check that every error's
code is a member here), so a script can tell "run again later" (6) from "look at the
evidence" (7) whichever way the code was reached. Never renumber a member.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    ERROR = 1  # EvidenceError: anything reported on purpose without a closer code
    USAGE = 2  # ConfigError, UsageError: bad configuration or argument (the message names it)
    STATE = 3  # StateError: the local SQLite state cannot be used
    DEVICE = 4  # DeviceError: a device or source tree cannot be read
    NOT_ARCHIVED = 5  # IngestError: files are not archived; each has its reason; run again
    ARCHIVE_UNREACHABLE = 6  # StorageError: the archive (or the ledger) is not reachable yet
    PROBLEMS_FOUND = 7  # IntegrityError: stored bytes, a manifest or a ledger do not verify
    MEDIA = 8  # MediaError: ffprobe/ffmpeg could not read a file
    ACCESS = 9  # AccessError: not signed in, or the role does not allow it
    INTERRUPTED = 130  # Ctrl-C: finished work is kept, the rest resumes at the next run
