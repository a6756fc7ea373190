"""Pure pieces of the API: byte ranges, the role matrix, failed sign-in counting, cursors."""

from __future__ import annotations

import hashlib

import pytest

from evidence_daemon.api.auth import (
    ADMIN,
    AUDITOR,
    OFFICER,
    PERMISSIONS,
    SUPERVISOR,
    Action,
    FailedLogins,
    User,
    allowed,
    may_see,
    token_hash,
)
from evidence_daemon.api.catalog import check_id, decode_cursor, encode_cursor, parse_instant
from evidence_daemon.api.ranges import RangeNotSatisfiable, parse_range
from evidence_daemon.errors import UsageError


@pytest.mark.parametrize(("header", "size", "expected"), [
    (None, 100, None),
    ("bytes=0-0", 100, (0, 0)),
    ("bytes=0-99", 100, (0, 99)),
    ("bytes=10-", 100, (10, 99)),
    ("bytes=50-1000", 100, (50, 99)),  # past the end: clipped
    ("bytes=-10", 100, (90, 99)),  # suffix
    ("bytes=-1000", 100, (0, 99)),  # suffix longer than the object
    ("bytes = 5-6", 100, (5, 6)),
    ("bytes=9-3", 100, None),  # last < first: invalid, ignored
    ("bytes=0-1,5-6", 100, None),  # several ranges: whole object
    ("items=0-5", 100, None),
    ("bytes=abc", 100, None),
    ("bytes=-", 100, None),
])
def test_parse_range(header: str | None, size: int, expected: tuple[int, int] | None) -> None:
    assert parse_range(header, size) == expected


@pytest.mark.parametrize(("header", "size"), [
    ("bytes=100-", 100), ("bytes=100-200", 100), ("bytes=-0", 100), ("bytes=0-", 0), ("bytes=-5", 0),
])
def test_unsatisfiable_ranges(header: str, size: int) -> None:
    with pytest.raises(RangeNotSatisfiable):
        parse_range(header, size)


def test_role_matrix_is_least_privilege() -> None:
    assert set(PERMISSIONS) == {AUDITOR, SUPERVISOR, OFFICER, ADMIN}
    # only supervisors annotate; admins never see footage; officers never export or audit
    assert [role for role in PERMISSIONS if allowed(role, Action.ANNOTATE)] == [SUPERVISOR]
    assert not allowed(ADMIN, Action.CONTENT) and not allowed(ADMIN, Action.READ)
    assert not allowed(OFFICER, Action.EXPORT) and not allowed(OFFICER, Action.AUDIT)
    assert [role for role in PERMISSIONS if allowed(role, Action.USERS)] == [ADMIN]
    assert not allowed("root", Action.ME)


def test_officers_see_only_their_own_recordings() -> None:
    officer = User("o", OFFICER, "A1")
    assert may_see(officer, "A1") and not may_see(officer, "A2") and not may_see(officer, None)
    assert not may_see(User("o", OFFICER, None), None)
    assert may_see(User("a", AUDITOR, None), "A2")
    assert not may_see(User("x", ADMIN, None), "A1")


def test_failed_sign_ins_block_an_address_for_the_window() -> None:
    now = [1000.0]
    limiter = FailedLogins(3, 60, monotonic=lambda: now[0])
    for _ in range(3):
        assert not limiter.blocked("10.0.0.1")
        limiter.failed("10.0.0.1")
    assert limiter.blocked("10.0.0.1") and not limiter.blocked("10.0.0.2")
    assert 1 <= limiter.retry_after_s("10.0.0.1") <= 61
    now[0] += 61
    assert not limiter.blocked("10.0.0.1")


def test_tokens_are_stored_as_sha256() -> None:
    assert token_hash("evd_x") == hashlib.sha256(b"evd_x").hexdigest()


def test_ids_cursors_and_instants_are_validated() -> None:
    assert check_id("ABCDEF012345") == "abcdef012345"
    for bad in ("abc", "../../etc/passwd", "g" * 64, "a" * 65, ""):
        with pytest.raises(UsageError):
            check_id(bad)
    assert decode_cursor(encode_cursor("2026-01-01T00:00:00+00:00", "ab" * 32)) == (
        "2026-01-01T00:00:00+00:00", "ab" * 32)
    for bad in ("%%%", "bm90IGpzb24", encode_cursor("x", "y")[:-2] + "!!"):
        with pytest.raises(UsageError):
            decode_cursor(bad)
    assert parse_instant("2026-11-25T09:00:00+08:00", "from") == "2026-11-25T01:00:00.000000+00:00"
    assert parse_instant("2026-11-25T01:00:00", "from") == "2026-11-25T01:00:00.000000+00:00"
    with pytest.raises(UsageError, match="from"):
        parse_instant("yesterday", "from")


def test_a_trailing_newline_is_not_a_valid_id() -> None:
    # re.match with "$" accepts "...\n"; every id check uses fullmatch
    from evidence_daemon.archive import keys

    for bad in ("a" * 64 + "\n", "abcdef012345\n"):
        with pytest.raises(UsageError):
            check_id(bad)
    with pytest.raises(ValueError):
        keys.check_sha256("a" * 64 + "\n")
    assert keys.parse_ledger_key("ledger/w/000000000001.json\n") is None
