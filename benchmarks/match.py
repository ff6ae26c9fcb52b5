"""Benchmark: match 100,000 detections against 1,000,000 cases in PostGIS, and with geopandas.

    uv run --frozen python benchmarks/match.py [--cases 1000000] [--detections 100000]

Generates (seeded) 1,000,000 small case polygons over a 30 × 30 km area of Baoshan in EPSG:4549,
20,000 permits, 14 街镇 and 625 居村, bulk-loads them with COPY into a scratch database on the
configured server (WEIJIAN_DATABASE_URL) or the embedded cluster, then

1. geopandas: reads cases, permits, units and detections from the database (``read_postgis``,
   the load an analyst's geopandas path pays) and classifies with ``sjoin`` + shapely
   intersection areas, the same rules as the SQL;
2. SQL: loads the detections with COPY (``gis_db.runs.load_detections``) and runs
   ``gis_db.matching.match_run`` (GiST indexes, one statement, rebound automation included).

Prints each load and match time, the totals, and how many detections both paths classed alike.
The scratch database is dropped at the end.
"""

from __future__ import annotations

import argparse
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

from gis_db import matching, runs, schema
from gis_db.workflow import ACTIVE_CASE_STATES, CLOSED_CASE_STATES

CRS = "EPSG:4549"
SRID = 4549
X0, Y0 = 615_000.0, 3_465_000.0  # south-west corner of the 30 × 30 km area (宝山区)
SPAN = 30_000.0
THRESHOLD, TOLERANCE = 0.3, 2.0


@contextmanager
def timed(label: str, store: dict[str, float]) -> Iterator[None]:
    start = time.perf_counter()
    yield
    store[label] = time.perf_counter() - start
    print(f"  {label:<42s} {store[label]:8.1f} s", flush=True)


@contextmanager
def scratch_database() -> Iterator[Engine]:
    """A new database on the configured server (or the embedded cluster), dropped afterwards."""
    from weijian.database import database_url

    server = database_url()
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    name = f"weijian_bench_{uuid.uuid4().hex[:8]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(server).set(database=name)
    if url.drivername in ("postgresql", "postgres"):
        url = url.set(drivername="postgresql+psycopg")
    engine = create_engine(url)
    try:
        schema.upgrade(engine, CRS)
        yield engine
    finally:
        engine.dispose()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def rectangles(
    rng: np.random.Generator, n: int, lo: float, hi: float, centres: np.ndarray | None = None
) -> np.ndarray:
    """``n`` axis-parallel rectangles lo-hi m a side, random or around given centres."""
    if centres is None:
        centres = np.column_stack([X0 + rng.uniform(0, SPAN, n), Y0 + rng.uniform(0, SPAN, n)])
    w, h = rng.uniform(lo, hi, (2, n))
    cx, cy = centres[:, 0], centres[:, 1]
    return shapely.box(cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)


def copy_rows(engine: Engine, table: str, columns: str, rows: Iterator[tuple]) -> None:
    with engine.begin() as conn:
        raw = conn.connection.driver_connection
        with raw.cursor() as cur, cur.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)


def ewkb(geoms: np.ndarray) -> np.ndarray:
    multi = shapely.multipolygons(geoms, indices=np.arange(len(geoms)))
    return shapely.to_wkb(shapely.set_srid(multi, SRID), hex=True, include_srid=True)


def load_inventory(engine: Engine, rng: np.random.Generator, n_cases: int) -> np.ndarray:
    """COPY cases, permits and units; returns the case polygons (for placing detections)."""
    cases = rectangles(rng, n_cases, 5, 40)
    closed = rng.random(n_cases) < 0.02
    active = np.array([s.value for s in ACTIVE_CASE_STATES])
    states = np.where(
        closed, CLOSED_CASE_STATES[0].value, active[rng.integers(0, len(active), n_cases)]
    )
    areas = shapely.area(cases)
    with engine.begin() as conn:
        conn.execute(text("DROP INDEX inventory_case_geom_idx"))
    chunk = 100_000
    for start in range(0, n_cases, chunk):
        part = slice(start, start + chunk)
        hexes = ewkb(cases[part])
        copy_rows(
            engine,
            "inventory_case",
            "case_number, area_m2, state, geom",
            (
                (f"B{start + i:07d}", float(a), s, g)
                for i, (a, s, g) in enumerate(zip(areas[part], states[part], hexes, strict=True))
            ),
        )
    permits = rectangles(rng, 20_000, 20, 120)
    copy_rows(
        engine,
        "permit",
        "permit_number, valid_from, geom",
        ((f"P{i:06d}", "2025-01-01", g) for i, g in enumerate(ewkb(permits))),
    )
    strip = SPAN / 14
    towns = [shapely.box(X0 + i * strip, Y0, X0 + (i + 1) * strip, Y0 + SPAN) for i in range(14)]
    copy_rows(
        engine,
        "street_town",
        "code, name, geom",
        ((f"ST{i:02d}", f"街镇{i}", g) for i, g in enumerate(ewkb(np.array(towns)))),
    )
    cell = SPAN / 25
    villages = [
        (
            f"V{i:02d}{j:02d}",
            f"ST{min(int((i + 0.5) * cell / strip), 13):02d}",
            shapely.box(X0 + i * cell, Y0 + j * cell, X0 + (i + 1) * cell, Y0 + (j + 1) * cell),
        )
        for i in range(25)
        for j in range(25)
    ]
    hexes = ewkb(np.array([v[2] for v in villages]))
    copy_rows(
        engine,
        "village",
        "code, name, street_town_code, geom",
        ((c, f"居村{c}", s, g) for (c, s, _), g in zip(villages, hexes, strict=True)),
    )
    with engine.begin() as conn:
        conn.execute(
            text("CREATE INDEX inventory_case_geom_idx ON inventory_case USING gist (geom)")
        )
        conn.execute(
            text("ANALYZE inventory_case; ANALYZE permit; ANALYZE street_town; ANALYZE village")
        )
    return cases


def make_detections(rng: np.random.Generator, cases: np.ndarray, n: int) -> gpd.GeoDataFrame:
    """60 % on cases (jittered by up to 3 m), 40 % anywhere; 10 % 'disappeared'."""
    on_case = int(n * 0.6)
    picked = cases[rng.integers(0, len(cases), on_case)]
    centres = shapely.get_coordinates(shapely.centroid(picked)) + rng.uniform(-3, 3, (on_case, 2))
    geoms = np.concatenate(
        [rectangles(rng, on_case, 5, 35, centres), rectangles(rng, n - on_case, 5, 35)]
    )
    kinds = np.where(rng.random(n) < 0.1, "disappeared", "appeared")
    return gpd.GeoDataFrame(
        {"change_kind": kinds, "score": rng.uniform(0.5, 1, n)}, geometry=geoms, crs=CRS
    )


def geopandas_match(
    cases: gpd.GeoDataFrame,
    permits: gpd.GeoDataFrame,
    towns: gpd.GeoDataFrame,
    villages: gpd.GeoDataFrame,
    det: gpd.GeoDataFrame,
) -> pd.DataFrame:
    """The SQL rules with sjoin + shapely: match class, 街镇 and 居村 per detection id."""
    buffered = gpd.GeoDataFrame(
        {"det": det["id"].to_numpy(), "kind": det["change_kind"].to_numpy()},
        geometry=det.geometry.buffer(TOLERANCE, join_style="mitre").to_numpy(),
        crs=CRS,
    )
    bg = buffered.geometry.to_numpy()

    def overlaps(other: gpd.GeoDataFrame) -> pd.DataFrame:
        pairs = gpd.sjoin(buffered, other, predicate="intersects", how="inner")
        left = buffered.index.get_indexer(pairs.index)
        right = other.index.get_indexer(pairs["index_right"])
        a, b = bg[left], other.geometry.to_numpy()[right]
        inter = shapely.area(shapely.intersection(a, b))
        pairs = pairs.assign(overlap=inter / np.minimum(shapely.area(a), shapely.area(b)))
        return pairs[pairs["overlap"] >= THRESHOLD]

    cand = []
    p = overlaps(permits)
    p = p[p["kind"] != "disappeared"]
    cand.append(
        pd.DataFrame(
            {
                "det": p["det"].to_numpy(),
                "prio": 1,
                "cls": "permitted",
                "overlap": p["overlap"].to_numpy(),
            }
        )
    )
    c = overlaps(cases)
    closed = c["state"].isin([s.value for s in CLOSED_CASE_STATES]).to_numpy()
    gone = (c["kind"] == "disappeared").to_numpy()
    keep = ~gone | ~closed
    closed, gone = closed[keep], gone[keep]
    cand.append(
        pd.DataFrame(
            {
                "det": c["det"].to_numpy()[keep],
                "overlap": c["overlap"].to_numpy()[keep],
                "prio": np.where(gone, 1, np.where(closed, 2, 3)),
                "cls": np.where(
                    gone, "demolition_evidence", np.where(closed, "rebound", "known_case")
                ),
            }
        )
    )
    best = (
        pd.concat(cand)
        .sort_values(["det", "prio", "overlap"], ascending=[True, True, False])
        .drop_duplicates("det")
        .set_index("det")["cls"]
    )
    default = pd.Series(
        np.where(det["change_kind"] == "disappeared", "unrelated", "new_suspect"),
        index=det["id"].to_numpy(),
    )
    out = pd.DataFrame({"match_class": best.combine_first(default)})
    for name, units in (("street_town_code", towns), ("village_code", villages)):
        pairs = gpd.sjoin(det, units, predicate="intersects", how="inner")
        right = units.index.get_indexer(pairs["index_right"])
        left = det.index.get_indexer(pairs.index)
        area = shapely.area(
            shapely.intersection(det.geometry.to_numpy()[left], units.geometry.to_numpy()[right])
        )
        top = (
            pairs.assign(a=area)
            .sort_values(["a", "code"], ascending=[False, True])
            .drop_duplicates("id")
            .set_index("id")["code"]
        )
        out[name] = top.reindex(out.index)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=1_000_000)
    parser.add_argument("--detections", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=2026)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    t: dict[str, float] = {}
    print(f"match benchmark: {args.detections:,} detections against {args.cases:,} cases")
    with scratch_database() as engine:
        print("set-up (shared by both paths)")
        with timed("generate + COPY cases, permits, units", t):
            case_geoms = load_inventory(engine, rng, args.cases)
        det_frame = make_detections(rng, case_geoms, args.detections)
        del case_geoms
        print("SQL path: load detections")
        before, after = (
            runs.register_scene(
                engine,
                checksum=f"bench-{k}",
                footprint=shapely.box(X0, Y0, X0 + SPAN, Y0 + SPAN),
                acquired_at=pd.Timestamp(day).to_pydatetime(),
                platform="drone",
                crs=CRS,
            )
            for k, day in (("before", "2026-03-01"), ("after", "2026-06-01"))
        )
        run_id = runs.create_run(
            engine,
            before_scene_id=before,
            after_scene_id=after,
            network="bench",
            weights_checksum="bench",
        )
        with timed("SQL: load detections (COPY)", t):
            runs.load_detections(engine, run_id, det_frame)
        print("geopandas path")
        with timed("geopandas: read_postgis cases/permits/units", t), engine.connect() as conn:
            cases = gpd.read_postgis(
                "SELECT id, state, geom FROM inventory_case", conn, geom_col="geom"
            )
            permits = gpd.read_postgis("SELECT id, geom FROM permit", conn, geom_col="geom")
            towns = gpd.read_postgis("SELECT code, geom FROM street_town", conn, geom_col="geom")
            villages = gpd.read_postgis("SELECT code, geom FROM village", conn, geom_col="geom")
        with timed("geopandas: read_postgis detections", t), engine.connect() as conn:
            det = gpd.read_postgis(
                text("SELECT id, change_kind, geom FROM detection WHERE run_id = :r"),
                conn,
                geom_col="geom",
                params={"r": run_id},
            )
        with timed("geopandas: sjoin + overlap + classes", t):
            gpd_classes = geopandas_match(cases, permits, towns, villages, det)
        del cases, permits
        print("SQL path: match")
        with timed("SQL: match_run (PostGIS, GiST)", t):
            summary = matching.match_run(
                engine, run_id, overlap_threshold=THRESHOLD, tolerance_m=TOLERANCE
            )
        with engine.connect() as conn:
            sql_classes = pd.read_sql_query(
                text(
                    "SELECT id, match_class, street_town_code, village_code FROM detection "
                    "WHERE run_id = :r"
                ),
                conn,
                params={"r": run_id},
                index_col="id",
            )
    both = sql_classes.merge(
        gpd_classes, left_index=True, right_index=True, how="left", suffixes=("", "_gpd")
    )
    agree = float((both["match_class"] == both["match_class_gpd"]).mean())
    agree_units = float(
        (
            (both["street_town_code"] == both["street_town_code_gpd"])
            & (both["village_code"] == both["village_code_gpd"])
        ).mean()
    )
    sql_total = t["SQL: load detections (COPY)"] + t["SQL: match_run (PostGIS, GiST)"]
    gpd_load = (
        t["geopandas: read_postgis cases/permits/units"] + t["geopandas: read_postgis detections"]
    )
    gpd_total = gpd_load + t["geopandas: sjoin + overlap + classes"]
    print("results")
    print(f"  classes (SQL): {summary.counts}; rebounds raised: {len(summary.rebound_case_ids)}")
    print(
        f"  same class in both paths: {agree:.2%}, same 街镇 and 居村: {agree_units:.2%} "
        f"of {len(sql_classes):,} detections"
    )
    print(f"  SQL total (load detections + match):        {sql_total:8.1f} s")
    print(f"  geopandas total (read from DB + sjoin):     {gpd_total:8.1f} s")
    print(
        f"  geopandas match alone (data in memory):     "
        f"{t['geopandas: sjoin + overlap + classes']:8.1f} s"
    )


if __name__ == "__main__":
    main()
