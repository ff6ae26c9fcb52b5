"""Fixtures shared by the CLI tests of ``weijian``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from weijian.settings import get_settings


@pytest.fixture()
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A fresh data folder (the registry lives in ``models/``), no configuration file."""
    monkeypatch.setenv("WEIJIAN_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("WEIJIAN_CONFIG", "")
    get_settings.cache_clear()
    yield tmp_path / "data"
    get_settings.cache_clear()
