"""``weijian scene``: validate and describe orthophotos (卫片 / 无人机正射影像), write STAC."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from ingest.scene import Scene

app = typer.Typer(
    help="影像: 校验并登记卫片/无人机正射影像 (footprint, GSD, 日期, STAC)。", no_args_is_help=True
)


#: Row labels of the scene table (Chinese for staff, the JSON key after it).
LABELS = {
    "path": "文件 path",
    "crs": "坐标系 crs",
    "size_px": "像素 size_px",
    "bands": "波段 bands",
    "dtype": "数据类型 dtype",
    "mask": "掩膜 mask",
    "gsd_m": "地面分辨率 gsd",
    "platform": "平台 platform",
    "sensor": "传感器 sensor",
    "acquired": "拍摄时间 acquired",
    "acquired_from": "时间来源 acquired_from",
    "valid_fraction": "有效像素 valid_fraction",
    "footprint_area_m2": "覆盖面积 footprint",
    "sha256": "校验和 sha256",
    "stac_item": "STAC stac_item",
    "scene_id": "影像编号 scene_id",
}


def scene_summary(scene: Scene) -> dict[str, object]:
    """``scene.summary()`` for printing: the GSD in full precision, no checksum as None.

    ``scene.summary()`` rounds the GSD to 4 decimals and gives
    an empty string for a checksum that was not computed.
    """
    summary = scene.summary()
    summary["gsd_m"] = float(scene.gsd_m)
    summary["sha256"] = scene.sha256 or None
    return summary


def format_gsd(gsd_m: float) -> str:
    """A ground sample distance as staff read it: ``0.50 m`` (3 decimals below 0.1 m)."""
    return f"{gsd_m:.2f} m" if gsd_m >= 0.1 else f"{gsd_m:.3f} m"


def _cell(key: str, value: object) -> str:
    """One value of the scene table, rounded for reading (JSON keeps the full values)."""
    if value is None:
        return "-"
    if key == "gsd_m" and isinstance(value, float):
        return format_gsd(value)
    if key == "valid_fraction" and isinstance(value, float):
        return f"{value:.1%}"
    if key == "footprint_area_m2" and isinstance(value, float):
        return f"{value:,.1f} m²"
    return str(value)


def _print_scene(summary: dict[str, object], as_json: bool) -> None:
    """Print one scene's summary as JSON (values as they are) or as a table for staff.

    The table has no checksum row when none was computed; a line below says how to get one.
    """
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if as_json:
        console.print_json(json.dumps(summary, ensure_ascii=False, default=str))
        return
    table = Table(show_header=False, title=str(summary["path"]))
    for key, value in summary.items():
        if key == "sha256" and not value:
            continue
        table.add_row(LABELS.get(key, key), _cell(key, value))
    console.print(table)
    if not summary.get("sha256"):
        if Path(str(summary["path"])).is_dir():
            console.print("校验和 sha256: 文件夹 (多个瓦片) 不计算; 可对每个瓦片分别运行")
        else:
            console.print("校验和 sha256: 未计算; 加 --checksum 计算 (读取整个文件)")


@app.command("add")
def add(
    files: Annotated[
        list[Path], typer.Argument(help="GeoTIFF/COG/VRT files or folders of drone tiles")
    ],
    acquired: Annotated[
        str | None,
        typer.Option(help="acquisition date-time, e.g. 2024-03-15T10:00 (UTC+8 if no zone)"),
    ] = None,
    platform: Annotated[
        str | None, typer.Option(help="drone or satellite (default: from GSD)")
    ] = None,
    sensor: Annotated[str | None, typer.Option(help="sensor or camera name")] = None,
    stac: Annotated[bool, typer.Option(help="write NAME.stac.json beside each image")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON instead of a table")] = False,
    register: Annotated[
        bool,
        typer.Option(
            help="also register it in the database's catalogue (for `flight run --before auto`)"
        ),
    ] = False,
) -> None:
    """Validate and describe images; write a STAC Item beside each (登记影像)."""
    from rich.markup import escape
    from rich.progress import Progress

    from ingest import AcquisitionDateWarning, describe_scene, write_stac_item

    if platform not in (None, "drone", "satellite"):
        raise typer.BadParameter("--platform must be 'drone' or 'satellite'")
    with Progress(transient=True) as progress:
        task = progress.add_task("describe (sha256, footprint)", total=len(files))
        for path in files:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", AcquisitionDateWarning)
                scene = describe_scene(path, acquired=acquired, platform=platform, sensor=sensor)  # type: ignore[arg-type]
            summary = scene_summary(scene)
            for w in caught:
                progress.console.print(f"[yellow]warning:[/] {escape(str(w.message))}")
            if stac and scene.acquired is not None:
                summary["stac_item"] = str(write_stac_item(scene))
            elif stac:
                progress.console.print(
                    f"[yellow]warning:[/] {path}: no STAC Item written without a date (--acquired)"
                )
            if register:
                from weijian.database import connect
                from weijian.flight import catalogue_scene
                from weijian.settings import get_settings

                engine = connect()
                summary["scene_id"] = catalogue_scene(engine, scene, get_settings().working_crs)
                engine.dispose()
            progress.advance(task)
            progress.console.print() if not as_json else None
            _print_scene(summary, as_json)


@app.command("info")
def info(
    file: Annotated[Path, typer.Argument(help="GeoTIFF/COG/VRT file or folder of drone tiles")],
    as_json: Annotated[bool, typer.Option("--json", help="print JSON instead of a table")] = False,
    checksum: Annotated[
        bool, typer.Option(help="compute the SHA-256 (reads the whole file)")
    ] = False,
) -> None:
    """Describe one image without writing anything (查看影像信息)."""
    from ingest import describe_scene

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scene = describe_scene(file, checksum=checksum)
    _print_scene(scene_summary(scene), as_json)
