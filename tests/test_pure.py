"""Table tests of the pure decisions: object keys, ledger canonical form, queue states, deadlines."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from evidence_daemon.archive import keys
from evidence_daemon.compliance.rules import archive_deadline, compliance_state
from evidence_daemon.custody import canonical
from evidence_daemon.state import transitions as st

SHA = "ab" * 32
UTC = timezone.utc


@pytest.mark.parametrize(
    ("name", "extension"),
    [("DSJ_0001.MP4", "mp4"), ("clip.tar.gz", "gz"), ("noext", ""), (".hidden", "hidden"),
     ("x.verylongext", ""), ("a.m p4", ""), ("../../etc/passwd", ""), ("a.MoV", "mov"), ("a.", "")],
)
def test_safe_extension(name: str, extension: str) -> None:
    assert keys.safe_extension(name) == extension


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        (keys.original_key(SHA, "mp4"), f"recordings/{SHA}/original.mp4"),
        (keys.original_key(SHA, ""), f"recordings/{SHA}/original"),
        (keys.manifest_key(SHA), f"recordings/{SHA}/manifest.json"),
        (keys.proxy_key(SHA), f"recordings/{SHA}/proxy.mp4"),
        (keys.ledger_key("town-a", 7), "ledger/town-a/000000000007.json"),
        (keys.public_key_key("town-a"), "keys/town-a.pub"),
    ],
)
def test_key_layout(key: str, expected: str) -> None:
    assert key == expected


@pytest.mark.parametrize(
    "call",
    [lambda: keys.original_key("AB" * 32, "mp4"), lambda: keys.original_key(SHA, "../x"),
     lambda: keys.ledger_key("town/a", 1), lambda: keys.ledger_key("a", 0),
     lambda: keys.public_key_key("../x"), lambda: keys.manifest_key("abc")],
)
def test_key_builders_refuse_unsafe_parts(call: object) -> None:
    with pytest.raises(ValueError):
        call()  # type: ignore[operator]


@pytest.mark.parametrize(
    ("key", "parsed"),
    [("ledger/town-a/000000000012.json", ("town-a", 12)), ("ledger/town-a/12.json", None),
     ("ledger/../000000000001.json", None), ("keys/x.pub", None)],
)
def test_parse_ledger_key(key: str, parsed: tuple[str, int] | None) -> None:
    assert keys.parse_ledger_key(key) == parsed


@pytest.mark.parametrize(
    ("name", "is_original"),
    [("original", True), ("original.mp4", True), ("original.MP4", False), ("manifest.json", False),
     ("original.mp4.bak", False)],
)
def test_is_original_name(name: str, is_original: bool) -> None:
    assert keys.is_original_name(name) is is_original


ENTRY = {"seq": 1, "prev": canonical.GENESIS_PREV, "time": "2026-11-26T08:00:00.000000+00:00",
         "writer": "town-a", "event": "archived", "recording": SHA, "actor": "station:town-a",
         "details": {"b": 1, "a": "执法"}}


def test_canonical_bytes_are_sorted_compact_utf8() -> None:
    data = canonical.canonical_bytes({**ENTRY, "sig": "ignored"})
    assert data.startswith(b'{"actor":"station:town-a","details":{"a":"\xe6\x89\xa7\xe6\xb3\x95","b":1}')
    assert b" " not in data and b"sig" not in data


def test_stored_form_round_trips_and_hash_is_stable() -> None:
    stored = canonical.stored_bytes(ENTRY, b"\x01" * 64)
    entry, signature = canonical.parse_stored(stored)
    assert entry == ENTRY and signature == b"\x01" * 64
    assert canonical.entry_hash(entry) == canonical.entry_hash(dict(reversed(list(ENTRY.items()))))


@pytest.mark.parametrize(
    "data",
    [b"not json", b"[]", b'{"seq":1}', canonical.stored_bytes(ENTRY, b"x").replace(b'"sig":"', b'"sig":"!'),
     canonical.stored_bytes(ENTRY, b"x")[:-1] + b',"extra":1}'],
)
def test_parse_stored_rejects_what_is_not_an_entry(data: bytes) -> None:
    with pytest.raises(ValueError):
        canonical.parse_stored(data)


@pytest.mark.parametrize(
    ("event", "recording", "details", "key"),
    [("acquired", SHA, {"source_key": "k1"}, f"acquired|{SHA}|k1"),
     ("archived", SHA, {"manifest_sha256": "x"}, f"archived|{SHA}|"),
     ("quarantined", None, {"source_key": "k2"}, "quarantined||k2")],
)
def test_dedupe_key(event: str, recording: str | None, details: dict[str, str], key: str) -> None:
    assert canonical.dedupe_key(event, recording, details) == key


@pytest.mark.parametrize(
    ("current", "target", "allowed"),
    [(st.DISCOVERED, st.SPOOLED, True), (st.DISCOVERED, st.ARCHIVED, False),
     (st.SPOOLED, st.ARCHIVED, True), (st.SPOOLED, st.DUPLICATE, True), (st.SPOOLED, st.FAILED, True),
     (st.FAILED, st.DISCOVERED, True), (st.FAILED, st.SPOOLED, True), (st.ARCHIVED, st.SPOOLED, False),
     (st.ARCHIVED, st.FAILED, False), (st.DUPLICATE, st.ARCHIVED, False), (st.SKIPPED, st.DISCOVERED, False)],
)
def test_state_transitions(current: str, target: str, allowed: bool) -> None:
    assert st.can_move(current, target) is allowed


@pytest.mark.parametrize(("state", "copy"), [(None, True), (st.DISCOVERED, True), (st.FAILED, True),
                                             (st.SPOOLED, False), (st.ARCHIVED, False), (st.SKIPPED, False)])
def test_needs_copy(state: str | None, copy: bool) -> None:
    assert st.needs_copy(state) is copy


def test_unknown_state_is_an_error() -> None:
    with pytest.raises(ValueError):
        st.can_move("lost", st.ARCHIVED)


END = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)
DEADLINE = END + timedelta(hours=24)


@pytest.mark.parametrize(
    ("archived_at", "now", "state"),
    [
        (END + timedelta(hours=1), END + timedelta(days=9), "on_time"),
        (DEADLINE, DEADLINE, "on_time"),  # exactly at the deadline is still in time
        (DEADLINE + timedelta(seconds=1), DEADLINE + timedelta(seconds=1), "late"),
        (DEADLINE + timedelta(days=30), DEADLINE + timedelta(days=400), "late"),  # late stays late
        (None, END + timedelta(hours=1), "pending"),
        (None, DEADLINE - timedelta(hours=4), "pending"),
        (None, DEADLINE - timedelta(hours=3, minutes=59), "at_risk"),
        (None, DEADLINE, "at_risk"),
        (None, DEADLINE + timedelta(microseconds=1), "overdue"),
    ],
)
def test_compliance_states(archived_at: datetime | None, now: datetime, state: str) -> None:
    deadline = archive_deadline(END)
    assert deadline == DEADLINE
    assert compliance_state(deadline=deadline, archived_at=archived_at, now=now, at_risk_margin_hours=4) == state


@pytest.mark.parametrize(("archived_at", "state"), [(None, "pending"), (END, "on_time")])
def test_no_known_end_means_no_deadline(archived_at: datetime | None, state: str) -> None:
    assert archive_deadline(None) is None
    assert compliance_state(deadline=None, archived_at=archived_at, now=END + timedelta(days=5)) == state


def test_deadline_hours_are_configurable() -> None:
    assert archive_deadline(END, 12) == END + timedelta(hours=12)
