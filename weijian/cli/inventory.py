"""``weijian inventory`` and ``weijian admin``: import and export of cases and unit boundaries."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console

if TYPE_CHECKING:
    from gis_db.inventory import ImportReport, Progress

app = typer.Typer(help="违建库: 导入、导出违建点位。", no_args_is_help=True)
admin_app = typer.Typer(help="行政区划: 导入街镇与居村边界。", no_args_is_help=True)
out = Console()

STEPS = {"read": "读取与校验 read + validate", "copy": "写入暂存 COPY to staging",
         "assign": "面积与街镇归属 area + 街镇/居村"}
CRS_HELP = "CRS of a file that declares none, e.g. EPSG:4490 (CGCS2000 lon/lat) or EPSG:4549"
MAPPING_HELP = "TOML header/value mapping added to the built-in one (see gis_db/mappings/inventory.toml)"
LAYER_HELP = "layer of a GeoPackage, or sheet of an Excel workbook"


@contextmanager
def _progress() -> Iterator[Progress]:
    """A rich progress bar fed by the (step, done, total) callbacks of gis_db."""
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
    from rich.progress import Progress as Bar

    tasks: dict[str, int] = {}
    with Bar(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
             TimeElapsedColumn(), console=Console(stderr=True), transient=True) as bar:
        def update(step: str, done: int, total: int) -> None:
            if step not in tasks:
                tasks[step] = bar.add_task(STEPS.get(step, step), total=total)
            bar.update(tasks[step], completed=done, total=total)
        yield update


def _summary(report: ImportReport, title: str) -> None:
    from rich.table import Table

    table = Table(title=title)
    for header in ("新增 created", "更新 updated", "未变 unchanged", "拒绝 rejected",
                   "修复 repaired", "用时 seconds"):
        table.add_column(header, justify="right")
    table.add_row(f"{report.created:,}", f"{report.updated:,}", f"{report.unchanged:,}",
                  f"{len(report.rejected):,}", f"{len(report.repaired):,}",
                  f"{report.seconds:.1f}")
    if report.source_crs:
        out.print(f"输入坐标系 input CRS: {report.source_crs}")
    out.print(table)
    for p in report.repaired[:10]:
        out.print(f"[yellow]修复 repaired:[/] row {p.row}, field {p.field}: {p.reason}", highlight=False)
    if len(report.repaired) > 10:
        out.print(f"... and {len(report.repaired) - 10} more repairs")
    for p in report.rejected[:10]:
        out.print(f"[red]拒绝 rejected:[/] row {p.row}, field {p.field}: {p.reason}", highlight=False)
    if len(report.rejected) > 10:
        out.print(f"... and {len(report.rejected) - 10} more rejected rows")
    for w in report.warnings:
        out.print(f"[yellow]注意 warning:[/] {w}", highlight=False)


@app.command("import")
def import_(
    file: Path = typer.Argument(..., help="GeoPackage, Shapefile, GeoJSON, Excel or CSV"),
    crs: str | None = typer.Option(None, "--crs", help=CRS_HELP),
    mapping: Path | None = typer.Option(None, "--mapping", help=MAPPING_HELP),
    skip_invalid: bool = typer.Option(
        False, "--skip-invalid", help="import the valid rows; list the others in --report"),
    report: Path | None = typer.Option(
        None, "--report", help="CSV of rejected/repaired rows (default: FILE.report.csv)"),
    layer: str | None = typer.Option(None, "--layer", help=LAYER_HELP),
    strict: bool = typer.Option(False, "--strict", help="refuse unknown columns instead of ignoring them"),
) -> None:
    """导入违建点位 (按案件编号更新, 不重复; 全部成功或全部不写入)。"""
    from gis_db.inventory_io import import_cases_file
    from weijian.database import connect
    from weijian.settings import get_settings

    engine = connect()
    try:
        with _progress() as progress:
            result = import_cases_file(
                engine, file, actor=get_settings().user, crs=crs, mapping=mapping,
                layer=layer, skip_invalid=skip_invalid, strict=strict, report_path=report,
                progress=progress)
    finally:
        engine.dispose()
    _summary(result, f"导入 {file.name}")


@app.command("export")
def export(
    path: Path = typer.Argument(..., help="output .gpkg, .geojson or .xlsx"),
    street_town: list[str] | None = typer.Option(None, "--street-town", help="街镇 code or name (repeatable)"),
    state: list[str] | None = typer.Option(None, "--state", help="案件状态 code or label, e.g. 待派单"),
    type_: list[str] | None = typer.Option(None, "--type", help="重点类型 code or label, e.g. 经营性"),
    english: bool = typer.Option(False, "--english", help="English headers and codes instead of Chinese"),
) -> None:
    """导出违建点位 (GeoPackage / GeoJSON / Excel), 可按街镇、状态、类型筛选。"""
    from gis_db.inventory_io import export_cases
    from weijian.database import connect

    engine = connect()
    try:
        n = export_cases(engine, path, street_town=street_town or None, state=state or None,
                         priority_type=type_ or None, language="en" if english else "zh")
    finally:
        engine.dispose()
    out.print(f"导出 exported {n:,} 个违建点位 cases to {path}")


@admin_app.command("import")
def admin_import(
    file: Path = typer.Argument(..., help="GeoPackage, Shapefile, GeoJSON, Excel or CSV (WKT)"),
    level: str = typer.Option(..., "--level", help="street_town (街镇) or village (居村)"),
    crs: str | None = typer.Option(None, "--crs", help=CRS_HELP),
    mapping: Path | None = typer.Option(None, "--mapping", help=MAPPING_HELP),
    layer: str | None = typer.Option(None, "--layer", help=LAYER_HELP),
    strict: bool = typer.Option(False, "--strict", help="refuse unknown columns"),
) -> None:
    """导入街镇或居村边界 (按代码更新; 之后重新计算每个违建点位的街镇/居村)。"""
    from gis_db.errors import InvalidInputError
    from gis_db.inventory_io import import_units_file
    from weijian.database import connect
    from weijian.settings import get_settings

    if level not in ("street_town", "village"):
        raise InvalidInputError(f"--level must be street_town or village, not {level!r}")
    settings = get_settings()
    engine = connect()
    try:
        with _progress() as progress:
            result = import_units_file(
                engine, file, level, actor=settings.user, crs=crs, mapping=mapping, layer=layer,
                strict=strict, district=settings.district_name if level == "street_town" else None,
                progress=progress)  # type: ignore[arg-type]
    finally:
        engine.dispose()
    _summary(result, f"导入{'街镇' if level == 'street_town' else '居村'} {file.name}")
