"""``weijian inventory`` and ``weijian admin``: import and export of cases and unit boundaries."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from weijian.cli.options import UnitLevel, database

if TYPE_CHECKING:
    from gis_db.inventory import ImportReport, Progress

app = typer.Typer(help="违建库: 导入、导出违建点位。", no_args_is_help=True)
admin_app = typer.Typer(help="行政区划: 导入街镇与居村边界。", no_args_is_help=True)
out = Console()

STEPS = {
    "read": "读取与校验 read + validate",
    "copy": "写入暂存 COPY to staging",
    "assign": "面积与街镇归属 area + 街镇/居村",
}
CRS_HELP = (
    "CRS of a file that declares none, e.g. EPSG:4490 (CGCS2000 lon/lat) or EPSG:4549; "
    "GCJ-02 (高德/腾讯) or BD-09 (百度) lon/lat are converted to CGCS2000"
)
MAPPING_HELP = (
    "TOML header/value mapping added to the built-in one (see gis_db/mappings/inventory.toml)"
)
LAYER_HELP = "layer of a GeoPackage, sheet of an Excel workbook, or shapefile in a zip"


@contextmanager
def _progress() -> Iterator[Progress]:
    """A rich progress bar fed by the (step, done, total) callbacks of gis_db."""
    from rich.progress import BarColumn, MofNCompleteColumn, TaskID, TextColumn, TimeElapsedColumn
    from rich.progress import Progress as Bar

    tasks: dict[str, TaskID] = {}
    with Bar(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
    ) as bar:

        def update(step: str, done: int, total: int) -> None:
            if step not in tasks:
                tasks[step] = bar.add_task(STEPS.get(step, step), total=total)
            bar.update(tasks[step], completed=done, total=total)

        yield update


def _summary(report: ImportReport, title: str) -> None:
    from rich.table import Table

    table = Table(title=title)
    for header in (
        "新增 created",
        "更新 updated",
        "未变 unchanged",
        "拒绝 rejected",
        "修复 repaired",
        "用时 seconds",
    ):
        table.add_column(header, justify="right")
    table.add_row(
        f"{report.created:,}",
        f"{report.updated:,}",
        f"{report.unchanged:,}",
        f"{len(report.rejected):,}",
        f"{len(report.repaired):,}",
        f"{report.seconds:.1f}",
    )
    if report.source_crs:
        out.print(f"输入坐标系 input CRS: {report.source_crs}")
    out.print(table)
    for p in report.repaired[:10]:
        out.print(
            f"[yellow]修复 repaired:[/] row {p.row}, field {p.field}: {p.reason}", highlight=False
        )
    if len(report.repaired) > 10:
        out.print(f"... and {len(report.repaired) - 10} more repairs")
    for p in report.skipped[:10]:
        out.print(f"[cyan]跳过 skipped:[/] row {p.row}: {p.reason}", highlight=False)
    if len(report.skipped) > 10:
        out.print(f"... and {len(report.skipped) - 10} more skipped rows")
    for p in report.rejected[:10]:
        out.print(
            f"[red]拒绝 rejected:[/] row {p.row}, field {p.field}: {p.reason}", highlight=False
        )
    if len(report.rejected) > 10:
        out.print(f"... and {len(report.rejected) - 10} more rejected rows")
    for w in report.warnings:
        out.print(f"[yellow]注意 warning:[/] {w}", highlight=False)


@app.command("import")
def import_(
    file: Annotated[Path, typer.Argument(help="GeoPackage, Shapefile, GeoJSON, Excel or CSV")],
    crs: Annotated[str | None, typer.Option("--crs", help=CRS_HELP)] = None,
    mapping: Annotated[Path | None, typer.Option("--mapping", help=MAPPING_HELP)] = None,
    skip_invalid: Annotated[
        bool,
        typer.Option("--skip-invalid", help="import the valid rows; list the others in --report"),
    ] = False,
    report: Annotated[
        Path | None,
        typer.Option("--report", help="CSV of rejected/repaired rows (default: FILE.report.csv)"),
    ] = None,
    layer: Annotated[str | None, typer.Option("--layer", help=LAYER_HELP)] = None,
    strict: Annotated[
        bool, typer.Option("--strict", help="refuse unknown columns instead of ignoring them")
    ] = False,
) -> None:
    """导入违建点位 (按案件编号更新, 不重复; 全部成功或全部不写入)。"""
    from gis_db.inventory_io import import_cases_file
    from weijian.settings import get_settings

    with database() as engine:
        with _progress() as progress:
            result = import_cases_file(
                engine,
                file,
                actor=get_settings().user,
                crs=crs,
                mapping=mapping,
                layer=layer,
                skip_invalid=skip_invalid,
                strict=strict,
                report_path=report,
                progress=progress,
            )
    _summary(result, f"导入 {file.name}")


@app.command("export")
def export(
    path: Annotated[Path, typer.Argument(help="output .gpkg, .geojson or .xlsx")],
    street_town: Annotated[
        list[str] | None, typer.Option("--street-town", help="街镇 code or name (repeatable)")
    ] = None,
    state: Annotated[
        list[str] | None, typer.Option("--state", help="案件状态 code or label, e.g. 待派单")
    ] = None,
    type_: Annotated[
        list[str] | None, typer.Option("--type", help="重点类型 code or label, e.g. 经营性")
    ] = None,
    english: Annotated[
        bool, typer.Option("--english", help="English headers and codes instead of Chinese")
    ] = False,
) -> None:
    """导出违建点位 (GeoPackage / GeoJSON / Excel), 可按街镇、状态、类型筛选。"""
    from gis_db.inventory_io import export_cases

    with database() as engine:
        n = export_cases(
            engine,
            path,
            street_town=street_town or None,
            state=state or None,
            priority_type=type_ or None,
            language="en" if english else "zh",
        )
    out.print(f"导出 exported {n:,} 个违建点位 cases to {path}")


@admin_app.command("import")
def admin_import(
    file: Annotated[
        Path, typer.Argument(help="GeoPackage, Shapefile, GeoJSON, Excel or CSV (WKT)")
    ],
    level: Annotated[
        UnitLevel, typer.Option("--level", help="街镇 (street_town) or 居村 (village)")
    ],
    crs: Annotated[str | None, typer.Option("--crs", help=CRS_HELP)] = None,
    mapping: Annotated[Path | None, typer.Option("--mapping", help=MAPPING_HELP)] = None,
    layer: Annotated[str | None, typer.Option("--layer", help=LAYER_HELP)] = None,
    strict: Annotated[bool, typer.Option("--strict", help="refuse unknown columns")] = False,
) -> None:
    """导入街镇或居村边界 (按代码更新; 之后重新计算每个违建点位的街镇/居村)。"""
    from gis_db.inventory_io import import_units_file
    from weijian.settings import get_settings

    settings = get_settings()
    with database() as engine:
        with _progress() as progress:
            result = import_units_file(
                engine,
                file,
                level.value,
                actor=settings.user,
                crs=crs,
                mapping=mapping,
                layer=layer,
                strict=strict,
                district=settings.district_name if level == "street_town" else None,
                progress=progress,
            )
    _summary(result, f"导入{'街镇' if level == 'street_town' else '居村'} {file.name}")
