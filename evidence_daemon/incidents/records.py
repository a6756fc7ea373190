"""Dispatch records (接处警) read from CSV or JSON into typed incidents. Pure: bytes in, values out.

A dispatch system's export names its columns in English or Chinese; both are accepted:

    incident_id | 警情编号      officers | 处警民警 (ids separated by ; , 、 or space)
    start | 开始时间           end | 结束时间
    type | 警情类型            place | 地点            station | 单位  (optional)

Times are ISO 8601. A time without an offset is local time in the station's zone (what a
dispatch clerk's screen showed); it is never guessed as UTC. A bad row is reported with its
line number and the reason, and the good rows still load: one typo must not hide a month of
incidents. What must never happen: a row silently dropped, or a time read in the wrong zone.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone, tzinfo

from ..errors import ConfigError
from ..i18n import _

MAX_INCIDENT_HOURS = 72  # longer than this is a typo in a dispatch export, not an incident
MAX_ID_LENGTH = 128

_ALIASES: Mapping[str, str] = {
    "incident_id": "incident_id", "incident": "incident_id", "id": "incident_id",
    "警情编号": "incident_id", "接警编号": "incident_id", "编号": "incident_id",
    "officers": "officers", "officer_ids": "officers", "officer_id": "officers",
    "处警民警": "officers", "民警": "officers", "警号": "officers",
    "start": "start", "started_at": "start", "开始时间": "start", "到达时间": "start",
    "end": "end", "ended_at": "end", "结束时间": "end",
    "type": "type", "incident_type": "type", "警情类型": "type", "类型": "type",
    "place": "place", "location": "place", "地点": "place", "发生地点": "place",
    "station": "station", "unit": "station", "单位": "station", "派出所": "station",
}
_REQUIRED = ("incident_id", "officers", "start", "end")
_OFFICER_SEPARATORS = re.compile(r"[;,、，；\s]+")
_ID_CHARS = re.compile(r"^[\w.:-]+$")  # no "/": an incident id is also a case id


@dataclass(frozen=True)
class Incident:
    """One dispatched incident: who was sent, and the window they should have recorded."""

    incident_id: str
    officers: tuple[str, ...]
    start: datetime  # aware, UTC
    end: datetime
    type: str = ""
    place: str = ""
    station: str = ""

    def to_json(self) -> dict[str, object]:
        return {"incident_id": self.incident_id, "officers": list(self.officers),
                "start": self.start.isoformat(), "end": self.end.isoformat(),
                "type": self.type, "place": self.place, "station": self.station}


@dataclass(frozen=True)
class RowProblem:
    line: int  # the line of the file (CSV: counting the header as 1) or the JSON item number
    reason: str

    def describe(self, name: str) -> str:
        return f"{name}:{self.line}: {self.reason}"


@dataclass(frozen=True)
class ParsedIncidents:
    incidents: tuple[Incident, ...]
    problems: tuple[RowProblem, ...] = field(default=())


def parse_incidents(data: bytes, *, name: str, zone: tzinfo) -> ParsedIncidents:
    """Read a dispatch export; JSON when it starts with ``[`` or ``{``, else CSV.

    Raises ConfigError only when the file as a whole cannot be read (not UTF-8, not JSON
    where it looks like JSON, a CSV without the required columns).
    """
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError(_("{name} is not UTF-8 text (byte {start}); export it from the dispatch "
                            "system as UTF-8").format(name=name, start=exc.start)) from None
    stripped = text.lstrip()
    if stripped.startswith(("[", "{")):
        return _parse_json(stripped, name=name, zone=zone)
    return _parse_csv(text, name=name, zone=zone)


def _parse_json(text: str, *, name: str, zone: tzinfo) -> ParsedIncidents:
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(_("{name} is not valid JSON: {msg} at line {lineno}").format(
            name=name, msg=exc.msg, lineno=exc.lineno)) from None
    items = document.get("incidents") if isinstance(document, dict) else document
    if not isinstance(items, list):
        raise ConfigError(_("{name}: expected a list of incidents or {{\"incidents\": [...]}}").format(
            name=name))
    rows: list[tuple[int, Mapping[str, object]]] = []
    problems: list[RowProblem] = []
    for number, item in enumerate(items, start=1):
        if isinstance(item, dict):
            rows.append((number, item))
        else:
            problems.append(RowProblem(number, "not an object"))
    return _collect(rows, problems, zone)


def _parse_csv(text: str, *, name: str, zone: tzinfo) -> ParsedIncidents:
    sample = text[:4096]
    try:
        dialect: type[csv.Dialect] | csv.Dialect = csv.Sniffer().sniff(sample, delimiters=",;\t")
    except csv.Error:
        dialect = csv.excel
    reader = csv.reader(io.StringIO(text), dialect)
    try:
        header = next(reader)
    except StopIteration:
        return ParsedIncidents(())
    columns = [_ALIASES.get(cell.strip().lower(), _ALIASES.get(cell.strip(), "")) for cell in header]
    missing = [column for column in _REQUIRED if column not in columns]
    if missing:
        raise ConfigError(
            _("{name}: the header has no column for {join} (found: {value})").format(
                name=name, join=', '.join(missing), value=', '.join((cell.strip() for cell in header)) or 'nothing'))
    rows: list[tuple[int, Mapping[str, object]]] = []
    for cells in reader:
        if not any(cell.strip() for cell in cells):
            continue
        values = {column: cell for column, cell in zip(columns, cells) if column}
        rows.append((reader.line_num, values))
    return _collect(rows, [], zone)


def _collect(rows: Iterable[tuple[int, Mapping[str, object]]], problems: list[RowProblem],
             zone: tzinfo) -> ParsedIncidents:
    incidents: dict[str, Incident] = {}
    first_line: dict[str, int] = {}
    for line, values in rows:
        try:
            incident = incident_from(values, zone)
        except ValueError as exc:
            problems.append(RowProblem(line, str(exc)))
            continue
        earlier = incidents.get(incident.incident_id)
        if earlier is not None and earlier != incident:
            problems.append(RowProblem(line, (
                f"incident {incident.incident_id} appears again with other details "
                f"(first at line {first_line[incident.incident_id]}); this row was not loaded")))
            continue
        incidents.setdefault(incident.incident_id, incident)
        first_line.setdefault(incident.incident_id, line)
    problems.sort(key=lambda problem: problem.line)
    return ParsedIncidents(tuple(incidents.values()), tuple(problems))


def incident_from(values: Mapping[str, object], zone: tzinfo) -> Incident:
    """One incident from a row's values by canonical column; ValueError names what is wrong."""
    canonical = {_ALIASES.get(str(key).strip().lower(), _ALIASES.get(str(key).strip(), "")): value
                 for key, value in values.items()}
    incident_id = _text(canonical.get("incident_id"))
    if not incident_id:
        raise ValueError(_("incident id is empty"))
    if len(incident_id) > MAX_ID_LENGTH or not _ID_CHARS.match(incident_id):
        raise ValueError(_("incident id {incident_id!r} has characters other than letters, digits "
                           "and . : - _").format(incident_id=incident_id[:40]))
    officers = _officers(canonical.get("officers"))
    if not officers:
        raise ValueError(_("incident {incident_id}: no officer id").format(incident_id=incident_id))
    start = _moment(canonical.get("start"), zone, f"incident {incident_id}: start")
    end = _moment(canonical.get("end"), zone, f"incident {incident_id}: end")
    if end < start:
        raise ValueError(_("incident {incident_id}: ends ({isoformat}) before it starts "
                           "({isoformat2})").format(
                               incident_id=incident_id, isoformat=end.isoformat(), isoformat2=start.isoformat()))
    if end - start > timedelta(hours=MAX_INCIDENT_HOURS):
        raise ValueError(_("incident {incident_id}: lasts more than {MAX_INCIDENT_HOURS} hours").format(
            incident_id=incident_id, MAX_INCIDENT_HOURS=MAX_INCIDENT_HOURS))
    return Incident(incident_id, officers, start, end, _text(canonical.get("type")),
                    _text(canonical.get("place")), _text(canonical.get("station")))


def _text(value: object) -> str:
    return "" if value is None else str(value).strip()


def _officers(value: object) -> tuple[str, ...]:
    items: Sequence[object] = value if isinstance(value, list) else _OFFICER_SEPARATORS.split(_text(value))
    seen: dict[str, None] = {}
    for item in items:
        officer = _text(item)
        if officer:
            if not _ID_CHARS.match(officer):
                raise ValueError(_("officer id {officer!r} has characters other than letters, "
                                   "digits and . : - _").format(officer=officer[:40]))
            seen.setdefault(officer, None)
    return tuple(seen)


def _moment(value: object, zone: tzinfo, what: str) -> datetime:
    text = _text(value)
    if not text:
        raise ValueError(_("{what} is empty").format(what=what))
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace("/", "-"))
    except ValueError:
        raise ValueError(_("{what} {text!r} is not a date and time (expected e.g. 2026-11-30 "
                           "08:15:00 or 2026-11-30T08:15:00+08:00)").format(
                               what=what, text=text[:40])) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=zone)
    return moment.astimezone(timezone.utc)

