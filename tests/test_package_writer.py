"""Writing a package file (evidence_daemon.api.package.writer): a zip appears under its final
name whole or not at all, never over an existing file; and the README template ships as
package data."""

from __future__ import annotations

import errno
import fnmatch
import os
import tomllib
import zipfile
from datetime import datetime, timezone
from pathlib import Path

import pytest

from evidence_daemon.api.package import readme, writer
from evidence_daemon.errors import ConflictError, StorageError

from .faultlog import FaultLog

ROOT = Path(__file__).resolve().parent.parent
MOMENT = datetime(2026, 11, 30, 12, 0, tzinfo=timezone.utc)


def _write(out: Path, text: bytes = b"clip") -> None:
    with writer.package_file(out, MOMENT) as members:
        members.add_bytes("a.txt", text)


def _leftovers(directory: Path) -> list[str]:
    return sorted(path.name for path in directory.iterdir() if path.name.startswith("."))


def test_a_package_appears_whole_and_lists_its_members(tmp_path: Path) -> None:
    out = tmp_path / "out" / "package.zip"
    out.parent.mkdir()
    with writer.package_file(out, MOMENT) as members:
        members.add_bytes("a.txt", b"listed")
        members.add_bytes("package.json", b"{}", listed=False)
        assert not out.exists()  # only once the block is done
    with zipfile.ZipFile(out) as archive:
        assert archive.read("a.txt") == b"listed"
        assert archive.getinfo("a.txt").date_time == (2026, 11, 30, 12, 0, 0)
    assert [item["name"] for item in members.listed] == ["a.txt"]
    assert _leftovers(out.parent) == []


def test_a_failure_inside_leaves_no_file(tmp_path: Path) -> None:
    out = tmp_path / "package.zip"
    with pytest.raises(RuntimeError):
        with writer.package_file(out, MOMENT) as members:
            members.add_bytes("a.txt", b"half")
            raise RuntimeError("the archive went away")
    with pytest.raises(StorageError, match="cannot write the evidence package"):
        with writer.package_file(out, MOMENT):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    assert list(tmp_path.iterdir()) == []


def test_an_empty_placeholder_is_taken_over_but_no_other_file(tmp_path: Path) -> None:
    placeholder = tmp_path / "reserved.zip"
    placeholder.touch()
    _write(placeholder)
    assert zipfile.ZipFile(placeholder).read("a.txt") == b"clip"

    existing = tmp_path / "existing.zip"
    existing.write_bytes(b"an earlier package")
    with pytest.raises(ConflictError, match="never overwritten"):
        _write(existing)
    assert existing.read_bytes() == b"an earlier package"
    assert _leftovers(tmp_path) == []


def test_without_hard_links_a_package_is_renamed_into_place(tmp_path: Path, fault_log: FaultLog,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """FAT/exFAT media refuse link(2): the package is renamed in, never over a file."""

    def no_links(source: object, target: object) -> None:
        raise OSError(errno.EPERM, os.strerror(errno.EPERM))

    monkeypatch.setattr(os, "link", no_links)
    out = tmp_path / "stick" / "package.zip"
    out.parent.mkdir()
    _write(out)
    assert zipfile.ZipFile(out).read("a.txt") == b"clip"
    assert _leftovers(out.parent) == []
    fault_log("export: package publishing", "hard links refused (FAT/exFAT stick)",
              injected_by="os.link raising EPERM", files_lost=0, wrongly_archived=0,
              duplicates=0, exit_code=None, message=f"{out.name} written by rename")


def test_without_hard_links_a_file_that_appears_meanwhile_is_kept(
        tmp_path: Path, fault_log: FaultLog, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "package.zip"

    def file_appears(source: object, target: object) -> None:
        out.write_bytes(b"written by someone else meanwhile")
        raise OSError(errno.EPERM, os.strerror(errno.EPERM))

    monkeypatch.setattr(os, "link", file_appears)
    with pytest.raises(ConflictError, match="never overwritten") as refused:
        _write(out)
    assert out.read_bytes() == b"written by someone else meanwhile"
    assert _leftovers(tmp_path) == []
    fault_log("export: package publishing", "a file appears at the package's name while links "
              "are refused", injected_by="os.link writing the target, then raising EPERM",
              files_lost=0, wrongly_archived=0, duplicates=0, exit_code=ConflictError.exit_code,
              message=str(refused.value))


# -- the README template is package data ----------------------------------------------------

def test_the_readme_template_is_found_through_the_imported_package() -> None:
    template = readme.readme_template()
    assert template.template.startswith("EVIDENCE PACKAGE ${package_id}")
    assert "证据包 ${package_id}" in template.template
    fields = {name for _, named, braced, _ in template.pattern.findall(template.template)
              for name in (named, braced) if name}
    assert fields == {"package_id", "created_at", "actor", "reason", "writer", "fingerprint",
                      "example", "recordings_en", "recordings_zh", "keys_list", "steps_en",
                      "steps_zh", "others_en", "others_zh"}


def test_every_data_file_of_the_package_is_declared_package_data() -> None:
    """A file that is not a module ships in the wheel only if [tool.setuptools.package-data]
    names it (relative to the nearest package); else an installed node has no README."""
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-data"]
    source = ROOT / "evidence_daemon"
    data_files = [path for path in source.rglob("*") if path.is_file()
                  and path.suffix not in (".py", ".pyc") and "__pycache__" not in path.parts]
    assert source / "api" / "package" / readme.TEMPLATE_NAME in data_files
    for path in data_files:
        package = path.parent
        while not (package / "__init__.py").exists():
            package = package.parent
        name = ".".join(package.relative_to(ROOT).parts)
        relative = path.relative_to(package).as_posix()
        assert any(fnmatch.fnmatch(relative, pattern) for pattern in declared.get(name, [])), (
            f"{path.relative_to(ROOT)} is not in [tool.setuptools.package-data] {name!r}")
