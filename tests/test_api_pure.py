"""Pure pieces of the API: byte ranges, the role matrix, failed sign-in counting, cursors,
client addresses behind proxies, audit texts, missing content, validation error details."""

from __future__ import annotations

import hashlib
from datetime import datetime, timezone

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
    token_label,
)
from evidence_daemon.api.catalog import (
    check_id,
    decode_cursor,
    encode_cursor,
    missing_content_problem,
    parse_instant,
)
from evidence_daemon.api.clients import TrustedProxies, client_address, trusted_networks
from evidence_daemon.api.reasons import checked_note, checked_reason, text_problem
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


# -- who is asking, behind proxies ------------------------------------------------------------

PROXIES = trusted_networks(["127.0.0.1", "10.0.0.0/8", "fd00::/8"])


@pytest.mark.parametrize(("peer", "forwarded", "trusted", "expected"), [
    ("127.0.0.1", [], (), "127.0.0.1"),
    # from a peer that is not a trusted proxy the header is anyone's invention: ignored
    ("198.51.100.7", ["203.0.113.5"], PROXIES, "198.51.100.7"),
    ("127.0.0.1", ["203.0.113.5"], (), "127.0.0.1"),
    # through a trusted proxy: the address it appended
    ("127.0.0.1", ["203.0.113.5"], PROXIES, "203.0.113.5"),
    # what the client wrote itself (left of the proxy's hop) proves nothing
    ("127.0.0.1", ["1.2.3.4, 203.0.113.5"], PROXIES, "203.0.113.5"),
    ("127.0.0.1", ["1.2.3.4", "203.0.113.5"], PROXIES, "203.0.113.5"),  # two header lines
    # a chain of trusted proxies is walked to the first address that is not one
    ("127.0.0.1", ["1.2.3.4, 203.0.113.5, 10.1.2.3"], PROXIES, "203.0.113.5"),
    ("127.0.0.1", ["10.9.9.9, 10.1.2.3"], PROXIES, "10.9.9.9"),  # all trusted: the first
    ("127.0.0.1", ["203.0.113.5:4711"], PROXIES, "203.0.113.5"),
    ("127.0.0.1", ["[2001:db8::1]:4711"], PROXIES, "2001:db8::1"),
    ("fd00::2", ["2001:DB8::1"], PROXIES, "2001:db8::1"),
    ("::ffff:127.0.0.1", ["203.0.113.5"], PROXIES, "203.0.113.5"),
    # a hop that is not an address: counted as the proxy that passed it on, never as the text
    ("127.0.0.1", ["evil\nline"], PROXIES, "127.0.0.1"),
    ("127.0.0.1", ["203.0.113.5, junk, 10.1.2.3"], PROXIES, "10.1.2.3"),
    ("127.0.0.1", [" , "], PROXIES, "127.0.0.1"),
    (None, ["203.0.113.5"], PROXIES, "unknown"),
])
def test_the_client_is_believed_only_through_trusted_proxies(
        peer: str | None, forwarded: list[str], trusted: TrustedProxies, expected: str) -> None:
    assert client_address(peer, forwarded, trusted) == expected


def test_a_token_is_counted_and_logged_by_a_label_never_whole() -> None:
    token = "evd_" + "A" * 43
    assert token_label(token) == "evd_AAAA…"
    assert token_label("evd_wrong") == "evd_…"  # at most half of a short token
    assert token_label("ab") == "a…" and token_label("") == "…"
    assert token_label("evd\x1b[2J\nxxxxxxxx") == "evd?[2J?…"  # no escape or newline reaches the log


def test_failed_sign_ins_by_client_and_by_token_are_separate_counts() -> None:
    now = [0.0]
    by_client, by_token = (FailedLogins(2, 60, monotonic=lambda: now[0]) for _ in range(2))
    for client in ("203.0.113.5", "203.0.113.6"):  # one stale token replayed from two clients
        by_client.failed(client)
        by_token.failed("evd_AAAA…")
    assert by_token.blocked("evd_AAAA…") and not by_token.blocked("evd_BBBB…")
    assert not by_client.blocked("203.0.113.5") and not by_client.blocked("203.0.113.6")


# -- what may go into the audit chain ---------------------------------------------------------

@pytest.mark.parametrize(("text", "problem"), [
    ("", "must not be blank"),
    ("   ", "must not be blank"),
    ("\t \n", "must not be blank"),
    ("ab", "at least 3 characters"),
    ("  ab  ", "at least 3 characters"),
    ("x" * 501, "at most 500 characters, got 501"),
    ("nul\x00here", "U+0000 at character 4"),
    ("esc \x1b[31mred", "U+001B"),
    ("two\nlines", "U+000A"),
    ("carriage\rreturn", "U+000D"),
    ("a\ttab", "U+0009"),
    ("del\x7fete", "U+007F"),
    ("c1 \x85 next line", "U+0085"),
    ("c1 \x9b csi", "U+009B"),
    ("line\u2028separator", "U+2028"),
    ("abc \u202eevil", "U+202E"),  # right-to-left override: hides what a reader sees
])
def test_audit_text_problems_name_the_problem_never_the_text(text: str, problem: str) -> None:
    with pytest.raises(UsageError) as caught:
        checked_reason(text, "reason")
    assert caught.value.message.startswith("reason: ") and problem in caught.value.message
    assert text.strip() not in caught.value.message or not text.strip()


@pytest.mark.parametrize(("text", "stored"), [
    ("  review of the stop  ", "review of the stop"),
    ("复核执法过程", "复核执法过程"),
    ("case （2026）城管罚字第12号 – é ü", "case （2026）城管罚字第12号 – é ü"),
    ("x" * 500, "x" * 500),
])
def test_good_reasons_are_stored_trimmed(text: str, stored: str) -> None:
    assert checked_reason(text) == stored


def test_notes_are_longer_but_just_as_clean() -> None:
    assert checked_note(" a ") == "a"
    assert checked_note("y" * 4000) == "y" * 4000
    assert text_problem("y" * 4001, min_chars=1, max_chars=4000) == "at most 4000 characters, got 4001"
    with pytest.raises(UsageError, match="^text: control character U\\+000A"):
        checked_note("first\nsecond")


# -- content the catalog promises ------------------------------------------------------------

@pytest.mark.parametrize(("catalogued", "stored", "problem"), [
    (100, 100, None),
    (None, 7, None),  # a viewing copy: size known only from the archive
    (100, None, "the original of recording 0123456789ab (recordings/x/original.mp4) is missing "
                "from the archive"),
    (None, None, "is missing from the archive"),
    (100, 99, "is 99 bytes in the archive, not the 100 catalogued"),
])
def test_content_missing_or_changed_in_the_archive(catalogued: int | None, stored: int | None,
                                                   problem: str | None) -> None:
    found = missing_content_problem("0123456789ab" * 5 + "cdef", "original",
                                    "recordings/x/original.mp4", catalogued, stored)
    if problem is None:
        assert found is None
    else:
        assert found is not None and problem in found


def test_validation_details_never_carry_the_input() -> None:
    from evidence_daemon.api.app import validation_detail

    huge = "x" * 1_000_000
    errors = [{"type": "string_too_long", "loc": ("body", "reason"), "input": huge,
               "msg": "String should have at most 500 characters", "ctx": {"max_length": 500}},
              {"type": "value_error", "loc": ("body", huge), "input": huge, "msg": huge}]
    errors += [{"type": "missing", "loc": ("query", str(n)), "msg": "Field required"}
               for n in range(100)]
    detail = validation_detail(errors)
    assert len(detail) == 20 and all("input" not in item for item in detail)
    assert detail[0] == {"type": "string_too_long", "loc": ["body", "reason"],
                         "msg": "String should have at most 500 characters"}
    assert len(str(detail)) < 20_000


# -- annotations and content targets -------------------------------------------------------

_NOW = datetime(2026, 11, 30, 8, 0, tzinfo=timezone.utc)


@pytest.mark.parametrize(("until", "current", "problem"), [
    ("2030-01-01T00:00:00+00:00", None, None),
    ("2030-01-01T00:00:00", None, None),  # naive is UTC
    ("2030-01-01T00:00:00+00:00", "2029-01-01T00:00:00.000000+00:00", None),
    ("2026-11-30T08:00:00+00:00", None, "must be in the future"),
    ("2201-01-01T00:00:00+00:00", None, "later than 2200"),
    ("2030-01-01T00:00:00+00:00", "2030-01-01T00:00:00.000000+00:00", "never shortened"),
    ("2030-01-01T00:00:00+00:00", "2031-01-01T00:00:00.000000+00:00", "never shortened"),
])
def test_retention_is_only_ever_extended_into_the_future(until: str, current: str | None,
                                                         problem: str | None) -> None:
    from evidence_daemon.api.annotations import checked_retention
    from evidence_daemon.errors import EvidenceError

    asked = datetime.fromisoformat(until)
    if problem is None:
        accepted = checked_retention(asked, current=current, now=_NOW)
        assert accepted == asked.replace(tzinfo=asked.tzinfo or timezone.utc)
    else:
        with pytest.raises(EvidenceError, match=problem):
            checked_retention(asked, current=current, now=_NOW)


def _row(**changes: object) -> dict[str, object]:
    sha = "ab" * 32
    row: dict[str, object] = {
        "sha256": sha, "extension": "mp4", "size_bytes": 1234,
        "original_key": f"recordings/{sha[:2]}/{sha}/original.mp4",
        "proxy_key": f"recordings/{sha[:2]}/{sha}/proxy.m4a",
        "poster_key": None}
    row.update(changes)
    return row


def test_content_comes_only_from_the_keys_the_storage_contract_gives() -> None:
    from evidence_daemon.api.access import content_target
    from evidence_daemon.archive import keys
    from evidence_daemon.errors import IntegrityError, NotFoundError

    sha = "ab" * 32
    row = _row(original_key=keys.original_key(sha, "mp4"),
               proxy_key=keys.proxy_key(sha, "m4a"))
    original = content_target(row, "original")
    assert (original.key, original.known_size, original.media_type, original.filename) == (
        keys.original_key(sha, "mp4"), 1234, "video/mp4", f"{sha[:12]}_original.mp4")
    proxy = content_target(row, "proxy")
    assert (proxy.known_size, proxy.media_type, proxy.filename) == (
        None, "audio/mp4", f"{sha[:12]}_proxy.m4a")
    with pytest.raises(NotFoundError, match="no poster"):
        content_target(row, "poster")
    with pytest.raises(IntegrityError, match="unexpected key"):
        content_target({**row, "original_key": "keys/api-1.pub"}, "original")
    with pytest.raises(IntegrityError, match="unexpected key"):
        content_target({**row, "proxy_key": keys.original_key(sha, "mp4")}, "proxy")


def test_actions_and_roles_keep_their_stored_names() -> None:
    from evidence_daemon.api.auth import ROLES, UserRole

    assert [action.value for action in Action] == [
        "me", "read", "content", "verify", "export", "annotate", "report", "audit", "users",
        "incidents", "review"]
    assert ROLES == ("auditor", "supervisor", "officer", "admin") == tuple(UserRole)
