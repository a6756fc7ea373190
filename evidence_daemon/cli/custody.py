"""``verify`` and ``checkpoint``: the archive and its custody ledgers checked, heads saved."""

from __future__ import annotations

import argparse
import json

from ..durable import save_replacing
from ..config import Config
from ..custody.chain import Head, Problem, ProblemKind, compare_with_witness
from ..custody.checkpoints import read_saved, saved_checkpoint
from ..custody.signing import load_private_key
from ..custody.timestamp import load_tsa_trust
from ..custody.trust import anchors_from
from ..custody.verify import Report as VerifyReport
from ..custody.verify import verify_archive
from ..errors import ConfigError
from ..state.db import Database
from ..archive.factory import build_store
from ..terminal import safe
from .common import _operator
from .exit_codes import ExitCode
from ..i18n import _


def cmd_verify(config: Config, args: argparse.Namespace) -> ExitCode:
    """Exit 0 when everything checked holds (without trust anchors that means consistent,
    and the output says so), 7 when anything does not."""
    if args.all and args.ids:
        raise ConfigError(_("verify: give --all or recording ids, not both"))
    trust = anchors_from(args.trust, config.verify.trusted_keys)
    tsa = (load_tsa_trust(config.timestamp.tsa_cert_file)
           if config.timestamp.tsa_cert_file is not None else None)
    store = build_store(config)
    store.check()
    saved = read_saved(args.checkpoint, store) if args.checkpoint is not None else None
    report = verify_archive(store, None if args.all or not args.ids else args.ids, trust=trust,
                            saved=saved.seen if saved is not None else (), tsa=tsa)
    if saved is not None and saved.signature_note.startswith("ALTERED"):
        report.problems.append(Problem(str(args.checkpoint), saved.signature_note,
                                       kind=ProblemKind.WITNESS))
    if config.database_path.exists():
        report.problems.extend(_station_head_problems(config, report))
    for writer, fingerprint in sorted(report.writers.items()):
        judgement = report.judgements.get(writer)
        note = f" ({judgement.note()})" if judgement is not None else ""
        print(_("ledger writer {writer}: key {fingerprint}").format(
            writer=writer, fingerprint=fingerprint) + note)
    if saved is not None:
        print(_("compared with the checkpoint saved {time} by {maker} ({count} writer(s)); "
                "file {note}").format(time=saved.made_at, maker=saved.made_by,
                                      count=len(saved.seen), note=saved.signature_note))
    print(_("chains compared with {count} checkpoint(s) seen of them "
            "(witnessed by other writers, saved, time-stamped)").format(
                count=report.checkpoints_compared))
    for note in report.notes:
        print(_("info: {note}").format(note=safe(note)))
    for problem in report.problems:
        print(_("FAIL {problem}").format(problem=safe(problem)))
    if not report.trust_checked:
        print(_("WARNING: no trust anchors given (--trust or [verify] trusted_keys): only the "
                "archive's consistency was checked. Anyone able to write to the archive can add "
                "a writer with a fresh key or re-sign a whole chain consistently; compare the "
                "key fingerprints above with those your agency published."))
    else:
        print(_("writers' keys compared with {count} trust anchor(s) from {source}").format(
            count=len(trust.fingerprints), source=trust.source))
    verdict = _("OK") if report.ok else _("{count} problem(s)").format(count=len(report.problems))
    scope = "" if report.trust_checked else _(" (consistency only)")
    print(_("verified {recordings} recording(s) and {entries} ledger entries from {writers} "
            "writer(s) in {location}{scope}: {verdict}").format(
                recordings=report.recordings_checked, entries=report.entries_checked,
                writers=len(report.writers), location=store.location, scope=scope,
                verdict=verdict))
    return ExitCode.OK if report.ok else ExitCode.PROBLEMS_FOUND


def _station_head_problems(config: Config, report: VerifyReport) -> list[Problem]:
    """Entries at the end of a chain can be deleted without breaking it; this station's own
    index remembers how far its chain went and the hash there, so a deletion (or a rewritten
    chain) is caught here. (Checkpoints witnessed by other writers generalise this.)"""
    database = Database(config.database_path)
    try:
        row = database.query_one("SELECT seq, entry_hash FROM ledger WHERE writer = ?"
                                 " ORDER BY seq DESC LIMIT 1", (config.station.id,))
    finally:
        database.close()
    if row is None:
        return []
    chain = report.chains.get(config.station.id)
    heads = chain.heads if chain is not None else {}
    problem = compare_with_witness(config.station.id, heads, Head(int(row["seq"]),
                                   str(row["entry_hash"])), witness="this station's own index")
    return [problem] if problem is not None else []


# -- checkpoint ---------------------------------------------------------------------------

def cmd_checkpoint(config: Config, args: argparse.Namespace) -> ExitCode:
    """Print (and with --out save) the latest checkpoint of every writer; signed with this
    machine's writer key when it has one it may read."""
    store = build_store(config)
    store.check()
    signing_key, made_by, key_note = None, f"user:{_operator() or 'unknown'}", ""
    for path, maker in ((config.key_path, f"station:{config.station.id}"),
                        (config.api_key_path, f"api:{config.api.id}")):
        if path.exists():
            try:
                signing_key, made_by = load_private_key(path), maker
                break
            except ConfigError as exc:
                key_note = _(" (cannot use {path}: {error})").format(path=path, error=exc.message)
    saved = saved_checkpoint(store, made_by=made_by, signing_key=signing_key)
    print(_("checkpoint of {location}, {time}").format(location=store.location,
                                                       time=saved.document['made_at']))
    for item in saved.checkpoints:
        details = item.entry["details"]
        print("  " + _("writer {writer}: checkpoint {seq} ({time}), tree of {size} entries, "
                       "root {root}, key {fingerprint}").format(
                           writer=item.writer, seq=item.seq, time=item.entry['time'],
                           size=details['tree_size'], root=details['root_hash'],
                           fingerprint=item.fingerprint))
    for writer in saved.without:
        print("  " + _("writer {writer}: no checkpoint yet: its entries are covered by nothing "
                       "saved here (it signs one at its next start)").format(writer=writer))
    if args.out is not None:
        text = json.dumps(saved.document, ensure_ascii=False, indent=2) + "\n"
        try:
            save_replacing(args.out, text.encode("utf-8"))
        except OSError as exc:
            raise ConfigError(_("--out: cannot write {out}: {strerror}").format(
                out=args.out, strerror=exc.strerror)) from exc
        signed = (_("signed by {maker}").format(maker=made_by) if signing_key is not None
                  else _("unsigned{note}; the checkpoints inside are signed by their "
                         "writers").format(note=key_note))
        print(_("saved {count} checkpoint(s) to {path} ({signed}). Keep it away from the "
                "archive; `evidence-daemon verify --checkpoint {path}` later shows any entry "
                "removed or rewritten up to here.").format(
                    count=len(saved.checkpoints), path=args.out, signed=signed))
    return ExitCode.OK
