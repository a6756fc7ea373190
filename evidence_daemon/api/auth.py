"""Who may do what through the API: users, bearer tokens, roles and failed sign-ins.

Tokens are 256-bit random strings shown once at creation; only their SHA-256 is stored. (A
slow password hash buys nothing for tokens this long and would make every request pay for
it.) The role matrix is a pure table (``PERMISSIONS``) so it can be read, reviewed and tested
as data. This module never logs a token, and never leaves a short session key: the key file
is written whole under a temp name and published create-only (``durable.save_new``).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from ..clock import Clock, format_time, utc_now
from ..durable import save_new
from ..errors import ConfigError, ConflictError, NotFoundError, UsageError
from ..state.db import Database
from ..i18n import _


class UserRole(StrEnum):
    """A user's role (stored in ``users.role``)."""
    AUDITOR = "auditor"
    SUPERVISOR = "supervisor"
    OFFICER = "officer"
    ADMIN = "admin"


AUDITOR = UserRole.AUDITOR
SUPERVISOR = UserRole.SUPERVISOR
OFFICER = UserRole.OFFICER
ADMIN = UserRole.ADMIN
ROLES = tuple(UserRole)

TOKEN_PREFIX = "evd_"
# Failed sign-ins are counted, and logged, under a token's first characters: "evd_" and four
# random ones (24 of its 256 bits) tell tokens apart without giving any away.
TOKEN_LABEL_CHARS = 8
_USER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
_OFFICER_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


class Action(StrEnum):
    """What a route does, as the role matrix names it."""
    ME = "me"
    READ = "read"  # search, recording detail, custody timeline
    CONTENT = "content"  # original, proxy, poster bytes and player grants
    VERIFY = "verify"
    EXPORT = "export"
    ANNOTATE = "annotate"  # holds, case links, notes, retention
    REPORT = "report"
    AUDIT = "audit"  # who accessed what
    USERS = "users"
    INCIDENTS = "incidents"  # import dispatch records
    REVIEW = "review"  # draw review samples, mark recordings reviewed


PERMISSIONS: dict[str, frozenset[Action]] = {
    OFFICER: frozenset({Action.ME, Action.READ, Action.CONTENT}),
    AUDITOR: frozenset({Action.ME, Action.READ, Action.CONTENT, Action.VERIFY, Action.EXPORT,
                        Action.REPORT, Action.AUDIT}),
    SUPERVISOR: frozenset({Action.ME, Action.READ, Action.CONTENT, Action.VERIFY, Action.EXPORT,
                           Action.ANNOTATE, Action.REPORT, Action.AUDIT, Action.INCIDENTS,
                           Action.REVIEW}),
    # Admins run the service: users, dispatch imports, reports and audit trails, but no footage.
    ADMIN: frozenset({Action.ME, Action.REPORT, Action.AUDIT, Action.USERS, Action.INCIDENTS}),
}


@dataclass(frozen=True)
class User:
    name: str
    role: str
    officer_id: str | None

    @property
    def actor(self) -> str:
        return f"user:{self.name}"


def allowed(role: str, action: Action) -> bool:
    return action in PERMISSIONS.get(role, frozenset())


def may_see(user: User, recording_officer_id: str | None) -> bool:
    """Officers see only recordings attributed to them; other reading roles see all."""
    if user.role == OFFICER:
        return user.officer_id is not None and recording_officer_id == user.officer_id
    return allowed(user.role, Action.READ)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def token_label(token: str) -> str:
    """The few leading characters a presented token is counted and logged under: never more
    than half of it (a short wrong token is not written out whole), printable ASCII only."""
    shown = token[:min(TOKEN_LABEL_CHARS, len(token) // 2)]
    return "".join(char if char.isascii() and char.isprintable() else "?" for char in shown) + "…"


class Users:
    """The ``users`` table of the API node's database."""

    def __init__(self, database: Database, *, clock: Clock = utc_now) -> None:
        self.database = database
        self.clock = clock

    def add(self, name: str, role: str, *, officer_id: str | None = None,
            created_by: str = "cli") -> str:
        """Create a user; returns the bearer token (shown once, never stored)."""
        if not _USER_NAME.fullmatch(name):
            raise UsageError(_("user name {name!r}: 1-64 letters, digits, '.', '_', '@' or '-'").format(
                name=name))
        if role not in ROLES:
            raise UsageError(_("role {role!r}: must be one of {join}").format(
                role=role, join=', '.join(ROLES)))
        if role == OFFICER:
            if not officer_id or not _OFFICER_ID.fullmatch(officer_id):
                raise UsageError(_("role officer needs --officer-id (the officer id on recordings)"))
        elif officer_id:
            raise UsageError(_("--officer-id only applies to role officer, not {role}").format(
                role=role))
        token = new_token()
        with self.database.transaction() as conn:
            existing = conn.execute("SELECT revoked_at FROM users WHERE name = ?", (name,)).fetchone()
            if existing is not None:
                raise ConflictError(
                    _("user {name!r} already exists").format(name=name)
                    + (_(" (revoked; names are not reused, so the audit trail stays "
                         "unambiguous)") if existing["revoked_at"] else "")
                )
            conn.execute(
                "INSERT INTO users (name, role, officer_id, token_hash, created_at, created_by)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (name, role, officer_id, token_hash(token), format_time(self.clock()), created_by),
            )
        return token

    def revoke(self, name: str) -> None:
        changed = self.database.execute(
            "UPDATE users SET revoked_at = ? WHERE name = ? AND revoked_at IS NULL",
            (format_time(self.clock()), name),
        )
        if not changed:
            if self.database.query_one("SELECT 1 FROM users WHERE name = ?", (name,)) is None:
                raise NotFoundError(_("no user {name!r}").format(name=name))
            raise ConflictError(_("user {name!r} is already revoked").format(name=name))

    def list(self) -> list[dict[str, Any]]:
        return [
            {"name": row["name"], "role": row["role"], "officer_id": row["officer_id"],
             "created_at": row["created_at"], "created_by": row["created_by"],
             "revoked_at": row["revoked_at"], "last_used_at": row["last_used_at"]}
            for row in self.database.query("SELECT * FROM users ORDER BY name")
        ]

    def active(self, name: str) -> User | None:
        """The user called ``name`` if not revoked (for the console's signed session)."""
        row = self.database.query_one(
            "SELECT name, role, officer_id FROM users WHERE name = ? AND revoked_at IS NULL",
            (name,))
        return User(row["name"], row["role"], row["officer_id"]) if row else None

    def authenticate(self, token: str) -> User | None:
        """The active user holding ``token``, or None."""
        if not token.startswith(TOKEN_PREFIX) or len(token) > 200:
            return None
        digest = token_hash(token)
        row = self.database.query_one(
            "SELECT name, role, officer_id, token_hash, last_used_at FROM users"
            " WHERE token_hash = ? AND revoked_at IS NULL", (digest,))
        if row is None or not hmac.compare_digest(row["token_hash"], digest):
            return None
        now = format_time(self.clock())
        if (row["last_used_at"] or "")[:16] != now[:16]:  # at most one write per minute
            self.database.execute("UPDATE users SET last_used_at = ? WHERE name = ?",
                                  (now, row["name"]))
        return User(row["name"], row["role"], row["officer_id"])


def load_or_create_secret(path: Path) -> str:
    """The key that signs the console's session cookies: random, 0600, made once."""
    try:
        save_new(path, secrets.token_hex(32).encode(), mode=0o600)
    except FileExistsError:
        pass  # made before (or by another node process starting at the same moment)
    except OSError as exc:
        raise ConfigError(_("cannot write the session key {path}: {strerror}").format(
            path=path, strerror=exc.strerror)) from exc
    try:
        secret = path.read_text(encoding="ascii").strip()
    except OSError as exc:
        raise ConfigError(_("cannot read the session key {path}: {strerror}").format(
            path=path, strerror=exc.strerror)) from exc
    if len(secret) < 32:
        raise ConfigError(_("{path}: session key is too short (delete it to make a new one; "
                            "console users then sign in again)").format(path=path))
    return secret


class FailedLogins:
    """Failed sign-ins per key (a client address, or a token label) in a sliding window (in
    memory, per API node)."""

    def __init__(self, limit: int, window_s: float,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.window_s = window_s
        self.monotonic = monotonic
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, key: str, now: float) -> deque[float]:
        failures = self._failures.setdefault(key, deque())
        while failures and failures[0] <= now - self.window_s:
            failures.popleft()
        return failures

    def blocked(self, key: str) -> bool:
        with self._lock:
            now = self.monotonic()
            blocked = len(self._recent(key, now)) >= self.limit
            if not self._failures.get(key):
                self._failures.pop(key, None)
            return blocked

    def failed(self, key: str) -> int:
        """Record a failure; returns how many are in the window now."""
        with self._lock:
            now = self.monotonic()
            failures = self._recent(key, now)
            failures.append(now)
            if len(self._failures) > 10_000:  # bound memory under a spray of keys
                for stale in [k for k, f in self._failures.items() if not f or f[-1] <= now - self.window_s]:
                    del self._failures[stale]
            return len(failures)

    def retry_after_s(self, key: str) -> int:
        with self._lock:
            failures = self._failures.get(key)
            if not failures:
                return 0
            return max(1, int(failures[0] + self.window_s - self.monotonic()) + 1)
