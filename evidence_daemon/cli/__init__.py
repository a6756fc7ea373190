"""The ``evidence-daemon`` command line. Its command names, flags, JSON and exit codes are a
contract (README's command table).

``main()`` is the only place that turns an ``EvidenceError`` into a message and an exit code.
Commands follow one rule for how they end, so a reader knows where every exit code comes from:

- a command that cannot do its job **raises** an ``EvidenceError`` (``errors.py``); ``main()``
  prints its message and exits with its ``exit_code``. Commands never print "error:" and
  return a code for a failure that stops them, and never catch an error only to return its code;
- a command that ran to its end **returns** an ``ExitCode`` member (``exit_codes.py``), never a
  bare number: ``ExitCode.OK``, or, when its own report (already printed) says that something
  is not done, the member that names it: ``NOT_ARCHIVED`` / ``ARCHIVE_UNREACHABLE`` for an
  ingest whose files wait in the spool or on the source, ``ARCHIVE_UNREACHABLE`` for a device
  assignment whose ledger event waits in the outbox, ``PROBLEMS_FOUND`` for a ``verify`` that
  found any. These are verdicts over many files, printed in full, not one error message.

The commands live beside it, one module per area: ``ingest`` (ingest), ``status`` (status,
recordings), ``custody`` (verify, checkpoint), ``devices``, ``proxies``, ``run`` (the daemon),
``report``; the API node's commands are in ``api/cli.py``. Nothing here may delete or change
evidence: the commands call the station, the ledger and the archive, which own that.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from .. import __version__, i18n
from ..api.cli import HANDLERS as API_HANDLERS
from ..api.cli import add_commands as add_api_commands
from ..config import load_config
from ..errors import ConfigError, EvidenceError
from ..i18n import _
from ..terminal import safe
from .custody import cmd_checkpoint, cmd_verify
from .devices import cmd_devices
from .exit_codes import ExitCode
from .ingest import cmd_ingest
from .proxies import cmd_proxies
from .report import cmd_report
from .run import cmd_run
from .status import cmd_recordings, cmd_status


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="evidence-daemon",
        description="Archive body-camera footage bit-exact, with a signed chain of custody.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--config", metavar="FILE", help="TOML configuration (default: "
                        "$EVIDENCE_CONFIG or /etc/evidence-daemon/config.toml)")
    parser.add_argument("--set", metavar="SECTION.KEY=VALUE", action="append", default=[],
                        dest="overrides", help="override one configuration key (repeatable)")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    parser.add_argument("--lang", choices=("auto", "en", "zh_CN"),
                        help="language of messages for people: en or zh_CN (简体中文); default: "
                        "station.language, whose default follows LANG")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    ingest = commands.add_parser("ingest", help="archive every file under PATH and wait")
    ingest.add_argument("path", metavar="PATH", type=Path)
    ingest.add_argument("--device-id", help="the device the files came from")
    ingest.add_argument("--officer-id", help="officer to attribute files to when the file "
                        "name does not say")

    recordings = commands.add_parser("recordings", help="list the local catalog")
    recordings.add_argument("--json", action="store_true", help="one JSON array")

    verify = commands.add_parser("verify", help="re-hash originals, check manifests and the ledger")
    verify.add_argument("--all", action="store_true", help="every recording (the default)")
    verify.add_argument("ids", nargs="*", metavar="ID", help="recording ids (>= 12 hex digits)")
    verify.add_argument("--trust", action="append", default=[], metavar="FINGERPRINT",
                        help="a writer key believed (SHA256:..., published out of band); "
                        "adds to [verify] trusted_keys. Without any, only consistency is checked")
    verify.add_argument("--checkpoint", type=Path, metavar="FILE",
                        help="also check the archive against a checkpoint saved earlier with "
                        "`evidence-daemon checkpoint --out FILE`: a chain shorter than it, or "
                        "different from it, is a problem")

    checkpoint = commands.add_parser(
        "checkpoint", help="print the latest signed checkpoint of every ledger writer; with "
        "--out, save them for a later `verify --checkpoint`")
    checkpoint.add_argument("--out", type=Path, metavar="FILE",
                            help="write the checkpoint (JSON) here; keep it away from the archive")

    status = commands.add_parser("status", help="queue and compliance at a glance")
    status.add_argument("--json", action="store_true")

    run = commands.add_parser("run", help="the dock-station daemon: docked devices and inbox "
                              "folders, unattended, until SIGTERM")
    run.add_argument("--no-udev", action="store_true",
                     help="serve only the [[watch]] inbox folders (no device docking)")

    devices = commands.add_parser("devices", help="registered devices and officer assignments")
    device_actions = devices.add_subparsers(dest="devices_action", required=True, metavar="ACTION")
    devices_list = device_actions.add_parser("list", help="devices, docks, assignment history")
    devices_list.add_argument("--json", action="store_true", help="one JSON array")
    assign = device_actions.add_parser(
        "assign", help="assign DEVICE to OFFICER from a time on (closes the current assignment)")
    assign.add_argument("device", metavar="DEVICE")
    assign.add_argument("officer", metavar="OFFICER")
    assign.add_argument("--from", dest="valid_from", metavar="T", help="ISO 8601 time; without "
                        "an offset it is local time in station.timezone (default: now)")
    assign.add_argument("--to", dest="valid_to", metavar="T", help="end, exclusive (default: "
                        "open-ended, until the next assignment)")
    assign.add_argument("--note", default="", help="why, e.g. a shift plan or a ticket number")

    proxies = commands.add_parser("proxies", help="viewing copies: the queue, failures, retries")
    proxies.add_argument("--retry-failed", action="store_true", help="requeue failed proxy jobs")
    proxies.add_argument("--run", action="store_true", help="make the due proxies now, then exit")
    proxies.add_argument("--json", action="store_true", help="one JSON object")
    report = commands.add_parser("report", help="24-hour compliance per officer, device or "
                                 "station over a period; with --coverage, footage coverage of "
                                 "dispatched incidents; with --reviews, review completion")
    report.add_argument("--from", dest="period_from", metavar="DATE",
                        help="start (ISO 8601 date or time; local time in station.timezone)")
    report.add_argument("--to", dest="period_to", metavar="DATE",
                        help="end: a date includes that whole day; a time is exclusive")
    report.add_argument("--by", choices=("officer", "device", "station", "type"),
                        default="officer", help="type: with --coverage, the incident type")
    kind = report.add_mutually_exclusive_group()
    kind.add_argument("--coverage", action="store_true",
                      help="incidents that ended in the period by footage coverage (API node)")
    kind.add_argument("--reviews", action="store_true",
                      help="review samples: items reviewed per supervisor (API node)")
    report.add_argument("--format", dest="output_format", choices=("table", "csv", "json"),
                        default="table")
    add_api_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> ExitCode:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING - 10 * min(args.verbose, 2),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # The locale (or --lang) speaks until the configuration is read: its own errors included.
    i18n.use(args.lang or "auto")
    try:
        config = load_config(args.config, overrides=_parse_overrides(args.overrides))
        if args.lang is None and config.station.language != "auto":
            i18n.use(config.station.language)
        handler = {"ingest": cmd_ingest, "recordings": cmd_recordings, "verify": cmd_verify,
                   "checkpoint": cmd_checkpoint,
                   "status": cmd_status, "devices": cmd_devices, "run": cmd_run,
                   "proxies": cmd_proxies, "report": cmd_report, **API_HANDLERS}[args.command]
        return ExitCode(handler(config, args))
    except EvidenceError as exc:
        print(_("evidence-daemon: error: {message}").format(message=safe(exc.message)),
              file=sys.stderr)
        return ExitCode(exc.exit_code)
    except KeyboardInterrupt:
        print(_("evidence-daemon: interrupted; finished work is kept, the rest resumes next run"),
              file=sys.stderr)
        return ExitCode.INTERRUPTED


def _parse_overrides(items: list[str]) -> dict[str, str]:
    overrides = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(_("--set {item}: expected SECTION.KEY=VALUE").format(item=item))
        overrides[key.strip()] = value
    return overrides
