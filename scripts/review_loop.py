"""Simulated review loop: does fine-tuning on N office decisions improve the held-out figures?

An office on real imagery, simulated: the shipped ``tinysiam`` detects changes on review scenes
that neither its training nor the held-out evaluation touched (the 9 EGY-BCD pairs of
``egy_256``, New Cairo, and the shipped split's validation pairs, which only chose its epoch and
threshold); every predicted object (8-connected, at least 10 m²) is a detection, and
the label plays the reviewer in a seeded random order: a detection with at least half of its
pixels on a labelled change is *confirmed*, any other one is a *false positive*. After N
decisions, chips are cut exactly as ``weijian train --from-reviews`` cuts them (128 px around
each decided detection, partly labelled: confirmed detections are change, false positives no
change, every other pixel unknown and ignored by the loss) and the shipped model is fine-tuned
with the same settings (:data:`weijian.learning.FINE_TUNE`, keeping its threshold). Each
fine-tuned model is scored on the project's held-out pairs (LEVIR-CD and DSIFN-CD), which no step
above saw. Prints one Markdown table.

``--parent simulation`` simulates an office in a district like the held-out scenes, on a real
database: a *simulation parent* is trained with the shipped recipe (same settings, validation
tiles and held-out scenes) without the :data:`DISTRICT` scenes (a LEVIR 1024 px tile and six
256 px pairs, three of them validation tiles of the shipped recipe; ``--pool`` names another
district); it detects changes there as ``weijian detect`` does (the product's polygons at
its threshold), the runs are loaded into an embedded PostGIS and the labels review them through
the workflow in a seeded order; after N decisions ``weijian train --from-reviews``'s own code
(:func:`weijian.learning.fine_tune_from_reviews`) cuts the chips from the COGs and fine-tunes
the parent, and the registry's gate (``promote``) judges each candidate on the held-out scenes.
Two variants of what a confirmation records: ``model`` (the detection's outline) and
``surveyed`` (the case it opened is verified on site and its outline replaced by the surveyed
one: the labelled building(s) the detection hit). ``--patrol SHARE ...``: the office also
receives patrol and citizens' reports (巡查, 12345) of buildings that no detection matched: a
seeded share of the district's labelled buildings that no detection overlaps is imported as
cases (source ``patrol``, the label's outline as the surveyed outline), dispatched and verified
on site through the workflow, at the pace the detections are decided; each is a decision, and
``--from-reviews`` cuts it as a chip of its own (a building that appeared).

    uv run --frozen python scripts/review_loop.py [--decisions 0 50 200 1000] [--out out/loop]
        [--pool PATTERN ...] [--no-egy]
    uv run --frozen python scripts/review_loop.py --parent simulation --out out/loop_sim \
        --decisions 0 50 100 200 100000 [--variants model surveyed] [--patrol 0 0.5]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from scipy import ndimage
from shapely import box as shapely_box
from shapely import union_all as shapely_union
from shapely import wkb as shapely_wkb
from sqlalchemy import text

from change_detection.data import (
    HELDOUT,
    UNKNOWN,
    drop_contained_crops,
    find_pairs,
    load_pair,
    matches,
)
from change_detection.evaluation import evaluate_pairs
from change_detection.inference import predict_proba
from change_detection.training import TrainConfig, summary_line, train
from change_detection.weights import load_model, shipped_weights
from weijian.learning import CHIP_PX, FINE_TUNE
from weijian.settings import Settings
from weijian_testdata.rasters import CHANGE_PAIRS

DATA = CHANGE_PAIRS
MIN_AREA_M2 = 10.0
#: the simulated office's district (``--parent simulation``): training scenes of the shipped
#: recipe that the simulation parent does not train on; its detections there are reviewed
DISTRICT = (
    "levir_1024/test_12",
    "levir_256/train_412_*",
    "dsifn_256/2_4",
    "dsifn_256/6_3",
    # three of the shipped recipe's validation tiles (two scenes): more decisions, same kind of
    # scene; the parent's validation keeps the other three (scenes held out are left out of it)
    "levir_256/test_2_*",
    "levir_256/train_36_*",
)


def simulation_parent(
    out: Path, data: Path, district: Sequence[str] = DISTRICT, seed: int = 0
) -> Path:
    """Train (or reuse) the simulation parent: the shipped recipe without the district's scenes.

    Same network, settings, validation tiles and held-out scenes as
    ``scripts/train_shipped_weights.sh`` (tinysiam); the ``district`` scenes (default
    :data:`DISTRICT`) are kept out of training and validation (passed as held-out patterns, so
    every pair of their scenes is out; a validation tile of the district leaves validation).
    A finished ``out/model.pt`` of the same configuration is reused.
    """
    shipped = load_model("tinysiam", device="cpu").metadata["config"]
    config = TrainConfig(
        network="tinysiam",
        epochs=shipped["epochs"],
        samples_per_epoch=shipped["samples_per_epoch"],
        crop=shipped["crop"],
        batch_size=shipped["batch_size"],
        lr=shipped["lr"],
        patience=shipped["patience"],
        seed=seed,
        holdout=[*HELDOUT, *district],
        validation=list(shipped["validation"]),
        synthetic_fraction=shipped["synthetic_fraction"],
        gsd_m=shipped["gsd_m"],
        scale_min=shipped["scale_min"],
        scale_max=shipped["scale_max"],
        min_area_m2=MIN_AREA_M2,
        device="cpu",
        threads=1,
    )
    weights = out / "model.pt"
    if weights.is_file():
        # settings added to TrainConfig later are at their defaults in an older parent
        stored = {
            **json.loads(json.dumps(asdict(TrainConfig()))),
            **load_model(weights, "cpu").metadata.get("config", {}),
        }
        if stored == json.loads(json.dumps(asdict(config))):
            return weights
    folders = [data / f for f in ("levir_256", "levir_1024", "dsifn_256")]
    return train(folders, out, config).weights


def detections(pool: list[Any], model: Any) -> list[dict[str, Any]]:
    """Every predicted object of the review scenes with the simulated reviewer's decision."""
    out = []
    min_px = int(np.ceil(MIN_AREA_M2 / model.gsd_m**2))
    for index, pair in enumerate(pool):
        pred = predict_proba(model, pair.before, pair.after) >= model.threshold
        labels, n = ndimage.label(pred, structure=np.ones((3, 3), bool))
        for k in range(1, n + 1):
            mask = labels == k
            if mask.sum() < min_px:
                continue
            changed = pair.label[mask].mean()
            out.append({"pair": index, "mask": mask, "confirmed": bool(changed >= 0.5)})
    return out


def write_chips(folder: Path, pool: list[Any], decided: list[dict[str, Any]]) -> None:
    """LEVIR-layout chips around each decided detection (the --from-reviews rule).

    Partly labelled like ``--from-reviews`` chips: 255 inside confirmed detections, 0 inside
    false positives, :data:`UNKNOWN` wherever nobody decided.
    """
    for sub in ("A", "B", "label"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    labels = {i: np.full(p.label.shape, UNKNOWN, np.uint8) for i, p in enumerate(pool)}
    for d in decided:
        if not d["confirmed"]:
            labels[d["pair"]][d["mask"]] = 0
    for d in decided:
        if d["confirmed"]:
            labels[d["pair"]][d["mask"]] = 255
    for n, d in enumerate(decided):
        pair = pool[d["pair"]]
        rows, cols = np.nonzero(d["mask"])
        h, w = pair.label.shape
        side = min(CHIP_PX, h, w)
        r0 = int(np.clip((rows.min() + rows.max()) // 2 - side // 2, 0, h - side))
        c0 = int(np.clip((cols.min() + cols.max()) // 2 - side // 2, 0, w - side))
        window = np.s_[r0 : r0 + side, c0 : c0 + side]
        name = f"d{n:04d}"
        Image.fromarray(pair.before[window]).save(folder / "A" / f"{name}.png")
        Image.fromarray(pair.after[window]).save(folder / "B" / f"{name}.png")
        Image.fromarray(labels[d["pair"]][window]).save(folder / "label" / f"{name}.png")


# --- the office simulation on a real database (``--parent simulation``) ----------------------

SPACING_M = 2000.0  #: district scenes are laid side by side this far apart (no case is shared)
VARIANTS = ("model", "surveyed")


@dataclass
class Office:
    """A simulated office: its settings, database, registry and the reviewable detections."""

    settings: Settings
    engine: Any
    parent: str  #: the registry version of the simulation parent (the current model)
    found: list[dict[str, Any]]  #: detections in the seeded review order, each with its truth
    runs: list[int]
    #: labelled changed buildings that no detection matched, in the seeded order patrols find them
    missed: list[dict[str, Any]] = field(default_factory=list)


def _surveyed_outline(mask: np.ndarray, label: np.ndarray, transform: Any) -> Any:
    """The labelled buildings a detection hit, as the surveyor's outline (map units)."""
    import shapely
    from rasterio.features import shapes

    parts, n = ndimage.label(label, structure=np.ones((3, 3), bool))
    hit = []
    for k in range(1, n + 1):
        building = parts == k
        overlap = int((building & mask).sum())
        if overlap and overlap >= 0.25 * min(int(building.sum()), int(mask.sum())):
            hit.append(k)
    if not hit:  # confirmed on a sliver: the building with the largest overlap
        counts = np.bincount(parts[mask], minlength=n + 1)
        counts[0] = 0
        hit = [int(np.argmax(counts))]
    keep = np.isin(parts, hit)
    polys = [
        shapely.geometry.shape(g)
        for g, v in shapes(keep.astype(np.uint8), mask=keep, transform=transform)
        if v
    ]
    return shapely.union_all(polys)


def open_office(
    root: Path, parent_path: Path, district: list[Any], seed: int
) -> tuple[Office, list[Any]]:
    """A fresh embedded PostGIS and registry in ``root``; the parent detects on the district.

    Each district pair becomes two COGs (EPSG:4549, 0.5 m, SPACING_M apart), two registered
    scenes and a detection run; detections are the product's polygons
    (:func:`change_detection.vectorize.polygons_from_proba` with the detect settings' defaults
    at the parent's threshold), matched to the (empty) inventory. Returns the office and, per
    pair, its grid transform.
    """
    import geopandas as gpd
    from rasterio.features import rasterize

    from change_detection.registry import INDEX
    from change_detection.vectorize import excess_green_change, polygons_from_proba
    from gis_db import runs
    from gis_db.matching import match_run
    from weijian.database import connect
    from weijian.learning import model_registry
    from weijian_testdata.rasters import GROUND_CRS, ground_transform, write_raster
    from weijian_testdata.runs import AFTER, BEFORE

    settings = Settings(data_dir=root / "data", database_url=None, working_crs=GROUND_CRS)
    engine = connect(settings)
    registry = model_registry(settings)
    version = registry.add(parent_path, source="simulation parent (scripts/review_loop.py)")
    (registry.root / INDEX).write_text(
        json.dumps({"current": version, "history": [{"action": "install", "version": version}]})
    )
    parent = registry.load(version, "cpu")
    params = settings.detection.vectorize_params(parent.threshold)
    found: list[dict[str, Any]] = []
    run_ids, transforms = [], []
    (root / "cogs").mkdir(parents=True, exist_ok=True)
    for k, pair in enumerate(district):
        transform = ground_transform(parent.gsd_m, offset_m=(k * SPACING_M, 0.0))
        transforms.append(transform)
        h, w = pair.label.shape
        ids = {}
        for tag, image, when in (("A", pair.before, BEFORE), ("B", pair.after, AFTER)):
            path = write_raster(
                root / "cogs" / f"{pair.name.replace('/', '_')}_{tag}.tif",
                np.ascontiguousarray(np.moveaxis(image, -1, 0)),
                crs=GROUND_CRS,
                transform=transform,
            )
            x0, y0 = transform.c, transform.f
            footprint = shapely_box(x0, y0 - h * parent.gsd_m, x0 + w * parent.gsd_m, y0)
            ids[tag] = runs.register_scene(
                engine,
                checksum=f"{pair.name}:{tag}",
                footprint=footprint,
                acquired_at=when,
                platform="satellite",
                gsd_m=parent.gsd_m,
                path=path,
                crs=GROUND_CRS,
            )
        run = runs.create_run(
            engine,
            before_scene_id=ids["A"],
            after_scene_id=ids["B"],
            network=parent.network,
            weights_checksum=registry.entry(version)["sha256"],
            params=params.to_dict(),
        )
        proba = predict_proba(parent, pair.before, pair.after)
        cue = excess_green_change(np.moveaxis(pair.before, -1, 0), np.moveaxis(pair.after, -1, 0))
        records = polygons_from_proba(proba, transform, params, cue=cue)
        frame = gpd.GeoDataFrame(
            {
                "seq": np.arange(1, len(records) + 1),
                "score": [min(max(r["score_mean"], 0.0), 1.0) for r in records],
                "change_kind": [
                    r["change_kind"]
                    if r["change_kind"] in ("appeared", "disappeared")
                    else "changed"
                    for r in records
                ],
            },
            geometry=[r["geometry"] for r in records],
            crs=GROUND_CRS,
        )
        runs.load_detections(engine, run, frame)
        match_run(engine, run)
        run_ids.append(run)
        with engine.connect() as conn:
            rows = conn.execute(
                text("SELECT id, ST_AsBinary(geom) FROM detection WHERE run_id = :r ORDER BY seq"),
                {"r": run},
            ).all()
        for ident, wkb in rows:
            geom = shapely_wkb.loads(bytes(wkb))
            mask = rasterize([(geom, 1)], out_shape=(h, w), transform=transform, dtype="uint8") > 0
            if not mask.any():
                mask = (
                    rasterize([(geom, 1)], out_shape=(h, w), transform=transform, all_touched=True)
                    > 0
                )
            changed = float(pair.label[mask].mean()) >= 0.5
            found.append(
                {"id": int(ident), "pair": k, "mask": mask, "confirmed": changed, "run": run}
            )
    order = np.random.default_rng(seed).permutation(len(found))
    missed = missed_buildings(district, transforms, engine, run_ids, parent.gsd_m)
    patrol_order = np.random.default_rng([seed, 1]).permutation(len(missed))
    office = Office(
        settings,
        engine,
        version,
        [found[i] for i in order],
        run_ids,
        [missed[i] for i in patrol_order],
    )
    return office, transforms


def teaching_signal(parent_path: Path, district: list[Any]) -> None:
    """Print what the office's reviews of the parent's polygons would teach, cores off and on.

    The parent's polygons on the district as ``weijian detect`` draws them
    (``settings.detection``: environment and TOML included), once with ``core_threshold`` 0
    (no seeded cores, as before decision 0024) and once as set. Per row: detections; how many
    the reviewer's rule confirms (at least half of the polygon on labelled change); the share
    of the confirmed polygons' pixels off the label (taught as change, wrongly); the median IoU
    of a confirmed polygon with the labelled building(s) it touches (8-connected parts); the
    share of the false-positive polygons' pixels on labelled change (taught as no change,
    wrongly) and the share of the labelled pixels under some detection. No database, no
    fine-tuning: a check of the teaching signal before any decision is used.
    """
    from rasterio.features import rasterize

    from change_detection.vectorize import excess_green_change, polygons_from_proba
    from weijian_testdata.rasters import ground_transform

    parent = load_model(parent_path, "cpu")
    detection = Settings(database_url=None).detection
    probas = [predict_proba(parent, pair.before, pair.after) for pair in district]
    print(
        "| cores | detections | confirmable | confirmed px off the label | median IoU of a "
        "confirmed polygon | false-positive px on labelled change | label px under a detection |"
    )
    print("| --- " * 7 + "|")
    for name, det in (
        ("off", detection.model_copy(update={"core_threshold": 0.0})),
        (f"{detection.core_threshold:g}", detection),
    ):
        params = det.vectorize_params(parent.threshold)
        n = confirmable = conf_px = conf_off = fp_px = fp_on = labelled = covered = 0
        ious: list[float] = []
        for k, (pair, proba) in enumerate(zip(district, probas, strict=True)):
            transform = ground_transform(parent.gsd_m, offset_m=(k * SPACING_M, 0.0))
            cue = excess_green_change(
                np.moveaxis(pair.before, -1, 0), np.moveaxis(pair.after, -1, 0)
            )
            label = pair.label > 0
            parts, _ = ndimage.label(label, structure=np.ones((3, 3), bool))
            under = np.zeros_like(label)
            for record in polygons_from_proba(proba, transform, params, cue=cue):
                mask = (
                    rasterize(
                        [(record["geometry"], 1)],
                        out_shape=label.shape,
                        transform=transform,
                        dtype="uint8",
                    )
                    > 0
                )
                if not mask.any():
                    continue
                n += 1
                under |= mask
                on = int((mask & label).sum())
                if on >= 0.5 * mask.sum():
                    confirmable += 1
                    conf_px += int(mask.sum())
                    conf_off += int(mask.sum()) - on
                    hit = np.isin(parts, np.unique(parts[mask & label]))
                    ious.append(float((mask & hit).sum() / (mask | hit).sum()))
                else:
                    fp_px += int(mask.sum())
                    fp_on += on
            labelled += int(label.sum())
            covered += int((under & label).sum())
        print(
            f"| {name} | {n} | {confirmable} | {conf_off / max(conf_px, 1):.1%} "
            f"| {float(np.median(ious)) if ious else 0.0:.2f} | {fp_on / max(fp_px, 1):.1%} "
            f"of {fp_px / 1e6:.2f} Mpx | {covered / max(labelled, 1):.1%} |",
            flush=True,
        )


def missed_buildings(
    district: list[Any], transforms: list[Any], engine: Any, run_ids: list[int], gsd_m: float
) -> list[dict[str, Any]]:
    """The labelled changed buildings of the district that no detection matched.

    A building is a connected part (8-connected) of a pair's label of at least
    :data:`MIN_AREA_M2`, outlined in map units (the surveyor's outline); it is missed when no
    detection of its run overlaps it by :data:`weijian.learning.SURVEYED_OVERLAP` of the
    smaller area (the rule that would have linked the two), i.e. the office has no suspect
    there and only a patrol or a citizen's report can bring it in.
    """
    import shapely
    from rasterio.features import shapes

    from weijian.learning import SURVEYED_OVERLAP

    min_px = int(np.ceil(MIN_AREA_M2 / gsd_m**2))
    out: list[dict[str, Any]] = []
    for k, (pair, transform, run) in enumerate(zip(district, transforms, run_ids, strict=True)):
        with engine.connect() as conn:
            dets = [
                shapely_wkb.loads(bytes(w))
                for w in conn.execute(
                    text("SELECT ST_AsBinary(geom) FROM detection WHERE run_id = :r"), {"r": run}
                ).scalars()
            ]
        parts, n = ndimage.label(pair.label, structure=np.ones((3, 3), bool))
        for b in range(1, n + 1):
            building = parts == b
            if building.sum() < min_px:
                continue
            outline = shapely.union_all(
                [
                    shapely.geometry.shape(g)
                    for g, v in shapes(
                        building.astype(np.uint8), mask=building, transform=transform
                    )
                    if v
                ]
            )
            if any(
                outline.intersection(d).area >= SURVEYED_OVERLAP * min(outline.area, d.area)
                for d in dets
            ):
                continue
            out.append({"pair": k, "run": run, "outline": outline, "px": int(building.sum())})
    return out


def report_patrol(office: Office, items: list[dict[str, Any]], start: int) -> None:
    """Patrols (巡查) report ``items``: imported as cases, dispatched and verified on site.

    Each missed building becomes an inventory case through the product's import
    (:func:`gis_db.inventory.upsert_cases`: source ``patrol``, newly built, discovered between
    the run's two acquisitions, the label's outline as the surveyed outline), then goes through
    the workflow: the office dispatches it and the 街镇 verifies it on site. ``--from-reviews``
    reads it as a decided case (a building that appeared) and cuts it as its own chip.
    """
    import geopandas as gpd

    from gis_db.inventory import upsert_cases
    from gis_db.workflow import transition_case
    from weijian_testdata.rasters import GROUND_CRS
    from weijian_testdata.runs import AFTER, BEFORE

    if not items:
        return
    numbers = [f"XC-{start + i + 1:04d}" for i in range(len(items))]
    found_on = BEFORE.date() + (AFTER.date() - BEFORE.date()) / 2  # between the two images
    upsert_cases(
        office.engine,
        gpd.GeoDataFrame(
            {
                "case_number": numbers,
                "source": ["patrol"] * len(items),
                "construction_status": ["new"] * len(items),
                "discovered_on": [found_on] * len(items),
            },
            geometry=[d["outline"] for d in items],
            crs=GROUND_CRS,
        ),
        actor="street town patrol",
        reason="patrol report",
    )
    with office.engine.connect() as conn:
        ids = conn.execute(
            text("SELECT id FROM inventory_case WHERE case_number = ANY(:n) ORDER BY case_number"),
            {"n": numbers},
        ).scalars()
        ids = list(ids)
    for case in ids:
        transition_case(office.engine, case, "dispatch", actor="office")
        transition_case(office.engine, case, "verify", actor="street town", role="street_town")


def review(
    office: Office,
    items: list[dict[str, Any]],
    variant: str,
    district: list[Any],
    transforms: list[Any],
) -> int:
    """The label reviews ``items`` through the workflow; returns how many it could decide.

    ``confirm`` opens a case from the detection (the workflow's rule). Variant ``surveyed``: the
    case is then dispatched, verified on site and its outline updated from the survey (the
    inventory import), as the labelled building(s) the detection hit.
    """
    import geopandas as gpd

    from gis_db.errors import GisDbError
    from gis_db.inventory import upsert_cases
    from gis_db.workflow import review_detection, transition_case
    from weijian_testdata.rasters import GROUND_CRS

    decided = 0
    for d in items:
        action = "confirm" if d["confirmed"] else "false_positive"
        try:
            result = review_detection(office.engine, d["id"], action, actor="simulated office")
        except GisDbError as exc:  # e.g. an unrelated change: nothing to bring into the inventory
            d["skipped"] = str(exc)
            continue
        decided += 1
        if variant == "surveyed" and d["confirmed"] and result.case_id is not None:
            pair = district[d["pair"]]
            outline = _surveyed_outline(d["mask"], pair.label, transforms[d["pair"]])
            if result.case_created:
                transition_case(office.engine, result.case_id, "dispatch", actor="office")
                transition_case(
                    office.engine, result.case_id, "verify", actor="surveyor", role="street_town"
                )
            with office.engine.connect() as conn:
                number, wkb = conn.execute(
                    text("SELECT case_number, ST_AsBinary(geom) FROM inventory_case WHERE id = :i"),
                    {"i": result.case_id},
                ).one()
            if not result.case_created:  # joined a case already surveyed: both buildings
                outline = shapely_union([shapely_wkb.loads(bytes(wkb)), outline])
            upsert_cases(
                office.engine,
                gpd.GeoDataFrame({"case_number": [number]}, geometry=[outline], crs=GROUND_CRS),
                actor="surveyor",
                reason="survey",
            )
    return decided


def office_loop(
    args: argparse.Namespace,
    parent_path: Path,
    district: list[Any],
    held: list[Any],
    val: list[Any],
    curve: Path | None = None,
) -> list[dict[str, Any]]:
    """The decision curve of each variant and patrol share through ``--from-reviews``' code.

    Each point is scored on ``held`` (the held-out scenes) and, for choosing settings without
    looking at them, on ``val`` (the parent's validation tiles).
    """
    from change_detection.registry import PromotionRefused
    from gis_db.embedded import EmbeddedCluster
    from weijian.learning import fine_tune_from_reviews, model_registry

    rows: list[dict[str, Any]] = []
    parent = load_model(parent_path, "cpu")
    print(
        "| variant | patrol share | decisions | confirmed | false positives | patrol reports "
        "| pixel P | pixel R | pixel F1 | best F1 (oracle) | object recall | FP objects /km² "
        "| spurious /km² | validation F1 | validation FP /km² | gate | chips | minutes | load |"
    )
    print("| --- " * 19 + "|")
    base = summary_line(evaluate_pairs(parent, held, None, None, MIN_AREA_M2))
    base_val = summary_line(evaluate_pairs(parent, val, None, None, MIN_AREA_M2))
    for variant, share in [(v, p) for v in args.variants for p in args.patrol]:
        root = Path(tempfile.mkdtemp(prefix=f"weijian-loop-{variant}-"))
        root.chmod(0o755)  # the embedded cluster runs as postgres when we are root
        try:
            office, transforms = open_office(root, parent_path, district, args.seed)
            n_true = sum(d["confirmed"] for d in office.found)
            n_patrol = round(share * len(office.missed))
            print(
                f"<!-- {variant}, patrol share {share}: {len(district)} district pairs, "
                f"{len(office.found)} detections ({n_true} real changes); "
                f"{len(office.missed)} labelled buildings no detection matched, {n_patrol} of them "
                "reported by patrols as the detections are decided -->",
                flush=True,
            )
            done = reported = 0
            for wanted in sorted(args.decisions):
                start = time.monotonic()
                upto = min(wanted, len(office.found))
                if upto == done and done:
                    continue  # more decisions asked for than detections: "all" already done
                review(office, office.found[done:upto], variant, district, transforms)
                done = upto
                # patrols find the missed buildings at the pace the detections are decided
                due = round(n_patrol * done / max(len(office.found), 1))
                report_patrol(office, office.missed[reported:due], reported)
                reported = max(reported, due)
                decided = [d for d in office.found[:done] if "skipped" not in d]
                skipped = [d["skipped"] for d in office.found[:done] if "skipped" in d]
                if skipped:
                    print(f"<!-- {len(skipped)} not decidable, e.g. {skipped[0]} -->")
                row: dict[str, Any] = {
                    "variant": variant,
                    "patrol": share,
                    "decisions": len(decided) + reported,
                    "detection_decisions": len(decided),
                    "confirmed": sum(d["confirmed"] for d in decided),
                    "false_positives": sum(not d["confirmed"] for d in decided),
                    "patrol_reports": reported,
                    "missed_buildings": len(office.missed),
                    "not_decidable": len(skipped),
                }
                if decided or reported:
                    tuned = fine_tune_from_reviews(
                        office.settings,
                        office.engine,
                        root / f"ft{len(decided)}-{reported}",
                        seed=args.seed,
                        device="cpu",
                        threads=1,
                        lr=args.lr,
                        epochs=args.epochs,
                    )
                    tuned_model = load_model(tuned.weights, "cpu")
                    s = summary_line(evaluate_pairs(tuned_model, held, None, None, MIN_AREA_M2))
                    v = summary_line(evaluate_pairs(tuned_model, val, None, None, MIN_AREA_M2))
                    registry = model_registry(office.settings)
                    try:
                        registry.promote(
                            tuned.version, held, min_area_m2=MIN_AREA_M2, set_name="held-out"
                        )
                        registry.rollback()  # the next point starts from the parent again
                        gate = "promoted"
                    except PromotionRefused as exc:
                        gate = "refused: " + str(exc).split(": ", 1)[1]
                    row["chips"] = tuned.chips.chips
                    row["case_chips"] = len(tuned.chips.cases)
                    row["skipped_chips"] = len(tuned.chips.skipped)
                    row["surveyed_cases"] = len(tuned.chips.surveyed)
                else:
                    s, v, gate = base, base_val, "-"
                row.update(s)
                row["validation"] = v
                row["gate"] = gate
                row["minutes"] = round((time.monotonic() - start) / 60, 1)
                row["load"] = round(os.getloadavg()[0], 1)
                rows.append(row)
                if curve is not None:  # after every point: a run cut short keeps what it measured
                    curve.write_text(json.dumps(rows, indent=1))
                print(
                    f"| {variant} | {share} | {row['decisions']} | {row['confirmed']} "
                    f"| {row['false_positives']} | {reported} "
                    f"| {s['precision']:.3f} | {s['recall']:.3f} "
                    f"| {s['f1']:.3f} | {s['best_f1']:.3f} | {s['object_recall']:.3f} "
                    f"| {s['fp_objects_per_km2']:.0f} | {s['spurious_objects_per_km2']:.0f} "
                    f"| {v['f1']:.3f} | {v['fp_objects_per_km2']:.0f} "
                    f"| {gate} | {row.get('chips', '-')} ({row.get('skipped_chips', 0)} skipped) "
                    f"| {row['minutes']} | {row['load']} |",
                    flush=True,
                )
            office.engine.dispose()
        finally:
            EmbeddedCluster(root / "data" / "pg").stop()
            shutil.rmtree(root, ignore_errors=True)
    return rows


def summarise(folder: Path) -> None:
    """Print the mean (min-max) over the seeds of ``folder/curve-seed*.json`` per point."""
    curves = sorted(folder.glob("curve-seed*.json"))
    print(f"{len(curves)} curve files ({', '.join(c.stem for c in curves)})\n")
    print(
        "| variant | patrol share | decisions (per seed) | patrol reports | pixel F1 "
        "| best F1 (oracle) | object recall | FP objects /km² | spurious /km² | validation F1 "
        "| gate: promoted |"
    )
    print("| --- " * 11 + "|")
    # the same place on each seed's curve (the number of decidable detections may differ)
    points: dict[tuple[str, float, int], list[dict[str, Any]]] = {}
    for curve in curves:
        seen: dict[tuple[str, float], int] = {}
        for r in json.loads(curve.read_text()):
            key = (r["variant"], r.get("patrol", 0.0))
            place = seen.get(key, 0)
            seen[key] = place + 1
            points.setdefault((*key, place), []).append(r)

    def cell(values: list[float], digits: int) -> str:
        mean = float(np.mean(values))
        if len(values) == 1:
            return f"{mean:.{digits}f}"
        return f"{mean:.{digits}f} ({min(values):.{digits}f}-{max(values):.{digits}f})"

    for (variant, share, _), group in sorted(points.items()):
        promoted = sum(g["gate"] == "promoted" for g in group)
        judged = sum(g["gate"] != "-" for g in group)
        print(
            f"| {variant} | {share:g} | {'/'.join(str(g['decisions']) for g in group)} "
            f"| {'/'.join(str(g.get('patrol_reports', 0)) for g in group)} "
            f"| {cell([g['f1'] for g in group], 3)} | {cell([g['best_f1'] for g in group], 3)} "
            f"| {cell([g['object_recall'] for g in group], 3)} "
            f"| {cell([g['fp_objects_per_km2'] for g in group], 0)} "
            f"| {cell([g['spurious_objects_per_km2'] for g in group], 0)} "
            f"| {cell([g['validation']['f1'] for g in group], 3)} "
            f"| {f'{promoted} of {judged}' if judged else '-'} |"
        )


def main() -> None:
    """Run the loop for each number of decisions and print the curve."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--decisions", type=int, nargs="+", default=[0, 50, 200, 1000])
    parser.add_argument("--out", type=Path, default=Path("out/loop"))
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--pool",
        nargs="*",
        default=None,
        help="more review scenes (glob patterns of LEVIR/DSIFN pairs); default: the shipped "
        "model's validation pairs, neither trained on nor held out; with --parent simulation: "
        "the district (default DISTRICT; the parent is trained without it, use another --out)",
    )
    parser.add_argument(
        "--no-egy", dest="egy", action="store_false", help="leave egy_256 out of the review pool"
    )
    parser.add_argument(
        "--distill",
        type=float,
        default=FINE_TUNE["distill_unknown"],
        help="weight of distillation on unknown pixels (0: off; for the side-by-side figures)",
    )
    parser.add_argument(
        "--train-norm",
        action="store_true",
        help="re-estimate batch-norm statistics on the chips (off in --from-reviews)",
    )
    parser.add_argument(
        "--parent",
        choices=("shipped", "simulation"),
        default="shipped",
        help="simulation: train (or reuse, OUT/parent) the shipped recipe without the district "
        "scenes and review those",
    )
    parser.add_argument(
        "--parent-only", action="store_true", help="only train the simulation parent"
    )
    parser.add_argument(
        "--variants",
        nargs="+",
        choices=VARIANTS,
        default=list(VARIANTS),
        help="with --parent simulation: what a confirmation records (model: the detection's "
        "outline; surveyed: the case verified on site with the labelled building's outline)",
    )
    parser.add_argument(
        "--patrol",
        type=float,
        nargs="+",
        default=[0.0],
        help="with --parent simulation: share(s) of the labelled buildings that no detection "
        "matched which patrols report as verified cases, at the pace the detections are decided "
        "(0: none; each share is its own office)",
    )
    parser.add_argument(
        "--lr", type=float, default=FINE_TUNE["lr"], help="fine-tuning peak lr (simulation)"
    )
    parser.add_argument(
        "--epochs", type=int, default=FINE_TUNE["epochs"], help="fine-tuning epochs (simulation)"
    )
    parser.add_argument(
        "--teaching",
        action="store_true",
        help="with --parent simulation: only print what the reviews of the parent's polygons "
        "would teach, seeded cores off and as set (no database, no fine-tuning)",
    )
    parser.add_argument(
        "--summarise",
        action="store_true",
        help="print the mean (min-max) over the seeds' curves in OUT (curve-seed*.json)",
    )
    args = parser.parse_args()
    if args.summarise:
        summarise(args.out)
        return
    # stopped with SIGTERM: unwind, so that the embedded cluster is stopped and its folder removed
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    torch.set_num_threads(1)
    if args.parent == "simulation":
        # the parent's seed stays the shipped recipe's (0): --seed changes the review order
        # and the fine-tuning only, so seeds measure the loop's own spread on one parent
        parent_path = simulation_parent(args.out / "parent", args.data, args.pool or DISTRICT)
        if args.parent_only:
            print(f"simulation parent: {parent_path}")
            return
        files = find_pairs([args.data / f for f in ("levir_256", "levir_1024", "dsifn_256")])
        district_files = [f for f in files if matches(f.name, args.pool or DISTRICT)]
        split = load_model(parent_path, "cpu").metadata["split"]
        seen = set(split["train"]) | set(split["validation"])
        seen_scenes = {f.scene for f in files if f.name in seen}
        held_scenes = {f.scene for f in files if matches(f.name, HELDOUT)}
        if any(f.scene in seen_scenes | held_scenes for f in district_files):
            parser.error("a district scene was trained on, validated on or is held out")
        district = [load_pair(f) for f in district_files]
        if args.teaching:
            teaching_signal(parent_path, district)
            return
        held = [
            load_pair(f) for f in drop_contained_crops([f for f in files if f.scene in held_scenes])
        ]
        print(
            f"simulation parent {parent_path}; district: {[p.name for p in district]}; "
            f"held-out: {[p.name for p in held]}\n"
        )
        val = [load_pair(f) for f in files if f.name in split["validation"]]
        args.out.mkdir(parents=True, exist_ok=True)
        tag = "-".join(args.variants) + "-patrol" + "-".join(f"{p:g}" for p in args.patrol)
        office_loop(
            args, parent_path, district, held, val, args.out / f"curve-seed{args.seed}-{tag}.json"
        )
        return
    model = load_model("tinysiam", device="cpu")
    files = find_pairs([args.data / f for f in ("levir_256", "levir_1024", "dsifn_256")])
    pool_files = find_pairs([args.data / "egy_256"]) if args.egy else []
    patterns = model.metadata["split"]["validation"] if args.pool is None else args.pool
    pool_files += [f for f in files if matches(f.name, patterns)]
    if any(matches(f.name, HELDOUT) for f in pool_files):
        parser.error("a review scene is one of the held-out pairs")
    shipped_split = model.metadata.get("split", {})
    trained = [f.name for f in pool_files if f.name in shipped_split.get("train", [])]
    if trained:
        parser.error(f"review scenes the shipped model was trained on: {trained}")
    pool = [load_pair(f) for f in pool_files]
    held = [
        load_pair(f) for f in drop_contained_crops([f for f in files if matches(f.name, HELDOUT)])
    ]
    found = detections(pool, model)
    order = np.random.default_rng(args.seed).permutation(len(found))
    found = [found[i] for i in order]
    n_true = sum(d["confirmed"] for d in found)
    print(f"review pool: {len(pool)} pairs, {len(found)} detections ({n_true} real changes)\n")
    print(
        "| decisions | confirmed | false positives | held-out pixel F1 | object recall "
        "| FP objects /km² | threshold | minutes |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    rows = []
    for wanted in args.decisions:
        decided = found[: min(wanted, len(found))]
        start = time.monotonic()
        if decided:
            run = args.out / f"n{len(decided)}"
            shutil.rmtree(run, ignore_errors=True)
            write_chips(run / "chips", pool, decided)
            config = TrainConfig(
                network=model.network,
                crop=CHIP_PX,
                gsd_m=model.gsd_m,
                min_area_m2=MIN_AREA_M2,
                device="cpu",
                threads=1,
                seed=args.seed,
                init_weights=str(shipped_weights(model.network)),
                fixed_threshold=model.threshold,
                **{
                    **FINE_TUNE,
                    "distill_unknown": args.distill,
                    "freeze_norm": not args.train_norm,
                },
            )
            tuned = load_model(train([run / "chips"], run, config).weights, "cpu")
        else:
            tuned = model
        s = summary_line(evaluate_pairs(tuned, held, None, None, MIN_AREA_M2))
        row = {
            "decisions": len(decided),
            "confirmed": sum(d["confirmed"] for d in decided),
            "false_positives": sum(not d["confirmed"] for d in decided),
            **s,
            "minutes": round((time.monotonic() - start) / 60, 1),
        }
        rows.append(row)
        print(
            f"| {row['decisions']} | {row['confirmed']} | {row['false_positives']} | {s['f1']:.3f} "
            f"| {s['object_recall']:.3f} | {s['fp_objects_per_km2']:.0f} | {s['threshold']:.2f} "
            f"| {row['minutes']} |",
            flush=True,
        )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "curve.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
