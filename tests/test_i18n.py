"""The station in 简体中文 and English (issue 16): the catalogue is complete, no message a
person reads escapes it, tables line up with Chinese text, machine output stays English.

The commands run in this process under ``LANG=zh_CN.UTF-8`` and ``LANG=en_US.UTF-8``; under
zh_CN any output line holding an English word (3+ letters) that is not a path, an id, a config
key, a command or a unit fails the test, naming the line.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from evidence_daemon import i18n
from evidence_daemon.i18n import _, language_from_environment, untranslated
from evidence_daemon.terminal import clip, columns, display_width, pad

from .footage import make_video
from .helpers import run_cli, write_config

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "evidence_daemon"
ZH_PO = PACKAGE / "locale" / "zh_CN" / "LC_MESSAGES" / "evidence-daemon.po"
POT = PACKAGE / "locale" / "evidence-daemon.pot"


@pytest.fixture(scope="session")
def compiled_catalogues() -> None:
    """The .mo files, compiled from the .po files as scripts/test and a package build do."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("evidence_setup", ROOT / "setup.py")
    assert spec is not None and spec.loader is not None
    source = (ROOT / "setup.py").read_text(encoding="utf-8")
    namespace: dict[str, object] = {"__file__": str(ROOT / "setup.py")}
    # Only the compile function: running setup() here would parse pytest's arguments.
    exec(compile(source.split("\nsetup(")[0], str(ROOT / "setup.py"), "exec"), namespace)
    namespace["compile_catalogues"](PACKAGE / "locale", PACKAGE / "locale")  # type: ignore[operator]


# -- the language ------------------------------------------------------------------------

@pytest.mark.parametrize(("environ", "language"), [
    ({"LANG": "zh_CN.UTF-8"}, "zh_CN"),
    ({"LANG": "zh_CN.GB18030"}, "zh_CN"),
    ({"LANG": "zh_SG.UTF-8"}, "zh_CN"),
    ({"LANG": "zh"}, "zh_CN"),
    ({"LANG": "en_US.UTF-8"}, "en"),
    ({"LANG": "C.UTF-8"}, "en"),
    ({"LANG": "POSIX"}, "en"),
    ({"LANG": "zh_TW.UTF-8"}, "en"),  # traditional script: no catalogue, English
    ({}, "en"),
    ({"LANG": "en_US.UTF-8", "LC_MESSAGES": "zh_CN.UTF-8"}, "zh_CN"),
    ({"LANG": "zh_CN.UTF-8", "LC_ALL": "C"}, "en"),  # LC_ALL wins over everything
    ({"LANG": "zh_CN.UTF-8", "LC_ALL": ""}, "zh_CN"),  # set but empty counts as unset
])
def test_language_from_the_locale(environ: dict[str, str], language: str) -> None:
    assert language_from_environment(environ) == language


def test_translated_text_keeps_its_english_source(compiled_catalogues: None) -> None:
    i18n.use("zh_CN")
    message = _("cannot read {path}: {strerror}").format(path="/x", strerror="denied")
    assert message == "无法读取 /x：denied"
    assert untranslated(message) == "cannot read /x: denied"
    nested = _("error: {error}").format(error=message)
    assert untranslated(nested) == "error: cannot read /x: denied"
    i18n.use("en")
    assert _("cannot read {path}: {strerror}") == "cannot read {path}: {strerror}"


def test_no_catalogue_means_english_without_a_warning(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(i18n, "LOCALE_DIR", tmp_path)  # nothing compiled there
    assert i18n.use("zh_CN") == "zh_CN"
    assert _("no recordings yet") == "no recordings yet"
    assert not i18n.catalogue_installed("zh_CN") and i18n.catalogue_installed("en")


def test_ledger_details_stay_english(tmp_path: Path, compiled_catalogues: None) -> None:
    from evidence_daemon.custody.ledger import _english

    i18n.use("zh_CN")
    reason = _("no audio or video streams")
    assert reason != "no audio or video streams"
    assert _english({"reason": reason, "nested": [reason], "n": 1}) == {
        "reason": "no audio or video streams", "nested": ["no audio or video streams"], "n": 1}


# -- display width -----------------------------------------------------------------------

@pytest.mark.parametrize(("text", "width"), [
    ("", 0), ("abc", 3), ("编号", 4), ("合规 OK", 7), ("（已停用）", 10), ("ｆｕｌｌ", 8),
    ("e\u0301", 1),  # a combining accent takes no column
])
def test_display_width(text: str, width: int) -> None:
    assert display_width(text) == width


def test_pad_and_clip_count_columns_not_characters() -> None:
    assert pad("设备", 6) == "设备  " and pad("设备", 6, ">") == "  设备"
    assert pad("toolong", 3) == "toolong"  # kept whole, like str.format
    assert clip("警员编号很长", 5) == "警员"  # a wide character is never split
    assert display_width(columns([("编号", 6), ("大小", 6, ">"), ("x", 0)])) == 6 + 2 + 6 + 2 + 1


def _cells(line: str) -> list[tuple[int, int]]:
    """(first display column, end display column) of each cell: runs separated by 2+ spaces
    (single spaces inside a header such as "标记 / 首个来源" stay in their cell)."""
    cells, column = [], 0
    for part in re.split(r"( {2,})", line):
        width = display_width(part)
        if part.strip():
            cells.append((column, column + width))
        column += width
    return cells


def test_chinese_tables_line_up(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                monkeypatch: pytest.MonkeyPatch, compiled_catalogues: None) -> None:
    """recordings and devices list under zh_CN: every left-aligned column starts, and every
    right-aligned one ends, at the same display column in the header and in the rows."""
    from evidence_daemon.cli.devices import _print_devices

    card = tmp_path / "card"
    make_video(card / "DSJ001_10086_20261125083000_0001.MP4")
    config = write_config(tmp_path)
    assert run_cli(capsys, "--config", str(config), "ingest", str(card),
                   "--device-id", "DSJ001")[0] == 0
    monkeypatch.setenv("LANG", "zh_CN.UTF-8")
    code, out, _err = run_cli(capsys, "--config", str(config), "recordings")
    assert code == 0
    header, row = out.splitlines()[:2]
    assert "编号" in header and "大小" in header
    header_cells, row_cells = _cells(header), _cells(row)
    assert len(header_cells) == len(row_cells) == 7, out
    assert header_cells[0][0] == row_cells[0][0]  # ID, left
    assert header_cells[1][1] == row_cells[1][1]  # SIZE, right
    for index in range(2, 7):  # device, officer, end, compliance (按时/逾时), flags
        assert header_cells[index][0] == row_cells[index][0], (index, out)

    i18n.use("zh_CN")
    device = {"device_id": "DSJ001", "model": "执法记录仪X", "role": "recorder", "docks": 3,
              "last_docked_at": None, "clock_offset_s": -90.0, "current_officer": "10086",
              "in_service": True, "assignments": []}
    import io

    stream = io.StringIO()
    _print_devices([device, {**device, "device_id": "DSJ002", "model": "X1"}], 0, False, stream)
    header, *rows = stream.getvalue().splitlines()[:3]
    assert "型号" in header
    for row in rows:
        assert [start for start, _end in _cells(header)][:3] == \
            [start for start, _end in _cells(row)][:3], stream.getvalue()
        assert _cells(header)[3][1] == _cells(row)[3][1]  # DOCKS, right-aligned


# -- the catalogue -----------------------------------------------------------------------

_PLACEHOLDER = re.compile(r"\{[^{}]*\}|%[-#0 +]*\d*(?:\.\d+)?[sdrfxig]")


def _extracted() -> dict[str, str]:
    """msgid -> file of every message marked in the package, as pybabel extract finds it."""
    from babel.messages.extract import extract_from_dir

    found: dict[str, str] = {}
    for filename, _lineno, message, _comments, _context in extract_from_dir(
            str(PACKAGE), method_map=[("**.py", "python")]):
        for msgid in (message if isinstance(message, tuple) else (message,)):
            if msgid:
                found.setdefault(msgid, filename)
    return found


def _read_po(path: Path) -> object:
    from babel.messages.pofile import read_po

    with path.open("rb") as handle:
        return read_po(handle)


def test_every_marked_message_has_a_chinese_translation() -> None:
    """pybabel extract over the package against zh_CN.po: each msgid is there, translated,
    not fuzzy, with the same placeholders; and the .pot template is up to date."""
    extracted = _extracted()
    catalogue = _read_po(ZH_PO)
    template = _read_po(POT)
    entries = {message.id: message for message in catalogue if message.id}  # type: ignore[attr-defined]
    template_ids = {message.id for message in template if message.id}  # type: ignore[attr-defined]
    problems = []
    for msgid, filename in sorted(extracted.items()):
        entry = entries.get(msgid)
        if entry is None:
            problems.append(f"{filename}: not in zh_CN.po: {msgid!r}")
        elif not entry.string or entry.fuzzy:
            problems.append(f"{filename}: untranslated or fuzzy: {msgid!r}")
        elif sorted(_PLACEHOLDER.findall(msgid)) != sorted(_PLACEHOLDER.findall(entry.string)):
            problems.append(f"{filename}: placeholders differ: {msgid!r} -> {entry.string!r}")
        elif [p for p in _PLACEHOLDER.findall(msgid) if p.startswith("%")] != \
                [p for p in _PLACEHOLDER.findall(entry.string) if p.startswith("%")]:
            problems.append(f"{filename}: %-placeholders reordered: {msgid!r}")
    for msgid in sorted(set(extracted) ^ template_ids):
        problems.append(f"evidence-daemon.pot is out of date (pybabel extract): {msgid!r}")
    assert not problems, "\n".join(problems) + (
        "\nUpdate the catalogue: see docs/architecture.md, 'Languages'.")


# Calls whose string arguments a person reads: the message of a raised error, a log line for
# the operator, a verify problem, a printed or written line.
_ERROR_NOT_FOR_PEOPLE = {"AssertionError", "NotImplementedError", "TypeError", "KeyError",
                         "AttributeError", "SystemExit", "StopIteration", "RuntimeError",
                         "PydanticCustomError"}
_LOG_LEVELS = {"warning", "error", "exception", "critical"}
_WORD = re.compile(r"[A-Za-z]{2,}")
# Words that are the same in every language: units, formats, protocol and program names.
_SAME_IN_EVERY_LANGUAGE = {"SHA", "MB", "MiB", "GB", "kB", "JSON", "TOML", "UTC", "HTTP", "PEM",
                           "CA", "TSA", "ETag", "API", "zip", "ID"}


def _name(node: ast.expr) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return None


def _texts(node: ast.expr) -> Iterator[ast.expr]:
    """The string literals (and f-strings) a message argument is made of, outside ``_()``."""
    if isinstance(node, ast.Call) and _name(node.func) in ("_", "ngettext", "N_"):
        return
    if isinstance(node, (ast.Constant, ast.JoinedStr)):
        yield node
    elif isinstance(node, ast.IfExp):
        yield from _texts(node.body)
        yield from _texts(node.orelse)
    elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        yield from _texts(node.left)
        yield from _texts(node.right)
    elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
            and node.func.attr == "format":
        yield from _texts(node.func.value)


def _words(node: ast.expr) -> list[str]:
    if isinstance(node, ast.Constant):
        text = node.value if isinstance(node.value, str) else ""
    else:
        assert isinstance(node, ast.JoinedStr)
        text = "".join(part.value for part in node.values
                       if isinstance(part, ast.Constant) and isinstance(part.value, str))
    text = _PLACEHOLDER.sub(" ", text)
    text = re.sub(r"--[\w-]+|`[^`]*`|\S*[/_.]\S*|evidence-daemon", " ", text)
    return [word for word in _WORD.findall(text) if word not in _SAME_IN_EVERY_LANGUAGE]


def _messages(tree: ast.AST) -> Iterator[ast.expr]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call) and node.exc.args:
            name = _name(node.exc.func) or ""
            if (name.endswith("Error") or name == "Invalid") and name not in _ERROR_NOT_FOR_PEOPLE:
                yield node.exc.args[0]
        if not isinstance(node, ast.Call):
            continue
        name = _name(node.func)
        if isinstance(node.func, ast.Attribute) and name in _LOG_LEVELS \
                and _name(node.func.value) in ("log", "logger") and node.args:
            yield node.args[0]
        elif name in ("Problem", "problem") and len(node.args) >= 2:
            yield node.args[1]
        elif name == "print" and isinstance(node.func, ast.Name):
            yield from node.args
        elif isinstance(node.func, ast.Attribute) and name == "write" \
                and _name(node.func.value) in ("out", "err", "stream") and node.args:
            yield node.args[0]


def test_no_message_for_people_escapes_translation() -> None:
    """Every literal in a raised error, an operator's log line, a verify problem or a printed
    line of the package is inside ``_()`` (or holds no words: ids, paths, numbers)."""
    unmarked = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name == "i18n.py":
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for message in _messages(tree):
            for text in _texts(message):
                words = _words(text)
                if words:
                    unmarked.append(f"{path.relative_to(ROOT)}:{text.lineno}: "
                                    f"not in _(): {ast.unparse(text)[:90]}")
    assert not unmarked, "\n".join(unmarked)


# -- the commands under both locales -----------------------------------------------------

# In zh_CN output, English words are allowed only where they are data or a machine's name:
# paths, ids, hashes, keys, command lines, units and the config values the test itself set.
_ALLOWED_WORDS = _SAME_IN_EVERY_LANGUAGE | {
    "evidence", "daemon", "verify", "checkpoint", "reindex", "filesystem", "file", "pid",
    "Mbit", "min", "ISO", "DCIM", "MP", "mp", "OK", "EVIDENCE", "KEY", "VALUE", "SECTION", "nope",
}


def _english_words(line: str) -> list[str]:
    line = re.sub(r"\S*[/\\]\S*|--[\w-]+|`[^`]*`|'[^']*'|SHA256:\S+|\S*[_.:=\d]\S*"
                  r"|\[\w+\]", " ", line)
    return [word for word in re.findall(r"[A-Za-z]{3,}", line) if word not in _ALLOWED_WORDS]


@pytest.fixture()
def station(tmp_path: Path) -> Path:
    config = write_config(tmp_path, station_id="st1", extra=(
        f'[api]\nid = "api1"\nstate_dir = "{tmp_path / "api"}"\n'))
    card = tmp_path / "card"
    make_video(card / "DSJ001_10086_20261125083000_0001.MP4")
    return config


_COMMANDS: list[tuple[str, ...]] = [
    ("ingest", "{card}", "--device-id", "DSJ001"),
    ("status",), ("recordings",), ("devices", "list"), ("verify",), ("checkpoint",),
    ("proxies",), ("report", "--from", "2026-11-01", "--to", "2026-11-30"),
    ("incidents", "list"),
    ("report", "--coverage", "--from", "2026-11-01", "--to", "2026-11-30"),
    ("verify", "0123456789ab"),  # an unknown recording id: a problem, exit 7
    ("--set", "station.nope=1", "status"),  # a configuration key that does not exist
    ("--set", "archive.path=", "status"),  # a key with a bad value
    ("report", "--from", "yesterday", "--to", "2026-11-30"),
    ("verify", "--all", "0123456789ab"),
]


def _run_all(capsys: pytest.CaptureFixture[str], config: Path, tmp_path: Path) -> list[tuple[
        tuple[str, ...], int, str]]:
    results = []
    for command in _COMMANDS:
        argv = [part.format(card=tmp_path / "card") for part in command]
        code, out, err = run_cli(capsys, "--config", str(config), *argv)
        results.append((command, code, out + err))
    # The archive gone: every command that needs it says so in the operator's language.
    missing = tmp_path / "no-archive"
    code, out, err = run_cli(capsys, "--config", str(config), "--set",
                             f"archive.path={missing}", "checkpoint")
    results.append((("checkpoint", "(archive missing)"), code, out + err))
    code, out, err = run_cli(capsys, "--config", str(tmp_path / "absent.toml"), "status")
    results.append((("--config", "absent.toml", "status"), code, out + err))
    return results


def test_main_commands_speak_chinese(station: Path, tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str],
                                     monkeypatch: pytest.MonkeyPatch,
                                     compiled_catalogues: None) -> None:
    monkeypatch.setenv("LANG", "zh_CN.UTF-8")
    results = _run_all(capsys, station, tmp_path)
    untranslated_lines = []
    for command, code, output in results:
        assert output.strip(), command
        assert re.search(r"[\u4e00-\u9fff]", output), (command, output)
        for line in output.splitlines():
            if _english_words(line):
                untranslated_lines.append(f"{' '.join(command)}: {line!r} "
                                          f"({', '.join(_english_words(line))})")
    assert not untranslated_lines, "\n".join(untranslated_lines)
    codes = {command: code for command, code, _output in results}
    assert codes[("ingest", "{card}", "--device-id", "DSJ001")] == 0
    assert codes[("verify", "0123456789ab")] == 7
    assert codes[("--set", "station.nope=1", "status")] == 2


def test_main_commands_speak_english_and_json_never_changes(
        station: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch, compiled_catalogues: None) -> None:
    monkeypatch.setenv("LANG", "en_US.UTF-8")
    for command, _code, output in _run_all(capsys, station, tmp_path):
        assert not re.search(r"[\u4e00-\u9fff]", output), (command, output)
    english = run_cli(capsys, "--config", str(station), "status", "--json")[1]
    monkeypatch.setenv("LANG", "zh_CN.UTF-8")
    chinese = run_cli(capsys, "--config", str(station), "status", "--json")[1]
    assert json.loads(chinese)["queue"] == json.loads(english)["queue"]
    assert not re.search(r"[\u4e00-\u9fff]", chinese)
    recordings = run_cli(capsys, "--config", str(station), "recordings", "--json")[1]
    assert json.loads(recordings)[0]["compliance"] in ("late", "on_time", "overdue")


def test_language_chosen_by_option_and_config(station: Path, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str],
                                              monkeypatch: pytest.MonkeyPatch,
                                              compiled_catalogues: None) -> None:
    monkeypatch.setenv("LANG", "en_US.UTF-8")
    assert "还没有录像" in run_cli(capsys, "--lang", "zh_CN", "--config", str(station),
                                    "recordings")[1]
    assert "还没有录像" in run_cli(capsys, "--config", str(station), "--set",
                                    "station.language=zh_CN", "recordings")[1]
    monkeypatch.setenv("LANG", "zh_CN.UTF-8")
    assert run_cli(capsys, "--lang", "en", "--config", str(station), "recordings")[1] == \
        "no recordings yet\n"
    assert "no recordings yet" in run_cli(capsys, "--config", str(station), "--set",
                                          "station.language=en", "recordings")[1]
    code, _out, err = run_cli(capsys, "--config", str(station), "--set",
                              "station.language=fr", "recordings")
    assert code == 2 and "station.language" in err
