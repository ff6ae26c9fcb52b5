"""Dispatch packages: one folder per 街镇 with GeoPackage, Chinese Excel sheet and image chips."""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import rasterio
from rasterio.transform import from_origin
from sqlalchemy import Engine

from gis_db import dispatch, matching, runs, workflow
from gis_db.errors import InvalidInputError
from weijian_testdata.runs import (
    CRS,
    X0,
    Y0,
    add_case,
    add_scenes,
    add_street_town,
    detection_ids,
    frame,
    rect,
)


def _tif(path: Path, value: int) -> str:
    """A 400 × 400 px, 0.5 m RGB GeoTIFF over the factory's origin (EPSG:4549)."""
    data = np.full((3, 400, 400), value, dtype=np.uint8)
    data[:, 100:200, 100:200] = 255 - value
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=400,
        height=400,
        count=3,
        dtype="uint8",
        crs=CRS,
        transform=from_origin(X0 - 50, Y0 + 150, 0.5, 0.5),
    ) as dst:
        dst.write(data)
    return str(path)


def _run(engine: Engine, paths: tuple[str | None, str | None]) -> int:
    add_street_town(engine, "A", "月浦镇", rect(-100, -100, 100, 300))
    add_street_town(engine, "B", "罗店镇", rect(0, -100, 200, 300))
    add_case(engine, "K", rect(60, 60, 10, 10), state="open")
    before, after = add_scenes(engine, paths=paths)
    run_id = runs.create_run(
        engine, before_scene_id=before, after_scene_id=after, network="n", weights_checksum="w"
    )
    runs.load_detections(
        engine,
        run_id,
        frame([rect(-30, 10), rect(10, 10), rect(30, 30), rect(60, 60), rect(9000, 0)]),
    )
    matching.match_run(engine, run_id)
    return run_id


def test_packages_per_street_town_with_chips(engine: Engine, tmp_path: Path) -> None:
    paths = (_tif(tmp_path / "before.tif", 40), _tif(tmp_path / "after.tif", 200))
    run_id = _run(engine, paths)
    rejected = detection_ids(engine, run_id)[2]
    workflow.review_detection(engine, rejected, "false_positive", actor="r")
    packages = dispatch.write_dispatch_packages(engine, run_id, tmp_path / "out")
    by_code = {p.street_town_code: p for p in packages}
    assert sorted(by_code) == ["A", "B", "unassigned"]
    assert [by_code[c].n_suspects for c in ("A", "B", "unassigned")] == [1, 1, 1]  # known + FP out
    b = by_code["B"]
    assert b.folder.name == "B_罗店镇" and b.n_chips == 2
    layer = gpd.read_file(b.gpkg, layer=dispatch.LAYER)
    assert layer.crs.to_epsg() == 4549 and layer.loc[0, "比对结果"] == "新增疑似"
    sheet = pd.read_excel(b.xlsx)
    assert {"序号", "街镇", "面积(平方米)", "前时相截图", "后时相截图", "核查结果"} <= set(
        sheet.columns
    )
    assert sheet.loc[0, "街镇"] == "罗店镇" and sheet.loc[0, "面积(平方米)"] == pytest.approx(100)
    assert 121 < sheet.loc[0, "经度(CGCS2000)"] < 122 and 31 < sheet.loc[0, "纬度(CGCS2000)"] < 32
    for chip in (sheet.loc[0, "前时相截图"], sheet.loc[0, "后时相截图"]):
        assert (b.folder / chip).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # writing again overwrites the same files
    again = dispatch.write_dispatch_packages(engine, run_id, tmp_path / "out")
    assert [p.gpkg for p in again] == [p.gpkg for p in packages]
    # chips cut on one thread and on several are the same files, byte for byte
    one = dispatch.write_dispatch_packages(engine, run_id, tmp_path / "one", chip_threads=1)
    four = dispatch.write_dispatch_packages(engine, run_id, tmp_path / "four", chip_threads=4)
    chips = sorted(p.relative_to(tmp_path / "one") for p in (tmp_path / "one").rglob("*.png"))
    assert len(chips) == 6
    assert chips == sorted(
        p.relative_to(tmp_path / "four") for p in (tmp_path / "four").rglob("*.png")
    )
    for chip in chips:
        assert (tmp_path / "one" / chip).read_bytes() == (tmp_path / "four" / chip).read_bytes()
    assert [p.n_chips for p in one] == [p.n_chips for p in four]


def test_packages_without_images_have_no_chips(engine: Engine, tmp_path: Path) -> None:
    run_id = _run(engine, ("/nonexistent/before.tif", None))
    packages = dispatch.write_dispatch_packages(engine, run_id, tmp_path)
    assert all(p.n_chips == 0 for p in packages)
    assert pd.read_excel(packages[0].xlsx)["前时相截图"].isna().all()


def test_unmatched_run_is_refused(engine: Engine, tmp_path: Path) -> None:
    before, after = add_scenes(engine)
    run_id = runs.create_run(
        engine, before_scene_id=before, after_scene_id=after, network="n", weights_checksum="w"
    )
    with pytest.raises(InvalidInputError, match="runs match"):
        dispatch.write_dispatch_packages(engine, run_id, tmp_path)
