"""Wiring of one API node: archive, catalog database, signing key, audit ledger, indexer, and
the services routes call (users, catalog, grants, annotations, content access).

The only place in ``api/`` that picks concrete adapters from the configuration. An API node
needs the archive and nothing of any station; its own state lives in ``api.state_dir``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from prometheus_client import CollectorRegistry

from ..archive.base import ArchiveStore
from ..config import Config
from ..custody.chain import Event, Role
from ..custody.checkpoints import Checkpointer, Stamping
from ..custody.ledger import LedgerWriter
from ..clock import Clock, utc_now
from ..custody.trust import anchors_from
from ..errors import EvidenceError
from ..metrics.ledger import CheckpointCounters, TailCollector
from ..state.db import Database
from ..archive.factory import build_store
from ..custody.writer_state import open_writer_state
from .access import ContentAccess
from .annotations import Annotations
from .auth import Users
from .catalog import Catalog
from .db import open_api_database
from .grants import Grants
from .entries import ReadEntry
from .incidents import IncidentBook, IncidentCollector, coverage_policy, load_document
from .indexer import Indexer
from .reviews import ReviewBook
from ..i18n import _

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
    monotonic: Callable[[], float] = time.monotonic
    users: Users = field(init=False)
    catalog: Catalog = field(init=False)
    registry: CollectorRegistry = field(init=False)  # served at /metrics
    checkpointer: Checkpointer = field(init=False)
    grants: Grants = field(init=False)
    annotations: Annotations = field(init=False)
    content: ContentAccess = field(init=False)
    incidents: IncidentBook = field(init=False)
    reviews: ReviewBook = field(init=False)

    def __post_init__(self) -> None:
        self.users = Users(self.database, clock=self.clock)
        self.catalog = Catalog(self.database)
        self.grants = Grants(self.database, clock=self.clock, ttl_s=self.config.api.grant_ttl_s)
        self.annotations = Annotations(self.catalog, self.store, self.record, self.clock)
        self.content = ContentAccess(self.store, self.record)
        self.registry = CollectorRegistry()
        self.registry.register(TailCollector(self.ledger))
        self.checkpointer = Checkpointer(
            self.ledger, actor=f"api:{self.writer}",
            stamping=Stamping.from_config(self.config.timestamp),
            metrics=CheckpointCounters(self.registry))
        self.incidents = IncidentBook(self.database, policy=coverage_policy(self.config))
        self.registry.register(IncidentCollector(self.incidents, self.clock))
        self.reviews = ReviewBook(self.database, writer=self.writer, record=self.record,
                                  checkpoint=self.checkpointer.checkpoint,
                                  refresh_catalog=self.indexer.poll)
        self.indexer.followers.append(self._follow)
        self._checkpointed_at: float | None = None

    @property
    def writer(self) -> str:
        return self.ledger.writer

    @property
    def exports_dir(self) -> Path:
        """Where packages are built and kept until sent (copies; removed at start)."""
        return self.config.api.state_dir / "exports"

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
            log.warning(_("could not index own entry %s#%d yet: %s"), self.writer, seq, exc.message)

    def keep_checkpoints(self) -> None:
        """After a catalog poll: witness the other writers' newest checkpoints the catalog
        holds, and sign a checkpoint of this node's chain at start, once
        ``api.checkpoint_entries`` entries were appended, or ``api.checkpoint_s`` after the
        last one when anything was. Failures are logged (a chain whose end is gone from the
        archive also shows in ``evidence_ledger_tail_missing``); requests never wait for it."""
        try:
            witnessed = self.ledger.witnessed()
            self.checkpointer.witness(
                seen for seen in self.indexer.latest_checkpoints(skip=self.writer)
                if seen.checkpoint_seq > witnessed.get(seen.writer, 0))
            now = self.monotonic()
            pending = self.ledger.entries_since_checkpoint()
            due = (self._checkpointed_at is None or pending >= self.config.api.checkpoint_entries
                   or (pending and now - self._checkpointed_at >= self.config.api.checkpoint_s))
            if due:
                self.checkpointer.checkpoint()
                self._checkpointed_at = now
        except EvidenceError as exc:
            log.error(_("ledger %s: checkpoint or witness not recorded: %s"), self.writer,
                      exc.message)

    def _follow(self, entries: Sequence[ReadEntry]) -> None:
        """Keep the incident and review tables in step with the verified events that make
        them (any API node's), so ``reindex`` rebuilds them from the archive alone."""
        for entry in entries:
            if entry.event == Event.INCIDENTS_IMPORTED:
                key = str(entry.details.get("document", ""))
                document = load_document(self.store, key)
                self.incidents.apply_import(document.incidents, document=key,
                                            writer=entry.writer, seq=entry.seq)
            elif entry.event == Event.INCIDENT_LINK_REJECTED and entry.recording:
                self.incidents.reject_link(str(entry.details.get("incident_id", "")),
                                           entry.recording)
            elif entry.event == Event.REVIEW_SAMPLED:
                self.reviews.apply_sample(_as_entry(entry))
            elif entry.event == Event.REVIEWED:
                self.reviews.apply_review(_as_entry(entry))

    def refresh_coverage(self) -> None:
        """After a catalog poll: the coverage of incidents new recordings or a closing window
        may have changed. Failures are logged; the next poll tries again."""
        try:
            changed = self.incidents.refresh(self.clock())
        except EvidenceError as exc:
            log.error(_("incident coverage not refreshed: %s"), exc.message)
        else:
            if changed:
                log.info("incident coverage refreshed for %d incident(s)", changed)

    def close(self) -> None:
        self.database.close()


def open_api_node(config: Config, *, clock: Clock = utc_now,
                  connect_archive: bool = True) -> ApiNode:
    store = build_store(config)
    database, key, ledger = open_writer_state(  # a node whose state was lost is refused first
        store, section="api", what="API node", writer=config.api.id, role=Role.API,
        key_path=config.api_key_path, state_dir=config.api.state_dir,
        open_database=lambda: open_api_database(config.api_database_path), clock=clock)
    trust = anchors_from((), config.verify.trusted_keys)
    node = ApiNode(config, store, database, key, ledger,
                   Indexer(store, database, clock=clock, trust=trust), clock)
    if connect_archive:
        store.check()
        ledger.publish_key()
    return node


def _as_entry(entry: ReadEntry) -> dict[str, Any]:
    return {"writer": entry.writer, "seq": entry.seq, "time": entry.time, "event": entry.event,
            "recording": entry.recording, "actor": entry.actor, "details": entry.details}


class Poller:
    """Keeps the catalog current: polls the archive every ``api.poll_s`` in a thread, and
    after each poll keeps this node's checkpoints and witnesses (``ApiNode.keep_checkpoints``)."""

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
                    log.warning(_("catalog: %s"), problem)
            except EvidenceError as exc:
                self.last_error = exc.message
                log.warning(_("catalog poll failed (will retry): %s"), exc.message)
            else:
                self.node.keep_checkpoints()
                self.node.refresh_coverage()
            self._stop.wait(self.node.config.api.poll_s)

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=30)
