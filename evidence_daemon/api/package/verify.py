"""Offline verification of an evidence package: ``verify_package`` checks a zip with nothing but
the zip (and, for RFC 3161 tokens, the TSA's certificates): the listing in package.json, its
signature, the ledger (``verify_ledger``), the recordings and the package's own ``exported``
event. A package carries nothing about other cases and grows with log2 of the chains.

What must never happen here: a member extracted or its name used as a path; a package reported
OK whose files differ from what the exporter signed; a key trusted because the package says so
(``trusted_fingerprints`` come from the caller); an exception instead of a problem for anything
a hostile zip can hold (only an unreadable file raises ``UsageError``).
"""

from __future__ import annotations

import base64
import binascii
import zipfile
from collections import defaultdict
from collections.abc import Collection
from pathlib import Path
from typing import Any

from ...archive import keys
from ...custody.chain import Event
from ...custody.signing import fingerprint, load_public_pem, signature_valid
from ...custody.timestamp import TsaTrust
from ...custody.trust import normal_fingerprint
from ...errors import EvidenceError, UsageError
from .format import (
    DERIVED_NAMES,
    FORMAT,
    PACKAGE_JSON,
    PACKAGE_SIG,
    PROOFS_PREFIX,
    README_NAME,
    SUPPORTED_FORMAT_VERSIONS,
    is_sha256_hex,
    load_json,
)
from .members import display, read_members
from .report import PackageReport
from .verify_ledger import LedgerCheck
from ...i18n import _


def verify_package(path: Path, *, trusted_fingerprints: Collection[str] = (),
                   tsa_trust: TsaTrust | None = None) -> PackageReport:
    """Check an evidence package using nothing but the zip itself.

    Every file listed in package.json is present with its size and SHA-256, nothing else is;
    package.sig verifies with the exporter's key in the package; ledger entries verify with
    their writers' keys and, with the redaction stubs between them, form contiguous,
    prev-linked runs that begin and end with an entry about the package; originals hash to
    their ids; manifests and viewing copies match verified ``archived``/``derived`` events;
    the ``exported`` event names exactly this package. With ``trusted_fingerprints``, every key in
    the package must be one of them. Raises ``UsageError`` only when the file cannot be read.

    Version 3 instead of runs: every ledger entry verifies with its writer's key and is proven
    by its inclusion proof against a signed checkpoint entry of that writer in the package
    (tree size and root from the checkpoint), or package.json says no checkpoint covers it
    yet (a warning: ``report.uncovered``; never for the exporter's own entries, which it
    checkpoints at export); writers sign only their role's events (``key-registered``); an
    RFC 3161 token over a checkpoint is checked against ``tsa_trust`` when given.
    """
    report = PackageReport(path=path, trusted_checked=bool(trusted_fingerprints))
    trusted = frozenset(normal_fingerprint(text) for text in trusted_fingerprints)
    try:
        archive = zipfile.ZipFile(path)
    except OSError as exc:
        raise UsageError(_("cannot read {path}: {strerror}").format(
            path=path, strerror=exc.strerror)) from exc
    except (zipfile.BadZipFile, ValueError, EOFError) as exc:
        report.problem(path.name, _("not a readable zip file ({exc})").format(exc=exc))
        return report
    with archive:
        members, reported = read_members(archive, report)
    PackageCheck(members, reported, report, trusted, tsa_trust).run()
    return report


class PackageCheck(LedgerCheck):
    """The checks of ``verify_package`` over members already read and hashed."""

    def run(self) -> None:
        package = self.package_json()
        self.check_listing(package)
        self.check_keys()
        self.check_signature(package)
        if self.proven_layout(package):
            self.check_proven_ledger(package)
        else:
            self.check_ledger(package)
        if package is not None:
            self.check_recordings(package)
            self.check_exported(package)

    # package.json ----------------------------------------------------------------------

    def package_json(self) -> dict[str, Any] | None:
        member = self.members.get(PACKAGE_JSON)
        if member is None:
            if PACKAGE_JSON not in self.reported:
                self.problem(PACKAGE_JSON, _("missing: nothing says what the package should hold"))
            return None
        assert member.data is not None
        try:
            document = load_json(member.data)
        except ValueError as exc:
            self.problem(PACKAGE_JSON, _("not valid JSON ({exc}): altered?").format(exc=exc))
            return None
        if not isinstance(document, dict):
            self.problem(PACKAGE_JSON, _("not a JSON object: altered?"))
            return None
        package: dict[str, Any] = document
        expected_types: dict[str, type | tuple[type, ...]] = {
            "format": str, "format_version": int, "package_id": str, "created_at": str,
            "exported_by": str, "reason": str, "exporter": dict, "exported_event": dict,
            "recordings": list, "files": list,
        }
        wrong = [name for name, kind in expected_types.items()
                 if not isinstance(package.get(name), kind)]
        if wrong:
            self.problem(PACKAGE_JSON, _("missing or malformed fields: {join}").format(
                join=', '.join(wrong)))
            return None
        if (package["format"] != FORMAT
                or package["format_version"] not in SUPPORTED_FORMAT_VERSIONS):
            self.problem(PACKAGE_JSON, _("unknown format {format!r} version {format_version!r}").format(
                format=package['format'], format_version=package['format_version']))
            return None
        report = self.report
        report.format_version = package["format_version"]
        report.package_id = package["package_id"]
        report.created_at = package["created_at"]
        report.exported_by = package["exported_by"]
        report.reason = package["reason"]
        exporter = package["exporter"].get("writer")
        report.exporter = exporter if isinstance(exporter, str) else None
        for item in package["recordings"]:
            recording = item.get("id") if isinstance(item, dict) else None
            if not is_sha256_hex(recording):
                self.problem(PACKAGE_JSON, _("recording entry {item!r} has no valid id").format(
                    item=item))
                continue
            report.recordings.append(recording)
        return package

    def check_listing(self, package: dict[str, Any] | None) -> None:
        listed: set[str] = set()
        for item in package["files"] if package is not None else ():
            name = item.get("name") if isinstance(item, dict) else None
            if not isinstance(name, str):
                self.problem(PACKAGE_JSON, _("file entry {item!r} has no name").format(item=item))
                continue
            shown = display(name)
            if name in listed or name in (PACKAGE_JSON, PACKAGE_SIG):
                self.problem(shown, _("listed twice in package.json") if name in listed
                             else _("must not be listed in package.json"))
                continue
            listed.add(name)
            member = self.members.get(name)
            if member is None:
                if name not in self.reported:
                    self.problem(shown, _("listed in package.json but missing from the zip"))
                continue
            if (member.size_bytes, member.sha256) != (item.get("size_bytes"), item.get("sha256")):
                self.problem(shown, _("differs from package.json ({size_bytes} bytes, SHA-256 "
                                      "{sha256}…): changed after export").format(
                                          size_bytes=member.size_bytes, sha256=member.sha256[:12]))
        if package is None:
            return
        self.listed = listed
        for name in self.members:
            if name not in listed and name not in (PACKAGE_JSON, PACKAGE_SIG):
                self.problem(name, _("not listed in package.json: added after export"))

    # keys and signature ------------------------------------------------------------------

    def check_keys(self) -> None:
        for name, member in sorted(self.members.items()):
            if not name.startswith(keys.KEYS_PREFIX):
                continue
            writer = name[len(keys.KEYS_PREFIX):].removesuffix(".pub")
            try:
                expected = keys.public_key_key(writer)
            except ValueError:
                expected = ""
            if name != expected:
                self.unexpected(name, "unexpected file in keys/")
                continue
            assert member.data is not None
            try:
                public = load_public_pem(member.data, what="the file")
            except EvidenceError as exc:
                self.problem(name, exc.message)
                continue
            self.public_keys[writer] = public
            self.report.writers[writer] = fingerprint(public)
            if self.trusted and fingerprint(public) not in self.trusted:
                self.problem(name, _("key not trusted: fingerprint {fingerprint} of writer "
                                     "{writer!r} is not one of the trusted fingerprints").format(
                                         fingerprint=fingerprint(public), writer=writer))

    def check_signature(self, package: dict[str, Any] | None) -> None:
        signature_member = self.members.get(PACKAGE_SIG)
        package_member = self.members.get(PACKAGE_JSON)
        if signature_member is None:
            if PACKAGE_SIG not in self.reported:
                self.problem(PACKAGE_SIG, _("missing: package.json is not signed"))
            return
        if package is None or package_member is None:
            return
        assert signature_member.data is not None and package_member.data is not None
        exporter = self.report.exporter
        key_name = f"{keys.KEYS_PREFIX}{exporter}.pub"
        public = self.public_keys.get(exporter or "")
        if public is None:
            self.problem(PACKAGE_SIG, _("cannot be checked: no valid public key {key_name} of the "
                                        "exporting node").format(key_name=key_name))
            return
        claimed = package["exporter"].get("fingerprint")
        if claimed != fingerprint(public):
            self.problem(PACKAGE_JSON, _("names the exporter's key fingerprint {claimed!r}, but "
                                         "{key_name} has {fingerprint}").format(
                                             claimed=claimed, key_name=key_name, fingerprint=fingerprint(public)))
        try:
            signature = base64.b64decode(signature_member.data.strip(), validate=True)
        except (binascii.Error, ValueError):
            self.problem(PACKAGE_SIG, _("not a base64 signature: altered"))
            return
        if not signature_valid(public, signature, package_member.data):
            self.problem(PACKAGE_SIG, _("does not verify over package.json with {key_name}: "
                                        "package.json or package.sig was changed after export").format(
                                            key_name=key_name))

    # recordings --------------------------------------------------------------------------

    def check_recordings(self, package: dict[str, Any]) -> None:
        wanted = set(self.report.recordings)
        names: dict[str, list[str]] = defaultdict(list)
        for name in self.members:
            if not name.startswith(keys.RECORDINGS_PREFIX):
                proven = ((PROOFS_PREFIX, keys.CHECKPOINTS_PREFIX)
                          if self.proven_layout(package) else ())
                if not name.startswith((keys.LEDGER_PREFIX, keys.KEYS_PREFIX, *proven)) and (
                        name not in (README_NAME, PACKAGE_JSON, PACKAGE_SIG)):
                    self.unexpected(name, "unexpected file: not part of the package layout")
                continue
            parsed = keys.parse_recording_key(name)
            if parsed is None or parsed[0] not in wanted:
                self.unexpected(name, "unexpected file: not a recording named in package.json")
                continue
            names[parsed[0]].append(parsed[1])
        for recording in self.report.recordings:
            self.check_recording(recording, sorted(names.get(recording, [])))

    def check_recording(self, recording: str, names: list[str]) -> None:
        def problem(subject: str, message: str) -> None:
            self.problem(subject, message, recording)

        prefix = keys.recording_prefix(recording)
        originals = [name for name in names if keys.is_original_name(name)]
        if len(originals) != 1:
            unreadable = any(name.startswith(prefix) and keys.is_original_name(name[len(prefix):])
                             for name in self.reported)
            if not unreadable:  # else that member's problem says it already
                problem(prefix, _("no original in the package") if not originals
                        else _("several originals: {originals}").format(originals=originals))
            return
        original_key = prefix + originals[0]
        original = self.members[original_key]
        if original.sha256 != recording:
            problem(original_key, _("SHA-256 is {sha256}…, not the recording id: the original was "
                                    "changed").format(sha256=original.sha256[:12]))

        manifest_key = keys.manifest_key(recording)
        manifest_member = self.members.get(manifest_key)
        if manifest_member is None:
            if manifest_key not in self.reported:
                problem(manifest_key, _("missing from the package"))
        else:
            assert manifest_member.data is not None
            archived = self.verified_events(Event.ARCHIVED, recording)
            if not archived:
                problem(prefix, _("no verified 'archived' event for this recording in ledger/"))
            elif all(entry["details"].get("manifest_sha256") != manifest_member.sha256
                     for entry in archived):
                problem(manifest_key, _("its SHA-256 is not the manifest_sha256 of the verified "
                                        "'archived' event: the manifest was changed"))
            try:
                manifest = load_json(manifest_member.data)
                facts = (manifest["sha256"], manifest["size_bytes"], manifest["original_key"])
            except (ValueError, KeyError, TypeError):
                problem(manifest_key, _("not valid JSON with sha256, size_bytes, original_key"))
            else:
                if facts != (recording, original.size_bytes, original_key):
                    problem(manifest_key, _("does not describe the original (sha256, size_bytes "
                                            "or original_key differ)"))

        derived = self.verified_events(Event.DERIVED, recording)
        for name in names:
            key = prefix + name
            if keys.is_original_name(name) or name == "manifest.json":
                continue
            if name not in DERIVED_NAMES:
                self.unexpected(key, "unexpected file in the recording's folder", recording)
                continue
            part = "poster" if name == "poster.jpg" else "proxy"
            recorded = {
                described.get("sha256") for entry in derived
                if isinstance(described := entry["details"].get(part), dict)
                and described.get("key") == key
            }
            if not recorded:
                problem(key, _("no verified 'derived' event in ledger/ describes this viewing copy"))
            elif self.members[key].sha256 not in recorded:
                problem(key, _("SHA-256 is {sha256}…, not the one its 'derived' event recorded: "
                               "the viewing copy was changed").format(
                                   sha256=self.members[key].sha256[:12]))

    # the exported event ------------------------------------------------------------------

    def check_exported(self, package: dict[str, Any]) -> None:
        described = package["exported_event"]
        writer, seq = described.get("writer"), described.get("seq")
        if not isinstance(writer, str) or not isinstance(seq, int) or seq < 1:
            self.problem(PACKAGE_JSON, _("exported_event does not name a writer and seq"))
            return
        try:
            name = keys.ledger_key(writer, seq)
        except ValueError:
            self.problem(PACKAGE_JSON, _("exported_event names an invalid writer {writer!r}").format(
                writer=writer))
            return
        entry = self.entries.get((writer, seq))
        if entry is None or entry["event"] != Event.EXPORTED:
            if name not in self.reported:
                self.problem(name, _("the 'exported' event of this package is missing or does not "
                                     "verify"))
            return
        details = entry["details"]
        if writer != self.report.exporter:
            self.problem(name, _("the 'exported' event was written by {writer!r}, not by the "
                                 "exporting node {exporter!r}").format(
                                     writer=writer, exporter=self.report.exporter))
        if details.get("package_id") != self.report.package_id:
            self.problem(name, _("the 'exported' event names another package_id"))
        listed = details.get("recordings")
        if not isinstance(listed, list) or sorted(map(str, listed)) != sorted(self.report.recordings):
            self.problem(name, _("the 'exported' event lists other recordings than the package"))
        if details.get("reason") != package["reason"]:
            self.problem(name, _("the 'exported' event gives another reason than package.json"))
