"""The custody verification core: what a ledger entry is, which events exist, which writer may
sign which, and how one writer's chain is checked. Pure functions over bytes and keys.

Every checker of custody uses this module and no other rule: the ledger writer reading its own
chain back (``ledger.py``), offline ``verify`` (``verify.py``), the API node's catalog
(``api/indexer.py``) and evidence packages (``api/package.py``, export and verification). Five
hand-written copies of "check signature, sequence and link" are five chances to disagree in
court.

An entry (``canonical.py`` has its bytes) is checked in two steps:

- ``read_entry``: on its own — it parses, its fields have their types, its ``seq`` and
  ``writer`` are those of the key it is stored under, and its Ed25519 signature checks with the
  writer's key.
- ``link_entry``: against the chain read so far (a ``Head``) — it is entry ``head.seq + 1`` and
  its ``prev`` is the hash of the entry at the head.

``check_chain`` does both over a whole run of stored entries. Who may sign what is decided by
``judge_writer``: a writer's role comes from its signed ``key-registered`` entry (or, for a chain
written before registrations existed, is inferred from its events and said to be), and a key is
believed only when it is one of the trust anchors (``trust.py``) given out of band.

Completeness: a hash chain proves order, not that nothing was cut off its end. Writers sign
``checkpoint`` entries (the RFC 9162 tree head of their chain so far) and record the others'
in ``witnessed`` entries; ``check_checkpoints`` is the one comparison of a chain with
everything seen of it (its own checkpoints, other writers' witnesses, a checkpoint an auditor
saved, timestamp tokens): shorter means entries were removed, different means rewritten, and a
key other than the one registered in a witnessed prefix means a key change nothing explains.
``compare_with_witness`` is its building block (and checks a station's chain against its own
index).

What this module must never do: take a key, a role or a trust decision from an entry alone;
read local state; accept an entry whose signature, place or link does not check.

Why one file of ~700 lines: it is the whole of what "this chain of custody checks" means, and
the expert a court asks to review it should read it top to bottom in one place — vocabulary,
entry checks, checkpoint comparison, writer judgement — without chasing rules across modules.
Everything it needs beyond the standard library is ``canonical`` (bytes) and ``merkle`` (trees).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, TypedDict

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ..archive import keys
from . import canonical
from .merkle import CompactTree, entry_leaf_hash
from .signing import signature_valid
from ..i18n import _, word


_HEX64 = re.compile(r"[0-9a-f]{64}")


class Event(StrEnum):
    """Every event a ledger entry may carry. A station or API node appends only these."""

    KEY_REGISTERED = "key-registered"  # a writer's own role and key, signed by that key
    # every role: a signed tree head of the writer's own chain, and one seen of another's
    CHECKPOINT = "checkpoint"
    WITNESSED = "witnessed"
    # station: acquisition, archival, derivation, devices, wipes, inbox
    ACQUIRED = "acquired"
    ARCHIVED = "archived"
    DERIVED = "derived"
    DUPLICATE_SOURCE = "duplicate-source"
    QUARANTINED = "quarantined"
    SET_ASIDE = "set-aside"
    FLAGGED = "flagged"
    FIXITY_FAILED = "fixity-failed"
    DEVICE_REGISTERED = "device-registered"
    DEVICE_DOCKED = "device-docked"
    DEVICE_ASSIGNED = "device-assigned"
    WIPED = "wiped"
    INBOX_MOVED = "inbox-moved"
    INBOX_REMOVED = "inbox-removed"
    # API node: access, export, annotation
    ACCESSED = "accessed"
    ACCESS_FAILED = "access-failed"
    EXPORTED = "exported"
    VERIFIED = "verified"
    HOLD_PLACED = "hold-placed"
    HOLD_RELEASED = "hold-released"
    CASE_LINKED = "case-linked"
    CASE_UNLINKED = "case-unlinked"
    NOTE_ADDED = "note-added"
    RETENTION_EXTENDED = "retention-extended"
    # API node: dispatch records, coverage links, review samples (incidents/, api/incidents.py)
    INCIDENTS_IMPORTED = "incidents-imported"
    INCIDENT_LINK_REJECTED = "incident-link-rejected"
    REVIEW_REQUESTED = "review-requested"
    REVIEW_SAMPLED = "review-sampled"
    REVIEWED = "reviewed"


class Role(StrEnum):
    STATION = "station"
    API = "api"


ROLE_EVENTS: Mapping[Role, frozenset[Event]] = {
    Role.STATION: frozenset({
        Event.KEY_REGISTERED, Event.CHECKPOINT, Event.WITNESSED, Event.ACQUIRED, Event.ARCHIVED, Event.DERIVED,
        Event.DUPLICATE_SOURCE, Event.QUARANTINED, Event.SET_ASIDE, Event.FLAGGED,
        Event.FIXITY_FAILED, Event.DEVICE_REGISTERED, Event.DEVICE_DOCKED,
        Event.DEVICE_ASSIGNED, Event.WIPED, Event.INBOX_MOVED, Event.INBOX_REMOVED,
    }),
    Role.API: frozenset({
        Event.KEY_REGISTERED, Event.CHECKPOINT, Event.WITNESSED, Event.ACCESSED, Event.ACCESS_FAILED, Event.EXPORTED,
        Event.VERIFIED, Event.HOLD_PLACED, Event.HOLD_RELEASED, Event.CASE_LINKED,
        Event.CASE_UNLINKED, Event.NOTE_ADDED, Event.RETENTION_EXTENDED,
        Event.INCIDENTS_IMPORTED, Event.INCIDENT_LINK_REJECTED, Event.REVIEW_REQUESTED,
        Event.REVIEW_SAMPLED, Event.REVIEWED,
    }),
}


def event_of(name: str) -> Event | None:
    """The event an entry names, or None for a name outside the vocabulary."""
    try:
        return Event(name)
    except ValueError:
        return None


def may_sign(role: Role, event: str) -> bool:
    kind = event_of(event)
    return kind is not None and kind in ROLE_EVENTS[role]


class Entry(TypedDict):
    """A ledger entry whose fields have their types (``read_entry`` checked them)."""

    seq: int
    prev: str
    time: str
    writer: str
    event: str
    recording: str | None
    actor: str
    details: dict[str, Any]


# -- problems ---------------------------------------------------------------------------------


class ProblemKind(StrEnum):
    UNREADABLE = "unreadable"  # not a signed ledger entry at all
    MALFORMED = "malformed"  # fields of the wrong type
    MISPLACED = "misplaced"  # seq or writer inside differ from its key
    SIGNATURE = "signature"  # does not verify with the writer's key
    GAP = "gap"  # entries missing before this one
    BROKEN_LINK = "broken-link"  # prev is not the hash of the entry before
    UNLINKABLE = "unlinkable"  # the entry before could not be read
    KEY = "key"  # the writer's public key is missing or invalid
    UNTRUSTED = "untrusted"  # the writer's key is not a trust anchor
    ROLE = "role"  # signed outside the writer's role, or a bad registration
    WITNESS = "witness"  # shorter than, or diverging from, a head seen earlier; key changed
    TIMESTAMP = "timestamp"  # an RFC 3161 token that does not verify or belongs to nothing
    CONTENT = "content"  # about what an entry describes (manifest, original, copies)
    CONFLICT = "conflict"  # entries that contradict each other


@dataclass(frozen=True)
class Problem:
    """One thing that does not hold. ``subject`` is the archive key (or package member)
    concerned; ``recording`` the recording it affects, if any."""

    subject: str
    message: str
    recording: str | None = None
    kind: ProblemKind = ProblemKind.CONTENT
    writer: str | None = None

    def __str__(self) -> str:
        who = f"recording {self.recording[:12]}: " if self.recording else ""
        return f"{who}{self.subject}: {self.message}"


# -- one entry --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Head:
    """Where a writer's chain has been read to: what a checkpoint signs. ``hash`` is '' when
    the entry at ``seq`` could not be read (the next ``prev`` cannot be checked), None when
    the chain is read from the middle and the entry before is not at hand."""

    seq: int
    hash: str | None


GENESIS = Head(0, canonical.GENESIS_PREV)


@dataclass(frozen=True)
class ReadEntry:
    """A stored entry checked on its own (not yet against the chain before it)."""

    writer: str
    seq: int  # from its key
    entry: Entry | None  # None when it could not be parsed or has fields of the wrong type
    raw: dict[str, Any] | None  # the parsed fields as stored (also when of the wrong type)
    signature: bytes
    entry_hash: str  # canonical hash; SHA-256 of the stored bytes when unparsable
    signed: bool  # the signature checks with the key given
    problems: tuple[Problem, ...]

    @property
    def readable(self) -> bool:
        return self.raw is not None

    @property
    def recording(self) -> str | None:
        value = self.raw.get("recording") if self.raw is not None else None
        return value if isinstance(value, str) else None


def _typed(body: dict[str, Any]) -> list[str]:
    """Names of the fields that do not have their types."""
    wrong = [name for name in ("prev", "time", "writer", "event", "actor")
             if not isinstance(body[name], str)]
    if not isinstance(body["seq"], int) or isinstance(body["seq"], bool):
        wrong.append("seq")
    if body["recording"] is not None and not isinstance(body["recording"], str):
        wrong.append("recording")
    if not isinstance(body["details"], dict):
        wrong.append("details")
    return sorted(wrong)


def read_entry(writer: str, seq: int, data: bytes, public_key: Ed25519PublicKey | None,
               *, key_note: str = "") -> ReadEntry:
    """Parse the stored bytes of ``ledger/<writer>/<seq>.json`` and check its signature with
    the writer's key (None: the key is missing; reported by the caller). ``key_note`` is
    added to a failed signature's message (e.g. that the archive now holds another key)."""
    subject = keys.ledger_key(writer, seq)

    def problem(kind: ProblemKind, message: str, recording: str | None = None) -> Problem:
        return Problem(subject, message, recording, kind, writer)

    try:
        body, signature = canonical.parse_stored(data)
    except ValueError as exc:
        return ReadEntry(writer, seq, None, None, b"", hashlib.sha256(data).hexdigest(), False,
                         (problem(ProblemKind.UNREADABLE,
                                  _("not a valid ledger entry ({exc}): altered or damaged").format(
                                      exc=exc)),))
    recording = body["recording"] if isinstance(body["recording"], str) else None
    problems: list[Problem] = []
    wrong = _typed(body)
    if wrong:
        problems.append(problem(ProblemKind.MALFORMED,
                                _("fields of the wrong type: {join}").format(
                                    join=', '.join(wrong)), recording))
    elif body["seq"] != seq or body["writer"] != writer:
        problems.append(problem(ProblemKind.MISPLACED, _("seq or writer inside ({writer}#{seq}) "
                                                         "does not match its key").format(
                                                             writer=body['writer'], seq=body['seq']), recording))
    canonical_body = canonical.canonical_bytes(body)
    signed = public_key is not None and signature_valid(public_key, signature, canonical_body)
    if public_key is not None and not signed:
        problems.append(problem(ProblemKind.SIGNATURE, _("signature does not verify with the "
                                                         "writer's key: the entry was "
                                                         "altered{key_note}").format(
                                                             key_note=key_note), recording))
    entry: Entry | None = None
    if not wrong:
        entry = Entry(seq=body["seq"], prev=body["prev"], time=body["time"],
                      writer=body["writer"], event=body["event"], recording=body["recording"],
                      actor=body["actor"], details=body["details"])
    return ReadEntry(writer, seq, entry, body, signature,
                     hashlib.sha256(canonical_body).hexdigest(), signed, tuple(problems))


def _missing_text(writer: str, first: int, last: int) -> str:
    if first == last:
        return f"entry {first} of writer {writer} is missing before this one"
    return f"entries {first}..{last} of writer {writer} are missing before this one"


@dataclass(frozen=True)
class CheckedEntry:
    """An entry checked on its own and against the chain before it."""

    read: ReadEntry
    problems: tuple[Problem, ...]  # the entry's own, then its link's

    @property
    def verified(self) -> bool:
        """Signed by the writer's key, in its place, linked: it may be relied on (as far as
        the key itself is trusted: ``judge_writer``)."""
        return not self.problems and self.read.entry is not None

    @property
    def head(self) -> Head:
        """The chain read up to and including this entry."""
        return Head(self.read.seq, self.read.entry_hash if self.read.readable else "")


def link_problems(read: ReadEntry, head: Head) -> list[Problem]:
    """Is ``read`` the entry after ``head``, and does its ``prev`` point at it?"""
    subject = keys.ledger_key(read.writer, read.seq)
    recording = read.recording
    problems: list[Problem] = []
    if read.seq != head.seq + 1:
        problems.append(Problem(subject, _missing_text(read.writer, head.seq + 1, read.seq - 1),
                                recording, ProblemKind.GAP, read.writer))
    elif read.raw is not None and head.hash is not None:
        if not head.hash:
            problems.append(Problem(subject, _("prev cannot be checked: entry {seq} before it is "
                                               "unreadable").format(
                                                   seq=head.seq), recording, ProblemKind.UNLINKABLE,
                                    read.writer))
        elif read.raw["prev"] != head.hash:
            problems.append(Problem(subject, _("prev does not match the hash of entry {seq}: the "
                                               "chain is broken").format(seq=head.seq), recording,
                                    ProblemKind.BROKEN_LINK, read.writer))
    return problems


def link_entry(read: ReadEntry, head: Head) -> CheckedEntry:
    """Check an entry against the chain read so far; gaps are named before the entry's own
    problems."""
    link = link_problems(read, head)
    gaps = [item for item in link if item.kind is ProblemKind.GAP]
    rest = [item for item in link if item.kind is not ProblemKind.GAP]
    return CheckedEntry(read, tuple(gaps + list(read.problems) + rest))


def check_entry(writer: str, seq: int, data: bytes, public_key: Ed25519PublicKey | None,
                head: Head, *, key_note: str = "") -> CheckedEntry:
    """``read_entry`` then ``link_entry``: everything about one stored entry."""
    return link_entry(read_entry(writer, seq, data, public_key, key_note=key_note), head)


# -- one chain --------------------------------------------------------------------------------


@dataclass
class ChainResult:
    """One writer's run of entries, checked."""

    writer: str
    checked: list[CheckedEntry] = field(default_factory=list)
    head: Head = GENESIS

    @property
    def problems(self) -> list[Problem]:
        return [problem for item in self.checked for problem in item.problems]

    @property
    def verified(self) -> list[Entry]:
        """The entries that may be relied on, in chain order."""
        return [item.read.entry for item in self.checked
                if item.verified and item.read.entry is not None]

    @property
    def heads(self) -> dict[int, str]:
        """seq -> entry hash of every readable entry, to compare with a witnessed head."""
        return {item.read.seq: item.read.entry_hash for item in self.checked if item.read.readable}


def check_chain(writer: str, stored: Iterable[tuple[int, bytes]],
                public_key: Ed25519PublicKey | None, *, start: Head = GENESIS) -> ChainResult:
    """Check entries (seq, stored bytes) of one writer in ascending seq, from ``start`` (the
    genesis for a whole chain; ``Head(first - 1, None)`` for a run from the middle)."""
    result = ChainResult(writer, head=start)
    for seq, data in stored:
        checked = check_entry(writer, seq, data, public_key, result.head)
        result.checked.append(checked)
        result.head = checked.head
    return result


def compare_with_witness(writer: str, heads: Mapping[int, str], witnessed: Head,
                         *, witness: str) -> Problem | None:
    """A chain against a head seen earlier (by ``witness``: a station's own index, another
    writer's checkpoint, an auditor's saved checkpoint): it must reach that far and hold that
    entry there. Tail truncation shows only this way."""
    subject = keys.ledger_prefix(writer)
    last = max(heads, default=0)
    if last < witnessed.seq:
        return Problem(subject, _("the archive holds {last} entries of writer {writer} but "
                                  "{witness} saw {seq}: entries were removed").format(
                                      last=last, writer=writer, witness=witness, seq=witnessed.seq),
                       kind=ProblemKind.WITNESS, writer=writer)
    if witnessed.hash and witnessed.seq and heads.get(witnessed.seq) not in (None, witnessed.hash):
        return Problem(subject, _("entry {seq} of writer {writer} is not the one {witness} saw: "
                                  "the chain was rewritten").format(
                                      seq=witnessed.seq, writer=writer, witness=witness),
                       kind=ProblemKind.WITNESS, writer=writer)
    return None


# -- checkpoints and witnesses ----------------------------------------------------------------
#
# A checkpoint is entry N+1 of a writer's own chain signing the RFC 9162 tree head of entries
# 1..N (``checkpoint_details``); a witness is an entry of another writer recording that
# checkpoint as it saw it (``witness_details``). The format is /work/checkpoint-format.md's
# (docs/architecture.md, "Checkpoints"). ``check_checkpoints`` is the one place a chain is
# compared with the checkpoints seen of it: by other writers, by an auditor who saved one, by a
# time-stamping authority's token.


def checkpoint_details(tree: CompactTree, head: Head) -> dict[str, Any]:
    """What a checkpoint entry says: the tree head of entries 1..N and entry N itself."""
    if tree.size != head.seq or not head.hash:
        raise ValueError(_("tree of {size} entries does not end at entry {seq}").format(
            size=tree.size, seq=head.seq))
    return {"tree_size": tree.size, "root_hash": tree.root().hex(), "head_seq": head.seq,
            "head_hash": head.hash}


@dataclass(frozen=True)
class SeenCheckpoint:
    """A checkpoint of ``writer``'s chain as someone saw it: its entry (seq and hash) and the
    tree head it signs. ``witness`` says who saw it, for messages; ``fingerprint`` is the
    writer's key as that witness knew it, when it says (a saved checkpoint file). A
    checkpoint known only to have existed (a timestamp token for it) has hash and root ''."""

    writer: str
    checkpoint_seq: int
    checkpoint_hash: str
    tree_size: int
    root_hash: str
    witness: str
    fingerprint: str | None = None


def _size(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def _hex(value: Any) -> str | None:
    return value if isinstance(value, str) and _HEX64.fullmatch(value) else None


def checkpoint_seen(writer: str, seq: int, entry_hash: str, details: Mapping[str, Any], *,
                    witness: str, fingerprint: str | None = None) -> SeenCheckpoint | None:
    """A checkpoint entry (its seq, hash and details) as a ``SeenCheckpoint``; None when its
    details are not a checkpoint's."""
    size, root = _size(details.get("tree_size")), _hex(details.get("root_hash"))
    if size is None or root is None:
        return None
    return SeenCheckpoint(writer, seq, entry_hash, size, root, witness, fingerprint)


def witness_details(seen: SeenCheckpoint) -> dict[str, Any]:
    """What a ``witnessed`` entry says about another writer's checkpoint."""
    return {"writer": seen.writer, "checkpoint_seq": seen.checkpoint_seq,
            "checkpoint_hash": seen.checkpoint_hash, "tree_size": seen.tree_size,
            "root_hash": seen.root_hash}


def witnessed_checkpoint(entry: Entry) -> SeenCheckpoint | None:
    """The checkpoint a (verified) ``witnessed`` entry records; None for anything else."""
    details = entry["details"]
    if entry["event"] != Event.WITNESSED:
        return None
    writer, seq = details.get("writer"), _size(details.get("checkpoint_seq"))
    checkpoint_hash, size = _hex(details.get("checkpoint_hash")), _size(details.get("tree_size"))
    root = _hex(details.get("root_hash"))
    if (not isinstance(writer, str) or not keys.is_writer(writer) or not seq
            or checkpoint_hash is None or size is None or root is None):
        return None
    return SeenCheckpoint(writer, seq, checkpoint_hash, size, root,
                          f"writer {entry['writer']}'s witness entry {entry['seq']}")


def prefix_roots(heads: Mapping[int, str], sizes: Iterable[int]) -> dict[int, str]:
    """The RFC 9162 root (hex) of entries 1..size for each size whose entries are all readable
    (``ChainResult.heads``); one pass over the chain for all sizes."""
    wanted = sorted(set(sizes))
    roots: dict[int, str] = {}
    tree = CompactTree()
    for size in wanted:
        while tree.size < size:
            entry_hash = heads.get(tree.size + 1)
            if entry_hash is None:
                return roots
            tree = tree.append(entry_leaf_hash(entry_hash))
        roots[size] = tree.root().hex()
    return roots


def _registered_key(result: ChainResult, upto: int) -> tuple[int, str] | None:
    """(seq, fingerprint) of the last readable key-registered entry at or before ``upto``."""
    found = None
    for item in result.checked:
        raw = item.read.raw
        if item.read.seq > upto:
            break
        if (raw is not None and raw.get("event") == Event.KEY_REGISTERED
                and isinstance(raw.get("details"), dict)):
            found = (item.read.seq, str(raw["details"].get("fingerprint")))
    return found


def check_checkpoints(result: ChainResult, key_fingerprint: str | None,
                      seen: Sequence[SeenCheckpoint]) -> list[Problem]:
    """One writer's chain against its own checkpoints and every checkpoint seen of it.

    - each of its own checkpoint entries must sign the tree head of the entries before it;
    - the chain must reach every checkpoint seen (else entries were removed from its end),
      hold that very checkpoint entry there, and its first ``tree_size`` entries must have the
      root the checkpoint signed (else the chain was rewritten: an RFC 9162 consistency check,
      done by recomputing the root since the whole chain is at hand);
    - the key must be the one the chain registered up to the latest checkpoint seen intact
      (and the one a saved checkpoint names): a key change no witnessed key-registered entry
      explains. (Writers never rotate keys yet, so any change is unexplained.)

    One problem per kind and writer, naming the strongest evidence."""
    writer = result.writer
    subject = keys.ledger_prefix(writer)
    heads = result.heads
    own: list[tuple[int, Mapping[str, Any]]] = [
        (item.read.seq, item.read.entry["details"]) for item in result.checked
        if item.verified and item.read.entry is not None
        and item.read.entry["event"] == Event.CHECKPOINT]
    sizes = [size for _, details in own if (size := _size(details.get("tree_size"))) is not None]
    sizes += [item.tree_size for item in seen if item.root_hash]
    roots = prefix_roots(heads, sizes)
    problems: list[Problem] = []

    for seq, details in own:
        size, root = _size(details.get("tree_size")), _hex(details.get("root_hash"))
        head_hash = details.get("head_hash")
        if (size != seq - 1 or details.get("head_seq") != seq - 1 or root is None
                or (seq - 1 in heads and head_hash != heads[seq - 1])
                or (size in roots and roots[size] != root)):
            problems.append(Problem(keys.ledger_key(writer, seq), _("checkpoint entry {seq} of writer "
                                                                    "{writer} does not sign the tree head "
                                                                    "of the {seq2} entries before it").format(
                                                                        seq=seq, writer=writer, seq2=seq - 1), kind=ProblemKind.WITNESS,
                                    writer=writer))
            break

    last = max(heads, default=0)
    beyond = [item for item in seen if item.checkpoint_seq > last]
    if beyond:
        farthest = max(beyond, key=lambda item: item.checkpoint_seq)
        cut = compare_with_witness(writer, heads, Head(farthest.checkpoint_seq, None),
                                   witness=farthest.witness)
        if cut is not None:
            others = len(beyond) - 1
            more = f"; {others} other checkpoint(s) seen beyond its end" if others else ""
            problems.append(Problem(cut.subject, cut.message + more, kind=ProblemKind.WITNESS,
                                    writer=writer))

    intact: list[SeenCheckpoint] = []
    diverged: list[tuple[SeenCheckpoint, str]] = []
    for item in sorted(seen, key=lambda item: item.checkpoint_seq):
        if item.checkpoint_seq > last or not item.checkpoint_hash:
            continue
        differs = compare_with_witness(writer, heads, Head(item.checkpoint_seq,
                                                           item.checkpoint_hash),
                                       witness=item.witness)
        if differs is None and item.tree_size in roots and roots[item.tree_size] != item.root_hash:
            differs = Problem(subject, "", kind=ProblemKind.WITNESS, writer=writer)
        if differs is None:
            intact.append(item)
        else:
            diverged.append((item, "the entry there differs" if differs.message
                             else "its first entries have another tree root"))
    if diverged:
        item, how = diverged[0]
        more = f"; {len(diverged) - 1} other seen checkpoint(s) differ too" if len(diverged) > 1 else ""
        problems.append(Problem(subject, _("the chain of writer {writer} diverges from its "
                                           "checkpoint {checkpoint_seq} (tree of {tree_size} "
                                           "entries) seen by {witness}: {how}; the chain was "
                                           "rewritten or re-signed{more}").format(
                                               writer=writer, checkpoint_seq=item.checkpoint_seq, tree_size=item.tree_size, witness=item.witness, how=how, more=more), kind=ProblemKind.WITNESS,
                                writer=writer))

    if key_fingerprint is not None:
        named = [item for item in seen if item.fingerprint is not None
                 and item.fingerprint != key_fingerprint]
        if named:
            item = named[0]
            problems.append(Problem(keys.public_key_key(writer), _("key of writer {writer} changed: "
                                                                   "{witness} knew {fingerprint}, the "
                                                                   "archive holds {key_fingerprint}").format(
                                                                       writer=writer, witness=item.witness, fingerprint=item.fingerprint, key_fingerprint=key_fingerprint), kind=ProblemKind.WITNESS,
                                    writer=writer))
        elif intact:
            latest = intact[-1]
            registered = _registered_key(result, latest.checkpoint_seq)
            if registered is not None and registered[1] != key_fingerprint:
                problems.append(Problem(
                    keys.public_key_key(writer), _("key of writer {writer} changed: its chain up "
                                                   "to checkpoint {checkpoint_seq} (seen by "
                                                   "{witness}) registers key {registered} (entry "
                                                   "{registered2}), the archive holds "
                                                   "{key_fingerprint}; no witnessed key "
                                                   "registration explains the change").format(
                                                       writer=writer, checkpoint_seq=latest.checkpoint_seq, witness=latest.witness, registered=registered[1], registered2=registered[0], key_fingerprint=key_fingerprint),
                    kind=ProblemKind.WITNESS, writer=writer))
    return problems


# -- who may sign what ------------------------------------------------------------------------


@dataclass(frozen=True)
class WriterJudgement:
    """What a verifier may believe of one writer's verified entries."""

    writer: str
    fingerprint: str
    role: Role | None  # None: unknown (signs events of both roles, or none known)
    registered: bool  # the role comes from a signed key-registered entry (else inferred)
    trusted: bool | None  # None: no trust anchors were given (consistency only)
    problems: tuple[Problem, ...]
    counts: frozenset[int]  # seqs of the entries that count (trusted and in role)

    def note(self) -> str:
        role = (_("role {role}").format(role=word(self.role)) if self.role is not None
                else _("role unknown"))
        how = (_("registered") if self.registered
               else _("inferred from its events (no key-registered entry)"))
        trust = (_("trusted") if self.trusted else _("NOT TRUSTED") if self.trusted is False
                 else _("not compared with trust anchors"))
        return _("{role}, {how}; key {trust}").format(role=role, how=how, trust=trust)


def registration_details(role: Role, key_fingerprint: str, writer: str) -> dict[str, Any]:
    """What a writer's ``key-registered`` entry says (signed by the key it names)."""
    return {"role": str(role), "fingerprint": key_fingerprint,
            "public_key": keys.public_key_key(writer)}


def judge_entry(writer: str, key_fingerprint: str, role: Role | None, registered: bool,
                entry: Entry) -> tuple[Role | None, bool, Problem | None]:
    """One verified entry against the writer's role so far: (role, registered, problem).

    A ``key-registered`` entry names the role; it must name this key's fingerprint, and a
    role never changes. Before one (a chain written before registrations existed) the role is
    inferred from the first event only one role may sign. An entry outside the role is a
    problem. For readers that see a chain a batch at a time (the API catalog); ``judge_writer``
    runs it over a whole chain."""
    subject = keys.ledger_key(writer, entry["seq"])

    def problem(message: str) -> Problem:
        return Problem(subject, message, entry["recording"], ProblemKind.ROLE, writer)

    if entry["event"] == Event.KEY_REGISTERED:
        claimed = entry["details"].get("role")
        named = entry["details"].get("fingerprint")
        if named != key_fingerprint:
            return role, registered, problem(
                f"key-registered entry names key {named!r}, not {key_fingerprint}")
        if claimed not in tuple(Role):
            return role, registered, problem(f"key-registered entry names an unknown role "
                                             f"{claimed!r}")
        if role is not None and claimed != role:
            before = "registered" if registered else "signed events"
            return role, registered, problem(
                f"writer {writer} registers as {claimed}, but {before} as {role} before: a role "
                "never changes")
        return Role(claimed), True, None
    if role is None:
        signers = [candidate for candidate in Role if may_sign(candidate, entry["event"])]
        if len(signers) == 1:
            return signers[0], False, None
        if len(signers) > 1:  # checkpoints, witnesses: they tell nothing of the role
            return None, False, None
        return None, False, problem(f"'{entry['event']}' is an event outside the vocabulary: "
                                    "it does not count")
    if not may_sign(role, entry["event"]):
        known = event_of(entry["event"]) is not None
        return role, registered, problem(
            f"writer {writer} ({role}) signed '{entry['event']}', "
            + (f"which only a {_other(role)} may sign" if known
               else "an event outside the vocabulary") + ": it does not count")
    return role, registered, None


def untrusted_problem(writer: str, key_fingerprint: str) -> Problem:
    return Problem(keys.public_key_key(writer), _("key of writer {writer} is not trusted: "
                                                  "fingerprint {key_fingerprint} is not one of "
                                                  "the trust anchors; nothing it signed counts").format(
                                                      writer=writer, key_fingerprint=key_fingerprint), kind=ProblemKind.UNTRUSTED, writer=writer)


def judge_writer(writer: str, key_fingerprint: str, entries: Sequence[Entry],
                 trusted: bool | None) -> WriterJudgement:
    """Role and trust of one writer from its verified entries (in chain order): which of them
    count. Nothing of an untrusted writer counts, nor an entry outside the writer's role."""
    problems: list[Problem] = []
    role: Role | None = None
    registered = False
    counts: set[int] = set()
    for entry in entries:
        role, registered, problem = judge_entry(writer, key_fingerprint, role, registered, entry)
        if problem is not None:
            problems.append(problem)
        elif trusted is not False:
            counts.add(entry["seq"])
    if trusted is False:
        problems.append(untrusted_problem(writer, key_fingerprint))
    return WriterJudgement(writer, key_fingerprint, role, registered, trusted, tuple(problems),
                           frozenset(counts))


def _other(role: Role) -> Role:
    return Role.API if role is Role.STATION else Role.STATION
