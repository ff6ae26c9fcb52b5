"""The one settings model: defaults, environment, TOML file, validation of the working CRS."""

from __future__ import annotations

import os
import subprocess
import sys
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


def _settings_error(monkeypatch: pytest.MonkeyPatch, **env: str) -> str:
    """The one line ``get_settings`` refuses the environment ``env`` with."""
    from weijian.errors import ConfigurationError
    from weijian.settings import get_settings

    for key, value in env.items():
        monkeypatch.setenv(key, value)
    get_settings.cache_clear()
    try:
        with pytest.raises(ConfigurationError) as caught:
            get_settings()
    finally:
        get_settings.cache_clear()
    assert "\n" not in str(caught.value)
    return str(caught.value)


@pytest.mark.parametrize(
    ("typo", "meant"),
    [
        ("WEIJIAN_DATABSE_URL", "WEIJIAN_DATABASE_URL"),
        ("WEIJIAN_DETECTON__THRESHOLD", "WEIJIAN_DETECTION__THRESHOLD"),
        ("weijian_data_dri", "WEIJIAN_DATA_DIR"),
    ],
)
def test_a_misspelt_environment_variable_is_refused_naming_the_setting(
    typo: str, meant: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # before: the setting silently kept its default (e.g. the embedded cluster, not the server)
    message = _settings_error(monkeypatch, **{typo: "postgresql://u:p@h:5432/db"})
    assert f"{typo} is not a setting (did you mean {meant}?)" in message


def test_variables_of_the_tests_and_benchmarks_are_not_settings_typos(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from weijian.settings import unknown_environment

    env = {
        "WEIJIAN_CONFIG": "x.toml",
        "WEIJIAN_TEST_DATABASE_URL": "postgresql://h/db",
        "WEIJIAN_BENCH_SERVER_URL": "http://h",
        "WEIJIAN_WEB__PORT": "8001",
        "WEIJIAN_DETECTION": '{"threshold": 0.4}',
        "WEIJIAN_USER": "科员甲",
        "WEIJIANX": "not ours",
    }
    assert unknown_environment(env) == []
    assert unknown_environment({**env, "WEIJIAN_WEBB__PORT": "1"}) == ["WEIJIAN_WEBB__PORT"]


def test_a_misspelt_key_in_the_toml_file_names_the_setting_meant(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "weijian.toml"
    config.write_text("[matchng]\nreinspection_days = 45\n", encoding="utf-8")
    message = _settings_error(monkeypatch, WEIJIAN_CONFIG=str(config))
    assert "WEIJIAN_MATCHNG: not a setting (did you mean WEIJIAN_MATCHING?)" in message


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "WEIJIAN_CONFIG names"),
        ('working_crs = "EPSG:4549\n', "is not valid TOML (Illegal character"),
    ],
)
def test_a_missing_or_broken_settings_file_is_one_clear_error(
    content: str | None, expected: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "weijian.toml"
    if content is not None:
        config.write_text(content, encoding="utf-8")
    message = _settings_error(monkeypatch, WEIJIAN_CONFIG=str(config))
    assert expected in message and str(config) in message


@pytest.mark.parametrize("url", ["nonsense", "mysql://u@h/db", "postgresql//u@h/db"])
def test_a_database_url_that_is_not_postgresql_is_refused(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    message = _settings_error(monkeypatch, WEIJIAN_DATABASE_URL=url)
    assert "WEIJIAN_DATABASE_URL" in message and "postgresql://user:password@host" in message


def test_the_command_line_prints_a_settings_error_as_one_line_with_its_brackets(
    tmp_path: Path,
) -> None:
    """No traceback, and the ``[matching]`` of the message is text, not console markup."""
    config = tmp_path / "weijian.toml"
    config.write_text('working_crs = "EPSG:4549\n', encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("WEIJIAN_")}
    env.update(WEIJIAN_CONFIG=str(config), WEIJIAN_DATA_DIR=str(tmp_path), COLUMNS="300")
    weijian = Path(sys.executable).with_name("weijian")
    done = subprocess.run(
        [str(weijian), "db", "status"], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "sections as [matching]" in lines[0], done.stderr
