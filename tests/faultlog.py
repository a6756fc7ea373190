"""The fault matrix: tests that inject a fault record what held, and ``docs/reliability.md`` is
rendered from those records (``scripts/reliability-report``), never written by hand.

A test takes the ``fault_log`` fixture and calls it once per injected case::

    fault_log("ENOSPC on the spool", "20 MB file, 19 MiB tmpfs", files_lost=0,
              wrongly_archived=0, duplicates=0, premature_wipes=0, exit_code=5,
              message="1 file(s) could not be archived yet ...", injected_by="tmpfs -o size=19m")

Each figure is what the test *measured* (files on the source whose bytes are not in the archive
nor in the spool, recordings marked archived without a verified copy, objects or ledger events
written twice, device files deleted before their archived copy verified) — the test asserts
them too. At the end of the session the records are written to
``tests/artifacts/reliability.json`` (one list; runs of parts of the suite merge by case).
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import pytest

ARTIFACT = Path(__file__).parent / "artifacts" / "reliability.json"


@dataclass(frozen=True)
class FaultCase:
    fault_class: str
    case: str
    injected_by: str
    files_lost: int
    wrongly_archived: int
    duplicates: int
    premature_wipes: int
    exit_code: int | None
    message: str
    test: str


_records: list[FaultCase] = []
_guard = threading.Lock()

FaultLog = Callable[..., None]


@pytest.fixture
def fault_log(request: pytest.FixtureRequest) -> Iterator[FaultLog]:
    callspec = getattr(request.node, "callspec", None)
    server_kind = callspec.params.get("s3_server") if callspec is not None else None

    def record(
        fault_class: str,
        case: str,
        *,
        injected_by: str,
        files_lost: int,
        wrongly_archived: int,
        duplicates: int,
        premature_wipes: int = 0,
        exit_code: int | None = None,
        message: str = "",
    ) -> None:
        first_line = message.strip().splitlines()[0] if message.strip() else ""
        if server_kind == "rgw":  # the same case on moto is another row of the matrix
            case = f"{case} (on Ceph RGW)"
        with _guard:
            _records.append(FaultCase(
                fault_class, case, injected_by, files_lost, wrongly_archived, duplicates,
                premature_wipes, exit_code, first_line[:300], request.node.nodeid,
            ))

    yield record


def write_artifact() -> None:
    """Merge this session's records into the artifact (a case run again replaces the old)."""
    if not _records:
        return
    ARTIFACT.parent.mkdir(parents=True, exist_ok=True)
    merged: dict[tuple[str, str], dict[str, object]] = {}
    if ARTIFACT.exists():
        try:
            for item in json.loads(ARTIFACT.read_text()):
                merged[(item["fault_class"], item["case"])] = item
        except (ValueError, KeyError, TypeError):
            merged = {}
    for record in _records:
        merged[(record.fault_class, record.case)] = asdict(record)
    temp = ARTIFACT.with_suffix(".tmp")
    temp.write_text(json.dumps(sorted(merged.values(), key=lambda r: (str(r["fault_class"]), str(r["case"]))),
                               ensure_ascii=False, indent=1))
    os.replace(temp, ARTIFACT)
