"""Benchmark: import 100,000 generated cases, query one 街镇, re-import the same file.

    uv run --frozen python benchmarks/inventory_import.py [--cases 100000] [--seed 42]

Generates seeded cases (rectangles of 20-800 m²) in 宝山区 (lon 121.40-121.50, lat
31.30-31.42) as a GeoPackage in EPSG:4549, loads a 4 x 4 grid of 街镇, then runs the same code
path as ``weijian inventory import`` (gis_db.inventory_io.import_cases_file) in-process.

Database: a fresh scratch database, dropped afterwards, on the server named by
``WEIJIAN_BENCH_SERVER_URL`` (a role allowed to CREATE DATABASE) or, when unset, on a private
embedded cluster started in a temporary folder. Prints rows/s for read + validate and for the
load separately and in total, then the "cases in this 街镇" query time and the re-import time.
Aim: 100,000 cases in under 60 s on a 2-core machine.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
import uuid
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from gis_db import schema
from gis_db.inventory import upsert_units
from gis_db.inventory_io import import_cases_file
from weijian_testdata.inventory import make_cases, street_town_grid, write_gpkg

WORKING_CRS = "EPSG:4549"
#: "cases in this 街镇": by the assigned code (indexed), and spatially (GiST)
QUERY_BY_CODE = (
    "SELECT id, case_number, area_m2, ST_AsBinary(geom) FROM inventory_case "
    "WHERE street_town_code = 'ST06'"
)
QUERY_SPATIAL = (
    "SELECT c.id, c.case_number, c.area_m2, ST_AsBinary(c.geom) FROM inventory_case c "
    "JOIN street_town s ON ST_Intersects(c.geom, s.geom) WHERE s.name = '测试06镇'"
)


def server_url() -> tuple[str, object | None]:
    """(maintenance URL, embedded cluster to stop afterwards or None)."""
    external = os.environ.get("WEIJIAN_BENCH_SERVER_URL")
    if external:
        return external, None
    from gis_db.embedded import EmbeddedCluster

    root = Path(tempfile.mkdtemp(prefix="weijian-bench-pg-"))
    root.chmod(0o755)  # the postgres system user must enter it when we are root
    cluster = EmbeddedCluster(root)
    return cluster.start(), cluster


def run(n_cases: int, seed: int) -> None:
    url, cluster = server_url()
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    name = f"weijian_bench_{uuid.uuid4().hex[:8]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    work = Path(tempfile.mkdtemp(prefix="weijian-bench-"))
    try:
        engine = create_engine(make_url(url).set(database=name))
        schema.upgrade(engine, WORKING_CRS)
        upsert_units(engine, "street_town", street_town_grid(4, 4), actor="bench")

        t = time.perf_counter()
        path = work / "cases.gpkg"
        write_gpkg(make_cases(n_cases, seed=seed), path)
        print(
            f"generated {n_cases:,} cases into {path.name} "
            f"({path.stat().st_size / 1e6:.1f} MB) in {time.perf_counter() - t:.1f} s"
        )

        report = import_cases_file(engine, path, actor="bench")
        rv = report.timings["read"] + report.timings["validate"]
        load = report.timings["load"]
        print(
            f"import:   {report.created:,} created, {report.updated:,} updated, "
            f"{report.unchanged:,} unchanged, {len(report.rejected)} rejected"
        )
        print(
            f"  read + validate: {rv:6.2f} s  {n_cases / rv:10,.0f} rows/s "
            f"(read {report.timings['read']:.2f} s, validate {report.timings['validate']:.2f} s)"
        )
        print(
            f"  load (COPY, area, 街镇/居村, upsert, history): {load:6.2f} s  "
            f"{n_cases / load:10,.0f} rows/s"
        )
        print(
            f"  total:           {report.seconds:6.2f} s  {n_cases / report.seconds:10,.0f} rows/s"
            f"  (aim: < 60 s for 100,000)"
        )

        with engine.connect() as conn:
            conn.execute(text("ANALYZE inventory_case"))
            for label, sql in (("by code", QUERY_BY_CODE), ("spatial", QUERY_SPATIAL)):
                conn.execute(text(sql)).fetchall()  # warm the cache
                t = time.perf_counter()
                rows = conn.execute(text(sql)).fetchall()
                print(
                    f"query 'cases in this 街镇' ({label}): {len(rows):,} rows in "
                    f"{(time.perf_counter() - t) * 1000:.1f} ms"
                )

        again = import_cases_file(engine, path, actor="bench")
        print(
            f"re-import of the same file: {again.created} created, {again.updated} updated, "
            f"{again.unchanged:,} unchanged in {again.seconds:.2f} s"
        )
        engine.dispose()
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
        shutil.rmtree(work, ignore_errors=True)
        if cluster is not None:
            cluster.stop()  # type: ignore[attr-defined]
            shutil.rmtree(cluster.root, ignore_errors=True)  # type: ignore[attr-defined]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    run(args.cases, args.seed)


if __name__ == "__main__":
    main()
