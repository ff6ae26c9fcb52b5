"""Reading every supported format, encodings, CRSs, mapping, repairs, --skip-invalid, export."""

from __future__ import annotations

import csv
from datetime import date
from pathlib import Path

import geopandas as gpd
import pandas as pd
import pytest
import shapely
from sqlalchemy import Engine, text

from gis_db.inventory import upsert_cases, upsert_units
from gis_db.inventory_io import (
    export_cases,
    import_cases_file,
    import_units_file,
    read_cases,
)
from weijian_testdata.inventory import (
    WORKING_CRS,
    as_ledger,
    as_wkt_table,
    bowtie,
    make_cases,
    street_town_grid,
    write_gpkg,
)


def stored(engine: Engine) -> pd.DataFrame:
    with engine.connect() as conn:
        return pd.read_sql(
            text(
                "SELECT case_number, priority_type, source, in_database, discovered_on, address, "
                "area_m2 FROM inventory_case ORDER BY case_number"
            ),
            conn,
        )


@pytest.mark.filterwarnings("ignore:Could not decode error message")  # GDAL truncating names
@pytest.mark.parametrize("encoding", ["gbk", "utf-8"])
def test_shapefile_with_chinese_headers_in_gbk_or_utf8_without_cpg(
    engine: Engine, tmp_path: Path, encoding: str
) -> None:
    cases = make_cases(20, seed=2)
    path = tmp_path / "台账.shp"
    as_ledger(cases).to_crs("EPSG:4490").to_file(path, encoding=encoding, engine="pyogrio")
    path.with_suffix(".cpg").unlink()
    report = import_cases_file(engine, path, actor="t")
    assert report.created == 20 and report.source_crs.startswith("EPSG:4490")
    got = stored(engine)
    assert got["address"].tolist() == cases["address"].tolist()
    assert got["priority_type"].tolist() == cases["priority_type"].tolist()
    assert got["area_m2"].to_numpy() == pytest.approx(cases.area.to_numpy(), rel=1e-6)


def test_geojson_excel_and_csv_lonlat(engine: Engine, tmp_path: Path) -> None:
    cases = make_cases(10, seed=3)
    cases.iloc[:4].to_crs("EPSG:4326").to_file(tmp_path / "a.geojson", driver="GeoJSON")
    as_wkt_table(as_ledger(cases.iloc[4:7]), "WKT (EPSG:4549)").to_excel(
        tmp_path / "b.xlsx", index=False
    )
    points = cases.iloc[7:].centroid.to_crs("EPSG:4490")
    pd.DataFrame(
        {
            "编号": cases.iloc[7:]["case_number"],
            "经度": points.x,
            "纬度": points.y,
            "面积（平方米）": [100, 200, 300],
            "重点类型": ["经营性违建", "非重点", "沿街沿河"],
        }
    ).to_csv(tmp_path / "c.csv", index=False, encoding="gbk")
    assert import_cases_file(engine, tmp_path / "a.geojson", actor="t").created == 4
    assert import_cases_file(engine, tmp_path / "b.xlsx", actor="t").created == 3
    report = import_cases_file(engine, tmp_path / "c.csv", actor="t", crs="EPSG:4490")
    assert report.created == 3 and "squares" in report.warnings[-1]
    got = stored(engine).set_index("case_number")
    assert len(got) == 10
    assert got.loc[cases.case_number.iloc[8], "area_m2"] == pytest.approx(200)
    assert got.loc[cases.case_number.iloc[7], "priority_type"] == "commercial"
    assert got.loc[cases.case_number.iloc[5], "discovered_on"] == cases.discovered_on.iloc[5]


def test_repairable_geometry_is_repaired_and_reported(tmp_path: Path) -> None:
    cases = make_cases(3, seed=4)
    x0, y0, x1, y1 = cases.geometry.iloc[1].bounds
    # a rectangle whose last edge crosses the first, leaving a tiny lobe: repair changes < 1 %
    cases.loc[1, "geometry"] = shapely.Polygon(
        [(x0, y0), (x1, y0), (x1, y1), (x0, y1), (x0 + 0.1, y0 - 0.1)]
    )
    assert not cases.geometry.iloc[1].is_valid
    write_gpkg(cases, tmp_path / "cases.gpkg")
    result = read_cases(tmp_path / "cases.gpkg", working_crs=WORKING_CRS)
    assert len(result.frame) == 3 and result.frame.is_valid.all()
    (fix,) = result.repaired
    assert fix.row == 2 and fix.field == "geometry" and "repaired" in fix.reason


def test_skip_invalid_imports_the_rest_and_writes_a_report(engine: Engine, tmp_path: Path) -> None:
    ledger = as_ledger(make_cases(6, seed=5))
    ledger.loc[1, "重点类型"] = "不知道"
    ledger.loc[4, "geometry"] = bowtie(*ledger.geometry.iloc[4].centroid.coords[0])
    ledger["颜色"] = "红"
    write_gpkg(ledger, tmp_path / "cases.gpkg")
    report_path = tmp_path / "rejected.csv"
    report = import_cases_file(
        engine, tmp_path / "cases.gpkg", actor="t", skip_invalid=True, report_path=report_path
    )
    assert report.created == 4 and [p.row for p in report.rejected] == [2, 5]
    assert any("颜色" in w for w in report.warnings)
    raw = report_path.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")  # BOM: Excel shows the Chinese
    rows = list(csv.reader(raw.decode("utf-8-sig").splitlines()))
    assert [r[1] for r in rows[1:]] == ["2", "5"]
    assert rows[1][2] == "重点类型 (priority_type)" and "不知道" in rows[1][4]


def test_mapping_file_adds_headers_and_values(engine: Engine, tmp_path: Path) -> None:
    ledger = as_ledger(make_cases(3, seed=6)).rename(columns={"案件编号": "巡查单号"})
    ledger["重点类型"] = "开店"
    write_gpkg(ledger, tmp_path / "cases.gpkg")
    mapping = tmp_path / "mine.toml"
    mapping.write_text(
        '[cases.fields]\ncase_number = ["巡查单号"]\n'
        '[cases.values.priority_type]\n"开店" = "commercial"\n',
        encoding="utf-8",
    )
    assert (
        import_cases_file(engine, tmp_path / "cases.gpkg", actor="t", mapping=mapping).created == 3
    )
    assert set(stored(engine)["priority_type"]) == {"commercial"}


@pytest.mark.parametrize("suffix", [".gpkg", ".geojson", ".xlsx"])
def test_export_filters_and_round_trips_unchanged(
    engine: Engine, tmp_path: Path, suffix: str
) -> None:
    upsert_units(engine, "street_town", street_town_grid(2, 2), actor="t")
    upsert_cases(engine, make_cases(40, seed=7), actor="t")
    with engine.connect() as conn:
        expected = conn.execute(
            text(
                "SELECT count(*) FROM inventory_case c JOIN street_town s ON s.code = "
                "c.street_town_code "
                "WHERE s.name = '测试02镇' AND c.priority_type = 'commercial'"
            )
        ).scalar_one()
    path = tmp_path / f"out{suffix}"
    n = export_cases(engine, path, street_town="测试02镇", state="待派单", priority_type="经营性")
    assert n == expected > 0
    back = gpd.read_file(path) if suffix != ".xlsx" else pd.read_excel(path)
    assert len(back) == n and "案件编号" in back.columns and set(back["重点类型"]) == {"经营性"}
    everything = tmp_path / f"all{suffix}"
    assert export_cases(engine, everything) == 40
    again = import_cases_file(engine, everything, actor="t")
    assert (again.created, again.updated, again.unchanged) == (0, 0, 40), again.warnings


def test_admin_import_of_villages_by_street_town_name(engine: Engine, tmp_path: Path) -> None:
    towns = street_town_grid(2, 1)
    towns.rename(columns={"code": "街镇代码", "name": "街镇名称"}).to_file(tmp_path / "towns.gpkg")
    assert import_units_file(engine, tmp_path / "towns.gpkg", "street_town", actor="t").created == 2
    villages = gpd.GeoDataFrame(
        {"居村代码": ["V1", "V2"], "居村名称": ["一村", "二村"], "所属街镇": ["测试01镇", None]},
        geometry=[towns.geometry.iloc[0].buffer(-10), towns.geometry.iloc[1].buffer(-10)],
        crs=towns.crs,
    )
    as_wkt_table(villages, "WKT").to_csv(tmp_path / "villages.csv", index=False)
    report = import_units_file(
        engine, tmp_path / "villages.csv", "village", actor="t", crs=WORKING_CRS
    )
    assert report.created == 2
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT code, street_town_code FROM village ORDER BY code")).all()
    assert rows == [("V1", "ST01"), ("V2", "ST02")]


def test_dates_in_office_spellings(tmp_path: Path) -> None:
    table = as_wkt_table(make_cases(4, seed=8))[["case_number", "WKT"]]
    table["发现日期"] = ["2024年3月5日", "2024/3/5", "20240305", ""]
    table.to_csv(tmp_path / "d.csv", index=False)
    result = read_cases(tmp_path / "d.csv", working_crs=WORKING_CRS, crs=WORKING_CRS)
    assert result.frame["discovered_on"].tolist()[:3] == [date(2024, 3, 5)] * 3
    assert result.frame["discovered_on"].iloc[3] is None


def test_a_header_in_two_columns_is_refused_when_it_names_a_field(tmp_path: Path) -> None:
    """Two 经度 columns: before, the second was read as "经度.1" and dropped with a warning."""
    from gis_db.errors import InvalidInputError

    twice = tmp_path / "twice.csv"
    twice.write_text(
        "案件编号,地址,经度,纬度,经度,面积\nX4,某路,121.40,31.35,121.50,20\n", encoding="utf-8"
    )
    with pytest.raises(InvalidInputError, match="'经度' appears in two columns; delete or rename"):
        read_cases(twice, working_crs=WORKING_CRS, crs="EPSG:4490")
    # a repeated column that names nothing is still only left out, with a warning
    other = tmp_path / "other.csv"
    other.write_text(
        "案件编号,地址,经度,纬度,面积,说明X,说明X\nX4,某路,121.40,31.35,20,a,b\n", encoding="utf-8"
    )
    result = read_cases(other, working_crs=WORKING_CRS, crs="EPSG:4490")
    assert len(result.frame) == 1
    assert any("说明X, 说明X.1" in w for w in result.warnings)
