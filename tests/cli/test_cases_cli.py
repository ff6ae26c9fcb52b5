"""``weijian cases``, ``runs``, ``dispatch`` and ``stats`` on a real database."""

from __future__ import annotations

import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import Engine, text
from typer.testing import CliRunner

from gis_db.stats import office_today
from weijian.cli import app
from weijian_testdata.runs import add_case, add_street_town, make_run, rect

runner = CliRunner()


def invoke(*args: str) -> str:
    result = runner.invoke(app, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_case_life_on_the_command_line(cli_env: str, engine: Engine) -> None:
    add_street_town(engine, "ST1", "月浦镇", rect(-100, -100, 300, 300))
    add_case(engine, "C-9", rect(0, 0), state="disposed", street_town="ST1")
    assert "write_off_requested" in invoke(
        "cases", "act", "C-9", "request-write-off", "--user", "alice", "-e", "photos/9.jpg"
    )
    assert "written_off" in invoke("cases", "act", "C-9", "销项", "--user", "bob")
    shown = invoke("cases", "show", "C-9")
    assert "已销项" in shown and "photos/9" in shown and "复查无反弹" in shown
    assert "没有逾期" in invoke("cases", "due")
    later = (office_today() + timedelta(days=31)).isoformat()
    due = invoke("cases", "due", "--as-of", later)
    assert "C-9" in due and "月浦镇" in due
    assert "reinspected_clean" in invoke(
        "cases", "act", "C-9", "reinspect-clean", "--role", "street_town", "--unit", "ST1"
    )


def test_runs_review_dispatch_and_stats(cli_env: str, engine: Engine, tmp_path: Path) -> None:
    add_street_town(engine, "ST1", "月浦镇", rect(-100, -100, 300, 300))
    run_id = make_run(engine, [rect(0, 0), rect(50, 50)])
    assert f"{run_id}" in invoke("runs", "list")
    assert "新增疑似 2" in invoke("runs", "match", str(run_id))
    assert "already matched" in invoke("runs", "match", str(run_id))
    with engine.connect() as conn:
        det = conn.execute(text("SELECT min(id) FROM detection")).scalar_one()
    assert "created" in invoke("runs", "review", str(det), "confirm")
    out = tmp_path / "packages"
    assert "月浦镇" in invoke("dispatch", "--run", str(run_id), "--out", str(out))
    assert list(out.glob("ST1_*/run*_ST1.xlsx"))
    csv = tmp_path / "stats.csv"
    invoke("stats", "--from", office_today().isoformat(), "--out", str(csv))
    frame = pd.read_csv(csv, encoding="utf-8-sig")
    assert frame.loc[0, "新增疑似"] == 2 and frame.loc[0, "确认入库"] == 1


def test_domain_error_is_one_clear_line(cli_env: str, engine: Engine) -> None:
    add_case(engine, "C-1", rect(0, 0), state="open")
    weijian = str(Path(sys.executable).with_name("weijian"))
    result = subprocess.run(
        [weijian, "cases", "act", "C-1", "write-off"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 1
    assert "not allowed from there" in result.stderr and "Traceback" not in result.stderr


def test_times_on_the_command_line_are_the_office_clock(
    cli_env: str, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As on the review pages: a scene of 00:00 in Shanghai is that day, not the day before."""
    from gis_db.domain import SHANGHAI

    monkeypatch.setenv("COLUMNS", "200")  # the whole table

    add_street_town(engine, "ST1", "月浦镇", rect(-100, -100, 300, 300))
    run_id = make_run(engine, [rect(0, 0)])
    with engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE scene SET acquired_at = CASE WHEN scene.id = r.before_scene_id "
                "THEN timestamptz '2026-03-01 00:00+08' ELSE timestamptz '2026-06-01 00:00+08' "
                "END FROM detection_run r WHERE r.id = :r "
                "AND scene.id IN (r.before_scene_id, r.after_scene_id)"
            ),
            {"r": run_id},
        )
    invoke("runs", "match", str(run_id))
    listed = invoke("runs", "list")
    assert "2026-03-01" in listed and "2026-06-01" in listed and "2026-02-28" not in listed
    assert "已比对 matched" in listed
    add_case(engine, "C-7", rect(0, 0), state="open", street_town="ST1")
    invoke("cases", "act", "C-7", "dispatch", "--user", "alice")
    with engine.connect() as conn:
        at = conn.execute(
            text(
                "SELECT max(at) FROM case_history h JOIN inventory_case c ON c.id = h.case_id "
                "WHERE c.case_number = 'C-7'"
            )
        ).scalar_one()
    shown = invoke("cases", "show", "C-7")
    assert f"{at.astimezone(SHANGHAI):%Y-%m-%d %H:%M}  alice" in shown, shown


def test_an_empty_run_list_says_how_to_make_one(cli_env: str) -> None:
    assert "no runs yet: `weijian flight run IMAGE`" in invoke("runs", "list")
