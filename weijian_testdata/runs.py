"""Tiny seeded test data for runs, matching and workflow: units, cases, permits, scenes, runs.

Coordinates are metres in EPSG:4549 around Baoshan (宝山区): (X0, Y0) is the local origin;
``rect(x, y, w, h)`` is a rectangle with its lower-left corner x, y metres from there.
Cases, permits and units are inserted with raw SQL (independent of the inventory importer).
"""

from __future__ import annotations

from datetime import date, datetime

import geopandas as gpd
import numpy as np
import shapely
from shapely.geometry import Polygon, box
from sqlalchemy import Engine, text

from gis_db import runs

X0, Y0 = 630_000.0, 3_470_000.0
CRS = "EPSG:4549"
BEFORE = datetime(2026, 3, 1, 10, 0)
AFTER = datetime(2026, 6, 1, 10, 0)


def rect(x: float, y: float, w: float = 10.0, h: float = 10.0) -> Polygon:
    """A w × h m rectangle whose lower-left corner is (x, y) m from the origin."""
    return box(X0 + x, Y0 + y, X0 + x + w, Y0 + y + h)


def add_street_town(engine: Engine, code: str, name: str, geom: Polygon) -> None:
    """A 街镇 with boundary ``geom`` (EPSG:4549, m)."""
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO street_town (code, name, geom) VALUES "
                "(:c, :n, ST_Multi(ST_GeomFromText(:g, 4549)))"
            ),
            {"c": code, "n": name, "g": geom.wkt},
        )


def add_village(engine: Engine, code: str, name: str, street_town: str, geom: Polygon) -> None:
    """A 居村 of ``street_town`` with boundary ``geom`` (EPSG:4549, m)."""
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO village (code, name, street_town_code, geom) VALUES "
                "(:c, :n, :s, ST_Multi(ST_GeomFromText(:g, 4549)))"
            ),
            {"c": code, "n": name, "s": street_town, "g": geom.wkt},
        )


def add_case(
    engine: Engine, number: str, geom: Polygon, state: str = "open", street_town: str | None = None
) -> int:
    """Insert a case directly in ``state`` (test set-up, bypassing the workflow)."""
    with engine.begin() as conn:
        return int(
            conn.execute(
                text(
                    "INSERT INTO inventory_case (case_number, area_m2, state, street_town_code, "
                    "geom) "
                    "VALUES (:n, :a, :s, :st, ST_Multi(ST_GeomFromText(:g, 4549))) RETURNING id"
                ),
                {"n": number, "a": geom.area, "s": state, "st": street_town, "g": geom.wkt},
            ).scalar_one()
        )


def write_off_demolished(engine: Engine, case_id: int) -> None:
    """Write off a case added in ``write_off_requested``: demolished, asked for by ``yuepu``.

    The office's ``lead`` (the second person) approves it through the workflow; re-inspection
    is due 30 days later.
    """
    from gis_db import workflow

    with engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE inventory_case SET disposal = 'demolish', "
                "write_off_requested_by = 'yuepu' WHERE id = :i"
            ),
            {"i": case_id},
        )
    workflow.transition_case(engine, case_id, "write_off", actor="lead", reinspection_days=30)


def add_permit(
    engine: Engine, number: str, geom: Polygon, valid_from: date, valid_to: date | None = None
) -> int:
    """A building permit (审批) valid from ``valid_from`` to ``valid_to``; returns its id."""
    with engine.begin() as conn:
        return int(
            conn.execute(
                text(
                    "INSERT INTO permit (permit_number, valid_from, valid_to, geom) "
                    "VALUES (:n, :f, :t, ST_Multi(ST_GeomFromText(:g, 4549))) RETURNING id"
                ),
                {"n": number, "f": valid_from, "t": valid_to, "g": geom.wkt},
            ).scalar_one()
        )


def add_scenes(
    engine: Engine,
    extent: Polygon | None = None,
    tag: str = "a",
    paths: tuple[str | None, str | None] = (None, None),
) -> tuple[int, int]:
    """Register a before and an after scene covering ``extent`` (default 2 × 2 km)."""
    extent = extent or rect(-1000, -1000, 2000, 2000)
    before, after = (
        runs.register_scene(
            engine,
            checksum=f"{label}-{tag}",
            footprint=extent,
            acquired_at=when,
            platform="drone",
            gsd_m=0.05,
            path=path,
            crs=CRS,
        )
        for label, when, path in (("before", BEFORE, paths[0]), ("after", AFTER, paths[1]))
    )
    return before, after


def frame(
    geoms: list[Polygon], kinds: list[str] | None = None, scores: list[float] | None = None
) -> gpd.GeoDataFrame:
    """A detections frame as change_detection would hand it over."""
    data = {
        "change_kind": kinds or ["appeared"] * len(geoms),
        "score": scores or [0.9] * len(geoms),
    }
    return gpd.GeoDataFrame(data, geometry=list(geoms), crs=CRS)


def make_run(
    engine: Engine,
    geoms: list[Polygon],
    kinds: list[str] | None = None,
    tag: str = "a",
    params: dict | None = None,
) -> int:
    """Scenes, a run and its loaded detections; returns the run id."""
    before, after = add_scenes(engine, tag=tag)
    run_id = runs.create_run(
        engine,
        before_scene_id=before,
        after_scene_id=after,
        network="tinysiam",
        weights_checksum="w0",
        params=params or {},
    )
    runs.load_detections(engine, run_id, frame(geoms, kinds))
    return run_id


def random_rects(n: int, seed: int = 0, span: float = 1500.0) -> list[Polygon]:
    """``n`` seeded small rectangles (4-30 m a side) scattered over ``span`` m."""
    rng = np.random.default_rng(seed)
    xs, ys = rng.uniform(-span / 2, span / 2, (2, n))
    ws, hs = rng.uniform(4, 30, (2, n))
    return list(shapely.box(X0 + xs, Y0 + ys, X0 + xs + ws, Y0 + ys + hs))


def detection_ids(engine: Engine, run_id: int) -> list[int]:
    """The ids of ``run_id``'s detections in load order."""
    with engine.connect() as conn:
        return list(
            conn.execute(
                text("SELECT id FROM detection WHERE run_id = :r ORDER BY seq"), {"r": run_id}
            ).scalars()
        )
