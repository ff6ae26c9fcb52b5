"""Shared fixtures of the command-line tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from weijian.settings import get_settings


@pytest.fixture()
def cli_env(db_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The command line pointed at this test's database as user ``tester``; yields the URL."""
    monkeypatch.setenv("WEIJIAN_DATABASE_URL", db_url)
    monkeypatch.setenv("WEIJIAN_USER", "tester")
    get_settings.cache_clear()
    yield db_url
    get_settings.cache_clear()
