"""``weijian scene``: validate and describe orthophotos (卫片 / 无人机正射影像), write STAC."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(
    help="影像: 校验并登记卫片/无人机正射影像 (footprint, GSD, 日期, STAC)。", no_args_is_help=True
)


def _print_scene(summary: dict[str, object], as_json: bool) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if as_json:
        console.print_json(json.dumps(summary, ensure_ascii=False, default=str))
        return
    table = Table(show_header=False, title=str(summary["path"]))
    for key, value in summary.items():
        table.add_row(key, "-" if value is None else str(value))
    console.print(table)


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
            summary = scene.summary()
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
    _print_scene(scene.summary(), as_json)
