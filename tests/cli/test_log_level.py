"""Staff see progress and summaries, not log lines; ``--verbose`` / ``log_level`` bring them back.

The real ``weijian`` executable (its ``main`` configures logging) imports a ledger into PostGIS;
``upsert_cases`` logs an INFO line about it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from weijian_testdata.inventory import as_ledger, make_cases, write_gpkg

WEIJIAN = str(Path(sys.executable).with_name("weijian"))


def _import(db_url: str, ledger: Path, *options: str, **env: str) -> str:
    """``weijian [options] inventory import ledger``; its stdout and stderr together."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("WEIJIAN_")}
    clean.update(WEIJIAN_DATABASE_URL=db_url, WEIJIAN_USER="科员甲", COLUMNS="200", **env)
    proc = subprocess.run(
        [WEIJIAN, *options, "inventory", "import", str(ledger)],
        capture_output=True,
        text=True,
        env=clean,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout + proc.stderr


def test_no_info_lines_by_default_and_verbose_shows_them(db_url: str, tmp_path: Path) -> None:
    ledger = tmp_path / "台账.gpkg"
    write_gpkg(as_ledger(make_cases(8, seed=3)), ledger)
    quiet = _import(db_url, ledger)
    assert "导入" in quiet and "EPSG:4549" in quiet  # the command's own summary is there
    assert " INFO " not in quiet and "upsert_cases" not in quiet, quiet
    verbose = _import(db_url, ledger, "--verbose")
    assert " INFO gis_db.inventory upsert_cases" in verbose, verbose
    by_setting = _import(db_url, ledger, WEIJIAN_LOG_LEVEL="INFO")
    assert " INFO gis_db.inventory upsert_cases" in by_setting, by_setting
