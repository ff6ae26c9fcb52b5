"""``weijian demo``: the README's main job on the embedded defaults.

Sets up the database in force (the embedded cluster unless ``WEIJIAN_DATABASE_URL`` is set),
loads the seeded demo district (宝山区: 14 街镇, ~450 居村, cases) and prints a summary per 街镇.
Running it again updates the same cases in place: it never duplicates.
"""

from __future__ import annotations

import typer
from rich.console import Console
from rich.table import Table

out = Console()


def demo(
    seed: int = typer.Option(20261121, help="seed of the generated district"),
    cases: int = typer.Option(3000, min=1, help="number of inventory cases to generate"),
) -> None:
    """建立内置数据库, 载入示范区 (宝山区), 按街镇打印汇总。"""
    from gis_db.demo_district import generate
    from gis_db.inventory import upsert_cases, upsert_units
    from gis_db.query import summary_by_street_town
    from weijian.database import connect
    from weijian.settings import get_settings

    settings = get_settings()
    with out.status("启动数据库 starting the database ..."):
        engine = connect(settings)
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
            header, justify="left" if header in ("街镇", "街镇代码") else "right", overflow="fold"
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
    engine.dispose()
