"""Fixtures shared by every test module."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

pytest_plugins = ["tests.s3_fixtures", "tests.dock_fixtures", "tests.api_fixtures", "tests.faultlog",
                  "tests.tsa_fixtures"]


@pytest.fixture(autouse=True)
def _no_evidence_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Tests never see the developer's EVIDENCE_* settings (config layering would pick them up)."""
    for name in list(os.environ):
        if name.startswith("EVIDENCE_"):
            monkeypatch.delenv(name)
    yield


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    from .faultlog import write_artifact

    write_artifact()
