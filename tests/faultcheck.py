"""What a fault test measures after the station recovered: the figures of the fault matrix.

``measure`` looks only at the source files and the archive (and the station's own catalog for
what it claims), the way an auditor would:

- files lost: source files whose bytes are neither archived under their id nor in the spool;
- wrongly archived: recordings the catalog calls archived whose stored original does not hash
  to the id (or is missing);
- duplicates: a recording with more than one ``archived`` event, a source with more than one
  ``acquired`` event, or a ledger sequence number used twice.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from evidence_daemon.archive import keys
from evidence_daemon.archive.base import hash_stored
from evidence_daemon.config import load_config
from evidence_daemon.custody import canonical
from evidence_daemon.errors import ObjectMissingError
from evidence_daemon.archive.factory import build_store

from .helpers import run_cli_process


@dataclass(frozen=True)
class Measured:
    files_lost: int
    wrongly_archived: int
    duplicates: int
    archived: int  # source files whose bytes are archived under their id


def hashes_of(paths: Iterable[Path]) -> dict[Path, str]:
    return {path: hashlib.sha256(path.read_bytes()).hexdigest() for path in paths}


def hashes_on_card(image: Path, files: Mapping[str, bytes]) -> dict[Path, str]:
    """The files written into a card image, each named ``<image>/<path on the card>``.

    No such path exists on the host, so ``measure`` counts a card's file as lost unless its bytes
    are archived or spooled: stricter than "lost", which is what a recovered station must meet.
    """
    return {image / relative: hashlib.sha256(data).hexdigest() for relative, data in files.items()}


def measure(config_path: Path, sources: dict[Path, str], *, endpoint: str | None = None) -> Measured:
    """``sources``: each source file and the SHA-256 it had when the test made it; ``endpoint``
    reads the S3 archive directly when the station's own way to it is being broken."""
    config = load_config(config_path)
    if endpoint is not None:
        archive = config.archive.model_copy(update={"endpoint": endpoint})
        config = config.model_copy(update={"archive": archive})
    store = build_store(config)
    result = run_cli_process("--config", str(config_path), "recordings", "--json")
    catalog = {r["id"]: r for r in json.loads(result.stdout)} if result.returncode == 0 else {}
    entries = [canonical.parse_stored(store.get_bytes(key))[0]
               for key in store.list_keys(keys.LEDGER_PREFIX)]
    archived_events = Counter(e["recording"] for e in entries if e["event"] == "archived")
    acquired_events = Counter(e["details"].get("source_key") for e in entries
                              if e["event"] == "acquired")
    seqs = Counter((e["writer"], e["seq"]) for e in entries)
    originals = {key.split("/")[1]: key for key in store.list_keys("recordings/")
                 if key.rpartition("/")[2].startswith("original")}

    def stored_ok(sha256: str) -> bool:
        key = originals.get(sha256)
        if key is None:
            return False
        try:
            return hash_stored(store, key)[0] == sha256
        except ObjectMissingError:
            return False

    lost = archived = 0
    for path, digest in sources.items():
        if stored_ok(digest) and archived_events[digest]:
            archived += 1
        elif not (config.spool_dir / "objects" / digest).exists() and not path.is_file():
            lost += 1  # neither archived nor spooled, and no longer on the source
    wrongly = sum(1 for sha, rec in catalog.items()
                  if rec.get("archived_at") and not (stored_ok(sha) and archived_events[sha]))
    duplicates = (sum(n - 1 for n in archived_events.values() if n > 1)
                  + sum(n - 1 for k, n in acquired_events.items() if n > 1 and k)
                  + sum(n - 1 for n in seqs.values() if n > 1))
    return Measured(lost, wrongly, duplicates, archived)
