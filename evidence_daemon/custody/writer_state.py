"""The local state of one ledger writer — a station or an API node — opened the same way.

State directory, database, Ed25519 key and ``LedgerWriter``. A writer without its key file
whose key the archive already holds has lost its state: it is refused before anything is
created, so nothing stands in the way of restoring the backup (``ledger.refuse_known_writer_
without_key`` says why).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ..archive.base import ArchiveStore
from ..clock import Clock
from ..errors import ConfigError
from ..state.db import Database
from .chain import Role
from .ledger import LedgerWriter, refuse_known_writer_without_key
from .signing import load_or_create_private_key
from ..i18n import _


def open_writer_state(
    store: ArchiveStore, *, section: str, what: str, writer: str, role: Role, key_path: Path,
    state_dir: Path, open_database: Callable[[], Database], clock: Clock,
) -> tuple[Database, Ed25519PrivateKey, LedgerWriter]:
    """``section`` names the writer's config section (``station``, ``api``) and ``what`` how
    messages call it."""
    if not key_path.exists():
        refuse_known_writer_without_key(
            store, writer, what=what, key_path=key_path,
            state_setting=f"{section}.state_dir", id_setting=f"{section}.id")
    try:
        state_dir.mkdir(parents=True, exist_ok=True, mode=0o750)
    except OSError as exc:
        raise ConfigError(_("{section}.state_dir: cannot create {state_dir}: {strerror}").format(
            section=section, state_dir=state_dir, strerror=exc.strerror)) from exc
    database = open_database()
    key = load_or_create_private_key(key_path)
    return database, key, LedgerWriter(store, database, writer, key, role=role, clock=clock)
