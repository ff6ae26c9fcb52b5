"""``weijian model``: the weights registry (list, show, promote, rollback) and ensembles.

``weijian model ensemble`` builds an ensemble weights file from several trained ones.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(
    help="模型版本: 列表、详情、评估后上线、回退; 组合集成模型。", no_args_is_help=True
)
out = Console()


def _network_label(entry: dict[str, object]) -> str:
    """``tinysiam``, or ``tinysiam x3`` for an ensemble of three."""
    size = entry.get("ensemble_size")
    size = int(size) if isinstance(size, int | float | str) else 1
    return f"{entry['network']} x{size}" if size > 1 else str(entry["network"])


@app.command("list")
def list_models() -> None:
    """列出模型版本 (当前版本标 *)。"""
    from weijian.learning import model_registry
    from weijian.settings import get_settings

    registry = model_registry(get_settings())
    current = registry.current or "shipped"
    table = Table(title=f"模型版本 models ({registry.root})")
    for col in ("", "version", "network", "added", "parent", "decisions", "sha256", "source"):
        table.add_column(col)
    shipped = registry.entry("shipped")
    table.add_row(
        "*" if current == "shipped" else "",
        "shipped",
        _network_label(shipped),
        "",
        "",
        "",
        shipped["sha256"][:12],
        shipped["source"],
    )
    for entry in registry.entries():
        table.add_row(
            "*" if entry["version"] == current else "",
            entry["version"],
            _network_label(entry),
            str(entry.get("added_at", "")),
            str(entry.get("parent") or ""),
            str(entry.get("lineage", {}).get("decisions", "")),
            entry["sha256"][:12],
            str(entry.get("source", "")),
        )
    out.print(table)


@app.command()
def show(
    version: Annotated[
        str | None, typer.Argument(help="version (default: the current one)")
    ] = None,
) -> None:
    """显示一个模型版本的元数据、谱系与评估记录。"""
    from weijian.learning import model_registry
    from weijian.settings import get_settings

    registry = model_registry(get_settings())
    chosen = version or registry.current or "shipped"
    entry = registry.entry(chosen)
    registry.weights_path(chosen)  # checks the checksum
    entry["current"] = chosen == (registry.current or "shipped")
    out.print_json(json.dumps(entry, ensure_ascii=False, default=str))


@app.command()
def promote(
    version: Annotated[str, typer.Argument(help="candidate version, e.g. v3")],
    eval_data: Annotated[
        list[Path] | None,
        typer.Option(
            "--eval",
            help="LEVIR-layout folder of the fixed evaluation set (repeatable; default: "
            "settings detection.evaluation_data)",
        ),
    ] = None,
    only: Annotated[
        list[str] | None,
        typer.Option(help="glob of evaluation pairs <folder>/<stem> (repeatable)"),
    ] = None,
    gsd: Annotated[
        float | None, typer.Option(min=0.01, help="GSD of the evaluation data, m/px")
    ] = None,
) -> None:
    """评估后上线: 候选模型在固定评估集上不比当前模型差才会成为当前模型。"""
    from change_detection.data import drop_contained_crops, find_pairs, load_pair, matches
    from weijian.errors import WeijianError
    from weijian.learning import model_registry
    from weijian.settings import get_settings

    settings = get_settings()
    folders = list(eval_data or settings.detection.evaluation_data)
    patterns = list(only or settings.detection.evaluation_only)
    if not folders:
        raise WeijianError(
            "no evaluation set: give --eval DIR (LEVIR layout: A/ B/ label/) or set "
            "detection.evaluation_data in the settings"
        )
    files = [f for f in find_pairs(folders) if not patterns or matches(f.name, patterns)]
    pairs = [load_pair(f) for f in drop_contained_crops(files)]
    registry = model_registry(settings)
    result = registry.promote(
        version,
        pairs,
        gsd_m=gsd,
        min_area_m2=settings.detection.min_area_m2,
        actor=settings.user,
        set_name=", ".join(map(str, folders)) + (f" ({', '.join(patterns)})" if patterns else ""),
    )
    out.print(f"candidate {version}: {result.candidate.line()}")
    out.print(f"current   {result.previous}: {result.current.line()}")
    out.print(
        f"[bold green]{version} is now the current model[/] (pixel F1 {result.margin:+.4f} "
        f"on {result.candidate.pairs} pairs)"
    )


@app.command()
def rollback() -> None:
    """回退到上一次上线之前的模型。"""
    from weijian.learning import model_registry
    from weijian.settings import get_settings

    settings = get_settings()
    before, after = model_registry(settings).rollback(actor=settings.user)
    out.print(f"rolled back from {before} to {after}; {after} is now the current model")


@app.command()
def add(
    weights: Annotated[
        str, typer.Argument(help="weights file, or a shipped name such as tinysiam_ensemble")
    ],
) -> None:
    """登记模型: 把权重文件加入模型库 (不上线, 需 promote)。"""
    from change_detection.weights import load_model, shipped_names, shipped_weights
    from weijian.learning import model_registry
    from weijian.settings import get_settings

    path = shipped_weights(weights) if weights in shipped_names() else Path(weights)
    load_model(path, "cpu")  # one clear line for a missing or foreign file
    version = model_registry(get_settings()).add(path, source=weights)
    out.print(f"registered as {version} (not in use: `weijian model promote {version}`)")


@app.command()
def ensemble(
    weights: Annotated[
        list[str],
        typer.Argument(help="weights files of the members (or shipped names), two or more"),
    ],
    out_file: Annotated[Path, typer.Option("--out", help="the ensemble weights file to write")],
    data: Annotated[
        list[Path] | None,
        typer.Option(
            help="LEVIR-layout folders holding the members' validation pairs (repeatable; "
            "default: the members' training data)"
        ),
    ] = None,
    validation: Annotated[
        list[str] | None,
        typer.Option(
            help="glob of validation pairs <folder>/<stem> (repeatable; default: the members' "
            "own validation split)"
        ),
    ] = None,
    register: Annotated[
        bool,
        typer.Option(help="also add the file to the registry as a new version (not promoted)"),
    ] = False,
    threads: Annotated[int, typer.Option(min=1, help="torch threads")] = 1,
    overwrite: Annotated[bool, typer.Option(help="replace an existing --out file")] = False,
) -> None:
    """组合集成模型: 多个同一网络的权重取概率平均, 在验证集上选阈值后写入一个权重文件。"""
    import torch

    from change_detection.evaluation import build_ensemble
    from change_detection.training import code_version
    from change_detection.weights import load_model
    from weijian.errors import WeijianError
    from weijian.learning import model_registry
    from weijian.settings import get_settings

    if len(weights) < 2:
        raise WeijianError(
            "an ensemble needs two or more weights files, e.g. "
            "`weijian model ensemble W0.pt W1.pt W2.pt --out ensemble.pt`"
        )
    if out_file.exists() and not overwrite:
        raise WeijianError(f"{out_file} exists: choose another --out or add --overwrite")
    torch.set_num_threads(threads)
    folders = list(data or [])
    if not folders:
        folders = [Path(d) for d in load_model(weights[0], "cpu").metadata.get("training_data", [])]
        if not folders:
            raise WeijianError(
                f"{weights[0]} records no training data: give --data DIR with the validation pairs"
            )
    model, _ = build_ensemble(
        weights, out_file, folders, validation or None, code_version=code_version()
    )
    meta = model.metadata
    table = Table(
        title=f"{model.network} x{model.ensemble_size}: 验证集 validation "
        f"({len(meta['validation_pairs'])} pairs)"
    )
    table.add_column("model", overflow="fold")
    for col in ("seed", "threshold", "pixel F1", "object recall", "FP objects/km²"):
        table.add_column(col)
    for member in meta["members"]:
        val = member.get("metrics_validation") or {}
        table.add_row(
            str(member["source"]),
            str(member.get("seed")),
            f"{member['threshold']:.2f}",
            f"{val.get('f1', float('nan')):.3f}",
            f"{val.get('object_recall', float('nan')):.3f}",
            f"{val.get('fp_objects_per_km2', float('nan')):.0f}",
        )
    figures = meta["metrics_validation"]
    table.add_row(
        "[bold]ensemble[/]",
        "",
        f"{meta['threshold']:.2f}",
        f"{figures['f1']:.3f}",
        f"{figures['object_recall']:.3f}",
        f"{figures['fp_objects_per_km2']:.0f}",
    )
    out.print(table)
    size_mb = out_file.stat().st_size / 1e6
    out.print(f"written: {out_file} ({size_mb:.1f} MB, threshold {meta['threshold']:.2f})")
    if register:
        settings = get_settings()
        version = model_registry(settings).add(out_file, source=f"ensemble of {', '.join(weights)}")
        out.print(f"registered as {version} (not in use: `weijian model promote {version}`)")
