"""Training of change networks on LEVIR-layout folders, with checkpoints, resume and early stop.

Output folder ``out``:

* ``last.pt``: full checkpoint after every epoch (network, optimiser, scheduler, history) for
  ``resume=True``;
* ``best.pt``: weights file (see :mod:`change_detection.weights`) of the epoch with the best
  validation F1 at its best threshold (early stopping waits for half the epochs);
* ``model.pt``: the final weights file: the best epoch, with the best-F1 threshold on validation
  and the validation and held-out metrics in its metadata;
* ``history.jsonl``: one JSON line per epoch; ``heldout.json``: the held-out evaluation;
* ``epochs/epoch_NN.pt`` (with ``keep_epochs`` or ``average_top``): the weights file of every
  epoch (the moving average that was validated), for averaging epochs afterwards
  (:func:`average_epochs`).

With ``average_top`` K > 1 the final weights are the average of the parameters (and batch-norm
statistics) of the K epochs with the best validation F1 instead of the single best epoch: one
network, so no cost at inference time.

Reproducible: with the same data, configuration and seed, the split, the samples and the
initial weights are the same; on CPU with a fixed number of threads the run is repeatable.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from change_detection.data import (
    Pair,
    TrainingSamples,
    drop_contained_crops,
    find_pairs,
    load_pair,
    split_pairs,
)
from change_detection.errors import WeightsError
from change_detection.evaluation import ensemble_model, evaluate_pairs
from change_detection.losses import LOSSES, bce_lovasz_loss, weighted_bce_dice_loss
from change_detection.networks import build_network, count_gmacs, count_parameters
from change_detection.weights import (
    ChangeModel,
    load_model,
    network_kwargs_of,
    resolve_device,
    save_weights,
)

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    """Training hyper-parameters (sizes in pixels, learning rate per step)."""

    network: str = "tinysiam"
    #: constructor arguments of the network (e.g. ``{"widths": [24, 32, 64, 128], "decoder": 64}``
    #: for a wider ``tinysiam``); stored in the weights file, so loading needs nothing else
    network_kwargs: dict[str, Any] = field(default_factory=dict)
    epochs: int = 60
    samples_per_epoch: int = 256  #: augmented crops per epoch
    crop: int = 128  #: training crop side, px (multiple of 16)
    batch_size: int = 16
    lr: float = 3e-3  #: peak AdamW learning rate (one-cycle schedule)
    weight_decay: float = 1e-4
    patience: int = 15  #: stop after this many epochs without a better validation F1 ...
    min_epochs: int | None = None  #: ... but not before this many epochs (default: half)
    ema_decay: float = 0.98  #: per-step decay of the weight average that is validated and saved
    seed: int = 0
    val_fraction: float = 0.15  #: share of scenes held for validation / early stopping
    holdout: list[str] = field(default_factory=list)  #: glob patterns of held-out pairs
    validation: list[str] = field(default_factory=list)  #: glob patterns of validation pairs
    synthetic_fraction: float = 0.0  #: share of samples that are synthetic pairs (see model card)
    gsd_m: float = 0.5  #: ground sample distance of the data, m/px
    scale_min: float = 0.75  #: smallest random zoom of a training window (multi-scale training)
    scale_max: float = 1.33  #: largest (2.0: a 0.5 m model also sees 1 m-like windows)
    min_area_m2: float = 10.0  #: smallest predicted object counted in object metrics, m²
    device: str = "auto"
    threads: int | None = None  #: torch CPU threads (default: all cores)
    init_weights: str | None = None  #: fine-tune: start from this weights file (its mean/std)
    #: keep this threshold instead of the best-F1 one on validation (fine-tuning on partial
    #: labels: the decided pixels are not a fair sample of the imagery to pick a threshold on)
    fixed_threshold: float | None = None
    #: keep the batch-norm statistics (and scales) of ``init_weights``: fine-tuning on chips
    #: centred on detections must not re-estimate them (those chips are not typical imagery)
    freeze_norm: bool = False
    #: weight of distillation on unknown pixels (partial labels): there the network is pulled
    #: towards what ``init_weights`` predicted, so it keeps its calibration and forgets nothing
    distill_unknown: float = 0.0
    #: training loss: ``bce_dice`` (the shipped weights) or ``objects`` (BCE weighted towards
    #: small buildings and the gaps between buildings) or ``lovasz`` (BCE + Lovász hinge), see
    #: :mod:`change_detection.losses`
    loss: str = "bce_dice"
    #: write every epoch's weights file to ``out/epochs`` (see :func:`average_epochs`)
    keep_epochs: bool = False
    #: > 1: the final weights average the K epochs with the best validation F1 (0: the best one)
    average_top: int = 0
    #: weights files of teacher networks (knowledge distillation): their probabilities are
    #: averaged (an ensemble) on every training batch and the student is pulled towards them on
    #: all pixels; they must share the student's mean, std and GSD (the same recipe and data)
    teachers: list[str] = field(default_factory=list)
    #: weight of the distillation term towards ``teachers`` (added to the labels' loss)
    distill_weight: float = 1.0


@dataclass
class TrainResult:
    """What a training run produced."""

    weights: Path
    best_epoch: int
    val: dict[str, Any] | None
    heldout: dict[str, Any] | None
    seconds: float


def code_version() -> str:
    """Package version plus the git commit of the source tree, when it is a checkout."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        text = f"weijian {version('weijian')}"
    except PackageNotFoundError:
        text = "weijian (not installed)"
    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            [
                "git",
                "-C",
                str(root),
                "status",
                "--porcelain",
                "--",
                "change_detection",
                ":!change_detection/weights",
            ],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        text += f" git {commit}" + (" (change_detection modified)" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        pass
    return text


def channel_stats(pairs: Sequence[Pair]) -> tuple[list[float], list[float]]:
    """Per-channel mean and standard deviation (0..255) over both epochs of ``pairs``."""
    total = np.zeros(3)
    square = np.zeros(3)
    count = 0
    for p in pairs:
        for img in (p.before, p.after):
            x = img.reshape(-1, 3).astype(np.float64)
            total += x.sum(0)
            square += (x**2).sum(0)
            count += len(x)
    mean = total / count
    std = np.sqrt(np.maximum(square / count - mean**2, 1.0))
    return [round(float(v), 3) for v in mean], [round(float(v), 3) for v in std]


def bce_dice_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy plus soft Dice (over the batch), suited to rare positive pixels.

    ``target`` holds 1 (change), 0 (no change) or a negative value (:data:`IGNORE`, unknown):
    unknown pixels of partly labelled chips count in neither term (a masked loss), so a chip
    from the office's reviews teaches only what the office decided.
    """
    unknown = target < 0
    if not bool(unknown.any()):
        bce = F.binary_cross_entropy_with_logits(logits, target)
        p = torch.sigmoid(logits)
        dice = 1 - (2 * (p * target).sum() + 1) / (p.sum() + target.sum() + 1)
        return bce + dice
    known = (~unknown).to(logits.dtype)
    t = target.clamp(min=0)
    per_pixel = F.binary_cross_entropy_with_logits(logits, t, reduction="none")
    bce = (per_pixel * known).sum() / known.sum().clamp(min=1)
    p = torch.sigmoid(logits) * known
    dice = 1 - (2 * (p * t).sum() + 1) / (p.sum() + t.sum() + 1)
    return bce + dice


def distillation_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    teacher_logits: torch.Tensor,
    pixels: str = "unknown",
) -> torch.Tensor:
    """BCE of the student's ``logits`` towards the teacher's probability ``sigmoid(teacher)``.

    ``pixels="unknown"``: only on the unknown pixels of ``target`` (partial labels of review
    chips; 0 if there are none); ``"all"``: on every pixel (distilling an ensemble).
    """
    if pixels == "all":
        return F.binary_cross_entropy_with_logits(logits, torch.sigmoid(teacher_logits))
    if pixels != "unknown":
        raise ValueError(f"pixels must be 'unknown' or 'all', not {pixels!r}")
    unknown = target < 0
    if not bool(unknown.any()):
        return logits.sum() * 0
    soft = torch.sigmoid(teacher_logits[unknown])
    return F.binary_cross_entropy_with_logits(logits[unknown], soft)


def load_teachers(
    paths: Sequence[Path | str],
    mean: Sequence[float],
    std: Sequence[float],
    gsd_m: float,
    device: str | torch.device = "cpu",
) -> tuple[torch.nn.Module, list[dict[str, Any]]]:
    """The teachers of a distillation as one frozen network, and their record for the metadata.

    ``paths``: weights files (loaded with :func:`change_detection.weights.load_model`, combined
    with :func:`change_detection.evaluation.ensemble_model`: probabilities averaged), several
    single networks or one ensemble weights file (decision 0020) given alone. They must
    share the student's input normalisation ``mean``/``std`` (0..255) and ``gsd_m`` (m/px),
    else :class:`WeightsError`. The network is in eval mode with no gradients; the record holds
    each file's path, SHA-256, network, seed, epoch and threshold (and an ensemble file's
    members' seed, epoch and threshold).
    """
    if not paths:
        raise ValueError("distillation needs at least one teacher weights file")
    models = []
    for path in paths:
        model = load_model(Path(path), device)
        same_norm = np.allclose(model.mean, mean, atol=1e-3) and np.allclose(
            model.std, std, atol=1e-3
        )
        if not same_norm or abs(model.gsd_m - gsd_m) > 1e-9:
            raise WeightsError(
                f"teacher {path} normalises with mean {model.mean}, std {model.std} at "
                f"{model.gsd_m} m/px, the student with {list(mean)}, {list(std)} at {gsd_m} m/px: "
                "give teachers trained by the same recipe on the same training data and --gsd"
            )
        models.append(model)
    teacher = ensemble_model(models).net.eval()
    for param in teacher.parameters():
        param.requires_grad_(False)
    from ingest.scene import sha256_file  # here: ingest loads GDAL, which training does not need

    record = [
        {
            "path": str(path),
            "sha256": sha256_file(Path(path)),
            "network": m.network,
            "seed": m.metadata.get("config", {}).get("seed"),
            "epoch": m.metadata.get("epoch"),
            "threshold": m.threshold,
            **(
                {
                    "members": [
                        {k: member.get(k) for k in ("seed", "epoch", "threshold")}
                        for member in m.metadata.get("members", [])
                    ]
                }
                if m.ensemble_size > 1
                else {}
            ),
        }
        for path, m in zip(paths, models, strict=True)
    ]
    return teacher, record


def _freeze_norm(net: torch.nn.Module) -> None:
    for module in net.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.eval()
            for param in module.parameters():
                param.requires_grad_(False)


def summary_line(s: dict[str, Any]) -> dict[str, Any]:
    """The figures of a metrics summary rounded to 4 places, for a one-line log or report."""
    keys = ("threshold", "precision", "recall", "f1", "iou", "best_threshold", "best_f1")
    out = {k: round(float(s[k]), 4) for k in keys}
    obj = s["objects"]
    out["object_recall"] = round(float(obj["recall"]), 4)
    out["fp_objects_per_km2"] = round(float(obj["false_positives_per_km2"]), 2)
    out["spurious_objects_per_km2"] = round(float(obj["spurious_per_km2"]), 2)
    return out


def train(
    data: Sequence[Path | str],
    out: Path | str,
    config: TrainConfig,
    resume: bool = False,
    on_progress: Callable[[dict[str, Any]], None] | None = None,
    extra_metadata: dict[str, Any] | None = None,
) -> TrainResult:
    """Train ``config.network`` on LEVIR-layout ``data`` folders into ``out`` (see module doc).

    With ``config.init_weights`` the network starts from those weights and keeps their input
    normalisation (fine-tuning); they must be of ``config.network``. ``extra_metadata`` (e.g.
    the lineage of a fine-tuning) is stored in the weights file's metadata.
    ``on_progress`` is called after every step with ``epoch``, ``step``, ``steps``, ``loss``
    and, after an epoch, its validation ``val_f1``.
    """
    start = time.monotonic()
    out = Path(out)  # created only once the inputs are checked: a refusal leaves nothing
    if config.loss not in LOSSES:
        raise ValueError(f"unknown loss {config.loss!r}: choose one of {', '.join(LOSSES)}")
    if config.crop % 16:
        raise ValueError(f"crop {config.crop} must be a multiple of 16 px")
    device = resolve_device(config.device)
    if config.threads:
        torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    files = find_pairs(data)
    train_f, val_f, held_f = split_pairs(
        files, config.holdout, config.val_fraction, config.seed, config.validation
    )
    train_p = [load_pair(f) for f in train_f]
    val_p = [load_pair(f) for f in val_f]
    kwargs = _network_kwargs(config.network_kwargs)
    teacher: torch.nn.Module | None = None
    if config.init_weights:
        parent = load_model(config.init_weights, "cpu")
        if parent.network != config.network:
            raise WeightsError(
                f"{config.init_weights} holds a {parent.network} model, not {config.network}: "
                f"fine-tune with --network {parent.network}"
            )
        if parent.ensemble_size > 1:  # decision 0020: members are fine-tuned one by one
            raise WeightsError(
                f"{config.init_weights} is an ensemble of {parent.ensemble_size} "
                f"{parent.network} networks: fine-tune each member's own weights file with "
                "--init-weights and combine the results with `weijian model ensemble` "
                "(`weijian train --from-reviews` does this by itself)"
            )
        if len(parent.mean) != 3:  # the training pairs are RGB (change_detection.data)
            raise WeightsError(
                f"{config.init_weights} takes {len(parent.mean)} bands, the training pairs 3 "
                "(RGB): fine-tune weights trained on RGB pairs"
            )
        kwargs = _network_kwargs(network_kwargs_of(config.init_weights))
        net = build_network(config.network, **kwargs).to(device)
        net.load_state_dict(parent.net.state_dict())
        if config.distill_unknown > 0:
            teacher = parent.net.to(device).eval()
            for param in teacher.parameters():
                param.requires_grad_(False)
        mean, std = parent.mean, parent.std
    else:
        if config.distill_unknown > 0 or config.freeze_norm:
            raise ValueError("distill_unknown and freeze_norm need init_weights (fine-tuning)")
        net = build_network(config.network, **kwargs).to(device)
        mean, std = channel_stats(train_p)
    ensemble: torch.nn.Module | None = None
    teachers_meta: dict[str, Any] = {}
    if config.teachers:
        if config.distill_weight < 0:
            raise ValueError(f"distill_weight must be >= 0, not {config.distill_weight}")
        ensemble, record = load_teachers(config.teachers, mean, std, config.gsd_m, device)
        teachers_meta = {"teachers": record, "distill_weight": config.distill_weight}
    meta_base: dict[str, Any] = {
        "network": config.network,
        "mean": mean,
        "std": std,
        "gsd_m": config.gsd_m,
        "parameters": count_parameters(net),
        "gmacs_256": round(count_gmacs(net), 4),
        "training_data": [str(Path(d)) for d in data],
        "split": {
            "train": [f.name for f in train_f],
            "validation": [f.name for f in val_f],
            "heldout": [f.name for f in held_f],
            "rule": "by scene (LEVIR crops share their tile's scene); held-out = --holdout "
            "patterns and every pair of their scenes; validation = seeded choice of scenes",
        },
        "config": asdict(config),
        "code_version": code_version(),
        **teachers_meta,
        **(extra_metadata or {}),
    }
    # an exponential moving average of the weights (and batch-norm buffers) is what gets
    # validated and saved: with tiny data single-epoch weights vary a lot from epoch to epoch
    ema = AveragedModel(net, multi_avg_fn=get_ema_multi_avg_fn(config.ema_decay), use_buffers=True)
    model = ChangeModel(config.network, ema.module, {"mean": mean, "std": std}, device)
    samples = TrainingSamples(
        train_p,
        config.crop,
        config.samples_per_epoch,
        config.seed,
        config.synthetic_fraction,
        (config.scale_min, config.scale_max),
    )
    # augmentation runs in worker processes (one torch thread each: small tensor operations are
    # much slower when they share the training threads)
    workers = min(4, max(1, (os.cpu_count() or 2) - 1))
    loader = torch.utils.data.DataLoader(
        samples, batch_size=config.batch_size, drop_last=True, num_workers=workers
    )
    steps = len(loader)
    if steps == 0:
        raise ValueError("samples_per_epoch is smaller than batch_size: no step per epoch")
    trainable = [p for p in net.parameters() if p.requires_grad]
    if config.freeze_norm:
        _freeze_norm(net)
        trainable = [p for p in net.parameters() if p.requires_grad]
    optimiser = torch.optim.AdamW(trainable, lr=config.lr, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimiser, config.lr, total_steps=config.epochs * steps, pct_start=0.1
    )
    norm_mean = torch.tensor(mean, device=device).view(1, 3, 1, 1)
    norm_std = torch.tensor(std, device=device).view(1, 3, 1, 1)
    first_epoch, best_f1, best_epoch, stale = 0, -1.0, -1, 0
    elapsed_before = 0.0
    out.mkdir(parents=True, exist_ok=True)
    last = out / "last.pt"
    if resume and last.is_file():
        ckpt = torch.load(last, map_location=device, weights_only=False)
        net.load_state_dict(ckpt["net"])
        ema.load_state_dict(ckpt["ema"])
        optimiser.load_state_dict(ckpt["optimiser"])
        scheduler.load_state_dict(ckpt["scheduler"])
        first_epoch, best_f1, best_epoch, stale = (
            ckpt["epoch"] + 1,
            ckpt["best_f1"],
            ckpt["best_epoch"],
            ckpt["stale"],
        )
        elapsed_before = ckpt.get("seconds", 0.0)
        log.info("resuming %s after epoch %d (best F1 %.4f)", out, ckpt["epoch"], best_f1)
    elif not resume:
        (out / "history.jsonl").unlink(missing_ok=True)

    for epoch in range(first_epoch, config.epochs):
        min_epochs = config.epochs // 2 if config.min_epochs is None else config.min_epochs
        if stale >= config.patience and epoch >= min_epochs:
            log.info("early stop: no better validation F1 for %d epochs", stale)
            break
        net.train()
        if config.freeze_norm:
            _freeze_norm(net)
        samples.set_epoch(epoch)
        torch.manual_seed(config.seed * 100_003 + epoch)  # dropout: repeatable after a resume
        losses: list[float] = []
        for step, (a, b, m) in enumerate(loader):
            a, b, m = a.to(device), b.to(device), m.to(device)
            a, b = (a - norm_mean) / norm_std, (b - norm_mean) / norm_std
            logits = net(a, b)
            if config.loss == "objects" and not bool((m < 0).any()):
                loss = weighted_bce_dice_loss(logits, m)
            elif config.loss == "lovasz" and not bool((m < 0).any()):
                loss = bce_lovasz_loss(logits, m)
            else:
                loss = bce_dice_loss(logits, m)
            if teacher is not None:
                with torch.no_grad():
                    taught = teacher(a, b)
                loss = loss + config.distill_unknown * distillation_loss(logits, m, taught)
            if ensemble is not None:
                with torch.no_grad():
                    soft = ensemble(a, b)
                loss = loss + config.distill_weight * distillation_loss(logits, m, soft, "all")
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            scheduler.step()
            ema.update_parameters(net)
            losses.append(loss.item())
            if on_progress:
                on_progress({"epoch": epoch, "step": step + 1, "steps": steps, "loss": losses[-1]})
        ema.eval()
        row: dict[str, Any] = {
            "epoch": epoch,
            "loss": float(np.mean(losses)),
            "lr": scheduler.get_last_lr()[0],
        }
        score = -float(np.mean(losses))  # without validation data: lowest training loss
        if val_p:
            val = summary_line(evaluate_pairs(model, val_p, 0.5, config.gsd_m, config.min_area_m2))
            row["val"] = val
            # F1 at the best threshold: the threshold is chosen on validation data at the end,
            # and a degenerate "all changed" model cannot win on F1 at 0.5
            score = val["best_f1"]
        row["seconds"] = round(elapsed_before + time.monotonic() - start, 1)
        if config.keep_epochs or config.average_top > 1:
            save_weights(
                out / "epochs" / f"epoch_{epoch + 1:02d}.pt",
                ema.module,
                config.network,
                {**meta_base, "epoch": epoch, "score": score},
                kwargs,
            )
        if score > best_f1:
            best_f1, best_epoch, stale = score, epoch, 0
            save_weights(
                out / "best.pt",
                ema.module,
                config.network,
                {**meta_base, "epoch": epoch},
                kwargs,
            )
        else:
            stale += 1
        log.info(
            "epoch %d/%d loss %.4f val %s (%.0f s)",
            epoch + 1,
            config.epochs,
            row["loss"],
            row.get("val", "-"),
            row["seconds"],
        )
        with open(out / "history.jsonl", "a") as fh:
            fh.write(json.dumps(row) + "\n")
        torch.save(
            {
                "net": net.state_dict(),
                "ema": ema.state_dict(),
                "optimiser": optimiser.state_dict(),
                "scheduler": scheduler.state_dict(),
                "epoch": epoch,
                "best_f1": best_f1,
                "best_epoch": best_epoch,
                "stale": stale,
                "seconds": row["seconds"],
            },
            last,
        )
        if on_progress:
            on_progress(
                {
                    "epoch": epoch,
                    "step": steps,
                    "steps": steps,
                    "loss": row["loss"],
                    "val_f1": row.get("val", {}).get("f1"),
                }
            )

    # the final file: best epoch, best-F1 threshold on validation, held-out metrics
    best = load_model(out / "best.pt", device)
    averaged: list[int] = []
    if config.average_top > 1:
        averaged = top_epochs(out / "history.jsonl", config.average_top)
        best = average_epochs(out, averaged, device)
    seconds = elapsed_before + time.monotonic() - start
    meta: dict[str, Any] = {
        **meta_base,
        "epoch": best_epoch,
        **({"averaged_epochs": averaged} if averaged else {}),
        "threshold": 0.5,
        "training_seconds": round(seconds, 1),
        "training_device": _device_name(device),
        "trained_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    val_summary = heldout = None
    if val_p:
        if config.fixed_threshold is None:
            full = evaluate_pairs(best, val_p, 0.5, config.gsd_m, config.min_area_m2)
            meta["threshold"] = float(full["best_threshold"])
        else:
            meta["threshold"] = float(config.fixed_threshold)
        val_summary = summary_line(
            evaluate_pairs(best, val_p, meta["threshold"], config.gsd_m, config.min_area_m2)
        )
        meta["metrics_validation"] = val_summary
    elif config.fixed_threshold is not None:
        meta["threshold"] = float(config.fixed_threshold)
    best.metadata["threshold"] = meta["threshold"]
    if held_f:
        held_p = [load_pair(f) for f in drop_contained_crops(held_f)]
        heldout = evaluate_pairs(
            best, held_p, meta["threshold"], config.gsd_m, config.min_area_m2, per_pair=True
        )
        (out / "heldout.json").write_text(json.dumps(heldout, indent=1))
        meta["metrics_heldout"] = {**summary_line(heldout), "per_pair": heldout["per_pair"]}
    path = save_weights(out / "model.pt", best.net, config.network, meta, kwargs)
    return TrainResult(path, best_epoch, val_summary, heldout, seconds)


def top_epochs(history: Path | str, k: int) -> list[int]:
    """The ``k`` epochs (0-based, ascending) with the best score in a ``history.jsonl``.

    The score is the one that chooses the best epoch: validation F1 at its best threshold, or
    without validation the lowest training loss. Ties go to the earlier epoch.
    """
    rows = [json.loads(line) for line in Path(history).read_text().splitlines() if line.strip()]
    if not rows:
        raise ValueError(f"{history} records no epoch: nothing to average")
    scored = [(r["val"]["best_f1"] if "val" in r else -r["loss"], r["epoch"]) for r in rows]
    chosen = sorted(scored, key=lambda t: (-t[0], t[1]))[:k]
    return sorted(epoch for _, epoch in chosen)


def average_epochs(
    out: Path | str, epochs: Sequence[int], device: str | torch.device = "cpu"
) -> ChangeModel:
    """One network whose parameters and batch-norm statistics average those of ``epochs``.

    ``epochs`` are 0-based epochs whose weights files ``out/epochs/epoch_NN.pt`` (NN = epoch + 1)
    a run with ``keep_epochs`` wrote. Weight averaging along one run (as in stochastic weight
    averaging) smooths the epoch-to-epoch swings of a small-data run at no inference cost. The
    metadata is the first epoch's, with ``averaged_epochs``; the threshold is left to the caller.
    """
    if not epochs:
        raise ValueError("no epoch to average")
    paths = [Path(out) / "epochs" / f"epoch_{e + 1:02d}.pt" for e in epochs]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise WeightsError(
            f"no weights file for {', '.join(missing)}: train with keep_epochs "
            "(`weijian train --keep-epochs`) to average epochs afterwards"
        )
    models = [load_model(p, device) for p in paths]
    states = [m.net.state_dict() for m in models]
    mean_state: dict[str, torch.Tensor] = {}
    for key, first in states[0].items():
        if first.is_floating_point():
            mean_state[key] = torch.stack([s[key].float() for s in states]).mean(0).to(first.dtype)
        else:  # e.g. batch-norm step counters
            mean_state[key] = torch.stack([s[key] for s in states]).max(0).values
    result = models[0]
    result.net.load_state_dict(mean_state)
    result.net.eval()
    result.metadata = {**result.metadata, "averaged_epochs": [int(e) for e in epochs]}
    result.metadata.pop("score", None)
    return result


def _network_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Network constructor arguments with lists as tuples (JSON and TOML give lists)."""
    return {k: tuple(v) if isinstance(v, list) else v for k, v in kwargs.items()}


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({os.cpu_count()} cores, {torch.get_num_threads()} torch threads)"
