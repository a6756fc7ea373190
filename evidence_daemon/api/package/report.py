"""What ``verify_package`` found, and the lines ``evidence-daemon verify-package`` prints.

What must never happen here: a report that reads OK while it holds a problem, or a warning
(an unproven entry, an unchecked timestamp, keys not compared with trusted ones) left unsaid.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...custody.chain import Problem


@dataclass
class PackageReport:
    """What ``verify_package`` found. Problems name the file in the zip they concern."""

    path: Path
    problems: list[Problem] = field(default_factory=list)
    package_id: str | None = None
    created_at: str | None = None
    exported_by: str | None = None
    reason: str | None = None
    exporter: str | None = None  # writer id of the exporting API node
    recordings: list[str] = field(default_factory=list)
    writers: dict[str, str] = field(default_factory=dict)  # writer -> key fingerprint
    files_checked: int = 0
    entries_checked: int = 0  # ledger files in the runs, full entries and stubs
    redacted: dict[str, int] = field(default_factory=dict)  # writer -> stubs in its run
    trusted_checked: bool = False  # keys were compared with trusted fingerprints
    format_version: int | None = None
    # version 3: per writer, entries proven and the checkpoint they are proven against
    proven: dict[str, int] = field(default_factory=dict)
    checkpoints: dict[str, str] = field(default_factory=dict)  # writer -> what it signs
    roles: dict[str, str] = field(default_factory=dict)  # writer -> role and how it is known
    uncovered: list[str] = field(default_factory=list)  # ledger files no checkpoint covers yet
    timestamps: dict[str, str] = field(default_factory=dict)  # .tsr file -> what it states
    timestamps_unchecked: list[str] = field(default_factory=list)  # no TSA certificate given

    @property
    def ok(self) -> bool:
        return not self.problems

    def problem(self, subject: str, message: str, recording: str | None = None) -> None:
        self.problems.append(Problem(subject, message, recording))

    def as_dict(self) -> dict[str, Any]:
        """For ``verify-package --json``."""
        return {
            "ok": self.ok, "package": str(self.path), "package_id": self.package_id,
            "created_at": self.created_at, "exported_by": self.exported_by,
            "reason": self.reason, "exporter": self.exporter, "recordings": self.recordings,
            "writers": self.writers, "trusted_checked": self.trusted_checked,
            "files_checked": self.files_checked, "entries_checked": self.entries_checked,
            "redacted": self.redacted, "format_version": self.format_version,
            "proven": self.proven, "checkpoints": self.checkpoints, "roles": self.roles,
            "uncovered": self.uncovered, "timestamps": self.timestamps,
            "timestamps_unchecked": self.timestamps_unchecked,
            "problems": [{"file": problem.subject, "message": problem.message,
                          "recording": problem.recording} for problem in self.problems],
        }



def format_package_report(report: PackageReport) -> list[str]:
    """The lines ``evidence-daemon verify-package`` prints (exit 0 when ``report.ok``, else 7)."""
    lines: list[str] = []
    if report.package_id is not None:
        lines.append(f"evidence package {report.package_id}: exported {report.created_at} by "
                     f"{report.exported_by} on {report.exporter}")
        lines.append(f"reason: {report.reason}")
    proven = report.format_version == 3
    for writer, key_fingerprint in sorted(report.writers.items()):
        if proven:
            against = report.checkpoints.get(writer)
            lines.append(f"ledger writer {writer}: key {key_fingerprint}, "
                         f"{report.roles.get(writer, 'role unknown')}; "
                         + (f"{report.proven.get(writer, 0)} entries proven against its {against}"
                            if against else "no checkpoint in the package"))
            continue
        count = report.redacted.get(writer, 0)
        redacted = (f", {count} {'entry' if count == 1 else 'entries'} about other recordings "
                    "redacted" if count else "")
        lines.append(f"ledger writer {writer}: key {key_fingerprint}{redacted}")
    for recording in report.recordings:
        lines.append(f"recording {recording}")
    redacted_total = sum(report.redacted.values())
    if redacted_total:
        are = "entry is" if redacted_total == 1 else "entries are"
        lines.append(f"{redacted_total} ledger {are} shown only by hash: the chain proves where "
                     "they stand, not what they say; that they concern no recording here rests "
                     "on the exporter's signature")
    for name in report.uncovered:
        lines.append(f"WARNING {name}: not covered by a checkpoint (consistency with the chain "
                     "not proven); only its writer's signature vouches for it")
    for name, stated in sorted(report.timestamps.items()):
        lines.append(f"timestamp {name}: {stated}")
    for name in report.timestamps_unchecked:
        lines.append(f"timestamp {name} not checked: give --tsa-cert FILE (the TSA's "
                     "certificates) to check it")
    for problem in report.problems:
        lines.append(f"FAIL {problem}")
    if not report.trusted_checked and report.writers:
        lines.append("keys were not compared with trusted fingerprints: compare the ones above "
                     "with those your agency publishes")
    verdict = "OK" if report.ok else f"{len(report.problems)} problem(s)"
    how = (f"{sum(report.proven.values())} proven, {len(report.uncovered)} not covered by a "
           "checkpoint" if proven else f"{redacted_total} redacted")
    lines.append(f"checked {report.files_checked} file(s), {len(report.recordings)} recording(s) "
                 f"and {report.entries_checked} ledger entries ({how}) "
                 f"from {len(report.writers)} "
                 f"writer(s) in {report.path.name}: {verdict}")
    return lines
