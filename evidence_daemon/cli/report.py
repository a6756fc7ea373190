"""``report``: 24-hour compliance per officer, device or station over a period."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime
from zoneinfo import ZoneInfo

from ..compliance.report import UNKNOWN
from ..config import Config
from ..errors import ConfigError, UsageError
from ..state.catalog import Catalog
from ..station import open_station
from .common import _parse_time
from .exit_codes import ExitCode
from ..i18n import _, word
from ..terminal import clip, columns, pad


REPORT_COLUMNS = ("group", "total", "on_time", "late", "overdue", "pending", "at_risk",
                  "late_hours_median", "late_hours_max", "time_implausible",
                  "time_implausible_late")


def _period_bound(text: str, option: str, zone: ZoneInfo, *, end: bool) -> datetime:
    """A date alone means the start of that day, or for ``--to`` the end of it."""
    moment = _parse_time(text, option, zone)
    if end and len(text.strip()) == 10:  # YYYY-MM-DD
        from datetime import timedelta

        moment += timedelta(days=1)
    return moment


def cmd_report(config: Config, args: argparse.Namespace) -> ExitCode:
    import csv

    from ..compliance.report import compliance_report

    if args.reviews:
        from ..api.incidents_cli import print_reviews

        print_reviews(config, output_format=args.output_format)
        return ExitCode.OK
    if args.period_from is None or args.period_to is None:
        raise UsageError(_("report needs --from and --to (except with --reviews)"))
    zone = ZoneInfo(config.station.timezone)
    start = _period_bound(args.period_from, "--from", zone, end=False)
    end = _period_bound(args.period_to, "--to", zone, end=True)
    if end <= start:
        raise ConfigError(_("--to must be after --from"))
    if args.coverage:
        from ..api.incidents_cli import print_coverage

        if args.by == "device":
            raise UsageError(_("--coverage groups by officer, station or type"))
        print_coverage(config, by=args.by, start=start, end=end, output_format=args.output_format)
        return ExitCode.OK
    if args.by == "type":
        raise UsageError(_("--by type goes with --coverage (recordings have no incident type)"))
    station = open_station(config, connect_archive=False)
    try:
        recordings = station.recordings()
        first_seen = Catalog(station.database).first_seen()
    finally:
        station.close()
    for recording in recordings:
        recording.setdefault("first_seen_at", first_seen.get(recording["id"]))
    groups = [group.as_dict() for group in compliance_report(
        recordings, by=args.by, station=config.station.id, start=start, end=end)]
    if args.output_format == "json":
        json.dump({"from": start.isoformat(), "to": end.isoformat(), "by": args.by,
                   "groups": groups}, sys.stdout, ensure_ascii=False, indent=2)
        sys.stdout.write("\n")
    elif args.output_format == "csv":
        writer = csv.DictWriter(sys.stdout, fieldnames=REPORT_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(groups)
    else:
        print(_("24-hour compliance by {by}, {start} to {end}").format(
            by=word(args.by), start=start.isoformat(), end=end.isoformat()))
        if not groups:
            print(_("no recordings in this period"))
            return ExitCode.OK
        print(columns([(word(args.by).upper(), 20), (_("TOTAL"), 6, ">"), (_("ON TIME"), 8, ">"),
                       (_("LATE"), 6, ">"), (_("OVERDUE"), 8, ">"), (_("PENDING"), 8, ">"),
                       (_("AT RISK"), 8, ">"), (_("LATE H MEDIAN"), 14, ">"),
                       (_("LATE H MAX"), 11, ">"), (_("BAD CLOCK"), 10, ">")], sep=" "))
        for group in groups:
            median = "-" if group["late_hours_median"] is None else f"{group['late_hours_median']:.1f}"
            longest = "-" if group["late_hours_max"] is None else f"{group['late_hours_max']:.1f}"
            bad_clock = str(group["time_implausible"])
            if group["time_implausible_late"]:
                bad_clock += " " + _("({count} late)").format(count=group['time_implausible_late'])
            name = _(group["group"]) if group["group"] == UNKNOWN else group["group"]
            print(f"{pad(clip(name, 20), 20)} {group['total']:>6} {group['on_time']:>8} "
                  f"{group['late']:>6} {group['overdue']:>8} {group['pending']:>8} "
                  f"{group['at_risk']:>8} {median:>14} {longest:>11} {pad(bad_clock, 10, '>')}")
        if any(group["time_implausible"] for group in groups):
            print(_("BAD CLOCK: recordings whose recorder clock was not believed (flag "
                    "time_implausible), counted in no other column; \"late\" there means more "
                    "than {hours:g} h after the station first saw them.").format(
                        hours=config.compliance.deadline_hours))
    return ExitCode.OK
