"""``weijian runs`` (list, match, review detections), ``weijian dispatch`` and ``weijian stats``.

weijian runs list
weijian runs match 7                      # thresholds from the [matching] settings
weijian runs review 1234 confirm          # or false-positive, bad-imagery, reopen
weijian dispatch --run 7 [--out dispatch/run7]
weijian stats [--from 2026-06-01] [--to 2026-06-30] [--period month] [--by village]
              [--out stats.xlsx]
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    import pandas as pd

from weijian.cli.options import (
    CommentOption,
    EvidenceOption,
    Period,
    RoleOption,
    UnitLevel,
    UserOption,
    VersionOption,
    action_code,
    database,
    office_time,
    parse_date,
)

app = typer.Typer(help="比对批次: 列表、与违建库比对、图斑核查。", no_args_is_help=True)
out = Console()


@app.command("list")
def list_runs() -> None:
    """列出全部比对批次 (新的在前) 与图斑核查进度。"""
    from gis_db.domain import RunStatus
    from gis_db.runs import list_runs as runs_frame

    with database() as engine:
        frame = runs_frame(engine)
    table = Table(title="比对批次 detection runs")
    for header in ("批次", "状态", "网络", "图斑", "前时相", "后时相", "待核查", "已确认", "误报"):
        table.add_column(header)
    for r in frame.itertuples():
        table.add_row(
            str(r.id),
            f"{RunStatus(r.status).zh} {r.status}",
            r.network,
            str(r.n_detections or 0),
            office_time(r.before_acquired_at, "%Y-%m-%d"),
            office_time(r.after_acquired_at, "%Y-%m-%d"),
            str(r.pending),
            str(r.confirmed),
            str(r.false_positive),
        )
    out.print(table)
    if frame.empty:
        out.print("还没有比对批次 no runs yet: `weijian flight run IMAGE` (or `weijian demo`)")


@app.command()
def match(run_id: int = typer.Argument(..., help="run id (see 'weijian runs list')")) -> None:
    """将批次的图斑与违建库、审批、已销项点位比对 (幂等)。"""
    from gis_db.domain import MatchClass
    from gis_db.matching import match_run
    from weijian.settings import get_settings

    cfg = get_settings().matching
    with database() as engine:
        summary = match_run(
            engine, run_id, overlap_threshold=cfg.overlap_threshold, tolerance_m=cfg.tolerance_m
        )
    note = " (already matched: nothing changed)" if summary.already_matched else ""
    out.print(
        f"run {run_id}{note}: "
        + ", ".join(f"{MatchClass(k).zh} {v}" for k, v in summary.counts.items() if v)
    )
    if summary.rebound_case_ids:
        out.print(f"[bold red]反弹回潮 {len(summary.rebound_case_ids)} 件已重新打开[/]")


@app.command()
def review(
    detection_id: int = typer.Argument(..., help="detection id"),
    action: str = typer.Argument(..., help="confirm, false-positive, bad-imagery, reopen"),
    comment: CommentOption = None,
    evidence: EvidenceOption = None,
    role: RoleOption = "office",
    user: UserOption = None,
    version: VersionOption = None,
) -> None:
    """核查一个图斑: 确认入库、误报、影像问题或重新核查。"""
    from gis_db.workflow import review_detection
    from weijian.settings import get_settings

    settings = get_settings()
    with database() as engine:
        result = review_detection(
            engine,
            detection_id,
            action_code(action),
            actor=user or settings.user,
            role=role,
            comment=comment,
            evidence=evidence or [],
            expected_version=version,
            overlap_threshold=settings.matching.overlap_threshold,
        )
    tail = ""
    if result.case_id is not None:
        tail = f"; case {result.case_id} " + ("created" if result.case_created else "updated")
    out.print(f"detection {detection_id}: {result.from_state} → {result.to_state}{tail}")


def dispatch(
    run: int = typer.Option(..., "--run", help="run id"),
    out_dir: Annotated[
        Path | None, typer.Option("--out", help="default: ./dispatch/run<ID>")
    ] = None,
) -> None:
    """为每个街镇生成派单包: GeoPackage、Excel 核查清单与前后时相截图。"""
    from gis_db.dispatch import write_dispatch_packages

    target = out_dir or Path("dispatch") / f"run{run}"
    with database() as engine:
        with out.status(f"writing dispatch packages of run {run} ..."):
            packages = write_dispatch_packages(engine, run, target)
    table = Table(title=f"派单包 run {run} → {target}")
    for header in ("街镇", "疑似", "截图", "Excel"):
        table.add_column(header)
    for p in packages:
        table.add_row(
            f"{p.street_town} ({p.street_town_code})",
            str(p.n_suspects),
            str(p.n_chips),
            str(p.xlsx),
        )
    out.print(table)


def stats(
    start: str | None = typer.Option(None, "--from", help="first day; default 1st of month"),
    end: str | None = typer.Option(None, "--to", help="last day (inclusive); default today"),
    period: Annotated[Period, typer.Option(help="统计周期 period")] = Period.ALL,
    by: Annotated[
        UnitLevel, typer.Option(help="街镇 (street_town) or 居村 (village)")
    ] = UnitLevel.STREET_TOWN,
    save: Annotated[Path | None, typer.Option("--out", help="also write .csv or .xlsx")] = None,
) -> None:
    """按街镇 (或居村) 与周期统计。

    新增疑似、确认、误报率、销项、拆除面积、反弹、逾期复查、颜色预警。
    """
    from gis_db.stats import (
        WarningThresholds,
        office_today,
        unit_stats,
        zh_columns,
    )
    from weijian.settings import get_settings

    last = parse_date(end) or office_today()
    first = parse_date(start) or last.replace(day=1)
    thresholds = WarningThresholds(**get_settings().warnings.model_dump())
    with database() as engine:
        figures = unit_stats(
            engine,
            first,
            last,
            by=by.value,
            period=period.value,
            thresholds=thresholds,
        )
    frame = zh_columns(figures)
    district = get_settings().district_name
    for title, measures in _STATS_TABLES:
        heading = f"{district} {title} {first} — {last}"
        out.print(_stats_table(frame, heading, measures, period.value))
    if save is not None:
        if save.suffix.lower() == ".xlsx":
            frame.to_excel(save, index=False)
        else:
            frame.to_csv(save, index=False, encoding="utf-8-sig")
        out.print(f"written {save}")


#: The two tables ``weijian stats`` prints, each narrow enough for an 80-column terminal:
#: (title, [(column of ``zh_columns``, short header)]). Files written with ``--out`` keep every
#: column with its full header.
_STATS_TABLES: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = (
    (
        "图斑核查",
        (
            ("新增疑似", "新增"),
            ("确认入库", "确认"),
            ("误报", "误报"),
            ("误报率", "误报率"),
            ("待核查疑似", "待核查"),
        ),
    ),
    (
        "销项与预警 (面积: 平方米)",
        (
            ("销项", "销项"),
            ("拆除面积(平方米)", "拆除面积"),
            ("反弹回潮", "反弹"),
            ("逾期未复查", "逾期"),
            ("颜色预警", "预警"),
        ),
    ),
)


def _stats_table(
    frame: pd.DataFrame, title: str, measures: tuple[tuple[str, str], ...], period: str
) -> Table:
    """One of the ``weijian stats`` tables: the unit, its period (unless one), some measures.

    ``frame`` is ``zh_columns(unit_stats(...))``. Figures never wrap or shrink (a column of
    names wraps instead), so a number is always shown in full; floats have one decimal.
    """
    import pandas as pd

    colours = {"绿色": "green", "黄色": "yellow", "红色": "red"}
    table = Table(title=title)
    table.add_column("单位", overflow="fold")
    if period != "all":
        table.add_column("周期", no_wrap=True)
    for _, header in measures:
        table.add_column(header, justify="right", no_wrap=True)
    for row in frame.itertuples(index=False):
        values = dict(zip(frame.columns, row, strict=True))
        name = values["单位名称"]
        cells = [str(values["单位代码"] if pd.isna(name) else name)]
        if period != "all":
            cells.append(str(values["统计周期"]))
        for column, _ in measures:
            v = values[column]
            cells.append("" if pd.isna(v) else f"{v:,.1f}" if isinstance(v, float) else str(v))
        table.add_row(*cells, style=colours.get(str(values["颜色预警"])))
    return table
