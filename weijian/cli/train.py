"""``weijian train``: train a change-detection network on LEVIR-CD-layout folders."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Annotated, Any

import typer

NetworkName = typer.Option(help="network: tinysiam (ours, light) or fc_siam_diff (baseline)")


def train(
    out: Annotated[
        Path, typer.Option("--out", help="output folder: model.pt, best.pt, last.pt, history.jsonl")
    ],
    data: Annotated[
        list[Path] | None,
        typer.Argument(help="folders with A/, B/, label/ (LEVIR-CD layout)"),
    ] = None,
    network: Annotated[str | None, NetworkName] = None,
    epochs: Annotated[int, typer.Option(min=1)] = 60,
    samples_per_epoch: Annotated[int, typer.Option(min=1, help="augmented crops per epoch")] = 256,
    crop: Annotated[
        int, typer.Option(min=32, help="training crop side, px (multiple of 16)")
    ] = 128,
    batch_size: Annotated[int, typer.Option(min=1)] = 16,
    lr: Annotated[float, typer.Option(min=0, help="peak AdamW learning rate (one-cycle)")] = 3e-3,
    patience: Annotated[
        int,
        typer.Option(
            min=1,
            help=(
                "early stop after this many epochs without a better validation F1 "
                "(not before half the epochs)"
            ),
        ),
    ] = 15,
    seed: Annotated[int, typer.Option()] = 0,
    val_fraction: Annotated[
        float, typer.Option(min=0, max=0.9, help="share of scenes for validation")
    ] = 0.15,
    holdout: Annotated[
        list[str] | None,
        typer.Option(
            help=(
                "glob of pairs <folder>/<stem> kept out of training and validation, "
                "evaluated at the end (repeatable)"
            )
        ),
    ] = None,
    validation: Annotated[
        list[str] | None,
        typer.Option(
            help=(
                "glob of validation pairs, e.g. 'val/*' "
                "(repeatable; default: a seeded --val-fraction of scenes)"
            )
        ),
    ] = None,
    synthetic: Annotated[
        float,
        typer.Option(
            min=0,
            max=1,
            help=(
                "share of samples that are synthetic roof pairs "
                "(0: none; 0.3 scored worse on our data)"
            ),
        ),
    ] = 0.0,
    gsd: Annotated[
        float, typer.Option(min=0, help="ground sample distance of the data, m/px")
    ] = 0.5,
    scale_min: Annotated[
        float, typer.Option(min=0.1, help="smallest random zoom of a training window")
    ] = 0.75,
    scale_max: Annotated[
        float,
        typer.Option(min=0.1, help="largest random zoom (2: 1 m-like windows for a 0.5 m model)"),
    ] = 1.33,
    widths: Annotated[
        str | None,
        typer.Option(
            help="tinysiam encoder widths at strides 2-16, e.g. 24,32,64,128 "
            "(default 16,24,48,96: the shipped network)"
        ),
    ] = None,
    decoder: Annotated[
        int | None, typer.Option(min=8, help="tinysiam decoder width (default 48)")
    ] = None,
    loss: Annotated[
        str,
        typer.Option(
            help="bce_dice (the shipped weights), objects (BCE weighted towards small "
            "buildings and the gaps between neighbouring ones) or lovasz (BCE + Lovász hinge)"
        ),
    ] = "bce_dice",
    keep_epochs: Annotated[
        bool,
        typer.Option(
            "--keep-epochs", help="write every epoch's weights to OUT/epochs (to average later)"
        ),
    ] = False,
    average_top: Annotated[
        int,
        typer.Option(
            min=0,
            help="K > 1: the weights average the K epochs with the best validation F1 "
            "(one network, no cost at inference; 0: the best epoch)",
        ),
    ] = 0,
    teacher: Annotated[
        list[Path] | None,
        typer.Option(
            help="weights file of a teacher (repeatable): the student is also trained towards "
            "the teachers' averaged change probability on every pixel (distilling an ensemble "
            "into one network); teachers must share the student's normalisation and GSD"
        ),
    ] = None,
    distill_weight: Annotated[
        float | None,
        typer.Option(
            min=0, help="with --teacher: weight of the distillation term (default 1; 0: none)"
        ),
    ] = None,
    device: Annotated[
        str | None, typer.Option(help="cpu, cuda or auto (default: settings)")
    ] = None,
    threads: Annotated[
        int | None, typer.Option(min=1, help="torch CPU threads (default: all cores)")
    ] = None,
    init_weights: Annotated[
        str | None,
        typer.Option(
            "--init-weights",
            help="fine-tune: start from this weights file, shipped name (tinysiam) or registry "
            "version (v2), with its network and normalisation; recorded as the parent in the "
            "new weights' lineage (an ensemble: fine-tune each member's file)",
        ),
    ] = None,
    resume: Annotated[bool, typer.Option(help="continue from OUT/last.pt")] = False,
    from_reviews: Annotated[
        bool,
        typer.Option(
            "--from-reviews",
            help="fine-tune the current model on the office's reviewed detections and decided "
            "cases (chips cut from the registered COGs); the result is registered, not promoted",
        ),
    ] = False,
    run_ids: Annotated[
        list[int] | None,
        typer.Option("--runs", help="with --from-reviews: only these run ids (repeatable)"),
    ] = None,
) -> None:
    """训练变化检测网络 (LEVIR-CD 目录结构: A/ B/ label/)。

    Writes OUT/model.pt (weights with metadata: best-F1 threshold on validation, held-out metrics)
    and prints the validation and held-out figures.
    """
    import json

    from rich.console import Console
    from rich.progress import (
        BarColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from change_detection.training import TrainConfig
    from change_detection.training import train as run_training
    from weijian.settings import get_settings

    if from_reviews:
        if data:
            raise typer.BadParameter("give either data folders or --from-reviews, not both")
        if teacher or init_weights:
            raise typer.BadParameter(
                "--teacher and --init-weights apply to training on data folders "
                "(--from-reviews starts from the current model)"
            )
        _from_reviews(out, run_ids, epochs, samples_per_epoch, lr, seed, device, threads)
        return
    if run_ids:
        raise typer.BadParameter("--runs only goes with --from-reviews")
    if not data:
        raise typer.BadParameter("give data folders (LEVIR layout) or --from-reviews")
    settings = get_settings().detection
    network_kwargs: dict[str, Any] = {}
    if widths:
        try:
            parsed = [int(v) for v in widths.split(",")]
        except ValueError:
            parsed = []
        if len(parsed) != 4 or min(parsed) < 8:
            raise typer.BadParameter("--widths takes four channel counts, e.g. 24,32,64,128")
        network_kwargs["widths"] = parsed
    if decoder:
        network_kwargs["decoder"] = decoder
    from change_detection.losses import LOSSES

    if loss not in LOSSES:
        raise typer.BadParameter(f"--loss takes one of {', '.join(LOSSES)}, not {loss!r}")
    if distill_weight is not None and not teacher:
        raise typer.BadParameter("--distill-weight only goes with --teacher WEIGHTS_FILE")
    lineage: dict[str, Any] | None = None
    if init_weights:
        if network_kwargs:
            raise typer.BadParameter(
                "--widths and --decoder come from --init-weights when fine-tuning: leave them out"
            )
        start, lineage = _parent(init_weights)
        init_weights = str(start)
        network = network or lineage["parent_network"]
    if network_kwargs and (network or settings.network) != "tinysiam":
        raise typer.BadParameter("--widths and --decoder apply to --network tinysiam only")
    config = TrainConfig(
        network=network or settings.network,
        network_kwargs=network_kwargs,
        epochs=epochs,
        samples_per_epoch=samples_per_epoch,
        crop=crop,
        batch_size=batch_size,
        lr=lr,
        patience=patience,
        seed=seed,
        val_fraction=val_fraction,
        holdout=list(holdout or []),
        validation=list(validation or []),
        synthetic_fraction=synthetic,
        gsd_m=gsd,
        scale_min=scale_min,
        scale_max=scale_max,
        min_area_m2=settings.min_area_m2,
        device=device or settings.device,
        threads=threads,
        loss=loss,
        keep_epochs=keep_epochs,
        average_top=average_top,
        teachers=[str(t) for t in teacher or []],
        distill_weight=1.0 if distill_weight is None else distill_weight,
        init_weights=init_weights,
    )
    console = Console()
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
    ) as progress:
        task = progress.add_task(f"train {config.network}", total=None, info="")
        last_val: dict[str, Any] = {}

        def report(event: dict[str, Any]) -> None:
            total = config.epochs * event["steps"]
            if "val_f1" in event:
                last_val["f1"] = event["val_f1"]
            val = f" val F1 {last_val['f1']:.3f}" if last_val.get("f1") is not None else ""
            progress.update(
                task,
                total=total,
                completed=event["epoch"] * event["steps"] + event["step"],
                info=f"epoch {event['epoch'] + 1}/{config.epochs} loss {event['loss']:.3f}{val}",
            )

        result = run_training(
            data,
            out,
            config,
            resume=resume,
            on_progress=report,
            extra_metadata={"lineage": lineage} if lineage else None,
        )
    console.print(
        f"weights: {result.weights} (best epoch {result.best_epoch + 1}, "
        f"{result.seconds / 60:.1f} min)"
    )
    if result.val:
        console.print("validation: " + json.dumps(result.val))
    if result.heldout:
        from change_detection.training import summary_line

        console.print("held-out: " + json.dumps(summary_line(result.heldout)))


def _parent(name: str) -> tuple[Path, dict[str, Any]]:
    """The weights file ``--init-weights`` names, and the lineage the new weights record.

    ``name`` is a weights file, a shipped name (``tinysiam``) or a registry version (``v2``,
    checksum checked), looked up in that order. The lineage has the keys of a
    ``--from-reviews`` fine-tuning (``parent``, ``parent_sha256``) and the parent's seed, epoch,
    threshold and validation figures, so a fine-tuned file can be compared with its parent.
    """
    from datetime import UTC, datetime

    from change_detection.weights import load_model, shipped_names, shipped_weights
    from ingest.scene import sha256_file

    path = Path(name)
    if not path.is_file():
        if name in shipped_names():
            path = shipped_weights(name)
        else:
            from weijian.learning import model_registry
            from weijian.settings import get_settings

            registry = model_registry(get_settings())
            if name == "shipped" or name in registry.versions():
                path = registry.weights_path(name)
    parent = load_model(path, "cpu")  # one clear line for a missing or foreign file
    meta = parent.metadata
    lineage = {
        "parent": name,
        "parent_path": str(path.resolve()),
        "parent_sha256": sha256_file(path),
        "parent_network": parent.network,
        "parent_seed": (meta.get("config") or {}).get("seed"),
        "parent_epoch": meta.get("epoch"),
        "parent_threshold": parent.threshold,
        "parent_metrics_validation": meta.get("metrics_validation"),
        "fine_tuned": "weijian train --init-weights on labelled folders",
        "built_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    return path, lineage


def _from_reviews(
    out: Path,
    run_ids: list[int] | None,
    epochs: int,
    samples_per_epoch: int,
    lr: float,
    seed: int,
    device: str | None,
    threads: int | None,
) -> None:
    from rich.console import Console

    from weijian.database import connect
    from weijian.learning import fine_tune_from_reviews
    from weijian.settings import get_settings

    settings = get_settings()
    console = Console()
    made_out = not out.exists()
    try:
        # a fine-tuning takes fewer, gentler steps than training from scratch: the command's
        # defaults (60 epochs at 3e-3) are for that, so they are capped here
        result = fine_tune_from_reviews(
            settings,
            connect(settings),
            out,
            run_ids,
            epochs=min(epochs, 8) if epochs == 60 else epochs,
            samples_per_epoch=min(samples_per_epoch, 128),
            lr=5e-4 if lr == 3e-3 else lr,
            seed=seed,
            device=device or "cpu",
            threads=threads,
        )
    except BaseException:
        if made_out:  # a refusal or an interruption leaves no half-made folder behind
            shutil.rmtree(out, ignore_errors=True)
        raise
    chips = result.chips
    console.print(
        f"chips from run(s) {', '.join(map(str, chips.runs))}: {len(chips.confirmed)} confirmed, "
        f"{len(chips.false_positive)} false positives, {len(chips.cases)} cases"
        + (
            f" ({len(chips.surveyed)} surveyed outlines in place of the model's)"
            if chips.surveyed
            else ""
        )
        + (f", {len(chips.skipped)} skipped (no imagery on both sides)" if chips.skipped else "")
    )
    if result.validation:
        console.print("validation on held-back chips: " + json.dumps(result.validation))
    console.print(
        f"registered model {result.version} (fine-tuned from {result.parent}); it is not in use "
        f"until `weijian model promote {result.version}` passes the evaluation gate"
    )
