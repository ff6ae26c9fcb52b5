"""Chaining change detection into the database: a finished ``detect`` output becomes a run.

:func:`load_detect_output` registers both scenes of the pair (by file checksum), creates the
detection run (its key: scenes, network, weights and the detection's parameters) and loads the
change polygons with :func:`gis_db.runs.load_detections`. Every step is idempotent: calling it
again with the same output returns the same run id and changes nothing.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from weijian.errors import WeijianError

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from change_detection.detect import DetectResult
    from ingest import AlignedPair

log = logging.getLogger(__name__)


def _acquired(scene: Any, spec: Any, epoch: str) -> Any:
    from datetime import datetime

    if scene.acquired is not None:
        return scene.acquired
    if spec.acquired:
        return datetime.fromisoformat(spec.acquired)
    raise WeijianError(
        f"the {epoch} image {spec.source} has no acquisition date, which a detection run needs: "
        'add a sidecar NAME.json with {"acquired": "2024-03-15T10:00"} and prepare the pair again'
    )


def register_pair_scenes(engine: Engine, pair: AlignedPair) -> tuple[int, int]:
    """Register the pair's two source images as scenes (idempotent); returns their ids."""
    from gis_db.runs import register_scene
    from ingest import describe_scene, stac_item

    ids = []
    for epoch in ("before", "after"):
        spec = getattr(pair, epoch)
        scene = describe_scene(spec.source)
        ids.append(
            register_scene(
                engine,
                checksum=scene.sha256,
                footprint=scene.footprint_in(pair.crs),
                acquired_at=_acquired(scene, spec, epoch),
                platform=scene.platform,
                gsd_m=scene.gsd_m,
                path=spec.source,
                stac_item=stac_item(scene),
                crs=pair.crs,
            )
        )
    return ids[0], ids[1]


def run_params(meta: dict[str, Any]) -> dict[str, Any]:
    """The parameters that identify a detection run (they enter its run key)."""
    return {
        "detect_key": meta["key"],
        "engine": meta["engine"],
        "threshold": meta["threshold"],
        "min_area_m2": meta["vectorize"]["min_area_m2"],
        "tile_px": meta["tile_px"],
        "overlap_px": meta["overlap_px"],
        "pair_gsd_m": meta["pair_gsd_m"],
        "network_gsd_m": meta["network_gsd_m"],
        # only when on, so that runs made before TTA existed keep their keys
        **({"tta": True} if meta.get("tta") else {}),
    }


def load_detect_output(
    engine: Engine,
    pair: AlignedPair | str | Path | None,
    detect: DetectResult | str | Path,
) -> int:
    """Register the scenes, create the run and load the polygons of a finished detection.

    Args:
        engine: the database (``weijian.database.connect()``), working CRS = the pair's CRS.
        pair: the aligned pair (or its ``pair.json``/folder); ``None``: the spec in detect.json.
        detect: a :class:`DetectResult` or the output folder of ``weijian detect``.

    Returns:
        The database id of the detection run (the same id when called again).
    """
    from change_detection.detect import DetectResult, resolve_pair
    from gis_db.runs import create_run, load_detections
    from ingest import AlignedPair

    result = detect if isinstance(detect, DetectResult) else DetectResult.open(detect)
    meta = result.meta
    spec = AlignedPair.from_dict(meta["pair"]) if pair is None else resolve_pair(pair)
    if json.dumps(spec.to_dict(), sort_keys=True) != json.dumps(meta["pair"], sort_keys=True):
        raise WeijianError(
            f"{result.out_dir} was detected on another pair than the one given: pass the pair "
            "that `weijian detect` was run on (or None to use the one recorded in detect.json)"
        )
    before_id, after_id = register_pair_scenes(engine, spec)
    run_id = create_run(
        engine,
        before_scene_id=before_id,
        after_scene_id=after_id,
        network=meta["network"],
        weights_checksum=meta["weights_checksum"],
        params=run_params(meta),
    )
    frame = result.polygons[["seq", "geometry"]].copy()
    frame["score"] = result.polygons["score_mean"].clip(0.0, 1.0)
    frame["change_kind"] = [
        k if k in ("appeared", "disappeared") else "changed" for k in result.polygons["change_kind"]
    ]
    loaded = load_detections(engine, run_id, frame, timings=meta.get("timings_s"))
    log.info(
        "run %d: %d detections %s",
        run_id,
        loaded.n_detections,
        "unchanged" if loaded.unchanged else f"loaded (replaced {loaded.replaced})",
    )
    return run_id
