"""The exit codes are a contract: one ``ExitCode`` enum, the error tree's codes inside it, the
README's codes inside it, and no command returning a bare number."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

from evidence_daemon import errors
from evidence_daemon.cli.exit_codes import ExitCode

ROOT = Path(__file__).resolve().parents[1]
CLI_PACKAGE = ROOT / "evidence_daemon" / "cli"


def _error_classes() -> list[type[errors.EvidenceError]]:
    found: list[type[errors.EvidenceError]] = []
    pending: list[type[errors.EvidenceError]] = [errors.EvidenceError]
    while pending:
        cls = pending.pop()
        found.append(cls)
        pending.extend(cls.__subclasses__())
    return found


@pytest.mark.parametrize("error", _error_classes(), ids=lambda cls: cls.__name__)
def test_every_error_exits_with_a_member_of_the_enum(error: type[errors.EvidenceError]) -> None:
    assert ExitCode(error.exit_code).value == error.exit_code


@pytest.mark.parametrize(("error", "member"), [
    (errors.EvidenceError, ExitCode.ERROR), (errors.ConfigError, ExitCode.USAGE),
    (errors.UsageError, ExitCode.USAGE), (errors.StateError, ExitCode.STATE),
    (errors.DeviceError, ExitCode.DEVICE), (errors.IngestError, ExitCode.NOT_ARCHIVED),
    (errors.StorageError, ExitCode.ARCHIVE_UNREACHABLE),
    (errors.IntegrityError, ExitCode.PROBLEMS_FOUND), (errors.MediaError, ExitCode.MEDIA),
    (errors.AccessError, ExitCode.ACCESS),
])
def test_the_enum_names_what_each_error_means(error: type[errors.EvidenceError],
                                              member: ExitCode) -> None:
    assert error.exit_code == member


def test_the_documented_codes_are_the_enums_and_keep_their_numbers() -> None:
    table = [line for line in (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
             if line.startswith("| `")]
    documented = {int(code) for line in table
                  for code in re.findall(r"(?:^|[;(]|exit)\s*(\d{1,3})\b", line.rsplit("|", 2)[-2])}
    assert documented >= {0, 2, 3, 5, 6, 7}
    assert documented <= {member.value for member in ExitCode}
    assert [(member.name, member.value) for member in ExitCode] == [
        ("OK", 0), ("ERROR", 1), ("USAGE", 2), ("STATE", 3), ("DEVICE", 4), ("NOT_ARCHIVED", 5),
        ("ARCHIVE_UNREACHABLE", 6), ("PROBLEMS_FOUND", 7), ("MEDIA", 8), ("ACCESS", 9),
        ("INTERRUPTED", 130)]


@pytest.mark.parametrize("module", sorted(CLI_PACKAGE.glob("*.py")), ids=lambda path: path.name)
def test_no_command_returns_a_bare_number(module: Path) -> None:
    """The rule of the cli package docstring: a command returns an ExitCode member, or raises."""
    tree = ast.parse(module.read_text(encoding="utf-8"))
    bare = [node.lineno for node in ast.walk(tree)
            if isinstance(node, ast.Return) and isinstance(node.value, ast.Constant)
            and isinstance(node.value.value, int)]
    conditional = [node.lineno for node in ast.walk(tree)
                   if isinstance(node, ast.Return) and isinstance(node.value, ast.IfExp)
                   and any(isinstance(part, ast.Constant) and isinstance(part.value, int)
                           for part in (node.value.body, node.value.orelse))]
    assert bare + conditional == [], f"{module.name}: return a member of ExitCode"


def test_python_dash_m_runs_the_same_command_line() -> None:
    done = subprocess.run([sys.executable, "-m", "evidence_daemon", "--help"],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == ExitCode.OK, done.stderr
    assert done.stdout.startswith("usage: evidence-daemon")
    for command in ("ingest", "verify", "checkpoint", "devices", "proxies", "report", "serve"):
        assert command in done.stdout
