"""Checkpoints and long chains for the package proof tests.

``append_checkpoint`` signs a checkpoint of a writer's chain in the agreed format with the
real ``LedgerWriter`` (what stations do at the end of every ingest and hourly);
``station_ledger`` opens a station's writer from its state directory; ``SyntheticChain``
writes thousands of signed entries straight into a filesystem archive, so a chain of 10,000
entries costs seconds, not minutes. Entries are made with ``custody.canonical`` and signed
like ``LedgerWriter`` signs them: the verifier cannot tell them apart, which is the point.
"""

from __future__ import annotations

import hashlib
import json
import os
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from evidence_daemon.archive import keys
from evidence_daemon.archive.filesystem import FilesystemArchive
from evidence_daemon.custody import canonical
from evidence_daemon.custody.chain import Event, Role, registration_details
from evidence_daemon.clock import format_time
from evidence_daemon.custody.ledger import LedgerWriter
from evidence_daemon.custody.proofs import checkpoint_entry_details
from evidence_daemon.custody.signing import fingerprint, load_private_key, public_pem
from evidence_daemon.state.db import Database


def append_checkpoint(ledger: LedgerWriter) -> dict[str, Any]:
    """Sign a checkpoint of ``ledger``'s whole chain as it stands."""
    ledger.sync()
    return ledger.append(Event.CHECKPOINT, recording=None, actor=f"{ledger.role}:{ledger.writer}",
                         details=checkpoint_entry_details(ledger.entry_hashes()))


def station_ledger(store: FilesystemArchive, state_dir: Path, station_id: str) -> LedgerWriter:
    """The writer of a station configured with ``tests.helpers.write_config``."""
    database = Database(state_dir / "state.sqlite3")
    key = load_private_key(state_dir / "keys" / "station.ed25519")
    return LedgerWriter(store, database, station_id, key, role=Role.STATION)


class SyntheticChain:
    """One writer's chain written straight into a filesystem archive's directory."""

    def __init__(self, root: Path, writer: str, role: Role,
                 key: Ed25519PrivateKey | None = None,
                 start: datetime = datetime(2026, 1, 1, tzinfo=timezone.utc)) -> None:
        self.root = root
        self.writer = writer
        self.role = role
        self.key = key or Ed25519PrivateKey.generate()
        self.moment = start
        self.hashes: list[str] = []
        key_file = root / keys.public_key_key(writer)
        key_file.parent.mkdir(parents=True, exist_ok=True)
        key_file.write_bytes(public_pem(self.key))
        (root / keys.ledger_prefix(writer)).mkdir(parents=True, exist_ok=True)
        self.append(Event.KEY_REGISTERED, None, f"{role}:{writer}",
                    registration_details(role, fingerprint(self.key), writer))

    def append(self, event: Event, recording: str | None, actor: str,
               details: dict[str, Any]) -> dict[str, Any]:
        self.moment += timedelta(seconds=7)
        entry = {"seq": len(self.hashes) + 1,
                 "prev": self.hashes[-1] if self.hashes else canonical.GENESIS_PREV,
                 "time": format_time(self.moment), "writer": self.writer, "event": str(event),
                 "recording": recording, "actor": actor, "details": details}
        data = canonical.stored_bytes(entry, self.key.sign(canonical.canonical_bytes(entry)))
        (self.root / keys.ledger_key(self.writer, entry["seq"])).write_bytes(data)
        self.hashes.append(canonical.entry_hash(entry))
        return entry

    def checkpoint(self) -> dict[str, Any]:
        return self.append(Event.CHECKPOINT, None, f"{self.role}:{self.writer}",
                           checkpoint_entry_details(self.hashes))


def put_file(root: Path, key: str, data: bytes) -> None:
    path = root / key
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    os.chmod(path, 0o444)


def archive_recording(root: Path, chain: SyntheticChain, original: bytes, *, officer: str,
                      device: str, source_path: str, recorded_start: str) -> str:
    """An original, its manifest and its ``acquired``/``archived`` events, as a station
    leaves them; returns the recording id."""
    sha256 = hashlib.sha256(original).hexdigest()
    original_key = keys.original_key(sha256, "mp4")
    put_file(root, original_key, original)
    manifest = {"sha256": sha256, "size_bytes": len(original), "extension": "mp4",
                "original_key": original_key, "station": chain.writer, "device_id": device,
                "officer_id": officer, "recorded_start": recorded_start,
                "source_path": source_path, "verified_at": format_time(chain.moment)}
    manifest_bytes = json.dumps(manifest, sort_keys=True, indent=2).encode()
    put_file(root, keys.manifest_key(sha256), manifest_bytes)
    chain.append(Event.ACQUIRED, sha256, f"station:{chain.writer}",
                 {"source_path": source_path, "device_id": device, "officer_id": officer})
    chain.append(Event.ARCHIVED, sha256, f"station:{chain.writer}",
                 {"manifest_key": keys.manifest_key(sha256),
                  "manifest_sha256": hashlib.sha256(manifest_bytes).hexdigest()})
    return sha256
