"""Each of the station's work tables has one owner: ``state/queue.py`` runs every SQL statement
on ``sources`` and ``state/catalog.py`` every one on ``recordings``.

The test reads the source of ``evidence_daemon/`` (every string literal, f-strings included)
and fails when any other module reads or writes either table (``FROM``, ``JOIN``, ``INTO`` or
``UPDATE`` naming it). Schema declarations (``CREATE TABLE``, ``REFERENCES`` in
``state/db.py``'s migrations) are not statements on the rows and are not matched.

``api/`` is left out on purpose: the API node's own ``recordings`` table lives in a different
database (``api.db``, built from the ledger), and its owner is ``api/catalog_tables.py``.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import evidence_daemon

PACKAGE = Path(evidence_daemon.__file__).parent
OWNERS = {Path("state/queue.py"): "sources", Path("state/catalog.py"): "recordings"}
NOT_THE_STATION = Path("api")  # the API node's database, not the station's (see above)

STATEMENT = re.compile(r"\b(DELETE\s+FROM|FROM|JOIN|INTO|UPDATE)\s+(sources|recordings)\b",
                       re.IGNORECASE)
READS = {"from", "join"}


def _literals(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, text) of every string literal, in line order; an f-string's literal parts joined,
    so a table name is found whatever is interpolated around it."""
    found: list[tuple[int, str]] = []
    inside_fstrings: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            parts = [part for part in node.values
                     if isinstance(part, ast.Constant) and isinstance(part.value, str)]
            inside_fstrings.update(id(part) for part in parts)
            found.append((node.lineno, " ".join(str(part.value) for part in parts)))
    for node in ast.walk(tree):
        if (isinstance(node, ast.Constant) and isinstance(node.value, str)
                and id(node) not in inside_fstrings):
            found.append((node.lineno, node.value))
    return sorted(found)


def statements_on_station_tables(source: str) -> list[tuple[int, str, str]]:
    """(line, verb, table) of each SQL statement in ``source`` naming ``sources`` or
    ``recordings``; verb is ``from``, ``join``, ``into``, ``update`` or ``delete from``."""
    return [(line, " ".join(match.group(1).lower().split()), match.group(2).lower())
            for line, text in _literals(ast.parse(source))
            for match in STATEMENT.finditer(text)]


def owner_of(table: str) -> Path:
    return next(owner for owner, owned in OWNERS.items() if owned == table)


def test_only_the_owners_run_sql_on_sources_and_recordings() -> None:
    strays = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE)
        if relative.parts[0] == NOT_THE_STATION.name:
            continue
        for line, verb, table in statements_on_station_tables(path.read_text(encoding="utf-8")):
            if OWNERS.get(relative) == table:
                continue
            if relative in OWNERS and verb in READS:
                continue  # one owner may read the other's table (a join), never write it
            strays.append(f"evidence_daemon/{relative}:{line}: {verb.upper()} {table}; "
                          f"only evidence_daemon/{owner_of(table)} runs SQL on it")
    assert not strays, "SQL on a station table outside its owner:\n" + "\n".join(strays)


def test_the_scan_sees_the_owners_statements() -> None:
    """The scan is not blind: each owner's own statements, reads and writes, are found."""
    for owner, table in OWNERS.items():
        found = statements_on_station_tables((PACKAGE / owner).read_text(encoding="utf-8"))
        verbs = {verb for _, verb, found_table in found if found_table == table}
        assert {"from", "into", "update"} <= verbs, (owner, verbs)


def test_the_scan_finds_sql_however_it_is_written() -> None:
    source = '''
def wipe(db, origin, alias):
    db.query("SELECT s.rel_path, r.archived_at FROM sources s"
             " LEFT JOIN recordings r ON r.sha256 = s.sha256 WHERE s.origin = ?", (origin,))
    db.execute(f"update recordings set flags = ? where sha256 = {alias}")
    db.execute("INSERT INTO sources (source_key) VALUES (?)", ("k",))
    db.execute("DELETE  FROM recordings WHERE sha256 = ?", ("x",))
    log.info("removed from the device: %d recordings")  # words, not SQL
    db.execute("CREATE TABLE recordings (sha256 TEXT)")  # the schema, not a statement
'''
    assert statements_on_station_tables(source) == [
        (3, "from", "sources"), (3, "join", "recordings"), (5, "update", "recordings"),
        (6, "into", "sources"), (7, "delete from", "recordings")]
