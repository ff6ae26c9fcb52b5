"""``weijian demo``: the README's main job on the embedded defaults.

Sets up the database in force (the embedded cluster unless ``WEIJIAN_DATABASE_URL`` is set),
loads the seeded demo district (宝山区: 14 街镇, ~450 居村, cases), prints a summary per 街镇,
writes the demo flight (real LEVIR-CD imagery placed in 顾村镇, see ``weijian.demo_flight``),
seeds the inventory around it, runs ``weijian flight run`` on it and starts the review
application (``--no-serve``: stop after the pipeline). Running it again reuses the images and
the flight and changes nothing in the database.
"""

from __future__ import annotations

from contextlib import ExitStack
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from weijian.cli.options import database

out = Console()


def demo(
    seed: int = typer.Option(20261121, help="seed of the generated district"),
    cases: int = typer.Option(3000, min=1, help="number of inventory cases to generate"),
    serve: bool = typer.Option(
        True, "--serve/--no-serve", help="start the review application after the pipeline"
    ),
    flight: bool = typer.Option(True, "--flight/--no-flight", help="run the demo flight"),
) -> None:
    """建立内置数据库, 载入示范区 (宝山区), 跑一次示范航飞 (真实影像), 启动核查系统 (the demo)."""
    from gis_db.demo_district import generate
    from gis_db.inventory import upsert_cases, upsert_units
    from gis_db.query import summary_by_street_town
    from weijian.settings import get_settings

    settings = get_settings()
    with ExitStack() as stack:
        with out.status("启动数据库 starting the database ..."):
            engine = stack.enter_context(database(settings))
        out.print(f"数据库 database: {engine.url.render_as_string(hide_password=True)}")
        with out.status("生成示范区 generating the demo district ..."):
            district = generate(settings.working_crs, seed=seed, n_cases=cases)
        actor = f"{settings.user} (demo)"
        with out.status("载入街镇与居村 loading 街镇 and 居村 ..."):
            upsert_units(engine, "street_town", district.street_towns, actor=actor)
            upsert_units(engine, "village", district.villages, actor=actor)
        with out.status(f"载入 {len(district.cases)} 个违建点位 loading cases ..."):
            report = upsert_cases(engine, district.cases, actor=actor, reason="demo district")
        out.print(
            f"违建点位 cases: 新增 created {report.created}, 更新 updated {report.updated}, "
            f"未变 unchanged {report.unchanged}, 用时 {report.seconds:.1f} s"
        )

        summary = summary_by_street_town(engine)
        table = Table(title=f"{settings.district_name} 违建点位汇总 (按街镇)")
        for header in ("街镇代码", "街镇", "点位数", "重点类型", "库内", "未销项", "面积 (m²)"):
            table.add_column(
                header,
                justify="left" if header in ("街镇", "街镇代码") else "right",
                overflow="fold",
            )
        for row in summary.itertuples():
            table.add_row(
                row.street_town_code,
                row.street_town_name,
                f"{row.cases:,}",
                f"{row.priority_cases:,}",
                f"{row.in_database:,}",
                f"{row.active_cases:,}",
                f"{row.area_m2:,.0f}",
            )
        table.add_row(
            "",
            "合计",
            f"{summary.cases.sum():,}",
            f"{summary.priority_cases.sum():,}",
            f"{summary.in_database.sum():,}",
            f"{summary.active_cases.sum():,}",
            f"{summary.area_m2.sum():,.0f}",
            style="bold",
        )
        out.print(table)
        if flight:
            _demo_flight(engine, settings, serve=serve)


def _demo_flight(engine: Any, settings: Any, *, serve: bool) -> None:
    """The demo flight: images, seeded inventory, the before scene catalogued, the pipeline."""
    from gis_db.domain import MatchClass
    from weijian.cli.flight import execute_flight, print_summary
    from weijian.demo_flight import seed_inventory, write_demo_flight
    from weijian.flight import catalogue_scene, detection_available

    folder = settings.data_dir / "demo" / "flight"
    with out.status("写入示范航飞影像 writing the demo flight (real LEVIR-CD tiles) ..."):
        flight = write_demo_flight(folder, settings.working_crs)
    out.print(
        f"示范航飞 demo flight: {flight.area_km2:.2f} km² at 0.5 m in 顾村镇 "
        f"(EPSG:4549 origin {flight.transform.c:.0f}, {flight.transform.f:.0f})\n"
        f"  前时相 before: {flight.before}\n  后时相 after:  {flight.after}"
    )
    seeded = seed_inventory(engine, flight, actor=f"{settings.user} (demo)")
    out.print(
        f"示范点位 seeded: 案件 新增 {seeded.cases_created} 更新 {seeded.cases_updated}, "
        f"销项 {seeded.written_off}, "
        f"审批 新增 {seeded.permits_inserted} 更新 {seeded.permits_updated}"
    )
    from ingest import describe_scene

    before_id = catalogue_scene(engine, describe_scene(flight.before), settings.working_crs)
    out.print(f"前时相已登记 before scene catalogued (id {before_id}); 航飞 --before auto")
    if not detection_available():
        out.print(
            "[yellow]变化检测 (change_detection.detect_pair) 尚未安装 this version has no "
            "orthophoto-scale detection yet: the demo flight stops here.[/]"
        )
        return
    code, summary = execute_flight(flight.after, before="auto")
    if code != 0:
        out.print(f"[bold red]示范航飞失败 demo flight failed:[/] {escape(summary['error'])}")
        raise typer.Exit(code)
    print_summary(summary)
    missing = [
        m.zh for m in MatchClass if m != MatchClass.UNRELATED and not summary["counts"].get(m.value)
    ]
    if missing:
        out.print(f"[yellow]注意: 本次未出现的比对结果 classes not found: {', '.join(missing)}[/]")
    _review_app(engine, settings, summary, serve=serve)


def _review_app(engine: Any, settings: Any, summary: dict[str, Any], *, serve: bool) -> None:
    """Print where to look and the demo log-ins; start the review application when asked."""
    from web_map import ensure_demo_users
    from weijian.demo_flight import DEMO_STREET_TOWN

    users = ensure_demo_users(engine, street_town=DEMO_STREET_TOWN)
    url = f"http://{settings.web.host}:{settings.web.port}/"
    out.print(f"核查系统 review application: {url} (比对批次 run {summary['run_id']})")
    for user in users:
        town = f" · {user.street_town}" if user.street_town else ""
        out.print(f"  登录 log-in: {user.username} / {user.password}  ({user.role}{town})")
    if serve:
        from weijian.cli.web import serve as serve_app

        serve_app(host=None, port=None)
