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


def test_seeded_core_settings_from_environment_and_toml(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "weijian.toml"
    config.write_text("[detection]\ncore_threshold = 0.6\ncore_min_area_m2 = 2\n", encoding="utf-8")
    monkeypatch.setenv("WEIJIAN_CONFIG", str(config))
    monkeypatch.setenv("WEIJIAN_DETECTION__GROW_MARGIN", "0.15")
    params = Settings().detection.vectorize_params(0.31)
    assert (params.core_threshold, params.core_min_area_m2, params.grow_margin) == (0.6, 2, 0.15)
    assert params.threshold == 0.31 and abs(params.mask_threshold - 0.16) < 1e-9


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"core_threshold": 1.5}, "less than or equal to 1"),
        ({"core_min_area_m2": -1}, "greater than or equal to 0"),
        ({"grow_margin": 1}, "less than 1"),
        ({"threshold": 0.5, "core_threshold": 0.4}, "core_threshold 0.4 is not above threshold"),
    ],
)
def test_bad_seeded_core_settings_give_one_clear_error(
    values: dict[str, float], message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from weijian.errors import ConfigurationError
    from weijian.settings import get_settings

    for key, value in values.items():
        monkeypatch.setenv(f"WEIJIAN_DETECTION__{key.upper()}", str(value))
    get_settings.cache_clear()
    try:
        with pytest.raises(ConfigurationError, match=message) as caught:
            get_settings()
    finally:
        get_settings.cache_clear()
    assert "\n" not in str(caught.value) and "WEIJIAN_DETECTION" in str(caught.value)
