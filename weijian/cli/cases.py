"""``weijian cases``: overdue re-inspections, one case's record, and acting on a case.

    weijian cases due [--as-of 2026-07-01] [--within 7] [--street-town CODE]
    weijian cases show YS2026-000123
    weijian cases act YS2026-000123 dispatch
    weijian cases act 42 dispose --disposal 拆除 --role street_town --unit ST01
    weijian cases act 42 request-write-off --evidence photos/42-after.jpg --evidence scene:17
    weijian cases act 42 write-off --user lead          # a second person, never the requester
    weijian cases act 42 reinspect-clean | report-rebound

ACTION is a code (dashes or underscores) or its Chinese label (派单, 查实, 处置, 申请销项, 销项,
退回销项, 复查无反弹, 反弹回潮). The acting user defaults to the settings' ``user``.
"""

from __future__ import annotations

import typer
from rich.console import Console
from rich.table import Table

from weijian.cli.options import (
    CommentOption,
    EvidenceOption,
    RoleOption,
    UserOption,
    VersionOption,
    action_code,
    database,
    office_time,
    parse_date,
)

app = typer.Typer(
    help="案件: 复查到期清单、案件记录、案件办理 (派单→查实→处置→申请销项→销项→复查)。",
    no_args_is_help=True,
)
out = Console()


@app.command()
def due(
    as_of: str | None = typer.Option(None, "--as-of", help="date (YYYY-MM-DD); default today"),
    within: int = typer.Option(0, min=0, help="also list re-inspections due within N days"),
    street_town: str | None = typer.Option(None, "--street-town", help="only this 街镇 code"),
) -> None:
    """列出逾期 (或即将到期) 的拆后复查, 按街镇分组。"""
    from gis_db.stats import due_reinspections

    with database() as engine:
        frame = due_reinspections(
            engine, as_of=parse_date(as_of), within_days=within, street_town=street_town
        )
    if frame.empty:
        out.print("没有逾期的拆后复查 no re-inspection overdue")
        return
    for code, group in frame.groupby(frame["street_town_code"].fillna("-"), sort=True):
        name = group["street_town"].iloc[0] or "未落入辖区"
        table = Table(title=f"{name} ({code}): {len(group)} 件")
        for header in ("案件编号", "居村", "地址", "面积(m²)", "销项时间", "复查期限", "逾期天数"):
            table.add_column(header)
        for row in group.itertuples():
            table.add_row(
                row.case_number,
                row.village or "",
                row.address or "",
                f"{row.area_m2:,.0f}",
                office_time(row.written_off_at, "%Y-%m-%d"),
                f"{row.reinspection_due_on}",
                str(row.days_overdue),
            )
        out.print(table)


@app.command()
def show(case: str = typer.Argument(..., help="case number or id")) -> None:
    """显示案件状态、可办理操作与全部记录。"""
    from sqlalchemy import text

    from gis_db.domain import CaseState
    from gis_db.workflow import allowed_case_actions, history, resolve_case

    with database() as engine:
        case_id = resolve_case(engine, case)
        with engine.connect() as conn:
            row = (
                conn.execute(
                    text(
                        "SELECT case_number, state, version, street_town_code, village_code, "
                        "area_m2, disposal, write_off_requested_by, written_off_by, "
                        "reinspection_due_on FROM inventory_case WHERE id = :i"
                    ),
                    {"i": case_id},
                )
                .mappings()
                .one()
            )
        state = CaseState(row["state"])
        out.print(
            f"[bold]{row['case_number']}[/] (id {case_id}, version {row['version']}): "
            f"{state.zh} ({state.value})"
        )
        out.print(
            f"街镇 {row['street_town_code'] or '-'}  居村 {row['village_code'] or '-'}  "
            f"面积 {row['area_m2']:,.1f} m²  处置 {row['disposal'] or '-'}  "
            f"复查期限 {row['reinspection_due_on'] or '-'}"
        )
        actions = allowed_case_actions(state)
        out.print("可办理 allowed: " + (", ".join(f"{a.zh} ({a.value})" for a in actions) or "-"))
        out.print("[bold]办理记录 history[/]")
        for h in history(engine, case_id=case_id):
            evidence = "; ".join(str(e.get("ref", e)) for e in h["evidence"])
            out.print(
                f"{office_time(h['at'])}  {h['actor']} ({h['role']})  {h['action']}: "
                f"{h['from_state'] or '-'} → {h['to_state'] or '-'}"
                + (f"  {h['comment']}" if h["comment"] else "")
                + (f"  证据: {evidence}" if evidence else ""),
                highlight=False,
                soft_wrap=True,
            )


@app.command()
def act(
    case: str = typer.Argument(..., help="case number or id"),
    action: str = typer.Argument(
        ...,
        help="dispatch, verify, dispose, request-write-off, "
        "write-off, reject-write-off, reinspect-clean, report-rebound",
    ),
    comment: CommentOption = None,
    evidence: EvidenceOption = None,
    disposal: str | None = typer.Option(None, help="for dispose: 拆除/转化/缓拆/注记/代为拆除"),
    role: RoleOption = "office",
    unit: str | None = typer.Option(None, help="the 街镇 code of a street_town user"),
    user: UserOption = None,
    version: VersionOption = None,
) -> None:
    """办理案件: 按状态机推进一步并留痕。"""
    from gis_db.workflow import resolve_case, transition_case
    from weijian.settings import get_settings

    settings = get_settings()
    with database() as engine:
        result = transition_case(
            engine,
            resolve_case(engine, case),
            action_code(action),
            actor=user or settings.user,
            role=role,
            comment=comment,
            evidence=evidence or [],
            disposal=disposal,
            expected_version=version,
            actor_unit=unit,
            reinspection_days=settings.matching.reinspection_days,
        )
    out.print(f"{case}: {result.from_state} → {result.to_state} (version {result.version})")
