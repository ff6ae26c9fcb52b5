"""``weijian pair``: align two epochs on the working grid and write them for inspection."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(
    help="影像对: 前后两期影像配准到统一工作网格 (CRS, GSD, 偏移校正, 匀色)。", no_args_is_help=True
)


@app.command("prepare")
def prepare(
    before: Annotated[Path, typer.Argument(help="earlier image (file or folder of tiles)")],
    after: Annotated[Path, typer.Argument(help="later image (file or folder of tiles)")],
    out: Annotated[
        Path,
        typer.Option(
            "--out", help="output folder: before.tif, after.tif (COG), pair.json, report.json"
        ),
    ],
    gsd: Annotated[
        float | None,
        typer.Option(help="working GSD in metres (default: settings ingest.working_gsd_m)"),
    ] = None,
    histogram_match: Annotated[
        bool | None,
        typer.Option("--histogram-match/--no-histogram-match", help="default: settings"),
    ] = None,
    coregister: Annotated[
        bool, typer.Option(help="estimate and correct the residual shift")
    ] = True,
    write_cogs: Annotated[
        bool, typer.Option("--cogs/--no-cogs", help="write the aligned COGs")
    ] = True,
) -> None:
    """Align BEFORE and AFTER on one grid, write COGs and a JSON report (配准影像对)."""
    from rich.console import Console
    from rich.markup import escape
    from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

    from ingest import prepare_pair, write_pair_cogs, write_report
    from weijian.settings import get_settings

    settings = get_settings()
    cfg = settings.ingest
    console = Console()
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    ) as progress:
        tasks: dict[str, TaskID] = {}

        def report(step: str, done: int, total: int) -> None:
            if step not in tasks:
                tasks[step] = progress.add_task(step, total=total)
            progress.update(tasks[step], completed=done, total=total)

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            pair = prepare_pair(
                before,
                after,
                working_crs=settings.working_crs,
                gsd_m=gsd or cfg.working_gsd_m,
                min_overlap_fraction=cfg.min_overlap_fraction,
                max_shift_m=cfg.max_shift_m,
                coregister=coregister,
                histogram_match=cfg.histogram_match if histogram_match is None else histogram_match,
                progress=report,
                coregistration_min_blocks=cfg.coregistration_min_blocks,
                coregistration_min_confidence=cfg.coregistration_min_confidence,
                coregistration_affine=cfg.coregistration_affine,
            )
        written = write_pair_cogs(pair, out, progress=report) if write_cogs else None
        path = write_report(pair, out, written)
    for w in caught:
        if issubclass(w.category, UserWarning) and w.category.__module__.startswith("ingest"):
            console.print(f"[yellow]warning:[/] {escape(str(w.message))}", soft_wrap=True)
    summary = json.loads(path.read_text(encoding="utf-8"))
    shift = summary["shift"]
    coreg = summary.get("coregistration") or {}
    applied = coreg.get("model_applied", "none")
    console.print(
        f"grid {pair.width} x {pair.height} px at {pair.gsd_m:g} m in {settings.working_crs}; "
        f"shift dx={shift['dx_m']:+.3f} m dy={shift['dy_m']:+.3f} m ({applied} applied, "
        f"{shift['tiles_used']} blocks agree, confidence {coreg.get('confidence', 0):.0%}); "
        f"overlap {pair.overlap_fraction:.1%}; valid {summary['valid_fraction']:.1%}",
        soft_wrap=True,
    )
    console.print(f"report: {path}")
