"""``weijian db ...`` on a private embedded cluster, ``weijian demo`` end to end (subprocesses)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from tests.conftest import public_tmpdir

WEIJIAN = [str(Path(sys.executable).with_name("weijian"))]


def run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        WEIJIAN + args, capture_output=True, text=True, env=env, timeout=300, check=False
    )


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WEIJIAN_")}
    env.update(extra)
    return env


@pytest.mark.slow
def test_db_commands_on_embedded_cluster() -> None:
    root = public_tmpdir("weijian-test-cli-")
    env = clean_env(WEIJIAN_DATA_DIR=str(root))
    try:
        first = run(["db", "status"], env)
        assert first.returncode == 0 and "initialised: no" in first.stdout
        assert run(["db", "start"], env).returncode == 0
        status = run(["db", "status"], env).stdout
        assert "running: yes" in status
        url = run(["db", "url"], env).stdout.strip()
        assert url.startswith("postgresql+psycopg://weijian:***@127.0.0.1:")
        full = run(["db", "url", "--show-password"], env).stdout.strip()
        with create_engine(full).connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM inventory_case")).scalar_one() == 0
        assert "stopped" in run(["db", "stop"], env).stdout
        assert "running: no" in run(["db", "status"], env).stdout
    finally:
        run(["db", "stop"], env)
        shutil.rmtree(root, ignore_errors=True)


def test_bad_settings_give_one_clear_line() -> None:
    result = run(["db", "status"], clean_env(WEIJIAN_WORKING_CRS="EPSG:4326"))
    assert result.returncode != 0
    assert "WEIJIAN_WORKING_CRS" in result.stderr and "not projected" in result.stderr
    assert "Traceback" not in result.stderr


TABLES = ("scene", "detection_run", "detection", "inventory_case", "case_history", "permit")


def _counts(url: str) -> dict[str, int]:
    with create_engine(url).connect() as conn:
        return {t: conn.execute(text(f"SELECT count(*) FROM {t}")).scalar_one() for t in TABLES}


@pytest.mark.slow
def test_demo_loads_district_and_is_idempotent(db_url: str) -> None:
    from weijian.demo_flight import PER_CLASS

    root = public_tmpdir("weijian-test-demo-")
    env = clean_env(WEIJIAN_DATABASE_URL=db_url, WEIJIAN_DATA_DIR=str(root))
    seeded = 3 * PER_CLASS  # known, written-off and demolished cases around the demo flight
    try:
        first = run(["demo", "--cases", "300", "--no-serve"], env)
        assert first.returncode == 0, first.stderr
        assert "新增 created 300" in first.stdout
        assert "月浦镇" in first.stdout and "合计" in first.stdout
        assert f"案件 新增 {seeded}" in first.stdout
        assert "核查系统 review application" in first.stdout and "reviewer /" in first.stdout
        # progress and the summary only: no log lines (`weijian --verbose demo` shows them)
        assert " INFO " not in first.stdout + first.stderr, first.stderr
        after_first = _counts(db_url)
        with create_engine(db_url).connect() as conn:
            classes = dict(
                conn.execute(
                    text("SELECT match_class, count(*) FROM detection GROUP BY match_class")
                ).all()
            )
            status = conn.execute(text("SELECT status FROM detection_run")).scalars().all()
        assert status == ["matched"]
        for cls in ("new_suspect", "known_case", "rebound", "demolition_evidence", "permitted"):
            assert classes.get(cls, 0) > 0, classes
        flight = root / "flights" / "gucun_demo_20260310"
        for name in ("report.html", "map.html", "flight_state.json", "detect/changes.gpkg"):
            assert (flight / name).is_file(), name
        second = run(["demo", "--cases", "300", "--no-serve"], env)
        assert second.returncode == 0, second.stderr
        assert "新增 created 0" in second.stdout and "未变 unchanged 300" in second.stdout
        assert "nothing to do" in second.stdout
        assert _counts(db_url) == after_first
        with create_engine(db_url).connect() as conn:
            n = conn.execute(text("SELECT count(*) FROM inventory_case")).scalar_one()
            assert n == 300 + seeded
            assert conn.execute(text("SELECT count(*) FROM street_town")).scalar_one() == 14
            located = conn.execute(
                text(
                    "SELECT count(*) FROM inventory_case WHERE street_town_code IS NOT NULL "
                    "AND village_code IS NOT NULL"
                )
            ).scalar_one()
        assert located == 300 + seeded
    finally:
        shutil.rmtree(root, ignore_errors=True)
