"""``weijian detect``: an aligned pair to a change-probability COG, change polygons and a run."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Annotated

import typer


def detect(
    pair_dir: Annotated[
        Path, typer.Argument(help="folder written by `weijian pair prepare` (or its pair.json)")
    ],
    out: Annotated[
        Path,
        typer.Option(
            "--out",
            help="output folder: change_proba.tif, changes.gpkg, changes.geojson, detect.json",
        ),
    ],
    threshold: Annotated[
        float | None,
        typer.Option(help="change-probability cut, 0-1 (default: the weights' own)"),
    ] = None,
    min_area: Annotated[
        float | None,
        typer.Option("--min-area", help="smallest polygon kept, m² (default: settings)"),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(help="local worker processes (default: settings detection.workers)"),
    ] = None,
    scheduler: Annotated[
        str | None,
        typer.Option(help="tcp://HOST:PORT of a running dask.distributed scheduler"),
    ] = None,
    engine: Annotated[
        str | None, typer.Option(help="torch or onnxruntime (default: settings)")
    ] = None,
    weights: Annotated[
        str | None,
        typer.Option(help="weights file or network name (default: settings / shipped weights)"),
    ] = None,
    core_threshold: Annotated[
        float | None,
        typer.Option(
            "--core-threshold",
            help="seeded cores: each polygon grows from a core reaching this probability, "
            "above the threshold; 0: off (default: settings detection.core_threshold)",
        ),
    ] = None,
    tile_px: Annotated[int | None, typer.Option("--tile-px", help="tile side, px")] = None,
    overlap_px: Annotated[int | None, typer.Option("--overlap-px", help="tile overlap, px")] = None,
    overwrite: Annotated[bool, typer.Option(help="replace another run's results in --out")] = False,
    no_db: Annotated[
        bool, typer.Option("--no-db", help="write the files only; do not load into the database")
    ] = False,
    progress: Annotated[bool, typer.Option(help="show the progress bar")] = True,
    tta: Annotated[
        bool | None,
        typer.Option(
            "--tta/--no-tta",
            help="test-time augmentation: mean over 8 flips/rotations, 8x slower "
            "(default: settings detection.tta)",
        ),
    ] = None,
) -> None:
    """变化检测: 逐瓦片推理, 输出变化概率图与变化图斑并载入比对批次 (change detection)."""
    from rich.console import Console

    from change_detection.detect import detect_pair
    from change_detection.weights import load_model
    from weijian.errors import WeijianError
    from weijian.settings import get_settings

    settings = get_settings()
    cfg = settings.detection
    console = Console()
    chosen_engine = engine or cfg.engine
    if chosen_engine not in ("torch", "onnxruntime"):
        raise WeijianError(f"--engine {chosen_engine!r}: use torch or onnxruntime")
    from weijian.learning import default_weights

    # default: detection.weights, else the registry's current model, else the shipped weights
    model = load_model(
        weights or default_weights(settings),
        device="cpu" if chosen_engine == "onnxruntime" else cfg.device,
    )
    params = cfg.vectorize_params(
        next(t for t in (threshold, cfg.threshold, model.threshold) if t is not None), min_area
    )
    if core_threshold is not None:
        if not 0 <= core_threshold <= 1:
            raise WeijianError(f"--core-threshold {core_threshold:g}: give 0 (off) or 0-1")
        params = replace(params, core_threshold=core_threshold)
    result = detect_pair(
        pair_dir,
        model,
        out,
        tile_px=tile_px or cfg.tile_px,
        overlap_px=cfg.overlap_px if overlap_px is None else overlap_px,
        batch_size=cfg.batch_size,
        workers=workers or cfg.workers,
        scheduler=scheduler or cfg.scheduler,
        engine=chosen_engine,  # type: ignore[arg-type]
        overwrite=overwrite,
        progress=progress,
        vectorize=params,
        scheduler_timeout_s=cfg.scheduler_timeout_s,
        tta=cfg.tta if tta is None else tta,
    )
    meta = result.meta
    kinds = ", ".join(f"{k} {v}" for k, v in meta["counts"]["by_change_kind"].items())
    console.print(
        f"变化图斑 {meta['counts']['polygons']} 个 change polygons ({kinds or 'none'}); "
        f"阈值 threshold {meta['threshold']:.3f}; "
        f"{meta['network']}{f' x{model.ensemble_size}' if model.ensemble_size > 1 else ''} "
        f"at {meta['network_gsd_m']:g} m; "
        f"{meta['counts']['tiles']} 瓦片 tiles in {meta['timings_s']['total']:.1f} s"
    )
    console.print(
        f"输出 outputs: {result.out_dir} (change_proba.tif, changes.gpkg, changes.geojson, "
        "detect.json)"
    )
    if no_db:
        return
    from weijian.database import connect
    from weijian.detect_run import load_detect_output

    db = connect(settings)
    try:
        run_id = load_detect_output(db, None, result)
    finally:
        db.dispose()
    console.print(f"比对批次 run id: {run_id}  (next: weijian runs match {run_id})")
