"""Demolition evidence on the demo flight: the three ways of ``flight.demolition`` side by side.

For each mode (``full``: a second detection pass with the epochs swapped over the whole pair;
``cases``: the same pass only near the inventory's active cases; ``off``: nothing but the forward
pass's own ``change_kind`` cue), the demo flight (real LEVIR-CD imagery, seeded inventory, the
demo district) runs in a fresh embedded PostGIS, and the script prints the detect step's seconds,
the flight's total, the match classes, and for the demolition evidence: how many detections,
how many of them touch a true demolition (the LEVIR-CD labels of the swapped tiles), how many
distinct cases they name, and how many of the seeded demolished cases (DEMO-D*) they name.

    uv run --frozen python benchmarks/demolition.py                  # all three modes
    uv run --frozen python benchmarks/demolition.py --modes cases off
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def _one(mode: str, engine_name: str) -> None:
    """Run the demo flight in ``mode`` in this process (fresh data dir) and print its figures."""
    root = Path(tempfile.mkdtemp(prefix=f"weijian-bench-demolition-{mode}-"))
    root.chmod(0o755)
    os.environ["WEIJIAN_DATA_DIR"] = str(root)
    os.environ.pop("WEIJIAN_DATABASE_URL", None)
    os.environ["WEIJIAN_FLIGHT__DEMOLITION"] = mode
    os.environ["WEIJIAN_DETECTION__ENGINE"] = engine_name
    import geopandas as gpd
    import numpy as np
    import rasterio.features
    import torch
    from shapely.geometry import shape
    from sqlalchemy import text

    torch.set_num_threads(2)
    from gis_db.demo_district import generate
    from gis_db.embedded import EmbeddedCluster
    from ingest import describe_scene
    from weijian.cli.flight import flight_config
    from weijian.database import connect
    from weijian.demo_flight import seed_inventory, write_demo_flight
    from weijian.flight import catalogue_scene, run_flight
    from weijian.settings import get_settings

    settings = get_settings()
    try:
        engine = connect(settings)
        district = generate(settings.working_crs, n_cases=3000)
        district.load(engine, actor="bench", reason="bench")
        flight = write_demo_flight(root / "demo", settings.working_crs)
        seed_inventory(engine, flight, actor="bench")
        catalogue_scene(engine, describe_scene(flight.before), settings.working_crs)
        started = time.perf_counter()
        result = run_flight(engine, flight.after, config=flight_config(out_root=root / "flights"))
        total = time.perf_counter() - started
        steps = result.state["steps"]
        mask = (flight.truth == 2).astype(np.uint8)
        gone = gpd.GeoDataFrame(
            geometry=[
                shape(g)
                for g, _ in rasterio.features.shapes(
                    mask, mask=mask > 0, transform=flight.transform
                )
            ],
            crs=flight.crs,
        )
        with engine.connect() as conn:
            evidence = gpd.read_postgis(
                text(
                    "SELECT d.id, d.geom, c.case_number FROM detection d "
                    "JOIN inventory_case c ON c.id = d.matched_case_id "
                    "WHERE d.run_id = :r AND d.match_class = 'demolition_evidence'"
                ),
                conn,
                geom_col="geom",
                params={"r": result.run_id},
            )
            disappeared = conn.execute(
                text(
                    "SELECT count(*) FROM detection WHERE run_id = :r "
                    "AND change_kind = 'disappeared'"
                ),
                {"r": result.run_id},
            ).scalar_one()
        true_hits = (
            gpd.sjoin(evidence, gone, predicate="intersects").index.nunique()
            if len(evidence)
            else 0
        )
        seeded = sorted({n for n in evidence["case_number"] if str(n).startswith("DEMO-D")})
        area: dict[str, Any] = {}
        record = result.folder / "detect_reverse_area.json"
        if record.is_file():
            import json

            area = json.loads(record.read_text(encoding="utf-8"))
        counts = steps["match"]["result"]["counts"]
        print(f"\nmode {mode} (engine {engine_name})")
        print(
            f"  detect step {float(steps['detect']['seconds']):.1f} s; flight total {total:.1f} s"
        )
        if area:
            print(
                f"  swapped pass area: {area['active_cases']} active cases, "
                f"{area['share_of_pair']:.1%} of the pair"
            )
        print(f"  disappeared detections loaded: {disappeared}")
        print(f"  classes: {counts}")
        print(
            f"  demolition evidence: {len(evidence)} detections, {true_hits} touch a true "
            f"demolition ({true_hits / max(len(evidence), 1):.0%}), "
            f"{evidence['case_number'].nunique()} cases, seeded demolished cases named: "
            f"{', '.join(seeded) or 'none'} of DEMO-D1..3"
        )
        engine.dispose()
    finally:
        EmbeddedCluster(root / "pg").stop()
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    """Run each mode in a fresh process (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modes", nargs="+", default=["full", "cases", "off"])
    parser.add_argument("--engine", default="onnxruntime", choices=["torch", "onnxruntime"])
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        _one(args.one, args.engine)
        return
    for mode in args.modes:
        subprocess.run(
            [sys.executable, __file__, "--one", mode, "--engine", args.engine], check=True
        )


if __name__ == "__main__":
    main()
