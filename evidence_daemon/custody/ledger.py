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

**Checkpoints.** ``checkpoint()`` signs the RFC 9162 tree head of the chain so far as the
chain's next entry (``chain.checkpoint_details``; the tree is kept as a ``CompactTree``
extended from the index's ``entry_hash`` column, never re-read from the archive), and
``witness()`` records a checkpoint of another writer. When and how often is the callers'
business (``checkpoints.Checkpointer``).

**A tail that went missing.** The index remembers how far this writer's chain went. If the
archive no longer holds the entry at the index's head (or the latest own checkpoint), entries
were removed from the end of the chain: appending would leave a gap that looks like nothing
happened. The writer then refuses every append with ``IntegrityError`` and says so in
``tail_missing`` (a metric and an alert) until the entries are restored. Checked when the
chain is first synced (from the listing it reads anyway) and before an append, at most once
per ``tail_check_s`` (one small GET of the head entry, one HEAD of the latest checkpoint).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ..archive import keys
from ..archive.base import ArchiveStore
from ..errors import (
    IntegrityError,
    ObjectExistsError,
    ObjectMissingError,
    StateError,
    StorageError,
)
from ..failpoints import failpoint
from ..state.db import Database
from . import canonical
from .chain import (
    Event,
    Head,
    Role,
    SeenCheckpoint,
    check_entry,
    checkpoint_details,
    may_sign,
    registration_details,
    witness_details,
)
from ..clock import Clock, format_time, utc_now
from .merkle import CompactTree, entry_leaf_hash
from .signing import fingerprint, public_pem
from ..i18n import _, untranslated

log = logging.getLogger(__name__)

TAIL_CHECK_INTERVAL_S = 60.0  # at most one look at the chain's end per this many seconds


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
        log.warning(_("cannot ask the archive whether writer %s already has a key (%s); making a "
                      "new key: if %s already holds another, archiving is refused until the key "
                      "file is restored"), writer, exc.message, public_key)
        return
    if published is not None:
        raise StateError(
            _("{state_setting}: no signing key at {key_path}, but the archive {location} already "
              "holds {public_key}: this {what}'s state was lost, or another {what} uses the id "
              "{writer!r}. Restore the state directory (at least the key file) from its backup, "
              "or configure a new {id_setting}. Nothing was created.").format(
                  state_setting=state_setting, key_path=key_path, location=store.location, public_key=public_key, what=what, writer=writer, id_setting=id_setting)
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
        monotonic: Callable[[], float] = time.monotonic,
        tail_check_s: float = TAIL_CHECK_INTERVAL_S,
    ) -> None:
        self.store = store
        self.database = database
        self.writer = keys.check_writer(writer)
        self.private_key = private_key
        self.role = role
        self.clock = clock
        self.monotonic = monotonic
        self.tail_check_s = tail_check_s
        # Why this writer refuses to append (its chain's end is gone from the archive), or None.
        self.tail_missing: str | None = None
        self._tail_checked_at: float | None = None
        self._lock = threading.Lock()
        self._synced = False
        self._tree = CompactTree()  # over entries 1..size of this writer, from the index
        self._latest_checkpoint: int | None = None  # seq; None: not looked up yet
        self._witnessed: dict[str, int] | None = None  # writer -> checkpoint seq witnessed

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
                _("the archive already holds a different public key for writer {writer!r} "
                  "({key}). Another station uses this id, or this station's key was lost: restore "
                  "the key file from backup or configure a new station.id").format(
                      writer=self.writer, key=key)
            )

    def sync(self) -> int:
        """Index entries present in the archive but not locally; returns how many were added."""
        with self._lock:
            return self._sync_locked()

    def _sync_locked(self) -> int:
        head_seq, _head_hash = self._head()
        self.publish_key()
        public = self.private_key.public_key()
        added = 0
        prefix = keys.ledger_prefix(self.writer)
        listed = [parsed[1] for key in self.store.list_keys(prefix)
                  if (parsed := keys.parse_ledger_key(key)) is not None]
        self._check_listing(set(listed), head_seq)
        for seq in sorted(listed):
            if seq <= head_seq:
                continue
            key = keys.ledger_key(self.writer, seq)
            head = Head(*self._head())
            checked = check_entry(self.writer, seq, self.store.get_bytes(key), public, head)
            if not checked.verified or checked.read.entry is None:
                problems = "; ".join(problem.message for problem in checked.problems)
                raise IntegrityError(_("{key}: does not continue this writer's chain ({problems})").format(
                    key=key, problems=problems))
            self._index(dict(checked.read.entry))
            self._noted(dict(checked.read.entry))
            added += 1
        self._synced = True
        if added:
            log.info("ledger: indexed %d entries found in the archive", added)
        return added

    # -- the end of the chain -------------------------------------------------------------

    def _check_listing(self, listed: set[int], head_seq: int) -> None:
        """At sync: does the archive still hold the indexed head and latest checkpoint?"""
        missing = [seq for seq in (head_seq, self._latest_checkpoint_seq())
                   if seq and seq not in listed]
        if missing:
            self._tail_lost(head_seq, missing[0], _("is gone"))
        self._tail_fine()

    def check_tail(self) -> None:
        """Look at the chain's end in the archive now (``IntegrityError`` when it is gone)."""
        with self._lock:
            self._check_tail_locked(force=True)

    def _check_tail_locked(self, *, force: bool = False) -> None:
        now = self.monotonic()
        recent = (self._tail_checked_at is not None
                  and now - self._tail_checked_at < self.tail_check_s)
        if recent and not force:
            if self.tail_missing is not None:
                raise IntegrityError(self.tail_missing)
            return
        head_seq, head_hash = self._head()
        if head_seq == 0:
            self._tail_fine()
            return
        try:
            stored = self.store.get_bytes(keys.ledger_key(self.writer, head_seq))
        except ObjectMissingError:
            self._tail_lost(head_seq, head_seq, _("is gone"))
        try:
            body, _signature = canonical.parse_stored(stored)
            same = canonical.entry_hash(body) == head_hash
        except ValueError:
            same = False
        if not same:
            self._tail_lost(head_seq, head_seq, _("was replaced by another"))
        checkpoint = self._latest_checkpoint_seq()
        if checkpoint and checkpoint != head_seq and self.store.stat(
                keys.ledger_key(self.writer, checkpoint)) is None:
            self._tail_lost(head_seq, checkpoint, _("is gone"))
        self._tail_fine()

    def _tail_fine(self) -> None:
        if self.tail_missing is not None:
            log.warning(_("ledger %s: the end of the chain is back in the archive; appending again"), self.writer)
        self.tail_missing = None
        self._tail_checked_at = self.monotonic()

    def _tail_lost(self, head_seq: int, seq: int, how: str) -> NoReturn:
        message = _(
            "ledger {writer}: entry {seq} of this writer's chain {how} in the archive "
            "{location}, but this node wrote {head_seq} entries: entries were "
            "removed from the end of its custody chain. Refusing to append (that would hide "
            "the gap). Restore the missing ledger objects from a replica or backup and run "
            "`evidence-daemon verify`.").format(writer=self.writer, seq=seq, how=how,
                                                location=self.store.location, head_seq=head_seq)
        if self.tail_missing != message:
            log.error("%s", message)
        self.tail_missing = message
        self._tail_checked_at = self.monotonic()
        raise IntegrityError(message)

    def _latest_checkpoint_seq(self) -> int:
        if self._latest_checkpoint is None:
            self._latest_checkpoint = int(self.database.scalar(
                "SELECT COALESCE(MAX(seq), 0) FROM ledger WHERE writer = ? AND event = ?",
                (self.writer, str(Event.CHECKPOINT))))
        return self._latest_checkpoint

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
            raise IntegrityError(_("ledger {writer}: the local index does not hold entries "
                                   "1..head without gaps; run verify").format(writer=self.writer))
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
            raise IntegrityError(_("ledger {writer}: a {role} does not sign '{event}' events").format(
                writer=self.writer, role=self.role, event=event))
        details = _english(details)  # a reason quoted from an error: its English source
        with self._lock:
            self._ready_locked(register=event is not Event.KEY_REGISTERED)
            return self._append_locked(event, recording=recording, actor=actor,
                                       details=details, once=once)

    def _ready_locked(self, *, register: bool = True, force_tail: bool = False) -> None:
        """Before an append: synced with the archive, the chain's end still there, the key
        registered."""
        if not self._synced:
            self._sync_locked()
        else:
            self._check_tail_locked(force=force_tail)
        if register and not self._registered():
            self._append_locked(
                Event.KEY_REGISTERED, recording=None, actor=f"{self.role}:{self.writer}",
                details=registration_details(self.role, fingerprint(self.private_key),
                                             self.writer), once=False)

    # -- checkpoints and witnesses --------------------------------------------------------

    def checkpoint(self, *, actor: str) -> dict[str, Any] | None:
        """Sign the tree head of this chain as its next entry; None when the chain already
        ends with a checkpoint (nothing to add). Always looks at the chain's end first."""
        with self._lock:
            self._ready_locked(force_tail=True)
            if self._head_event() == Event.CHECKPOINT:
                return None

            def details(seq: int, prev: str) -> dict[str, Any]:
                return checkpoint_details(self._tree_to(seq), Head(seq, prev))

            return self._append_locked(Event.CHECKPOINT, recording=None, actor=actor,
                                       details=details, once=False)

    def entries_since_checkpoint(self) -> int:
        """Entries appended after this writer's latest checkpoint (all, when it has none)."""
        return self._head()[0] - self._latest_checkpoint_seq()

    def witnessed(self) -> dict[str, int]:
        """The latest checkpoint seq this writer has witnessed, per other writer."""
        if self._witnessed is None:
            self._witnessed = {}
            for row in self.database.query(
                    "SELECT details FROM ledger WHERE writer = ? AND event = ?",
                    (self.writer, str(Event.WITNESSED))):
                details = json.loads(row["details"])
                writer, seq = details.get("writer"), details.get("checkpoint_seq")
                if isinstance(writer, str) and isinstance(seq, int):
                    self._witnessed[writer] = max(seq, self._witnessed.get(writer, 0))
        return dict(self._witnessed)

    def witness(self, seen: SeenCheckpoint, *, actor: str) -> dict[str, Any] | None:
        """Record another writer's checkpoint; None when it is not newer than one recorded."""
        if seen.writer == self.writer or seen.checkpoint_seq <= self.witnessed().get(seen.writer, 0):
            return None
        return self.append(Event.WITNESSED, recording=None, actor=actor,
                           details=witness_details(seen))

    def _head_event(self) -> str | None:
        row = self.database.query_one(
            "SELECT event FROM ledger WHERE writer = ? ORDER BY seq DESC LIMIT 1", (self.writer,))
        return str(row["event"]) if row is not None else None

    def _tree_to(self, size: int) -> CompactTree:
        """The tree of entries 1..size, extended from the index."""
        tree = self._tree if self._tree.size <= size else CompactTree()
        for row in self.database.query(
                "SELECT seq, entry_hash FROM ledger WHERE writer = ? AND seq > ? AND seq <= ?"
                " ORDER BY seq", (self.writer, tree.size, size)):
            if row["seq"] != tree.size + 1:
                raise StateError(_("ledger index of {writer} lacks entry {size}: cannot sign a "
                                   "checkpoint").format(writer=self.writer, size=tree.size + 1))
            tree = tree.append(entry_leaf_hash(str(row["entry_hash"])))
        if tree.size != size:
            raise StateError(_("ledger index of {writer} ends at {size}, not {size2}").format(
                writer=self.writer, size=tree.size, size2=size))
        self._tree = tree
        return tree

    def _append_locked(self, event: Event, *, recording: str | None, actor: str,
                       details: dict[str, Any] | Callable[[int, str], dict[str, Any]],
                       once: bool) -> dict[str, Any]:
        """``details`` may be a function of the head (seq, hash) the entry follows, for
        entries that describe the chain before them (checkpoints)."""
        if once and not callable(details):
            details = {**details, "once": True}
            existing = self.find(event, recording, details)
            if existing is not None:
                return existing
        for _attempt in range(3):
            seq, prev = self._head()
            entry = {
                "seq": seq + 1,
                "prev": prev,
                "time": format_time(self.clock()),
                "writer": self.writer,
                "event": str(event),
                "recording": recording,
                "actor": actor,
                "details": details(seq, prev) if callable(details) else details,
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
                if once and not callable(details) and (
                        existing := self.find(event, recording, details)) is not None:
                    return existing
                continue
            failpoint("ledger.after_write")
            self._index(entry)
            self._noted(entry)
            return entry
        raise StorageError(_("ledger {writer}: could not append {event} after 3 tries").format(
            writer=self.writer, event=event))

    def _noted(self, entry: dict[str, Any]) -> None:
        """Keep the cached latest checkpoint and witnesses in step with an indexed entry."""
        if entry["event"] == Event.CHECKPOINT:
            self._latest_checkpoint = int(entry["seq"])
        elif entry["event"] == Event.WITNESSED and self._witnessed is not None:
            details = entry["details"]
            writer, seq = details.get("writer"), details.get("checkpoint_seq")
            if isinstance(writer, str) and isinstance(seq, int):
                self._witnessed[writer] = max(seq, self._witnessed.get(writer, 0))


def _english(value: Any) -> Any:
    """``value`` with every translated text replaced by its English source (``i18n``): entries
    read the same whatever language the station speaks."""
    if isinstance(value, dict):
        return {key: _english(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_english(item) for item in value]
    return str(untranslated(value)) if isinstance(value, str) else value
