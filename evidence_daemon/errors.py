"""The one exception tree of evidence-daemon.

::

    EvidenceError                 exit 1   anything the daemon reports on purpose
    ├── ConfigError               exit 2   bad or missing configuration (names the key)
    ├── StateError                exit 3   the local SQLite state cannot be used
    ├── DeviceError               exit 4   a device or source tree cannot be read
    ├── IngestError               exit 5   one file could not be taken in (carries a reason)
    ├── StorageError              exit 6   the archive cannot be reached or refused a write
    │   ├── ObjectExistsError     exit 6   a create-only write found the key taken
    │   └── ObjectMissingError    exit 6   the key is not in the archive
    ├── IntegrityError            exit 7   stored bytes, a manifest or the ledger do not verify
    ├── MediaError                exit 8   ffprobe/ffmpeg could not read a file
    ├── UsageError                exit 2   a request or argument is not valid (names it)
    │   ├── NotFoundError         exit 2   no such recording, user or hold
    │   └── ConflictError         exit 2   already exists, or an id prefix is ambiguous
    └── AccessError               exit 9   not signed in, or the role does not allow it

A message is written in English and marked for translation where it is raised
(``_("... {key} ...").format(key=...)``, see ``i18n.py``): ``message`` is what the operator
reads, in the station's language; ``untranslated`` is its English source, the text to keep
wherever the message is recorded (ledger details, manifests, the state database).

Third-party errors (OSError, minio's S3Error, ffmpeg.Error, sqlite3.Error) are translated
once, at the adapter that calls the library: ``raise StorageError(...) from exc``.
Only ``cli.main()`` turns these into output and an exit code, and the API's error handler into
HTTP statuses (UsageError 422, NotFoundError 404, ConflictError 409, AccessError 403,
StorageError 503).
"""

from __future__ import annotations

from .i18n import untranslated


class EvidenceError(Exception):
    """Root of every error the daemon raises on purpose."""

    exit_code = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
        self.untranslated: str = untranslated(message)

    def __str__(self) -> str:
        return self.message


class ConfigError(EvidenceError):
    exit_code = 2


class StateError(EvidenceError):
    exit_code = 3


class DeviceError(EvidenceError):
    exit_code = 4


class IngestError(EvidenceError):
    exit_code = 5


class StorageError(EvidenceError):
    exit_code = 6


class ObjectExistsError(StorageError):
    """A create-only write found the key already taken."""


class IntegrityError(EvidenceError):
    exit_code = 7


class MediaError(EvidenceError):
    exit_code = 8


class ObjectMissingError(StorageError):
    """The requested key is not in the archive."""


class UsageError(EvidenceError):
    """A request or command-line argument is not valid; the message names it."""

    exit_code = 2


class NotFoundError(UsageError):
    """No such recording, user or hold (or one the caller may not see)."""


class ConflictError(UsageError):
    """The thing already exists, or an id prefix matches several recordings."""


class AccessError(EvidenceError):
    """Not signed in, or the caller's role does not allow the action."""

    exit_code = 9
