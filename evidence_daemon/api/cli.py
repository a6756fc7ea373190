"""The API node's commands: ``serve``, ``reindex``, ``users``, ``export``, ``verify-package``.

Registered into the one ``evidence-daemon`` parser by ``cli.build_parser``; like every
command they raise ``EvidenceError`` and leave output and exit codes to ``cli.main``.
"""

from __future__ import annotations

import argparse
import getpass
import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..config import Config
from ..errors import ConfigError, IntegrityError, UsageError
from .auth import UserRole
from .incidents_cli import HANDLERS as INCIDENT_HANDLERS
from .incidents_cli import add_commands as add_incident_commands
from ..i18n import _
from ..terminal import columns

log = logging.getLogger("evidence_daemon.api")

Handler = Callable[[Config, argparse.Namespace], int]


def add_commands(commands: Any) -> None:
    serve = commands.add_parser("serve", help="the auditors' retrieval API and web console "
                                "(a separate process; reads the archive, not a station)")
    serve.add_argument("--listen", metavar="HOST:PORT", help="overrides api.listen")

    commands.add_parser("reindex", help="rebuild the API catalog from the archive from scratch")

    users = commands.add_parser("users", help="API users and their bearer tokens")
    actions = users.add_subparsers(dest="users_action", required=True, metavar="ACTION")
    add = actions.add_parser("add", help="create a user and print its token (shown once)")
    add.add_argument("name", metavar="NAME")
    add.add_argument("--role", required=True, choices=tuple(UserRole))
    add.add_argument("--officer-id", help="for role officer: the officer id on their recordings")
    listing = actions.add_parser("list", help="users, roles, last use (never tokens)")
    listing.add_argument("--json", action="store_true")
    revoke = actions.add_parser("revoke", help="end a user's token at once")
    revoke.add_argument("name", metavar="NAME")

    export = commands.add_parser("export", help="write a court-ready evidence package (zip); "
                                 "recorded in the API node's audit chain")
    export.add_argument("ids", nargs="+", metavar="ID", help="recording ids (>= 12 hex digits)")
    export.add_argument("--reason", required=True, help="why; recorded with the export")
    export.add_argument("--out", required=True, type=Path, metavar="FILE.zip")
    export.add_argument("--no-proxies", action="store_true", help="originals and records only")

    verify_package = commands.add_parser(
        "verify-package", help="check an evidence package offline; exit 7 on any alteration")
    verify_package.add_argument("package", type=Path, metavar="FILE.zip")
    verify_package.add_argument("--trust", action="append", default=[], metavar="FINGERPRINT",
                                help="accept only writer keys with these fingerprints "
                                "(SHA256:..., as published by the agency); adds to "
                                "[verify] trusted_keys")
    verify_package.add_argument("--tsa-cert", type=Path, metavar="FILE",
                                help="PEM: the time-stamping authority's certificate and its CA; "
                                "checks the RFC 3161 timestamps of checkpoints in the package "
                                "(default: [timestamp] tsa_cert_file)")
    verify_package.add_argument("--json", action="store_true")
    add_incident_commands(commands)


def cmd_serve(config: Config, args: argparse.Namespace) -> int:
    import uvicorn

    from .app import create_app
    from .service import open_api_node

    listen = args.listen or config.api.listen
    host, _colon, port = listen.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(_("--listen: expected HOST:PORT, got {listen!r}").format(listen=listen))
    node = open_api_node(config)
    if logging.getLogger().level > logging.INFO:
        logging.getLogger("evidence_daemon").setLevel(logging.INFO)
    log.info("API node %s serving %s on http://%s", config.api.id, node.store.location, listen)
    try:
        uvicorn.run(create_app(node), host=host.strip("[]"), port=int(port), log_level="info",
                    proxy_headers=False, server_header=False)
    finally:
        node.close()
    return 0


def cmd_reindex(config: Config, args: argparse.Namespace) -> int:
    from .service import open_api_node

    node = open_api_node(config)
    try:
        result = node.indexer.reindex()
        stats = node.catalog.stats()
    finally:
        node.close()
    print(_("catalog rebuilt from {backend} archive: {recordings} recordings, {events} ledger "
            "entries from {writers} writers").format(
                backend=config.archive.backend, recordings=stats['recordings'],
                events=stats['events'], writers=stats['writers']))
    for problem in result.problems:
        print("  " + _("problem: {problem}").format(problem=problem))
    if stats["unverified_events"]:
        print("  " + _("{count} entries do not verify; run `evidence-daemon verify`").format(
            count=stats['unverified_events']))
    return 0


def cmd_users(config: Config, args: argparse.Namespace) -> int:
    from .service import open_api_node

    node = open_api_node(config, connect_archive=False)
    try:
        if args.users_action == "add":
            token = node.users.add(args.name, args.role, officer_id=args.officer_id,
                                   created_by=f"cli:{_login()}")
            print(token)
            print(_("user {name} ({role}) created. The token above is shown only once: give it "
                    "to the user over a safe channel.").format(name=args.name, role=args.role),
                  file=sys.stderr)
        elif args.users_action == "revoke":
            node.users.revoke(args.name)
            print(_("user {name}: token revoked").format(name=args.name))
        else:
            users = node.users.list()
            if args.json:
                print(json.dumps(users, ensure_ascii=False, indent=2))
            else:
                print(columns([(_("NAME"), 20), (_("ROLE"), 11), (_("OFFICER"), 10),
                               (_("CREATED"), 20), (_("LAST USED"), 20), (_("STATUS"), 0)],
                              sep=" "))
                for user in users:
                    print(f"{user['name']:<20} {user['role']:<11} {user['officer_id'] or '-':<10} "
                          f"{user['created_at'][:19]:<20} {(user['last_used_at'] or '-')[:19]:<20} "
                          + (_("revoked {time}").format(time=user['revoked_at'][:19])
                             if user['revoked_at'] else _("active")))
    finally:
        node.close()
    return 0


def cmd_export(config: Config, args: argparse.Namespace) -> int:
    from .package import export_recordings
    from .service import open_api_node

    if len(args.ids) > config.api.max_export_recordings:
        raise UsageError(_("at most {max_export_recordings} recordings per package "
                           "(api.max_export_recordings)").format(
                               max_export_recordings=config.api.max_export_recordings))
    node = open_api_node(config)
    try:
        node.indexer.poll()  # export what the archive holds now, not what the last poll saw
        info = export_recordings(
            node.store, node.database, node.ledger, node.index_own, args.ids, args.out,
            reason=args.reason, actor=f"cli:{_login()}", include_proxies=not args.no_proxies,
            clock=node.clock, signing_key=node.private_key)
    finally:
        node.close()
    print(_("{path}: evidence package {package}, {count} recording(s), {size} bytes").format(
        path=info.path, package=info.package_id, count=len(info.recordings),
        size=info.size_bytes))
    print(f"  SHA-256 {info.sha256}")
    print("  " + _("recorded as {writer}#{seq}; check it with `evidence-daemon verify-package "
                   "{path}`").format(writer=info.exported_writer, seq=info.exported_seq,
                                     path=info.path))
    return 0


def cmd_verify_package(config: Config, args: argparse.Namespace) -> int:
    from .package import format_package_report, verify_package

    from ..custody.timestamp import load_tsa_trust
    from ..custody.trust import anchors_from

    trust = anchors_from(args.trust, config.verify.trusted_keys)
    tsa_cert = args.tsa_cert or config.timestamp.tsa_cert_file
    tsa_trust = (load_tsa_trust(tsa_cert, setting="--tsa-cert" if args.tsa_cert
                                else "timestamp.tsa_cert_file")
                 if tsa_cert is not None else None)
    report = verify_package(args.package, trusted_fingerprints=trust.fingerprints,
                            tsa_trust=tsa_trust)
    if args.json:
        print(json.dumps(report.as_dict(), ensure_ascii=False, indent=2))
    else:
        for line in format_package_report(report):
            print(line)
    return 0 if report.ok else IntegrityError.exit_code


HANDLERS: dict[str, Handler] = {
    "serve": cmd_serve, "reindex": cmd_reindex, "users": cmd_users, "export": cmd_export,
    "verify-package": cmd_verify_package, **INCIDENT_HANDLERS,
}


def _login() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"
