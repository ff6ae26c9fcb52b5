"""Writing the aligned pair as COGs with the working grid's georeference, plus the report."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio

import ingest
from weijian_testdata import rasters as data_gen


def test_write_cogs_and_report(tmp_path: Path, ground: Path) -> None:
    after = data_gen.resample_to(
        ground, tmp_path / "after_20240315.tif", "EPSG:32651", 1.0, offset_m=(0.5, 0.0)
    )
    pair = ingest.prepare_pair(ground, after)
    written = ingest.write_pair_cogs(pair, tmp_path / "out")
    report_path = ingest.write_report(pair, tmp_path / "out", written)
    for name in ("before", "after"):
        with rasterio.open(tmp_path / "out" / f"{name}.tif") as ds:
            assert ds.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
            assert ds.crs.to_epsg() == 4549 and tuple(ds.transform)[:6] == pytest.approx(
                pair.transform
            )
            assert (ds.width, ds.height, ds.count, ds.dtypes[0]) == (
                pair.width,
                pair.height,
                3,
                "uint8",
            )
            assert ds.overviews(1) == [2]
            assert 0.9 < (ds.dataset_mask() > 0).mean() <= 1.0
    report = json.loads(report_path.read_text())
    assert report["grid"]["crs"] == "EPSG:4549" and report["grid"]["gsd_m"] == 0.5
    assert report["shift"]["dx_m"] == pytest.approx(0.5, abs=0.1)
    assert 0.9 < report["valid_fraction"] <= 1 and report["overlap_fraction"] > 0.9
    assert ingest.AlignedPair.load(tmp_path / "out" / "pair.json") == pair
    with (
        rasterio.open(tmp_path / "out" / "before.tif") as b,
        rasterio.open(tmp_path / "out" / "after.tif") as a,
    ):
        diff = np.abs(b.read(1).astype(int) - a.read(1).astype(int))[100:400, 100:400]
    assert diff.mean() < 20
