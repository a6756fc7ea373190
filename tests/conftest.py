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


@pytest.fixture(autouse=True)
def _english_locale(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Tests read English unless they choose a language (LANG=zh_CN.UTF-8 in a developer's
    shell would otherwise translate every message a test compares); CLI subprocesses inherit it.
    ``cli.main`` in-process picks a language for the rest of the process: reset it after."""
    from evidence_daemon import i18n

    for name in ("LANGUAGE", "LC_ALL", "LC_MESSAGES"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LANG", "C.UTF-8")
    i18n.use("en")
    yield
    i18n.use("en")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    from .faultlog import write_artifact

    write_artifact()
