"""Malformed inputs: each gives one clear line naming file, row and field; nothing is written."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import geopandas as gpd
import pytest
import shapely
from sqlalchemy import Engine, text

from gis_db.errors import InvalidInputError
from gis_db.inventory import upsert_cases
from gis_db.inventory_io import import_cases_file
from weijian_testdata.inventory import as_ledger, as_wkt_table, bowtie, make_cases, write_gpkg

Builder = Callable[[Path], tuple[Path, dict[str, Any]]]


def _gpkg(tmp: Path, edit: Callable[[gpd.GeoDataFrame], gpd.GeoDataFrame]) -> Path:
    """Six cases, changed by ``edit``, written as cases.gpkg."""
    cases = edit(make_cases(6, seed=3, prefix="BAD"))
    path = tmp / "cases.gpkg"
    write_gpkg(cases, path)
    return path


def no_crs(tmp: Path) -> tuple[Path, dict[str, Any]]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # pyogrio: "'crs' was not provided"
        return _gpkg(tmp, lambda c: c.set_crs(None, allow_override=True)), {}


def self_intersecting(tmp: Path) -> tuple[Path, dict[str, Any]]:
    def edit(c: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
        x, y = c.geometry.iloc[2].centroid.coords[0]
        c.loc[2, "geometry"] = bowtie(x, y)
        return c

    return _gpkg(tmp, edit), {}


def empty_file(tmp: Path) -> tuple[Path, dict[str, Any]]:
    path = tmp / "cases.gpkg"
    path.write_bytes(b"")
    return path, {}


def header_only_csv(tmp: Path) -> tuple[Path, dict[str, Any]]:
    path = tmp / "cases.csv"
    path.write_text("案件编号,WKT\n", encoding="utf-8")
    return path, {"crs": "EPSG:4549"}


def truncated_gpkg(tmp: Path) -> tuple[Path, dict[str, Any]]:
    path = tmp / "full.gpkg"
    write_gpkg(make_cases(2000, seed=4), path)
    data = path.read_bytes()
    cut = tmp / "cases.gpkg"
    cut.write_bytes(data[: len(data) // 2])
    return cut, {}


def wrong_encoding(tmp: Path) -> tuple[Path, dict[str, Any]]:
    table = as_wkt_table(make_cases(4, seed=5))[["case_number", "address", "WKT"]]
    table.loc[2, "address"] = "Caf\u00e9"  # saved as Latin-1: neither UTF-8 nor GBK
    table.loc[[0, 1, 3], "address"] = "Rue"
    path = tmp / "cases.csv"
    path.write_bytes(table.to_csv(index=False).encode("latin-1"))
    return path, {"crs": "EPSG:4549"}


def missing_required_column(tmp: Path) -> tuple[Path, dict[str, Any]]:
    return _gpkg(tmp, lambda c: c.rename(columns={"case_number": "序号"})), {}


def unknown_column_strict(tmp: Path) -> tuple[Path, dict[str, Any]]:
    def edit(c: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
        c["颜色"] = "红"
        return c

    return _gpkg(tmp, edit), {"strict": True}


def points_not_polygons(tmp: Path) -> tuple[Path, dict[str, Any]]:
    return _gpkg(tmp, lambda c: c.set_geometry(c.geometry.centroid)), {}


def outside_district(tmp: Path) -> tuple[Path, dict[str, Any]]:
    cases = make_cases(5, seed=6).to_crs("EPSG:4326")
    cases.loc[3, "geometry"] = shapely.box(116.39, 39.90, 116.3901, 39.9001)  # Beijing
    path = tmp / "cases.geojson"
    cases.to_file(path, driver="GeoJSON", engine="pyogrio")
    return path, {}


def duplicate_case_numbers(tmp: Path) -> tuple[Path, dict[str, Any]]:
    def edit(c: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
        c.loc[4, "case_number"] = c.loc[1, "case_number"]
        return c

    return _gpkg(tmp, edit), {}


def unknown_category(tmp: Path) -> tuple[Path, dict[str, Any]]:
    ledger = as_ledger(make_cases(5, seed=7))
    ledger.loc[1, "重点类型"] = "违章搭建"
    path = tmp / "cases.xlsx"
    as_wkt_table(ledger, "WKT (EPSG:4549)").to_excel(path, index=False)
    return path, {}


def future_date(tmp: Path) -> tuple[Path, dict[str, Any]]:
    ledger = as_ledger(make_cases(5, seed=8))
    ledger["发现日期"] = [str(d) for d in ledger["发现日期"]]
    ledger.loc[3, "发现日期"] = "2999-01-01"
    path = tmp / "cases.csv"
    as_wkt_table(ledger).to_csv(path, index=False, encoding="utf-8-sig")
    return path, {"crs": "EPSG:4549"}


def bad_wkt(tmp: Path) -> tuple[Path, dict[str, Any]]:
    table = as_wkt_table(make_cases(3, seed=9))
    table.loc[1, "WKT"] = "POLYGON((1 2, 3"
    path = tmp / "cases.csv"
    table.to_csv(path, index=False)
    return path, {"crs": "EPSG:4549"}


def lonlat_without_crs(tmp: Path) -> tuple[Path, dict[str, Any]]:
    path = tmp / "cases.csv"
    path.write_text("案件编号,经度,纬度,面积\nA1,121.45,31.35,120\n", encoding="utf-8")
    return path, {}


def lonlat_without_area(tmp: Path) -> tuple[Path, dict[str, Any]]:
    path = tmp / "cases.csv"
    path.write_text("案件编号,经度,纬度\nA1,121.45,31.35\n", encoding="utf-8")
    return path, {"crs": "EPSG:4490"}


def crs_contradiction(tmp: Path) -> tuple[Path, dict[str, Any]]:
    return _gpkg(tmp, lambda c: c), {"crs": "EPSG:4490"}


def missing_case_number(tmp: Path) -> tuple[Path, dict[str, Any]]:
    ledger = as_ledger(make_cases(4, seed=10))
    ledger.loc[2, "案件编号"] = None
    path = tmp / "cases.xlsx"
    as_wkt_table(ledger, "几何 (EPSG:4549)").to_excel(path, index=False)
    return path, {}


#: name -> (builder, substrings the one-line message must contain)
CASES: dict[str, tuple[Builder, list[str]]] = {
    "no CRS": (no_crs, ["cases.gpkg", "all rows", "field geometry", "no CRS", "--crs"]),
    "self-intersecting polygon": (
        self_intersecting,
        ["cases.gpkg", "row 3", "field geometry", "Self-intersection at x", "cannot be repaired"],
    ),
    "empty file": (empty_file, ["cases.gpkg", "empty (0 bytes)"]),
    "header but no rows": (header_only_csv, ["cases.csv", "no data rows"]),
    "truncated GeoPackage": (
        truncated_gpkg,
        ["cases.gpkg", "not a readable GeoPackage", "malformed"],
    ),
    "wrong encoding": (
        wrong_encoding,
        ["cases.csv", "row 4", "field address", "neither UTF-8 nor GBK"],
    ),
    "missing required column": (
        missing_required_column,
        ["cases.gpkg", "header row", "field case_number", "required column missing", "序号"],
    ),
    "unknown column (--strict)": (
        unknown_column_strict,
        ["cases.gpkg", "header row", "field 颜色", "unknown column"],
    ),
    "points instead of polygons": (
        points_not_polygons,
        ["cases.gpkg", "row 1", "field geometry", "is a Point"],
    ),
    "outside the district": (
        outside_district,
        ["cases.geojson", "row 4", "field geometry", "outside", "lon 116.39"],
    ),
    "duplicate case numbers": (
        duplicate_case_numbers,
        ["cases.gpkg", "row 2", "field case_number", "more than once", "rows 2, 5"],
    ),
    "unknown category value": (
        unknown_category,
        ["cases.xlsx", "row 3", "field 重点类型 (priority_type)", "违章搭建", "经营性"],
    ),
    "discovery date in the future": (
        future_date,
        ["cases.csv", "row 5", "field 发现日期 (discovered_on)", "in the future"],
    ),
    "unreadable WKT": (bad_wkt, ["cases.csv", "row 3", "field WKT", "not valid WKT"]),
    "lon/lat without --crs": (lonlat_without_crs, ["cases.csv", "field geometry", "no CRS"]),
    "lon/lat without area": (lonlat_without_area, ["cases.csv", "header row", "field 面积"]),
    "--crs contradicts the file": (
        crs_contradiction,
        ["cases.gpkg", "field geometry", "declares EPSG:4549"],
    ),
    "missing case number": (
        missing_case_number,
        ["cases.xlsx", "row 4", "field 案件编号 (case_number)", "missing"],
    ),
}


@pytest.fixture()
def seeded(engine: Engine) -> Engine:
    """A database holding 5 cases (and their history) that a failed import must not touch."""
    upsert_cases(engine, make_cases(5, seed=1, prefix="KEEP"), actor="seed")
    return engine


def snapshot(engine: Engine) -> tuple[int, int, int]:
    with engine.connect() as conn:
        return tuple(
            conn.execute(
                text(  # type: ignore[return-value]
                    "SELECT (SELECT count(*) FROM inventory_case), (SELECT count(*) FROM "
                    "case_history), "
                    "(SELECT sum(version) FROM inventory_case)"
                )
            ).one()
        )


@pytest.mark.parametrize("name", list(CASES))
def test_malformed_input_is_refused_whole(name: str, seeded: Engine, tmp_path: Path) -> None:
    builder, expected = CASES[name]
    path, kwargs = builder(tmp_path)
    before = snapshot(seeded)
    with pytest.raises(InvalidInputError) as info:
        import_cases_file(seeded, path, actor="tester", **kwargs)
    message = str(info.value)
    print(f"{name}: {message}")
    assert "\n" not in message
    for part in expected:
        assert part in message, f"{part!r} not in {message!r}"
    assert snapshot(seeded) == before
