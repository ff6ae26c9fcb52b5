"""``weijian stats`` read on an 80-column terminal: every figure in full, nothing elided."""

from __future__ import annotations

import pandas as pd
import pytest
from rich.cells import cell_len
from sqlalchemy import Engine
from typer.testing import CliRunner

from gis_db import matching, workflow
from gis_db.stats import office_today, unit_stats
from weijian.cli import app
from weijian_testdata.runs import (
    add_case,
    add_street_town,
    detection_ids,
    make_run,
    rect,
    write_off_demolished,
)


def _district(engine: Engine) -> None:
    """Two 街镇 with long names, a large demolished case and a matched, reviewed run."""
    add_street_town(engine, "310113103000", "月浦镇罗泾片区", rect(0, 0, 5000, 5000))
    add_street_town(engine, "310113104000", "罗店镇美兰湖片区", rect(5000, 0, 5000, 5000))
    big = add_case(
        engine, "A-big", rect(100, 100, 351.3, 351.3), "write_off_requested", "310113103000"
    )
    write_off_demolished(engine, big)
    run_id = make_run(engine, [rect(1000 + 20 * i, 1000) for i in range(12)] + [rect(6000, 10)])
    matching.match_run(engine, run_id)
    first, second, third = detection_ids(engine, run_id)[:3]
    workflow.review_detection(engine, first, "confirm", actor="r")
    workflow.review_detection(engine, second, "false_positive", actor="r")
    workflow.review_detection(engine, third, "false_positive", actor="r")


def _figure(value: object) -> str:
    """A figure as staff read it: integers as they are, other numbers with one decimal."""
    if isinstance(value, float) and not value.is_integer():
        return f"{value:,.1f}"
    return f"{value:,.0f}" if isinstance(value, float) else str(value)


@pytest.mark.parametrize("period", ["all", "week"])
def test_stats_fit_an_80_column_terminal(cli_env: str, engine: Engine, period: str) -> None:
    """Each figure of each unit appears in full, and no line is wider than the terminal."""
    _district(engine)
    today = office_today()
    result = CliRunner().invoke(
        app,
        ["stats", "--from", today.isoformat(), "--period", period],
        env={"COLUMNS": "80"},
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    shown = result.output
    assert "…" not in shown
    assert max(cell_len(line) for line in shown.splitlines()) <= 80
    frame = unit_stats(engine, today, today, period=period)
    assert frame.loc[0, "area_demolished_m2"] > 100_000  # the widest figure is wide
    assert frame.loc[0, "new_suspects"] == 12 and frame.loc[0, "false_positives"] == 2
    for row in frame.itertuples(index=False):
        for measure, value in row._asdict().items():
            if measure in ("unit_code", "warning") or pd.isna(value):
                continue  # the unit is shown by its name, the warning as a colour word
            figure = value.isoformat() if measure == "period" else _figure(value)
            if measure != "period" or period != "all":
                assert figure in shown, (measure, value)
    assert "绿色" in shown
