"""``weijian inventory import|export`` and ``weijian admin import`` as subprocesses."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import Result
from sqlalchemy import Engine, text
from typer.testing import CliRunner

from weijian_testdata.inventory import as_ledger, bowtie, make_cases, street_town_grid, write_gpkg

WEIJIAN = [str(Path(sys.executable).with_name("weijian"))]


def env_for(db_url: str, tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WEIJIAN_")}
    env.update(
        WEIJIAN_DATABASE_URL=db_url, WEIJIAN_USER="科员甲", WEIJIAN_DATA_DIR=str(tmp), COLUMNS="200"
    )
    return env


def weijian(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run the installed ``weijian`` (a fresh process: slow, ~5 s on a loaded machine)."""
    return subprocess.run(
        WEIJIAN + args, capture_output=True, text=True, env=env, timeout=300, check=False
    )


def invoke(args: list[str], env: dict[str, str]) -> Result:
    """Run the Typer app in-process (fast); settings are re-read from ``env``."""
    from weijian.cli import app
    from weijian.settings import get_settings

    get_settings.cache_clear()
    try:
        return CliRunner().invoke(app, args, env=env, catch_exceptions=False)
    finally:
        get_settings.cache_clear()


def counts(engine: Engine) -> tuple[int, int]:
    with engine.connect() as conn:
        return conn.execute(
            text(
                "SELECT (SELECT count(*) FROM inventory_case), (SELECT count(*) FROM case_history)"
            )
        ).one()  # type: ignore[return-value]


def test_admin_import_inventory_import_reimport_export(
    db_url: str, engine: Engine, tmp_path: Path
) -> None:
    env = env_for(db_url, tmp_path)
    street_town_grid().to_file(tmp_path / "towns.gpkg")
    done = invoke(["admin", "import", str(tmp_path / "towns.gpkg"), "--level", "street_town"], env)
    assert done.exit_code == 0, done.output
    write_gpkg(as_ledger(make_cases(120, seed=11)), tmp_path / "台账.gpkg")
    first = invoke(["inventory", "import", str(tmp_path / "台账.gpkg")], env)
    assert first.exit_code == 0, first.output
    assert "EPSG:4549" in first.output and "120" in first.output
    assert counts(engine) == (120, 120)
    with engine.connect() as conn:
        actor = conn.execute(text("SELECT DISTINCT actor FROM case_history")).scalar_one()
    assert actor == "科员甲"
    again = invoke(["inventory", "import", str(tmp_path / "台账.gpkg")], env)
    assert again.exit_code == 0 and counts(engine) == (120, 120)
    out = tmp_path / "ST06.xlsx"
    exported = invoke(
        ["inventory", "export", str(out), "--street-town", "测试06镇", "--state", "待派单"], env
    )
    assert exported.exit_code == 0, exported.output
    assert out.stat().st_size > 0 and "exported" in exported.output
    # a misspelt 街镇 is refused (it exported an empty file, "0 cases", as if the 街镇 had none)
    from gis_db.errors import InvalidInputError

    typo = tmp_path / "typo.xlsx"
    with pytest.raises(InvalidInputError, match="no 街镇 with code or name '测试06'"):
        invoke(["inventory", "export", str(typo), "--street-town", "测试06"], env)
    assert not typo.exists()


def test_bad_file_is_one_line_on_stderr_and_skip_invalid_writes_report(
    db_url: str, engine: Engine, tmp_path: Path
) -> None:
    env = env_for(db_url, tmp_path)
    cases = make_cases(5, seed=12)
    cases.loc[2, "geometry"] = bowtie(*cases.geometry.iloc[2].centroid.coords[0])
    write_gpkg(cases, tmp_path / "cases.gpkg")
    failed = weijian(["inventory", "import", str(tmp_path / "cases.gpkg")], env)
    assert failed.returncode == 1
    errors = [line for line in failed.stderr.splitlines() if line.startswith("错误 error:")]
    assert len(errors) == 1 and "cases.gpkg, row 3, field geometry" in errors[0], failed.stderr
    assert counts(engine) == (0, 0)
    report = tmp_path / "rejected.csv"
    skipped = invoke(
        [
            "inventory",
            "import",
            str(tmp_path / "cases.gpkg"),
            "--skip-invalid",
            "--report",
            str(report),
        ],
        env,
    )
    assert skipped.exit_code == 0, skipped.output
    assert "拒绝 rejected: row 3, field geometry" in skipped.output
    assert counts(engine) == (4, 4)
    assert "拒绝 rejected,3,geometry," in report.read_text(encoding="utf-8-sig")


@pytest.mark.slow
def test_import_killed_mid_way_leaves_nothing(db_url: str, engine: Engine, tmp_path: Path) -> None:
    env = env_for(db_url, tmp_path)
    write_gpkg(make_cases(50_000, seed=13), tmp_path / "big.gpkg")
    proc = subprocess.Popen(
        [*WEIJIAN, "inventory", "import", str(tmp_path / "big.gpkg")],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        with engine.connect() as conn:
            while time.monotonic() < deadline and proc.poll() is None:
                copying = conn.execute(
                    text(
                        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                        "AND query LIKE 'COPY _case_stage%' AND pid <> pg_backend_pid()"
                    )
                ).scalar_one()
                conn.rollback()
                if copying:
                    break
                time.sleep(0.05)
            assert proc.poll() is None and copying, "the import ended before its COPY was seen"
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
            # the server notices the dropped connection and rolls the transaction back
            while time.monotonic() < deadline:
                left = conn.execute(
                    text(
                        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                        "AND pid <> pg_backend_pid() AND backend_type = 'client backend'"
                    )
                ).scalar_one()
                conn.rollback()
                if not left:
                    break
                time.sleep(0.1)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    assert counts(engine) == (0, 0)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT to_regclass('_case_stage')")).scalar() is None
