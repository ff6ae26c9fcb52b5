"""``weijian evaluate``: score weights on LEVIR-CD-layout folders."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def evaluate(
    data: Annotated[
        list[Path], typer.Argument(help="folders with A/, B/, label/ (LEVIR-CD layout)")
    ],
    weights: Annotated[
        str | None,
        typer.Option(
            help="weights file, or a network name for its shipped weights (default: settings)"
        ),
    ] = None,
    threshold: Annotated[
        float | None,
        typer.Option(
            min=0,
            max=1,
            help="change-probability cut (default: settings, else the weights' best threshold)",
        ),
    ] = None,
    gsd: Annotated[
        float | None,
        typer.Option(
            min=0.01,
            help="ground sample distance of the data, m/px; pairs at another GSD than the "
            "model's are resampled to it before scoring (default: the model's GSD)",
        ),
    ] = None,
    tta: Annotated[
        bool, typer.Option(help="average over the 8 flips/rotations of each pair (8x slower)")
    ] = False,
    only: Annotated[
        list[str] | None,
        typer.Option(help="glob of pairs <folder>/<stem> to evaluate (repeatable; default all)"),
    ] = None,
    json_out: Annotated[
        Path | None,
        typer.Option("--json", help="write all figures (with the precision-recall curve) here"),
    ] = None,
    device: Annotated[
        str | None, typer.Option(help="cpu, cuda or auto (default: settings)")
    ] = None,
) -> None:
    """评估变化检测模型: 像素精度/召回/F1/IoU, PR 曲线, 目标级召回与每平方公里误报数。"""
    import json

    from rich.console import Console
    from rich.progress import track
    from rich.table import Table

    from change_detection.data import drop_contained_crops, find_pairs, load_pair, matches
    from change_detection.evaluation import evaluate_pairs
    from change_detection.weights import load_model
    from weijian.settings import get_settings

    settings = get_settings().detection
    files = [f for f in find_pairs(data) if not only or matches(f.name, only)]
    from weijian.learning import default_weights

    chosen = weights or default_weights(get_settings())
    model = load_model(chosen, device or settings.device)
    pairs = [load_pair(f) for f in track(drop_contained_crops(files), description="loading")]
    cut = threshold if threshold is not None else settings.threshold
    result = evaluate_pairs(model, pairs, cut, gsd, settings.min_area_m2, per_pair=True, tta=tta)
    result["weights"] = str(chosen)
    result["network"] = model.network
    result["ensemble_size"] = model.ensemble_size
    label = model.network + (f" x{model.ensemble_size}" if model.ensemble_size > 1 else "")

    console = Console()
    data_gsd = result["objects"]["gsd_m"]
    scale = (f", resampled {data_gsd:g} -> {model.gsd_m:g} m/px" if result["resampled"] else "") + (
        ", TTA x8" if tta else ""
    )
    table = Table(title=f"{label}: {len(pairs)} pairs, threshold {result['threshold']:.2f}{scale}")
    for col in ("figure", "value"):
        table.add_column(col)
    obj = result["objects"]
    rows = [
        ("pixel precision", result["precision"]),
        ("pixel recall", result["recall"]),
        ("pixel F1", result["f1"]),
        ("pixel IoU", result["iou"]),
        ("best-F1 threshold", result["best_threshold"]),
        ("F1 at best threshold", result["best_f1"]),
        ("objects (true)", obj["true_objects"]),
        ("object recall (IoU>=0.5)", obj["recall"]),
        ("object precision", obj["precision"]),
        (f"false-positive objects per km² (GSD {data_gsd:g} m)", obj["false_positives_per_km2"]),
        ("  of which touch no change, per km²", obj["spurious_per_km2"]),
    ]
    for name, value in rows:
        table.add_row(name, f"{value:.4f}" if isinstance(value, float) else str(value))
    console.print(table)
    if json_out:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(result, indent=1, ensure_ascii=False))
        console.print(f"written: {json_out}")
