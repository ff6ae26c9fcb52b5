"""Learning from the office's decisions: training chips from reviews, fine-tuning, the registry.

``weijian train --from-reviews`` calls :func:`fine_tune_from_reviews`: the reviewed detections
of the chosen runs (confirmed = change, with the polygon as the mask; false positive = a hard
negative) and the cases decided between the runs' acquisitions (see :mod:`gis_db.reviews`) are
cut as partly labelled chips (pixels nobody decided are "unknown" and ignored by the loss) from
the runs' registered COGs, on the working CRS grid at the model's GSD; the current model (the
registry's, else the shipped weights) is fine-tuned on them, keeping its threshold, and the
result is added to the registry with its lineage (parent, runs, decisions), *not* made current:
``weijian model promote`` does that after the evaluation gate.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import Engine

from weijian.errors import WeijianError
from weijian.settings import Settings

#: smallest chip side (px at the model's GSD); larger objects get larger chips (multiple of 16)
CHIP_PX = 128
MAX_CHIP_PX = 512
#: margin around an object inside its chip, metres
MARGIN_M = 16.0
#: a chip is skipped when less than this share of it has imagery in both scenes
MIN_VALID = 0.9
#: a decided case overlapping a confirmed detection by at least this share of the smaller of
#: the two areas is that detection's surveyed outline (the rule that attaches a confirmed
#: detection to an active case, ``review.overlap_threshold``'s default)
SURVEYED_OVERLAP = 0.3
#: fine-tuning settings (few gentle steps from the parent; a fifth of the chips, by chip,
#: choose the epoch and the threshold); the simulated review loop uses the same
FINE_TUNE: dict[str, Any] = {
    "epochs": 8,
    "samples_per_epoch": 128,
    "batch_size": 16,
    "lr": 5e-4,
    "patience": 8,
    "val_fraction": 0.2,
    "freeze_norm": True,
    "distill_unknown": 1.0,
}


class ReviewTrainingError(WeijianError, ValueError):
    """Training from reviews cannot start (no usable decisions, missing imagery, ...)."""


def registry_root(settings: Settings) -> Path:
    """The model registry folder: ``<data_dir>/models``."""
    return settings.data_dir / "models"


def model_registry(settings: Settings) -> Any:
    """The :class:`change_detection.registry.Registry` of these settings."""
    from change_detection.registry import Registry

    return Registry(registry_root(settings))


def default_weights(settings: Settings) -> str | Path:
    """Weights in force: ``detection.weights``, else the registry's current, else shipped."""
    if settings.detection.weights:
        return settings.detection.weights
    from change_detection.weights import default_shipped

    current = model_registry(settings).current_path()
    return current if current is not None else default_shipped(settings.detection.network)


@dataclass
class ChipSet:
    """The chips written from reviews and what they came from."""

    folder: Path
    runs: list[int]
    confirmed: list[int] = field(default_factory=list)  #: detection ids (positives)
    false_positive: list[int] = field(default_factory=list)  #: detection ids (hard negatives)
    cases: list[int] = field(default_factory=list)  #: case ids (appeared / disappeared)
    #: decided cases whose surveyed outline replaced a confirmed detection's (in its chip)
    surveyed: list[int] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  #: chips without imagery on both sides

    @property
    def chips(self) -> int:
        """Chips written."""
        return len(self.confirmed) + len(self.false_positive) + len(self.cases)


def _chip_grid(geom: Any, gsd_m: float) -> tuple[Any, int]:
    from rasterio.transform import from_origin

    minx, miny, maxx, maxy = geom.bounds
    side_m = max(maxx - minx, maxy - miny) + 2 * MARGIN_M
    px = max(CHIP_PX, 16 * math.ceil(side_m / gsd_m / 16))
    px = min(px, MAX_CHIP_PX)
    cx, cy = (minx + maxx) / 2, (miny + maxy) / 2
    half = px * gsd_m / 2
    return from_origin(cx - half, cy + half, gsd_m, gsd_m), px


def _read_chip(src: Any, crs: str, transform: Any, px: int) -> tuple[np.ndarray, np.ndarray]:
    from rasterio.enums import Resampling
    from rasterio.vrt import WarpedVRT

    with WarpedVRT(
        src, crs=crs, transform=transform, width=px, height=px, resampling=Resampling.average
    ) as vrt:
        image = vrt.read(indexes=[1, 2, 3]) if vrt.count >= 3 else None
        valid = vrt.dataset_mask() > 0
    if image is None:
        raise ReviewTrainingError(f"{src.name} has {src.count} band(s): the model needs RGB")
    if image.dtype != np.uint8:
        top = max(float(np.percentile(image, 99.9)), 1.0)
        image = np.clip(image.astype(np.float32) * (255.0 / top), 0, 255).astype(np.uint8)
    return np.moveaxis(image, 0, -1), valid


def build_review_chips(
    engine: Engine,
    out: Path,
    run_ids: Sequence[int] | None,
    gsd_m: float,
    crs: str,
    include_cases: bool = True,
) -> ChipSet:
    """Write LEVIR-layout chips (``out/A``, ``out/B``, ``out/label``) from the office's decisions.

    One chip per reviewed detection and per decided case, centred on it, at ``gsd_m`` m/px on
    the working CRS grid (``crs``), at least 128 px and at most 512 px a side. Chips are
    *partly labelled*: 255 (change) inside every change the office confirmed in that run and
    area (confirmed detections, cases), 0 (no change) inside every detection it marked false
    positive, and :data:`change_detection.data.UNKNOWN` (127) everywhere else, because nobody
    decided those pixels (a change the model missed is there too); the training loss ignores
    them.

    A confirmed detection that a decided case overlaps (at least :data:`SURVEYED_OVERLAP` of
    the smaller area, e.g. the case its confirmation opened, verified on site, its outline
    updated from the survey) is labelled with the case's outline instead of its own: the
    surveyed outline is the building, the detection's is what the model drew. Its chip covers
    both, and such a case gets no chip of its own.
    """
    import rasterio
    import shapely
    from PIL import Image
    from rasterio.features import rasterize

    from change_detection.data import UNKNOWN

    reviewed, cases = _decisions(engine, run_ids, include_cases)
    runs = sorted({int(r) for r in reviewed["run_id"]} | {int(r) for r in cases["run_id"]})
    for sub in ("A", "B", "label"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    chips = ChipSet(out, runs)
    for run in runs:
        dets = reviewed[reviewed["run_id"] == run]
        mine = cases[cases["run_id"] == run]
        case_items: list[tuple[str, int, Any]] = [
            ("c", int(i), g) for i, g in zip(mine["case_id"], mine.geometry, strict=True)
        ]
        # a run may hold only cases (e.g. patrol reports of buildings no detection found)
        first = dets.iloc[0] if len(dets) else mine.iloc[0]
        paths = [first["before_path"], first["after_path"]]
        for path in paths:
            if not path or not Path(path).is_file():
                raise ReviewTrainingError(
                    f"run {run}: scene file {path or '(none recorded)'} is missing; register the "
                    "scene again with its COG path (`weijian scene ...`) or leave the run out"
                )
        confirmed = dets[dets["state"] == "confirmed"]
        surveyed: dict[int, list[tuple[int, Any]]] = {}
        for ident, geom in zip(confirmed["detection_id"], confirmed.geometry, strict=True):
            surveyed[int(ident)] = [
                (c, g)
                for _, c, g in case_items
                if geom.intersection(g).area >= SURVEYED_OVERLAP * min(geom.area, g.area)
            ]
        replaced = {c for found in surveyed.values() for c, _ in found}
        positives = [
            g
            for i, g in zip(confirmed["detection_id"], confirmed.geometry, strict=True)
            if not surveyed[int(i)]
        ]
        positives += [g for _, _, g in case_items]
        negatives = list(dets[dets["state"] != "confirmed"].geometry)
        items: list[tuple[str, int, Any]] = []
        for ident, geom in zip(dets["detection_id"], dets.geometry, strict=True):
            outlines = [g for _, g in surveyed.get(int(ident), [])]
            items.append(("d", int(ident), shapely.union_all([geom, *outlines])))
        items += [item for item in case_items if item[1] not in replaced]
        chips.surveyed += sorted(replaced)
        states = dict(zip(dets["detection_id"].astype(int), dets["state"], strict=True))
        with rasterio.open(paths[0]) as before_src, rasterio.open(paths[1]) as after_src:
            for kind, ident, geom in items:
                transform, px = _chip_grid(geom, gsd_m)
                before, valid_b = _read_chip(before_src, crs, transform, px)
                after, valid_a = _read_chip(after_src, crs, transform, px)
                name = f"r{run}_{kind}{ident}"
                if (valid_b & valid_a).mean() < MIN_VALID:
                    chips.skipped.append(name)
                    continue
                # later shapes win: a confirmed change overlapping a false alarm stays change
                label = rasterize(
                    [(g, 0) for g in negatives] + [(g, 255) for g in positives],
                    out_shape=(px, px),
                    transform=transform,
                    fill=UNKNOWN,
                    dtype="uint8",
                )
                Image.fromarray(before).save(out / "A" / f"{name}.png")
                Image.fromarray(after).save(out / "B" / f"{name}.png")
                Image.fromarray(label).save(out / "label" / f"{name}.png")
                if kind == "c":
                    chips.cases.append(ident)
                elif states[ident] == "confirmed":
                    chips.confirmed.append(ident)
                else:
                    chips.false_positive.append(ident)
    if chips.chips == 0:
        raise ReviewTrainingError(
            f"no chip could be cut for run(s) {', '.join(map(str, runs))}: the reviewed "
            "detections lie outside the imagery of both scenes"
        )
    return chips


def _decisions(
    engine: Engine, run_ids: Sequence[int] | None, include_cases: bool
) -> tuple[Any, Any]:
    """Reviewed detections and decided cases of ``run_ids`` (default: every run).

    Either may be empty, not both: a case confirmed on site that no detection found (a patrol
    or a citizen's report, 巡查 / 12345) is a decision too, and the most useful kind, since it
    shows the model a building it missed. Raises ``InvalidInputError`` (one line) when the runs
    hold neither.
    """
    import geopandas as gpd

    from gis_db.errors import InvalidInputError
    from gis_db.reviews import decided_cases, reviewed_detections

    try:
        reviewed = reviewed_detections(engine, run_ids)
    except InvalidInputError:
        reviewed = gpd.GeoDataFrame({"run_id": [], "detection_id": [], "state": []}, geometry=[])
    if include_cases:
        cases = decided_cases(engine, run_ids)
    else:
        cases = gpd.GeoDataFrame({"run_id": [], "case_id": []}, geometry=[])
    if reviewed.empty and cases.empty:
        which = f"run(s) {', '.join(map(str, run_ids))}" if run_ids is not None else "any run"
        raise InvalidInputError(
            f"no reviewed detections and no decided cases in {which}: confirm or mark "
            "detections as false positives (`weijian runs review`), or verify cases discovered "
            "between the run's two acquisitions, before training from reviews"
        )
    return reviewed, cases


@dataclass
class ReviewTraining:
    """What :func:`fine_tune_from_reviews` produced."""

    version: str
    parent: str
    chips: ChipSet
    weights: Path
    validation: dict[str, Any] | None


def fine_tune_from_reviews(
    settings: Settings,
    engine: Engine,
    out: Path,
    run_ids: Sequence[int] | None = None,
    epochs: int = FINE_TUNE["epochs"],
    samples_per_epoch: int = FINE_TUNE["samples_per_epoch"],
    lr: float = FINE_TUNE["lr"],
    seed: int = 0,
    device: str = "cpu",
    threads: int | None = None,
    on_progress: Callable[[dict[str, Any]], None] | None = None,
) -> ReviewTraining:
    """Fine-tune the current model on chips from the office's decisions and register it.

    The new weights go into the registry as a new version with its lineage (parent version and
    checksum, runs, confirmed and false-positive detection ids, case ids), not promoted. When
    the current model is an ensemble, each member is fine-tuned on its own
    (:func:`_fine_tune_members`) and the result is an ensemble file of as many members.
    """
    from change_detection.training import TrainConfig, train

    registry = model_registry(settings)
    parent = registry.current or "shipped"
    parent_path = registry.weights_path(parent)
    parent_model = registry.load(parent, "cpu")
    chips = build_review_chips(
        engine, out / "chips", run_ids, parent_model.gsd_m, settings.working_crs
    )
    lineage = {
        "parent": parent,
        "parent_sha256": registry.entry(parent)["sha256"],
        "runs": chips.runs,
        "decisions": chips.chips,
        "confirmed_detections": chips.confirmed,
        "false_positive_detections": chips.false_positive,
        "cases": chips.cases,
        "surveyed_cases": chips.surveyed,
        "skipped_chips": chips.skipped,
        "built_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    config = TrainConfig(
        network=parent_model.network,
        epochs=epochs,
        samples_per_epoch=samples_per_epoch,
        crop=CHIP_PX,
        batch_size=min(FINE_TUNE["batch_size"], samples_per_epoch),
        lr=lr,
        patience=epochs,
        seed=seed,
        val_fraction=FINE_TUNE["val_fraction"],
        gsd_m=parent_model.gsd_m,
        min_area_m2=settings.detection.min_area_m2,
        device=device,
        threads=threads,
        init_weights=str(parent_path),
        fixed_threshold=parent_model.threshold,
        freeze_norm=FINE_TUNE["freeze_norm"],
        distill_unknown=FINE_TUNE["distill_unknown"],
    )
    if parent_model.ensemble_size > 1:
        weights, validation = _fine_tune_members(
            parent_model, chips.folder, out, config, lineage, on_progress
        )
    else:
        result = train(
            [chips.folder],
            out,
            config,
            on_progress=on_progress,
            extra_metadata={"lineage": lineage},
        )
        weights, validation = result.weights, result.val
    version = registry.add(
        weights, source=f"reviews of run(s) {chips.runs}", parent=parent, lineage=lineage
    )
    return ReviewTraining(version, parent, chips, weights, validation)


def _fine_tune_members(
    parent: Any,
    chips: Path,
    out: Path,
    config: Any,
    lineage: dict[str, Any],
    on_progress: Callable[[dict[str, Any]], None] | None,
) -> tuple[Path, dict[str, Any] | None]:
    """Fine-tune each member of an ensemble ``parent`` on its own; the ensemble of the results.

    Each member is fine-tuned exactly as a single model is (same chips, same settings, its own
    batch-norm statistics kept and its own predictions distilled on the unknown pixels), so
    the members stay as independent as the seeds that made them; the new ensemble keeps the
    parent ensemble's threshold (decision 0020). Writes ``out/model.pt`` (an ensemble file)
    and returns it with the ensemble's figures on the held-back chips.
    """
    from dataclasses import replace

    from change_detection.data import find_pairs, load_pair, matches
    from change_detection.evaluation import ensemble_model, evaluate_pairs
    from change_detection.training import summary_line, train
    from change_detection.weights import ChangeModel, load_model, save_weights

    records = parent.metadata.get("members") or [{} for _ in parent.net.members]
    shared = {k: parent.metadata[k] for k in ("mean", "std", "gsd_m") if k in parent.metadata}
    tuned: list[ChangeModel] = []
    for i, (net, record) in enumerate(zip(parent.net.members, records, strict=True)):
        folder = out / f"member_{i}"
        start = save_weights(
            folder / "parent.pt",
            net,
            parent.network,
            {**shared, "threshold": record.get("threshold", parent.threshold)},
            parent.network_kwargs,
        )
        member_config = replace(
            config,
            init_weights=str(start),
            fixed_threshold=float(record.get("threshold", parent.threshold)),
        )
        member_lineage = {**lineage, "member": i, "parent_member": record}

        def report(row: dict[str, Any], i: int = i) -> None:
            if on_progress:
                on_progress({**row, "member": i, "members": len(records)})

        result = train(
            [chips],
            folder,
            member_config,
            on_progress=report,
            extra_metadata={"lineage": member_lineage},
        )
        tuned.append(load_model(result.weights, "cpu"))
    model = ensemble_model(tuned, threshold=parent.threshold)
    for member, record in zip(model.metadata["members"], records, strict=True):
        member["seed"] = record.get("seed", member.get("seed"))
        member["parent_sha256"] = record.get("sha256")
    validation = None
    held_back = (tuned[0].metadata.get("split") or {}).get("validation") or []
    if held_back:
        pairs = [load_pair(f) for f in find_pairs([chips]) if matches(f.name, held_back)]
        validation = summary_line(
            evaluate_pairs(model, pairs, None, model.gsd_m, config.min_area_m2)
        )
    meta = {
        **model.metadata,
        "lineage": lineage,
        "metrics_validation": validation,
        "fine_tuned": "each member on its own from the parent ensemble's member",
    }
    path = save_weights(out / "model.pt", model.net, model.network, meta, model.network_kwargs)
    return path, validation
