"""Statistics per 街镇/居村 and period, colour warnings, the re-inspection due list."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import pandas as pd
import pytest
from sqlalchemy import Engine

from gis_db import matching, stats, workflow
from gis_db.stats import WarningThresholds, warning_colour
from weijian_testdata.runs import (
    add_case,
    add_street_town,
    add_village,
    detection_ids,
    make_run,
    rect,
    write_off_demolished,
)


@pytest.fixture()
def today() -> date:
    """The office's date when the test starts, not at import.

    A session may cross Shanghai's midnight (16:00 UTC) while the database stamps its own now().
    """
    return stats.office_today()


@pytest.fixture()
def district(engine: Engine) -> Engine:
    """Two 街镇 (A west, B east), one 居村 each, and a month of work in them."""
    add_street_town(engine, "A", "月浦镇", rect(0, 0, 500, 500))
    add_street_town(engine, "B", "罗店镇", rect(500, 0, 500, 500))
    add_village(engine, "A1", "月浦一村", "A", rect(0, 0, 500, 500))
    add_village(engine, "B1", "罗店一村", "B", rect(500, 0, 500, 500))
    gone = add_case(engine, "B-gone", rect(700, 100, 20, 20), state="written_off", street_town="B")
    done = add_case(
        engine, "A-done", rect(300, 300, 10, 10), state="write_off_requested", street_town="A"
    )
    write_off_demolished(engine, done)
    run_id = make_run(
        engine,
        [
            rect(10, 10),
            rect(50, 10),
            rect(90, 10),  # A: new suspects
            rect(600, 10),  # B: new suspect
            rect(700, 100, 20, 20),  # B: rebound on gone
            rect(5000, 5000),
        ],
    )  # outside: unassigned
    matching.match_run(engine, run_id)
    a1, a2 = detection_ids(engine, run_id)[:2]
    workflow.review_detection(engine, a1, "confirm", actor="r")
    workflow.review_detection(engine, a2, "false_positive", actor="r")
    assert gone
    return engine


def test_unit_stats_per_street_town(district: Engine, today: date) -> None:
    later = today + timedelta(days=40)
    frame = stats.unit_stats(
        district,
        today - timedelta(days=1),
        later,
        now=datetime.combine(later, datetime.min.time(), stats._TZ),
    )
    rows = frame.set_index("unit_code")
    assert list(rows.index) == ["A", "B", "unassigned"]
    a, b = rows.loc["A"], rows.loc["B"]
    assert (a.new_suspects, a.confirmed, a.false_positives, a.written_off) == (3, 1, 1, 1)
    assert a.false_positive_rate == 0.5 and a.area_demolished_m2 == pytest.approx(100.0)
    assert (a.open_suspects, a.overdue_reinspections, a.rebounds) == (1, 1, 0)
    assert a.warning == "yellow"  # one overdue re-inspection
    assert (b.new_suspects, b.rebounds, b.warning) == (1, 1, "red")
    assert rows.loc["unassigned", "new_suspects"] == 1
    assert pd.isna(b.false_positive_rate)
    # today, nothing is overdue yet
    now = stats.unit_stats(district, today, today).set_index("unit_code")
    assert now.loc["A", "overdue_reinspections"] == 0 and now.loc["A", "warning"] == "green"


def test_per_village_and_per_day(district: Engine, today: date) -> None:
    frame = stats.unit_stats(district, today - timedelta(days=2), today, by="village", period="day")
    assert len(frame) == 3 * 3  # A1, B1, unassigned × 3 days
    assert frame.groupby("unit_code")["new_suspects"].sum().to_dict() == {
        "A1": 3,
        "B1": 1,
        "unassigned": 1,
    }
    assert frame.loc[frame["period"] == today, "new_suspects"].sum() == 5


def test_chinese_headers(district: Engine, today: date) -> None:
    frame = stats.zh_columns(stats.unit_stats(district, today, today))
    assert {"单位名称", "新增疑似", "误报率", "颜色预警", "拆除面积(平方米)"} <= set(frame.columns)
    assert set(frame["颜色预警"]) <= {"绿色", "黄色", "红色"}


def test_due_reinspections(district: Engine, today: date) -> None:
    assert stats.due_reinspections(district, as_of=today).empty
    due = stats.due_reinspections(district, as_of=today + timedelta(days=31))
    assert list(due["case_number"]) == ["A-done"] and due.loc[0, "days_overdue"] == 1
    assert due.loc[0, "street_town"] == "月浦镇"
    assert len(stats.due_reinspections(district, as_of=today, within_days=31)) == 1
    assert stats.due_reinspections(
        district, as_of=today + timedelta(days=31), street_town="B"
    ).empty


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ((0, 0, 0), "green"),
        ((10, 0, 0), "yellow"),
        ((0, 0, 1), "yellow"),
        ((30, 0, 0), "red"),
        ((0, 1, 0), "red"),
    ],
)
def test_warning_colour(values: tuple[int, int, int], expected: str) -> None:
    assert warning_colour(*values) == expected


def test_zero_threshold_switches_a_rule_off() -> None:
    assert warning_colour(0, 5, 0, WarningThresholds(red_rebounds=0)) == "green"


def test_period_buckets() -> None:
    assert stats._buckets(date(2026, 1, 30), date(2026, 3, 2), "month") == [
        (date(2026, 1, 30), date(2026, 1, 31)),
        (date(2026, 2, 1), date(2026, 2, 28)),
        (date(2026, 3, 1), date(2026, 3, 2)),
    ]
    assert stats._buckets(date(2026, 6, 3), date(2026, 6, 10), "week")[1][0] == date(2026, 6, 8)
