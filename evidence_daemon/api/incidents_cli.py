"""The API node's commands for supervisors: ``incidents import|list`` and ``review
sample|show|mark|recompute``; ``report --coverage|--reviews`` prints through
``print_coverage`` and ``print_reviews``.

Like the API they act as the node (its database, key and audit chain); the actor recorded
is ``cli:<login>``. Registered by ``api/cli.add_commands``.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from ..config import Config
from ..errors import ConfigError, IntegrityError
from ..incidents.coverage import Coverage
from ..incidents.report import (
    COVERAGE_COLUMNS, REVIEW_COLUMNS, coverage_rows, coverage_table, missing_lines, review_table,
)
from ..incidents.sampling import SamplePeriod
from ..i18n import _, word
from ..terminal import pad


def add_commands(commands: Any) -> None:
    incidents = commands.add_parser("incidents", help="dispatched incidents (接处警) and whether "
                                    "they have footage (API node)")
    actions = incidents.add_subparsers(dest="incidents_action", required=True, metavar="ACTION")
    load = actions.add_parser("import", help="load a dispatch export (CSV or JSON); each import "
                              "is archived and recorded; bad rows are listed, good rows load")
    load.add_argument("file", type=Path, metavar="FILE")
    listing = actions.add_parser("list", help="incidents by coverage, newest first")
    listing.add_argument("--coverage", choices=tuple(Coverage))
    listing.add_argument("--officer")
    listing.add_argument("--limit", type=int, default=50)
    listing.add_argument("--json", action="store_true")

    review = commands.add_parser("review", help="supervisors' review samples no one can "
                                 "cherry-pick (API node)")
    steps = review.add_subparsers(dest="review_action", required=True, metavar="ACTION")
    sample = steps.add_parser("sample", help="draw (or show the already drawn) random sample of "
                              "a period, seeded by a checkpoint made after it")
    sample.add_argument("--from", dest="period_from", required=True, metavar="TIME")
    sample.add_argument("--to", dest="period_to", required=True, metavar="TIME")
    sample.add_argument("--per-officer", type=int, required=True, metavar="N")
    sample.add_argument("--json", action="store_true")
    show = steps.add_parser("show", help="a sample and which items are reviewed")
    show.add_argument("sample_id", metavar="SAMPLE")
    show.add_argument("--json", action="store_true")
    mark = steps.add_parser("mark", help="mark a sampled recording reviewed, with a note")
    mark.add_argument("sample_id", metavar="SAMPLE")
    mark.add_argument("recording", metavar="ID")
    mark.add_argument("--note", required=True)
    again = steps.add_parser("recompute", help="draw a recorded sample again from the archive "
                             "alone; exit 7 when it differs")
    again.add_argument("sample_id", metavar="SAMPLE")


def cmd_incidents(config: Config, args: argparse.Namespace) -> int:
    from .incidents import import_dispatch
    from .service import open_api_node

    node = open_api_node(config)
    try:
        if args.incidents_action == "import":
            try:
                data = args.file.read_bytes()
            except OSError as exc:
                raise ConfigError(_("cannot read {file}: {strerror}").format(
                    file=args.file, strerror=exc.strerror)) from exc
            node.indexer.poll()
            result = import_dispatch(node.incidents, node.store, node.record, data,
                                     name=args.file.name, actor=f"cli:{_login()}",
                                     zone=ZoneInfo(config.station.timezone), now=node.clock())
            for problem in result.problems:
                print(_("not loaded: {problem}").format(problem=problem.describe(str(args.file))))
            print(_("{file}: {added} added, {changed} changed, {unchanged} unchanged, {bad} "
                    "row(s) not loaded").format(
                        file=args.file, added=result.counts['added'],
                        changed=result.counts['changed'], unchanged=result.counts['unchanged'],
                        bad=len(result.problems))
                  + (_("; archived as {document}, recorded as {writer}#{seq}").format(
                      document=result.document, writer=node.writer, seq=result.seq)
                     if result.document else ""))
            counts = node.incidents.counts()
            print(_("coverage: ")
                  + ", ".join(f"{counts[state]} {word(state)}" for state in Coverage))
            return 0
        node.indexer.poll()  # what the archive holds now, as the running API node would see it
        node.incidents.refresh(node.clock())
        rows = node.incidents.page(state=Coverage(args.coverage) if args.coverage else None,
                                   officer=args.officer, limit=args.limit)
        if args.json:
            print(json.dumps([row.to_json() for row in rows], ensure_ascii=False, indent=2))
            return 0
        for row in rows:
            print(f"{pad(row.incident.incident_id, 20)} {pad(word(row.state), 8)} "
                  f"{row.fraction * 100:5.1f}%  "
                  f"{row.incident.start.isoformat()}  {','.join(row.incident.officers)}  "
                  f"{row.incident.type}  {row.incident.place}")
        if not rows:
            print(_("no incidents"))
        return 0
    finally:
        node.close()


def cmd_review(config: Config, args: argparse.Namespace) -> int:
    from ..incidents.review import recompute
    from ..custody.trust import anchors_from
    from .service import open_api_node

    if args.review_action == "recompute":
        from ..archive.factory import build_store

        result = recompute(build_store(config), args.sample_id,
                           trust=anchors_from((), config.verify.trusted_keys))
        print(_("sample {sample}: {count} candidate recording(s)").format(
            sample=args.sample_id, count=result.candidates))
        for officer, ids in result.sample.items():
            print(f"  {officer}: {', '.join(sha[:12] for sha in ids)}")
        for problem in result.problems:
            print(_("PROBLEM: {problem}").format(problem=problem))
        print(_("the sample follows from the archive") if result.ok else
              _("the recorded sample does not follow from the archive"))
        return 0 if result.ok else IntegrityError.exit_code
    node = open_api_node(config, connect_archive=args.review_action != "show")
    try:
        if args.review_action == "sample":
            zone = ZoneInfo(config.station.timezone)
            try:
                period = SamplePeriod(_moment(args.period_from, "--from", zone),
                                      _moment(args.period_to, "--to", zone), args.per_officer)
            except ValueError as exc:
                raise ConfigError(str(exc)) from None
            sample = node.reviews.sample(period, actor=f"cli:{_login()}", now=node.clock())
        elif args.review_action == "mark":
            node.reviews.mark_reviewed(args.sample_id, args.recording.lower(),
                                       actor=f"cli:{_login()}", note=args.note)
            sample = node.reviews.get(args.sample_id)
        else:
            sample = node.reviews.get(args.sample_id)
    finally:
        node.close()
    if getattr(args, "json", False):
        print(json.dumps(sample.to_json(), ensure_ascii=False, indent=2))
        return 0
    print(_("review sample {sample}: {start} to {end}, {per_officer} per officer; "
            "{reviewed} of {items} reviewed").format(
                sample=sample.id, start=sample.period.start.isoformat(),
                end=sample.period.end.isoformat(), per_officer=sample.period.per_officer,
                reviewed=sample.reviewed, items=len(sample.items)))
    print("  " + _("seeded by checkpoint {writer}#{seq}; check it with `evidence-daemon review "
                   "recompute {sample}`").format(writer=sample.checkpoint['writer'],
                                                 seq=sample.checkpoint['seq'], sample=sample.id))
    for item in sample.items:
        done = (_("reviewed by {supervisor} {time}").format(
            supervisor=item.supervisor, time=item.reviewed_at[:16]) if item.reviewed_at
            else _("to review"))
        print(f"  {pad(item.officer_id, 12)} {item.sha256}  {done}")
    return 0


def print_coverage(config: Config, *, by: str, start: datetime, end: datetime,
                   output_format: str) -> None:
    from .db import open_api_database
    from .incidents import IncidentBook, coverage_policy

    if not config.api_database_path.exists():
        raise ConfigError(_("no API node database at {api_database_path}: incidents and their "
                            "coverage are kept by the API node; run this with its config").format(
                                api_database_path=config.api_database_path))
    database = open_api_database(config.api_database_path)
    try:
        book = IncidentBook(database, policy=coverage_policy(config))
        results = book.ended_between(start, end)
    finally:
        database.close()
    try:
        rows = coverage_rows(results, by=by)
    except ValueError as exc:
        raise ConfigError(_("--by: {exc}").format(exc=exc)) from None
    if output_format == "json":
        json.dump({"from": start.isoformat(), "to": end.isoformat(), "by": by, "groups": rows,
                   "missing": [r.incident.to_json() for r in results
                               if r.state is Coverage.MISSING]},
                  sys.stdout, ensure_ascii=False, indent=2)
        sys.stdout.write("\n")
    elif output_format == "csv":
        writer = csv.DictWriter(sys.stdout, fieldnames=COVERAGE_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    else:
        for line in coverage_table(rows, by=by, period=f"{start.isoformat()} to {end.isoformat()}"):
            print(line)
        for line in missing_lines(results):
            print(line)


def print_reviews(config: Config, *, output_format: str) -> None:
    from .db import open_api_database
    from .reviews import ReviewBook

    if not config.api_database_path.exists():
        raise ConfigError(_("no API node database at {api_database_path}: review samples are kept "
                            "by the API node; run this with its config").format(
                                api_database_path=config.api_database_path))
    database = open_api_database(config.api_database_path)
    try:
        rows = ReviewBook(database, writer=config.api.id, record=_no_record,
                          checkpoint=lambda: None).completion()
    finally:
        database.close()
    if output_format == "json":
        print(json.dumps({"reviews": rows}, ensure_ascii=False, indent=2))
    elif output_format == "csv":
        writer = csv.DictWriter(sys.stdout, fieldnames=REVIEW_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    else:
        for line in review_table(rows):
            print(line)


def _no_record(*_: Any, **__: Any) -> dict[str, Any]:
    raise AssertionError("a report records nothing")


def _moment(text: str, option: str, zone: ZoneInfo) -> datetime:
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ConfigError(_("{option}: not an ISO 8601 date or time: {text!r}").format(
            option=option, text=text)) from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=zone)


def _login() -> str:
    from .cli import _login as login
    return login()


HANDLERS = {"incidents": cmd_incidents, "review": cmd_review}
