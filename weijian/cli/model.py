"""``weijian model``: the registry of change-detection weights (list, show, promote, rollback)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(help="模型版本: 列表、详情、评估后上线、回退。", no_args_is_help=True)
out = Console()


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
        shipped["network"],
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
            entry["network"],
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
