"""The ledger checks of ``verify_package``, for both layouts a package may have.

Versions 1-2: per writer one contiguous, prev-linked run of entries, each signed and in full
or (version 2) a redaction stub; a run begins and ends with an entry about the package.
Version 3: every entry signed and proven by its RFC 9162 inclusion proof against a signed
checkpoint of its writer in the package, or declared (by the signed package.json) to come after
the writer's newest checkpoint; RFC 3161 tokens over checkpoints; writers' roles.

What must never happen here: a tree size or root taken from anything but the signed checkpoint
entry; an entry that does not verify counted for the recordings' checks; a stub trusted for
more than its link (what it hides rests on the exporter's signature, which the report says).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ...archive import keys
from ...custody import canonical, chain
from ...custody.chain import Event, Head, ProblemKind
from ...custody.proofs import SignedTreeHead, inclusion_problem, parse_proof, tree_head_of
from ...custody.signing import fingerprint
from ...custody.timestamp import verify_timestamp
from ...errors import IntegrityError
from .format import (
    PACKAGE_JSON,
    PROOFS_PREFIX,
    REDACTED_SUFFIX,
    is_relevant,
    parse_proof_name,
    parse_redacted_key,
    parse_stub,
)
from .members import CheckState
from ...i18n import _


@dataclass(frozen=True)
class _Link:
    """What the next entry's ``prev`` must equal, and the ledger file it comes from (None for
    the genesis value before a writer's first entry)."""

    entry_hash: str
    name: str | None = None
    redacted: bool = False



class LedgerCheck(CheckState):
    """The ledger part of the checks (``PackageCheck`` adds the rest)."""

    # ledger, versions 1-2: contiguous runs ---------------------------------------------

    def check_ledger(self, package: dict[str, Any] | None) -> None:
        by_writer: dict[str, list[tuple[int, str]]] = defaultdict(list)
        for name in self.members:
            if not name.startswith(keys.LEDGER_PREFIX):
                continue
            parsed = keys.parse_ledger_key(name) or parse_redacted_key(name)
            if parsed is None:
                self.unexpected(name, "unexpected file in ledger/")
                continue
            by_writer[parsed[0]].append((parsed[1], name))
        recordings = frozenset(self.report.recordings)
        described = package["exported_event"] if package is not None else {}
        exported_writer, exported_seq = described.get("writer"), described.get("seq")
        # A malformed exported_event is reported by check_exported.
        exported = ((exported_writer, exported_seq) if isinstance(exported_writer, str)
                    and isinstance(exported_seq, int) else None)

        def relevant(entry: Mapping[str, Any]) -> bool | None:
            """None when package.json does not say what the package is about."""
            return None if package is None else is_relevant(entry, recordings, exported)

        for writer, items in sorted(by_writer.items()):
            self.check_run(writer, self.one_per_seq(writer, sorted(items)), relevant)
        for writer in sorted(set(self.public_keys) - set(by_writer)):
            self.problem(keys.public_key_key(writer), _("a key without any ledger entry"))

    def one_per_seq(self, writer: str, items: list[tuple[int, str]]) -> list[tuple[int, str]]:
        """``items`` (sorted) with each seq once: a later file of the same seq (the stub
        beside a full entry) is reported and left out of the run."""
        run: list[tuple[int, str]] = []
        for seq, name in items:
            if run and run[-1][0] == seq:
                self.problem(name, _("entry {seq} of writer {writer!r} is also in {run}: an entry "
                                     "is either in full or redacted, never both").format(
                                         seq=seq, writer=writer, run=run[-1][1]))
                continue
            run.append((seq, name))
        return run

    def check_run(self, writer: str, run: list[tuple[int, str]],
                  relevant: Callable[[Mapping[str, Any]], bool | None]) -> None:
        public = self.public_keys.get(writer)
        if public is None:
            self.problem(keys.public_key_key(writer), _("missing or invalid: the {count} ledger "
                                                        "entries of writer {writer!r} cannot be "
                                                        "checked").format(
                                                            count=len(run), writer=writer))
        self.report.redacted[writer] = 0
        expected_seq = run[0][0]
        previous: _Link | None = _Link(canonical.GENESIS_PREV) if expected_seq == 1 else None
        for index, (seq, name) in enumerate(run):
            self.report.entries_checked += 1
            if seq != expected_seq:
                self.problem(name, _("entries {expected_seq}..{seq} of writer {writer!r} are "
                                     "missing: the run is not contiguous").format(
                                         expected_seq=expected_seq, seq=seq - 1, writer=writer))
                previous = None
            expected_seq = seq + 1
            end = "begins" if index == 0 else "ends" if index == len(run) - 1 else None
            if name.endswith(REDACTED_SUFFIX):
                self.report.redacted[writer] += 1
                if end is not None:
                    self.problem(name, _("the run of writer {writer!r} {end} with a redacted "
                                         "entry: a run begins and ends with a signed entry in full").format(
                                             writer=writer, end=end))
                previous = self.check_stub(writer, seq, name, previous)
                continue
            previous, entry = self.check_entry(writer, seq, name, public, previous)
            if end is not None and entry is not None and relevant(entry) is False:
                self.problem(name, _("the run of writer {writer!r} {end} with an entry about no "
                                     "recording of this package: it should not be in the package").format(
                                         writer=writer, end=end))

    def check_stub(self, writer: str, seq: int, name: str, previous: _Link | None) -> _Link | None:
        """A redaction stub: well-formed, and linked to what comes before. Whether its
        entry_hash is right, only the entry after it can tell (``check_entry``)."""
        stub = self.parsed(name, parse_stub, "redaction stub")
        if stub is None:
            return None
        if stub["seq"] != seq or stub["writer"] != writer:
            self.problem(name, _("seq or writer inside does not match its file name"))
        elif previous is not None and stub["prev"] != previous.entry_hash:
            before = (f"the entry_hash of {previous.name}: one of the two stubs was altered"
                      if previous.redacted
                      else "the hash of the entry before: the stub was altered"
                      if previous.name is not None
                      else "64 zeros, as for a writer's first entry: the stub was altered")
            self.problem(name, _("prev is not {before}").format(before=before))
        return _Link(stub["entry_hash"], name, redacted=True)

    def check_entry(self, writer: str, seq: int, name: str, public: Ed25519PublicKey | None,
                    previous: _Link | None) -> tuple[_Link | None, dict[str, Any] | None]:
        """A full entry: signature, place, link to what comes before. Returns its link and the
        entry (None, None when it cannot be parsed)."""
        read = chain.read_entry(writer, seq, self.data(name), public,
                                key_note=f" (keys/{writer}.pub)")
        if read.raw is None:
            self.problem(name, read.problems[0].message)
            return None, None
        # The core names the entry by its archive key, which is its name in the package too.
        for problem in read.problems:
            self.problem(name, problem.message, read.recording)
        head = Head(seq - 1, previous.entry_hash if previous is not None else None)
        link = chain.link_problems(read, head)
        verified = read.signed and not read.problems
        if link:
            if previous is not None and previous.redacted and read.signed:
                # The signed prev is right, so the stub before claims a wrong entry_hash.
                self.problem(previous.name or name, _("entry_hash is not the prev of the signed "
                                                      "entry {name} after it: the stub was altered").format(
                                                          name=name))
            else:
                for problem in link:
                    self.problem(name, problem.message, read.recording)
                verified = False
        entry = read.entry
        if verified and entry is not None and entry["event"] in (
                Event.ARCHIVED, Event.DERIVED, Event.EXPORTED):
            self.entries[(writer, seq)] = dict(entry)
        return _Link(read.entry_hash, name), read.raw

    # ledger, version 3: entries proven against checkpoints -------------------------------

    def proven_layout(self, package: dict[str, Any] | None) -> bool:
        """Version 3; without a readable package.json, judged by its members."""
        if package is not None:
            return bool(package["format_version"] == 3)
        return any(name.startswith((PROOFS_PREFIX, keys.CHECKPOINTS_PREFIX))
                   for name in self.members)

    def declared_uncovered(self, package: dict[str, Any] | None) -> dict[str, frozenset[int]]:
        """Per writer, the entries package.json says no checkpoint covers (signed by the
        exporter; a covered entry declared so is caught by ``check_writer_proofs``)."""
        declared: dict[str, frozenset[int]] = {}
        for item in package.get("ledger", []) if package is not None else ():
            writer = item.get("writer") if isinstance(item, dict) else None
            uncovered = item.get("uncovered") if isinstance(item, dict) else None
            if not isinstance(writer, str) or not isinstance(uncovered, list) or not all(
                    type(seq) is int for seq in uncovered):
                self.problem(PACKAGE_JSON, _("ledger item {item!r} does not name a writer and its "
                                             "uncovered entries").format(item=str(item)[:80]))
                continue
            declared[writer] = frozenset(uncovered)
        return declared

    def check_proven_ledger(self, package: dict[str, Any] | None) -> None:
        entries: dict[str, dict[int, str]] = defaultdict(dict)
        proofs: dict[str, dict[int, str]] = defaultdict(dict)
        stamps: dict[str, dict[int, str]] = defaultdict(dict)
        for name in self.members:
            for prefix, parse, found, what in (
                    (keys.LEDGER_PREFIX, keys.parse_ledger_key, entries, "ledger/"),
                    (PROOFS_PREFIX, parse_proof_name, proofs, "proofs/"),
                    (keys.CHECKPOINTS_PREFIX, keys.parse_timestamp_key, stamps, "checkpoints/")):
                if name.startswith(prefix):
                    parsed = parse(name)
                    if parsed is None:
                        self.unexpected(name, f"unexpected file in {what}")
                    else:
                        found[parsed[0]][parsed[1]] = name
        declared = self.declared_uncovered(package)
        for writer in sorted(set(entries) | set(proofs) | set(stamps)):
            self.check_writer_proofs(writer, entries[writer], proofs[writer], stamps[writer],
                                     declared.get(writer, frozenset()))
        for writer in sorted(set(self.public_keys) - set(entries)):
            self.problem(keys.public_key_key(writer), _("a key without any ledger entry"))

    def check_writer_proofs(self, writer: str, entry_names: Mapping[int, str],
                            proof_names: Mapping[int, str], stamp_names: Mapping[int, str],
                            uncovered: frozenset[int]) -> None:
        public = self.public_keys.get(writer)
        key_name = keys.public_key_key(writer)
        if public is None:
            self.problem(key_name, _("missing or invalid: the {count} ledger entries of writer "
                                     "{writer!r} cannot be checked").format(
                                         count=len(entry_names), writer=writer))
        read: dict[int, chain.ReadEntry] = {}
        for seq, name in sorted(entry_names.items()):
            self.report.entries_checked += 1
            read[seq] = chain.read_entry(writer, seq, self.data(name), public,
                                         key_note=f" ({key_name})")
            for problem in read[seq].problems:
                self.problem(name, problem.message, read[seq].recording)

        def sound(seq: int) -> chain.Entry | None:
            item = read.get(seq)
            return item.entry if item is not None and item.signed and not item.problems else None

        heads: dict[int, SignedTreeHead] = {}
        for seq in read:
            entry = sound(seq)
            if entry is None or entry["event"] != Event.CHECKPOINT:
                continue
            try:
                heads[seq] = tree_head_of(entry)
            except ValueError as exc:
                self.problem(entry_names[seq], _("not a valid checkpoint: {exc}").format(exc=exc))
                continue
            head = heads[seq]
            named = read.get(head.tree_size)
            if named is not None and named.entry_hash != head.head_hash:
                self.problem(entry_names[head.tree_size], _("is not the entry {tree_size} that "
                                                            "checkpoint {entry_names} signs "
                                                            "(head_hash)").format(
                                                                tree_size=head.tree_size, entry_names=entry_names[seq]))

        proven: set[int] = set()
        for seq, name in sorted(proof_names.items()):
            proof = self.parsed(name, parse_proof, "inclusion proof")
            if proof is None:
                continue
            if (proof.writer, proof.seq) != (writer, seq):
                self.problem(name, _("writer or seq inside does not match its file name"))
                continue
            if seq not in read:
                if keys.ledger_key(writer, seq) not in self.reported:
                    self.problem(name, _("proves entry {seq} of writer {writer!r}, which is not "
                                         "in the package ({ledger_key} is missing)").format(
                                             seq=seq, writer=writer, ledger_key=keys.ledger_key(writer, seq)))
                continue
            against = heads.get(proof.checkpoint_seq)
            if against is None:
                self.problem(name, _("is against checkpoint {checkpoint_seq} of writer "
                                     "{writer!r}, which is not a verified checkpoint entry in the "
                                     "package ({entry_names} is not proven)").format(
                                         checkpoint_seq=proof.checkpoint_seq, writer=writer, entry_names=entry_names[seq]))
                continue
            why = inclusion_problem(read[seq].entry_hash, proof, against)
            if why is not None:
                self.problem(name, _("{why} ({entry_names})").format(
                    why=why, entry_names=entry_names[seq]), read[seq].recording)
                continue
            proven.add(seq)

        exporter = writer == self.report.exporter
        counted: list[chain.Entry] = []
        for seq, name in sorted(entry_names.items()):
            entry = sound(seq)
            covering = [head.seq for head in heads.values() if seq <= head.tree_size]
            if seq in heads or seq in proven:
                pass  # a checkpoint rests on its signature; a proven entry on its proof too
            elif seq in proof_names:
                continue  # its proof's problem was reported
            elif seq not in uncovered:
                self.problem(name, _("no inclusion proof in proofs/, and package.json does not "
                                     "say it is after its writer's newest checkpoint"), read[seq].recording)
                continue
            elif covering:
                self.problem(name, _("package.json says no checkpoint covers it, but checkpoint "
                                     "{covering} in the package does: its inclusion proof was "
                                     "removed").format(covering=covering[-1]), read[seq].recording)
                continue
            elif exporter:
                self.problem(name, _("an entry of the exporting node without a proof: the "
                                     "exporter checkpoints its own chain when it exports"),
                             read[seq].recording)
                continue
            elif entry is not None:
                self.report.uncovered.append(name)
            if entry is not None:
                counted.append(entry)
        for seq in sorted(uncovered - set(entry_names)):
            self.problem(PACKAGE_JSON, _("says entry {seq} of writer {writer!r} is in the package "
                                         "without a proof, but it is not").format(
                                             seq=seq, writer=writer))

        self.check_timestamps(writer, read, heads, stamp_names)
        self.report.proven[writer] = len(proven)
        if heads:
            newest = heads[max(heads)]
            self.report.checkpoints[writer] = (f"checkpoint #{newest.seq} over entries "
                                               f"1..{newest.tree_size}")
        if public is not None:
            self.judge_roles(writer, fingerprint(public), counted)

    def check_timestamps(self, writer: str, read: Mapping[int, chain.ReadEntry],
                         heads: Mapping[int, SignedTreeHead],
                         stamp_names: Mapping[int, str]) -> None:
        for seq, name in sorted(stamp_names.items()):
            entry = read[seq].entry if seq in heads else None
            if entry is None:
                self.problem(name, _("a timestamp of entry {seq} of writer {writer!r}, which is "
                                     "not a verified checkpoint in the package").format(
                                         seq=seq, writer=writer))
                continue
            if self.tsa_trust is None:
                self.report.timestamps_unchecked.append(name)
                continue
            try:
                stamped = verify_timestamp(self.data(name), canonical.canonical_bytes(entry), self.tsa_trust)
            except IntegrityError as exc:
                self.problem(name, _("{message} (over {ledger_key})").format(
                    message=exc.message, ledger_key=keys.ledger_key(writer, seq)))
                continue
            self.report.timestamps[name] = (f"{keys.ledger_key(writer, seq)} existed at "
                                            f"{stamped.time.isoformat()} (TSA {stamped.tsa})")

    def judge_roles(self, writer: str, key_fingerprint: str,
                    counted: Sequence[chain.Entry]) -> None:
        """Who may sign what (``chain.judge_writer``); what counts for the recordings' checks:
        entries in the writer's role, from a trusted key when trust anchors were given."""
        judgement = chain.judge_writer(writer, key_fingerprint, counted, None)
        for problem in judgement.problems:
            if problem.kind is not ProblemKind.UNTRUSTED:  # check_keys reported it
                self.problem(problem.subject, problem.message, problem.recording)
        role = f"role {judgement.role}" if judgement.role is not None else "role unknown"
        self.report.roles[writer] = role + (", registered" if judgement.registered
                                            else ", inferred from its events")
        if self.trusted and key_fingerprint not in self.trusted:
            return
        for entry in counted:
            if entry["seq"] in judgement.counts and entry["event"] in (
                    Event.ARCHIVED, Event.DERIVED, Event.EXPORTED):
                self.entries[(writer, entry["seq"])] = dict(entry)
