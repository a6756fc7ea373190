"""``report --coverage`` and ``report --reviews``: rows for a table, CSV or JSON. Pure."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ..i18n import _, word
from ..terminal import clip, columns, pad
from .coverage import Coverage, CoverageResult, summarise

COVERAGE_COLUMNS = ("group", "total", "covered", "partial", "missing", "pending",
                    "mean_fraction")
REVIEW_COLUMNS = ("supervisor", "samples", "items", "reviewed", "completion")


def coverage_rows(results: Iterable[CoverageResult], *, by: str) -> list[dict[str, Any]]:
    return [{"group": row.group, "total": row.total,
             **{str(state): row.counts[state] for state in Coverage},
             "mean_fraction": round(row.mean_fraction, 4)}
            for row in summarise(results, by=by)]


def coverage_table(rows: Sequence[Mapping[str, Any]], *, by: str, period: str) -> list[str]:
    lines = [_("Footage coverage of dispatched incidents by {by}, {period}").format(
        by=word(by), period=period)]
    if not rows:
        return [*lines, _("no incidents ended in this period")]
    lines.append(columns([(word(by).upper(), 20), (_("TOTAL"), 6, ">"), (_("COVERED"), 8, ">"),
                          (_("PARTIAL"), 8, ">"), (_("MISSING"), 8, ">"), (_("PENDING"), 8, ">"),
                          (_("MEAN COVERED"), 13, ">")], sep=" "))
    for row in rows:
        lines.append(f"{pad(clip(str(row['group']), 20), 20)} {row['total']:>6} {row['covered']:>8} "
                     f"{row['partial']:>8} {row['missing']:>8} {row['pending']:>8} "
                     f"{row['mean_fraction'] * 100:>12.1f}%")
    lines.append(_("PENDING: the 24-hour archival window is still open; footage may still be on "
                   "a recorder. MISSING: closed, with no recording of any officer sent."))
    return lines


def missing_lines(results: Iterable[CoverageResult], *, limit: int = 20) -> list[str]:
    """The incidents without footage, for the operator to act on (newest last)."""
    missing = [result for result in results if result.state is Coverage.MISSING]
    lines = [f"  {r.incident.incident_id}  {r.incident.start.isoformat()}  "
             f"{','.join(r.incident.officers)}  {r.incident.type}  {r.incident.place}"
             for r in missing[-limit:]]
    if len(missing) > limit:
        lines.insert(0, "  " + _("... and {count} earlier").format(count=len(missing) - limit))
    return ([_("Incidents without footage:"), *lines] if missing else [])


def review_table(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    if not rows:
        return [_("no review samples drawn")]
    lines = [columns([(_("SUPERVISOR"), 24), (_("SAMPLES"), 8, ">"), (_("ITEMS"), 6, ">"),
                      (_("REVIEWED"), 9, ">"), (_("DONE"), 7, ">")], sep=" ")]
    for row in rows:
        lines.append(f"{pad(clip(str(row['supervisor']), 24), 24)} {row['samples']:>8} {row['items']:>6} "
                     f"{row['reviewed']:>9} {row['completion'] * 100:>6.1f}%")
    return lines
