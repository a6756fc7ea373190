"""Wiring of one API node: archive, catalog database, signing key, audit ledger, indexer.

The only place in ``api/`` that picks concrete adapters from the configuration. An API node
needs the archive and nothing of any station; its own state lives in ``api.state_dir``.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ..archive.base import ArchiveStore
from ..config import Config
from ..custody.chain import Event, Role
from ..custody.ledger import Clock, LedgerWriter, refuse_known_writer_without_key, utc_now
from ..custody.signing import load_or_create_private_key
from ..custody.trust import anchors_from
from ..errors import ConfigError, EvidenceError
from ..state.db import Database
from ..station import build_store
from .auth import Users
from .catalog import Catalog
from .db import open_api_database
from .indexer import Indexer

log = logging.getLogger(__name__)


@dataclass
class ApiNode:
    config: Config
    store: ArchiveStore
    database: Database
    private_key: Ed25519PrivateKey
    ledger: LedgerWriter
    indexer: Indexer
    clock: Clock
    users: Users = field(init=False)
    catalog: Catalog = field(init=False)

    def __post_init__(self) -> None:
        self.users = Users(self.database, clock=self.clock)
        self.catalog = Catalog(self.database)

    @property
    def writer(self) -> str:
        return self.ledger.writer

    def record(self, event: Event, *, recording: str | None, actor: str,
               details: dict[str, Any]) -> dict[str, Any]:
        """Append an event to this node's signed chain and index it at once, so audit
        queries and the custody timeline show it before the request returns."""
        entry = self.ledger.append(event, recording=recording, actor=actor, details=details)
        self.index_own(int(entry["seq"]))
        return entry

    def index_own(self, seq: int) -> None:
        try:
            if not self.indexer.index_own(self.writer, seq):
                self.indexer.poll()
        except EvidenceError as exc:  # the entry is safe in the archive; the next poll indexes it
            log.warning("could not index own entry %s#%d yet: %s", self.writer, seq, exc.message)

    def close(self) -> None:
        self.database.close()


def open_api_node(config: Config, *, clock: Clock = utc_now,
                  connect_archive: bool = True) -> ApiNode:
    store = build_store(config)
    if not config.api_key_path.exists():  # a node whose state was lost is refused first
        refuse_known_writer_without_key(
            store, config.api.id, what="API node", key_path=config.api_key_path,
            state_setting="api.state_dir", id_setting="api.id")
    state_dir = config.api.state_dir
    try:
        state_dir.mkdir(parents=True, exist_ok=True, mode=0o750)
    except OSError as exc:
        raise ConfigError(f"api.state_dir: cannot create {state_dir}: {exc.strerror}") from exc
    database = open_api_database(config.api_database_path)
    key = load_or_create_private_key(config.api_key_path)
    ledger = LedgerWriter(store, database, config.api.id, key, role=Role.API, clock=clock)
    trust = anchors_from((), config.verify.trusted_keys)
    node = ApiNode(config, store, database, key, ledger,
                   Indexer(store, database, clock=clock, trust=trust), clock)
    if connect_archive:
        store.check()
        ledger.publish_key()
    return node


class Poller:
    """Keeps the catalog current: polls the archive every ``api.poll_s`` in a thread."""

    def __init__(self, node: ApiNode) -> None:
        self.node = node
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="catalog-poll", daemon=True)
        self.last_error: str | None = None

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                result = self.node.indexer.poll()
                self.last_error = None
                if result.entries:
                    log.info("catalog: %d new ledger entries, %d recordings updated",
                             result.entries, result.recordings)
                for problem in result.problems:
                    log.warning("catalog: %s", problem)
            except EvidenceError as exc:
                self.last_error = exc.message
                log.warning("catalog poll failed (will retry): %s", exc.message)
            self._stop.wait(self.node.config.api.poll_s)

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=30)
