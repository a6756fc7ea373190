"""Appending to this writer's custody ledger in the archive.

Each event is one create-only object ``ledger/<writer>/<seq:012d>.json``, hash-chained to the
one before and signed with the writer's Ed25519 key. The archive is the record; the local
``ledger`` table is only an index of what this writer has stored, used to find the chain head
and to make once-only events idempotent. After a crash the index may lag the archive by the
entry that was being written; ``sync()`` (run before the first append) reads it back, so a
retried step never appends its event twice.

Each writer has a role (station or API node) and signs only that role's events
(``chain.ROLE_EVENTS``). Before its first event of its own, a writer whose chain holds no
``key-registered`` entry appends one naming its role and key fingerprint, signed with that key:
a verifier that trusts the key then knows the role from the chain itself. Chains written before
registrations existed get theirs when the upgraded writer next appends.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ..archive import keys
from ..archive.base import ArchiveStore
from ..errors import IntegrityError, ObjectExistsError, StateError, StorageError
from ..failpoints import failpoint
from ..state.db import Database
from . import canonical
from .chain import Event, Head, Role, check_entry, may_sign, registration_details
from .signing import fingerprint, public_pem

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def format_time(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat(timespec="microseconds")


def refuse_known_writer_without_key(
    store: ArchiveStore, writer: str, *, what: str, key_path: Path, state_setting: str,
    id_setting: str,
) -> None:
    """Call before a writer with no key file creates anything: refuse if the archive knows it.

    A writer without its key file is new, or has lost its state. When ``keys/<writer>.pub`` is
    already in the archive it is the latter (or another writer uses the id), and a fresh key
    could never extend that chain. Refusing before the state directory, database or key file
    exist leaves nothing in the way of restoring the backup. When the archive cannot be asked,
    the key is made: ``publish_key`` refuses the clash once the archive answers, before the new
    key has signed anything stored there.
    """
    public_key = keys.public_key_key(writer)
    try:
        published = store.stat(public_key)
    except StorageError as exc:
        log.warning("cannot ask the archive whether writer %s already has a key (%s); making a "
                    "new key: if %s already holds another, archiving is refused until the key "
                    "file is restored", writer, exc.message, public_key)
        return
    if published is not None:
        raise StateError(
            f"{state_setting}: no signing key at {key_path}, but the archive {store.location} "
            f"already holds {public_key}: this {what}'s state was lost, or another {what} uses "
            f"the id {writer!r}. Restore the state directory (at least the key file) from its "
            f"backup, or configure a new {id_setting}. Nothing was created."
        )


class LedgerWriter:
    """Appends signed events for one writer id (a station or an API node)."""

    def __init__(
        self,
        store: ArchiveStore,
        database: Database,
        writer: str,
        private_key: Ed25519PrivateKey,
        *,
        role: Role,
        clock: Clock = utc_now,
    ) -> None:
        self.store = store
        self.database = database
        self.writer = keys.check_writer(writer)
        self.private_key = private_key
        self.role = role
        self.clock = clock
        self._lock = threading.Lock()
        self._synced = False

    def publish_key(self) -> None:
        """Put ``keys/<writer>.pub`` in the archive, or check that the one there is ours.

        Also done before the first append, so a writer that started while the archive was
        away publishes its key once the archive is back."""
        key = keys.public_key_key(self.writer)
        ours = public_pem(self.private_key)
        try:
            self.store.put_bytes(key, ours, content_type="application/x-pem-file")
            log.info("published public key %s", key)
            return
        except ObjectExistsError:
            pass
        theirs = self.store.get_bytes(key)
        if theirs != ours:
            raise IntegrityError(
                f"the archive already holds a different public key for writer {self.writer!r} "
                f"({key}). Another station uses this id, or this station's key was lost: restore "
                "the key file from backup or configure a new station.id"
            )

    def sync(self) -> int:
        """Index entries present in the archive but not locally; returns how many were added."""
        with self._lock:
            return self._sync_locked()

    def _sync_locked(self) -> int:
        head_seq, _ = self._head()
        self.publish_key()
        public = self.private_key.public_key()
        added = 0
        prefix = keys.ledger_prefix(self.writer)
        for key in self.store.list_keys(prefix):
            parsed = keys.parse_ledger_key(key)
            if parsed is None or parsed[1] <= head_seq:
                continue
            seq, prev_hash = self._head()
            checked = check_entry(self.writer, parsed[1], self.store.get_bytes(key), public,
                                  Head(seq, prev_hash))
            if not checked.verified or checked.read.entry is None:
                problems = "; ".join(problem.message for problem in checked.problems)
                raise IntegrityError(f"{key}: does not continue this writer's chain ({problems})")
            self._index(dict(checked.read.entry))
            added += 1
        self._synced = True
        if added:
            log.info("ledger: indexed %d entries found in the archive", added)
        return added

    def _head(self) -> tuple[int, str]:
        row = self.database.query_one(
            "SELECT seq, entry_hash FROM ledger WHERE writer = ? ORDER BY seq DESC LIMIT 1",
            (self.writer,),
        )
        return (int(row["seq"]), str(row["entry_hash"])) if row else (0, canonical.GENESIS_PREV)

    def _index(self, entry: dict[str, Any]) -> None:
        details = entry["details"]
        self.database.execute(
            "INSERT INTO ledger (writer, seq, entry_hash, time, event, recording, actor, details,"
            " dedupe_key) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                entry["writer"],
                entry["seq"],
                canonical.entry_hash(entry),
                entry["time"],
                entry["event"],
                entry["recording"],
                entry["actor"],
                json.dumps(details, sort_keys=True, ensure_ascii=False),
                canonical.dedupe_key(entry["event"], entry["recording"], details)
                if details.get("once")
                else None,
            ),
        )

    def entry_hashes(self) -> list[str]:
        """Hashes of this writer's entries 1..head, in seq order, from its index: the leaves
        of its Merkle tree, for a checkpoint (``proofs.checkpoint_entry_details``)."""
        rows = self.database.query(
            "SELECT seq, entry_hash FROM ledger WHERE writer = ? ORDER BY seq", (self.writer,))
        if [int(row["seq"]) for row in rows] != list(range(1, len(rows) + 1)):
            raise IntegrityError(f"ledger {self.writer}: the local index does not hold entries "
                                 "1..head without gaps; run verify")
        return [str(row["entry_hash"]) for row in rows]

    def find(self, event: str, recording: str | None, details: dict[str, Any]) -> dict[str, Any] | None:
        """The indexed once-only event matching these, if it was already appended."""
        row = self.database.query_one(
            "SELECT seq, time, details FROM ledger WHERE writer = ? AND dedupe_key = ?",
            (self.writer, canonical.dedupe_key(event, recording, details)),
        )
        if row is None:
            return None
        return {"seq": row["seq"], "time": row["time"], "details": json.loads(row["details"])}

    def _registered(self) -> bool:
        return self.database.query_one(
            "SELECT 1 FROM ledger WHERE writer = ? AND event = ?",
            (self.writer, str(Event.KEY_REGISTERED))) is not None

    def append(
        self,
        event: Event,
        *,
        recording: str | None,
        actor: str,
        details: dict[str, Any],
        once: bool = False,
    ) -> dict[str, Any]:
        """Store a signed event; with ``once`` an identical earlier event is returned instead.

        ``once`` events are identified by (event, recording, details["source_key"]).
        ``IntegrityError`` for an event outside this writer's role (a programming error).
        """
        event = Event(event)
        if not may_sign(self.role, event):
            raise IntegrityError(f"ledger {self.writer}: a {self.role} does not sign "
                                 f"'{event}' events")
        with self._lock:
            if not self._synced:
                self._sync_locked()
            if event is not Event.KEY_REGISTERED and not self._registered():
                self._append_locked(
                    Event.KEY_REGISTERED, recording=None, actor=f"{self.role}:{self.writer}",
                    details=registration_details(self.role, fingerprint(self.private_key),
                                                 self.writer), once=False)
            return self._append_locked(event, recording=recording, actor=actor,
                                       details=details, once=once)

    def _append_locked(self, event: Event, *, recording: str | None, actor: str,
                       details: dict[str, Any], once: bool) -> dict[str, Any]:
        if once:
            details = {**details, "once": True}
            existing = self.find(event, recording, details)
            if existing is not None:
                return existing
        for _ in range(3):
            seq, prev = self._head()
            entry = {
                "seq": seq + 1,
                "prev": prev,
                "time": format_time(self.clock()),
                "writer": self.writer,
                "event": str(event),
                "recording": recording,
                "actor": actor,
                "details": details,
            }
            signature = self.private_key.sign(canonical.canonical_bytes(entry))
            try:
                self.store.put_bytes(
                    keys.ledger_key(self.writer, seq + 1),
                    canonical.stored_bytes(entry, signature),
                )
            except ObjectExistsError:
                # Another process of this station appended meanwhile: catch up, retry.
                self._sync_locked()
                if once and (existing := self.find(event, recording, details)) is not None:
                    return existing
                continue
            failpoint("ledger.after_write")
            self._index(entry)
            return entry
        raise StorageError(f"ledger {self.writer}: could not append {event} after 3 tries")
