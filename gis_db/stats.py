"""Statistics per 街镇 or 居村 and per period, colour warnings, and the re-inspection due list.

All figures come from the append-only history, so a period's numbers do not change when a case
moves on later. Days are Shanghai calendar days. Thresholds are plain arguments
(:class:`WarningThresholds`); the command line fills them from ``WarningSettings``.

Measures (per unit and period):

- ``new_suspects``: detections classed new suspect, loaded in the period;
- ``confirmed`` / ``false_positives``: detection reviews in the period; ``false_positive_rate`` =
  false positives / (confirmed + false positives), empty when nothing was reviewed;
- ``written_off``: 销项 in the period; ``area_demolished_m2``: their area when demolished (拆除 or
  代为拆除), m²;
- ``rebounds``: cases turned ``rebound`` in the period (automatic or reported);
- ``open_suspects`` and ``overdue_reinspections``: the state at the period's end (or now):
  new suspects not yet reviewed, and written-off cases past their re-inspection date;
- ``warning``: green / yellow / red from the thresholds.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Literal

import pandas as pd
from sqlalchemy import Connection, Engine, text

from gis_db.domain import OFFICE_TZ, SHANGHAI
from gis_db.engine import transaction
from gis_db.errors import InvalidInputError

Period = Literal["day", "week", "month", "all"]
UnitLevel = Literal["street_town", "village"]
_TZ = SHANGHAI

#: Chinese column headers of the statistics and due-list frames (see :func:`zh_columns`).
LABELS_ZH: dict[str, str] = {
    "unit_code": "单位代码",
    "unit_name": "单位名称",
    "period": "统计周期",
    "new_suspects": "新增疑似",
    "confirmed": "确认入库",
    "false_positives": "误报",
    "false_positive_rate": "误报率",
    "written_off": "销项",
    "area_demolished_m2": "拆除面积(平方米)",
    "rebounds": "反弹回潮",
    "open_suspects": "待核查疑似",
    "overdue_reinspections": "逾期未复查",
    "warning": "颜色预警",
    "case_id": "案件ID",
    "case_number": "案件编号",
    "street_town_code": "街镇代码",
    "street_town": "街镇",
    "village": "居村",
    "address": "地址",
    "area_m2": "面积(平方米)",
    "written_off_at": "销项时间",
    "written_off_by": "销项人",
    "reinspection_due_on": "复查期限",
    "days_overdue": "逾期天数",
}
WARNING_ZH = {"green": "绿色", "yellow": "黄色", "red": "红色"}
EVENT_MEASURES = (
    "new_suspects",
    "confirmed",
    "false_positives",
    "written_off",
    "area_demolished_m2",
    "rebounds",
)
STATE_MEASURES = ("open_suspects", "overdue_reinspections")


@dataclass(frozen=True)
class WarningThresholds:
    """颜色预警 thresholds (counts per unit); 0 switches a rule off."""

    yellow_new_suspects: int = 10
    red_new_suspects: int = 30
    red_rebounds: int = 1
    yellow_overdue: int = 1


def warning_colour(
    open_suspects: int, rebounds: int, overdue: int, t: WarningThresholds = WarningThresholds()
) -> str:
    """'red', 'yellow' or 'green' for one unit and period."""

    def hit(value: int, threshold: int) -> bool:
        return threshold > 0 and value >= threshold

    if hit(rebounds, t.red_rebounds) or hit(open_suspects, t.red_new_suspects):
        return "red"
    if hit(open_suspects, t.yellow_new_suspects) or hit(overdue, t.yellow_overdue):
        return "yellow"
    return "green"


def zh_columns(frame: pd.DataFrame) -> pd.DataFrame:
    """The frame with Chinese column headers (and Chinese warning colours)."""
    out = frame.rename(columns=LABELS_ZH)
    if "颜色预警" in out.columns:
        out["颜色预警"] = out["颜色预警"].map(WARNING_ZH).fillna(out["颜色预警"])
    return out


def office_today() -> date:
    """Today's date in Shanghai (the office's calendar), whatever the machine's time zone."""
    return datetime.now(_TZ).date()


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time(), _TZ)


def _buckets(start: date, end: date, period: Period) -> list[tuple[date, date]]:
    """[first day, last day] of each period from ``start`` to ``end`` (inclusive)."""
    if period == "all":
        return [(start, end)]
    out, day = [], start
    while day <= end:
        if period == "day":
            nxt = day + timedelta(days=1)
        elif period == "week":
            nxt = day - timedelta(days=day.weekday()) + timedelta(weeks=1)
        else:
            nxt = (day.replace(day=1) + timedelta(days=32)).replace(day=1)
        out.append((day, min(nxt - timedelta(days=1), end)))
        day = nxt
    return out


def _events(conn: Connection, col: str, t0: datetime, t1: datetime) -> pd.DataFrame:
    day = f"(%s AT TIME ZONE '{OFFICE_TZ}')::date"
    sql = f"""
    SELECT d.{col} AS unit, {day % "d.created_at"} AS day, 'new_suspects' AS measure, 1.0 AS value
      FROM detection d WHERE d.match_class = 'new_suspect'
       AND d.created_at >= :t0 AND d.created_at < :t1
    UNION ALL
    SELECT d.{col}, {day % "h.at"}, CASE h.to_state WHEN 'confirmed' THEN 'confirmed'
                                     ELSE 'false_positives' END, 1.0
      FROM detection_history h JOIN detection d ON d.id = h.detection_id
     WHERE h.to_state IN ('confirmed', 'false_positive') AND h.at >= :t0 AND h.at < :t1
    UNION ALL
    SELECT c.{col}, {day % "h.at"}, 'written_off', 1.0
      FROM case_history h JOIN inventory_case c ON c.id = h.case_id
     WHERE h.action = 'write_off' AND h.at >= :t0 AND h.at < :t1
    UNION ALL
    SELECT c.{col}, {day % "h.at"}, 'area_demolished_m2', c.area_m2
      FROM case_history h JOIN inventory_case c ON c.id = h.case_id
     WHERE h.action = 'write_off' AND c.disposal IN ('demolish', 'forced_demolition')
       AND h.at >= :t0 AND h.at < :t1
    UNION ALL
    SELECT c.{col}, {day % "h.at"}, 'rebounds', 1.0
      FROM case_history h JOIN inventory_case c ON c.id = h.case_id
     WHERE h.to_state = 'rebound' AND h.at >= :t0 AND h.at < :t1
    """
    return pd.read_sql_query(text(sql), conn, params={"t0": t0, "t1": t1})


def _state_at(conn: Connection, col: str, moment: datetime) -> pd.DataFrame:
    sql = f"""
    SELECT d.{col} AS unit, 'open_suspects' AS measure, count(*)::float8 AS value
      FROM detection d
     WHERE d.match_class = 'new_suspect' AND d.created_at < :t
       AND COALESCE((SELECT h.to_state FROM detection_history h WHERE h.detection_id = d.id
                     AND h.at < :t ORDER BY h.at DESC, h.id DESC LIMIT 1), 'new') = 'new'
     GROUP BY 1
    UNION ALL
    SELECT c.{col}, 'overdue_reinspections', count(*)::float8
      FROM case_history h JOIN inventory_case c ON c.id = h.case_id
     WHERE h.action = 'write_off' AND h.at < :t
       AND (h.changes ->> 'reinspection_due_on')::date < (CAST(:t AS timestamptz)
                                                         AT TIME ZONE '{OFFICE_TZ}')::date
       AND NOT EXISTS (SELECT 1 FROM case_history l WHERE l.case_id = h.case_id
                       AND l.at > h.at AND l.at < :t
                       AND l.action IN ('reinspect_clean', 'report_rebound'))
     GROUP BY 1
    """
    return pd.read_sql_query(text(sql), conn, params={"t": moment})


def unit_stats(
    bind: Engine | Connection,
    start: date,
    end: date,
    *,
    by: UnitLevel = "street_town",
    period: Period = "all",
    thresholds: WarningThresholds = WarningThresholds(),
    now: datetime | None = None,
) -> pd.DataFrame:
    """One row per unit (every 街镇 or 居村, plus ``unassigned`` when needed) and period.

    ``start``/``end``: first and last calendar day (inclusive). ``period``: day, week (Monday
    first), month or all (one row per unit). ``now``: the moment state measures are capped at
    (default: the present). English column names; :func:`zh_columns` gives Chinese ones.
    """
    if end < start:
        raise InvalidInputError(f"the period ends ({end}) before it starts ({start})")
    if by not in ("street_town", "village"):
        raise InvalidInputError(f"by must be 'street_town' or 'village', got {by!r}")
    if period not in ("day", "week", "month", "all"):
        raise InvalidInputError(f"period must be day, week, month or all, got {period!r}")
    col, table = f"{by}_code", by
    now = now or datetime.now(_TZ)
    buckets = _buckets(start, end, period)
    with transaction(bind) as conn:
        units = pd.read_sql_query(
            text(f"SELECT code AS unit_code, name AS unit_name FROM {table} ORDER BY code"), conn
        )
        events = _events(conn, col, _midnight(start), _midnight(end + timedelta(days=1)))
        states = []
        for first, last in buckets:
            moment = min(_midnight(last + timedelta(days=1)), now)
            frame = _state_at(conn, col, moment)
            states.append(frame.assign(period=first))
    starts = pd.Series([b[0] for b in buckets])
    if len(events):
        idx = starts.searchsorted(pd.to_datetime(events["day"]).dt.date, side="right") - 1
        events["period"] = starts.to_numpy()[idx]
    else:
        events["period"] = pd.Series(dtype=object)
    long = pd.concat([events[["unit", "period", "measure", "value"]], *states], ignore_index=True)
    long["unit"] = long["unit"].fillna("unassigned")
    table_ = long.pivot_table(
        index=["unit", "period"], columns="measure", values="value", aggfunc="sum", fill_value=0
    )
    codes = list(units["unit_code"]) + (["unassigned"] if "unassigned" in set(long["unit"]) else [])
    grid = pd.MultiIndex.from_product([codes, list(starts)], names=["unit", "period"])
    table_ = table_.reindex(grid, fill_value=0)
    for measure in EVENT_MEASURES + STATE_MEASURES:
        if measure not in table_.columns:
            table_[measure] = 0
    out = table_.reset_index().rename(columns={"unit": "unit_code"})
    names = dict(zip(units["unit_code"], units["unit_name"], strict=True))
    names["unassigned"] = "未落入辖区"
    out.insert(1, "unit_name", out["unit_code"].map(names))
    counts = [m for m in EVENT_MEASURES + STATE_MEASURES if m != "area_demolished_m2"]
    out[counts] = out[counts].astype(int)
    reviewed = out["confirmed"] + out["false_positives"]
    out["false_positive_rate"] = (out["false_positives"] / reviewed.where(reviewed > 0)).round(3)
    out["warning"] = [
        warning_colour(o, r, d, thresholds)
        for o, r, d in zip(
            out["open_suspects"], out["rebounds"], out["overdue_reinspections"], strict=True
        )
    ]
    columns = [
        "unit_code",
        "unit_name",
        "period",
        "new_suspects",
        "confirmed",
        "false_positives",
        "false_positive_rate",
        "written_off",
        "area_demolished_m2",
        "rebounds",
        "open_suspects",
        "overdue_reinspections",
        "warning",
    ]
    return out[columns]


def due_reinspections(
    bind: Engine | Connection,
    *,
    as_of: date | None = None,
    within_days: int = 0,
    street_town: str | None = None,
) -> pd.DataFrame:
    """Written-off cases whose re-inspection is overdue, or due soon, by 街镇 then due date.

    Overdue on ``as_of`` (default today), or due within ``within_days`` after it, by 街镇 then
    due date. ``days_overdue`` < 0: not yet due.
    """
    as_of = as_of or office_today()
    with transaction(bind) as conn:
        return pd.read_sql_query(
            text(
                "SELECT c.street_town_code, s.name AS street_town, v.name AS village, "
                "c.id AS case_id, c.case_number, c.address, c.area_m2, c.written_off_at, "
                "c.written_off_by, c.reinspection_due_on, (:d - c.reinspection_due_on) AS "
                "days_overdue "
                "FROM inventory_case c LEFT JOIN street_town s ON s.code = c.street_town_code "
                "LEFT JOIN village v ON v.code = c.village_code "
                "WHERE c.state = 'written_off' AND c.reinspection_due_on < CAST(:d AS date) + :w "
                "AND (CAST(:st AS text) IS NULL OR c.street_town_code = :st) "
                "ORDER BY c.street_town_code NULLS LAST, c.reinspection_due_on, c.case_number"
            ),
            conn,
            params={"d": as_of, "w": within_days, "st": street_town},
        )
