"""The one settings model: defaults, environment, TOML file, validation of the working CRS."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from weijian.settings import Settings


def test_defaults() -> None:
    s = Settings()
    assert s.working_crs == "EPSG:4549"
    assert s.ingest.working_gsd_m == 0.5
    assert s.matching.reinspection_days == 30
    assert s.crs.is_projected


def test_environment_and_nested(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WEIJIAN_DATABASE_URL", "postgresql://u:p@127.0.0.1:5/x")
    monkeypatch.setenv("WEIJIAN_INGEST__MAX_SHIFT_M", "3.5")
    s = Settings()
    assert s.database_url == "postgresql://u:p@127.0.0.1:5/x"
    assert s.ingest.max_shift_m == 3.5


def test_toml_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "weijian.toml"
    config.write_text(
        'working_crs = "EPSG:32651"\n[matching]\nreinspection_days = 45\n', encoding="utf-8"
    )
    monkeypatch.setenv("WEIJIAN_CONFIG", str(config))
    s = Settings()
    assert s.working_crs == "EPSG:32651"
    assert s.matching.reinspection_days == 45


def test_proj_string_accepted() -> None:
    local = "+proj=tmerc +lat_0=31.2363 +lon_0=121.4645 +k=1 +x_0=0 +y_0=0 +ellps=GRS80 +units=m"
    assert Settings(working_crs=local).crs.is_projected


@pytest.mark.parametrize(
    ("value", "message"),
    [("EPSG:4326", "not projected"), ("EPSG:99999999", "not a CRS"), ("nonsense", "not a CRS")],
)
def test_bad_working_crs(value: str, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        Settings(working_crs=value)


def test_unknown_key_refused() -> None:
    with pytest.raises(ValidationError, match="extra"):
        Settings(databse_url="typo")  # type: ignore[call-arg]
