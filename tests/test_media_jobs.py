"""The proxy job queue (media/jobs.py): its typed vocabulary, its pure decisions, and the
queue on a real SQLite database with an injected clock."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from evidence_daemon.media.jobs import (
    Made,
    ProxyJob,
    ProxyKind,
    ProxyQueue,
    ProxyState,
    after_failure,
    backoff_s,
)
from evidence_daemon.state.db import Database

VIDEO = {"format_name": "mov,mp4,m4a,3gp,3g2,mj2", "duration_s": 4.0,
         "streams": [{"codec_type": "video"}, {"codec_type": "audio"}]}


def test_the_stored_state_values_are_unchanged() -> None:
    """They are in every station's SQLite and in ``proxies --json``: never renamed."""
    assert [state.value for state in ProxyState] == [
        "pending", "running", "done", "failed", "unplayable", "skipped"]
    assert [kind.value for kind in ProxyKind] == ["video", "audio"]


@pytest.mark.parametrize(("attempts", "retries", "state"), [
    (1, 3, ProxyState.PENDING), (2, 3, ProxyState.PENDING), (3, 3, ProxyState.FAILED),
    (4, 3, ProxyState.FAILED), (1, 1, ProxyState.FAILED), (1, 0, ProxyState.FAILED),
])
def test_a_failed_attempt_is_retried_until_the_retries_are_spent(
    attempts: int, retries: int, state: ProxyState
) -> None:
    assert after_failure(attempts, retries) is state


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 11, 30, 8, 0, tzinfo=timezone.utc)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def database(tmp_path: Path) -> Iterator[Database]:
    database = Database(tmp_path / "state.sqlite3")
    yield database
    database.close()


def _archived(database: Database, sha256: str, media: dict[str, object] | None) -> None:
    database.execute(
        "INSERT INTO recordings (sha256, size_bytes, extension, object_key, archived_at, media,"
        " first_seen_at) VALUES (?, 10, 'mp4', ?, '2026-11-30T07:00:00+00:00', ?,"
        " '2026-11-30T07:00:00+00:00')",
        (sha256, f"recordings/{sha256}", json.dumps(media) if media is not None else None))


def test_a_claimed_job_is_typed_running_and_its_failures_back_off(database: Database) -> None:
    clock = Clock()
    queue = ProxyQueue(database, clock)
    _archived(database, "a" * 64, VIDEO)
    _archived(database, "b" * 64, None)  # no media facts: nothing to make
    assert queue.enqueue_archived() == 2
    job = queue.claim()
    assert job == ProxyJob(sha256="a" * 64, kind=ProxyKind.VIDEO, attempts=1, extension="mp4",
                           size_bytes=10, media=VIDEO)
    assert queue.claim() is None  # the only pending job is running now
    assert database.scalar("SELECT state FROM proxy_jobs WHERE sha256 = ?", ("a" * 64,)) == "running"

    assert queue.retry_later(job.sha256, job.attempts, "disk full", retries=2) is ProxyState.PENDING
    assert queue.claim() is None  # waiting out its backoff
    clock.now += timedelta(seconds=backoff_s(1))
    retried = queue.claim()
    assert retried is not None and retried.attempts == 2
    assert queue.retry_later(retried.sha256, retried.attempts, "disk full", retries=2) is ProxyState.FAILED
    assert queue.report()["counts"] == {"pending": 0, "running": 0, "done": 0, "failed": 1,
                                        "unplayable": 0, "skipped": 1}

    assert queue.retry_failed() == 1
    again = queue.claim()
    assert again is not None and again.attempts == 1
    queue.done(again.sha256, Made("proxies/a.mp4", "c" * 64, 5))
    assert json.loads(json.dumps(queue.report()))["counts"]["done"] == 1
