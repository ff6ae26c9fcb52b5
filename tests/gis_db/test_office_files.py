"""Issue 15: the files district offices really send, from the seeded generator office_files.py.

Every refusal is one line naming the file, the row as the office sees it and the field, and
leaves the database exactly as it was (case rows, history rows, versions). The files that are
merely untidy (total rows, title rows, merged cells, look-alike numbers, GCJ-02 points, zipped
folders) are read correctly.
"""

from __future__ import annotations

import csv
import os
import warnings
from collections.abc import Iterator
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
from sqlalchemy import Engine, text

from gis_db.errors import InvalidInputError
from gis_db.inventory import ImportReport, upsert_cases
from gis_db.inventory_io import import_cases_file
from tests.gis_db.office_files import GENERATORS, OfficeFile, base_cases, huge_cell_csv

#: class -> substrings the one-line refusal must contain (file, row, field, what to do)
REFUSED: dict[str, list[str]] = {
    "gpkg_nan_vertex": ["nan_vertex.gpkg", "row 3", "field geometry", "NaN", "redraw"],
    "excel_error_cells": [
        "error_cells.xlsx",
        "row 3",
        "field 地址 (address)",
        "#VALUE!",
        "Excel error",
    ],
    "formulas_without_values": [
        "formulas.xlsx",
        "row 2",
        "field 地址 (address)",
        "formula",
        "save",
    ],
    "scientific_case_numbers_csv": [
        "scientific.csv",
        "row 4",
        "field 案件编号 (case_number)",
        "scientific notation",
        "Text",
    ],
    "numeric_case_numbers_xlsx": [
        "numeric_numbers.xlsx",
        "row 3",
        "field 案件编号 (case_number)",
        "15 digits",
        "Text",
    ],
    "overlong_case_number": [
        "long_number.csv",
        "row 3",
        "field 案件编号 (case_number)",
        "5,002 characters",
        "at most 64",
    ],
    "lookalike_different_numbers": [
        "lookalike_other.xlsx",
        "row 3",
        "field 案件编号 (case_number)",
        "'bs000002'",
        "looks like the existing case 'BS000002'",
    ],
    "huge_cell_csv": ["huge_cell.csv", "row 4", "field 备注 (remark)", "characters"],
    "beyond_excel_cell": ["long_cell.xlsx", "row 2", "field 备注 (remark)", "32,767"],
    "long_remark": ["long_remark.xlsx", "row 7", "field 备注 (remark)", "at most 2,000"],
    "merged_case_numbers": [
        "merged_numbers.xlsx",
        "row 3",
        "field 案件编号 (case_number)",
        "merged",
        "unmerge",
    ],
    "title_rows": ["title_rows.xlsx", "row 5", "field 重点类型 (priority_type)", "违章搭建"],
    "mixed_encoding_csv": ["mixed_encoding.csv", "row 4", "field", "GBK", "UTF-8", "6"],
    "gcj02_header_contradicts_crs": ["gcj02_contradiction.csv", "GCJ-02", "EPSG:4490"],
    "shapefile_without_dbf": ["no_dbf.shp", "no_dbf.dbf", "missing"],
    "shapefile_without_shx": ["no_shx.shp", "no_shx.shx", "missing"],
    "shapefile_without_prj": ["no_prj.shp", "no_prj.prj", "--crs"],
    "zipped_several_shapefiles": ["zipped_several.zip", "--layer", "月浦", "罗店"],
}
#: class -> the sheet rows that --skip-invalid leaves out (row-level refusals)
REJECTED_ROWS: dict[str, list[int]] = {
    "gpkg_nan_vertex": [3],
    "excel_error_cells": [3, 5, 6],
    "formulas_without_values": [2, 4],
    "scientific_case_numbers_csv": [4],
    "numeric_case_numbers_xlsx": [3, 5],
    "overlong_case_number": [3],
    "lookalike_different_numbers": [3, 4],
    "huge_cell_csv": [4],
    "beyond_excel_cell": [2],
    "long_remark": [7],
    "merged_case_numbers": [3, 4],
    "title_rows": [5],
}
#: classes that are read correctly (each has its own test below)
READ = {
    "total_and_blank_rows",
    "xlsx_named_csv",
    "lookalike_case_numbers",
    "merged_type_cells",
    "title_rows_csv",
    "gcj02_points",
    "bd09_points",
    "gcj02_by_option",
    "gcj02_wkt_polygons",
    "zipped_shapefile_in_folder",
    "zipped_gbk_names",
}


def test_every_generated_class_is_covered() -> None:
    assert set(REFUSED) | READ == set(GENERATORS)


def make(name: str, folder: Path) -> OfficeFile:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # GDAL laundering long DBF field names
        if name == "huge_cell_csv":
            return huge_cell_csv(folder, megabytes=20)
        return GENERATORS[name](folder)


@pytest.fixture()
def office_db(engine: Engine) -> Iterator[Engine]:
    """The base cases already in the database, with older addresses: every file updates them."""
    old = base_cases()
    old["address"] = [f"旧地址{k}号" for k in range(len(old))]
    upsert_cases(engine, old, actor="seed")
    yield engine


def snapshot(engine: Engine) -> tuple[object, ...]:
    """Everything a refused import must leave alone: case rows (all columns), history, versions."""
    with engine.connect() as conn:
        return tuple(
            conn.execute(
                text(
                    "SELECT (SELECT count(*) FROM inventory_case), "
                    "(SELECT md5(string_agg(c::text, '|' ORDER BY c.id)) FROM inventory_case c), "
                    "(SELECT count(*) FROM case_history), (SELECT max(id) FROM case_history), "
                    "(SELECT md5(string_agg(h::text, '|' ORDER BY h.id)) FROM case_history h), "
                    "(SELECT sum(version) FROM inventory_case)"
                )
            ).one()
        )


def stored(engine: Engine) -> gpd.GeoDataFrame:
    with engine.connect() as conn:
        return gpd.read_postgis(
            text("SELECT * FROM inventory_case ORDER BY case_number"), conn, geom_col="geom"
        )


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_refused_in_one_line_and_database_unchanged(
    name: str, office_db: Engine, tmp_path: Path
) -> None:
    f = make(name, tmp_path)
    before = snapshot(office_db)
    with pytest.raises(InvalidInputError) as info:
        import_cases_file(office_db, f.path, actor="tester", **f.options)
    message = str(info.value)
    print(f"{name}: {message[:400]}")
    assert "\n" not in message and len(message) < 2000
    for part in REFUSED[name]:
        assert part in message, f"{part!r} not in {message!r}"
    assert snapshot(office_db) == before


@pytest.mark.parametrize("name", sorted(REJECTED_ROWS))
def test_skip_invalid_leaves_out_exactly_the_bad_rows_and_lists_them(
    name: str, office_db: Engine, tmp_path: Path
) -> None:
    f = make(name, tmp_path)
    report_path = tmp_path / "report.csv"
    report = import_cases_file(
        office_db,
        f.path,
        actor="tester",
        skip_invalid=True,
        report_path=report_path,
        **f.options,
    )
    rows = sorted({p.row for p in report.rejected if p.row is not None})
    assert rows == REJECTED_ROWS[name], [p.message(f.path.name) for p in report.rejected]
    assert report.loaded == 8 - len(rows)
    assert report.created == 0  # every good row is an existing case: updated, never duplicated
    with report_path.open(encoding="utf-8-sig") as fh:
        listed = sorted({int(r[1]) for r in list(csv.reader(fh))[1:] if r[0].startswith("拒绝")})
    assert listed == rows
    got = stored(office_db)
    assert len(got) == 8
    # nothing that was not in the file: the refused rows keep their old values entirely
    refused_numbers = {p.case_number for p in report.rejected}
    for _, case in got.iterrows():
        if case["case_number"] in refused_numbers:
            assert str(case["address"]).startswith("旧地址")
            assert case["version"] == 1


def read_ok(engine: Engine, f: OfficeFile, **extra: object) -> ImportReport:
    report = import_cases_file(engine, f.path, actor="tester", **{**f.options, **extra})
    assert not report.rejected
    return report


def test_total_and_blank_rows_are_skipped_and_reported(office_db: Engine, tmp_path: Path) -> None:
    f = make("total_and_blank_rows", tmp_path)
    report_path = tmp_path / "report.csv"
    report = read_ok(office_db, f, report_path=report_path)
    assert (report.created, report.updated) == (0, 8)
    with report_path.open(encoding="utf-8-sig") as fh:
        listed = [(r[0], r[1]) for r in list(csv.reader(fh))[1:]]
    assert listed == [("跳过 skipped", "10"), ("跳过 skipped", "11")]
    assert [(p.row, p.reason) for p in report.skipped] == [
        (10, "total row (合计) skipped"),
        (11, "blank row(s) 11-14 at the end skipped"),
    ]
    assert any("合计" in w and "10" in w and "11-14" in w for w in report.warnings)


def test_xlsx_named_csv_is_read_as_excel(office_db: Engine, tmp_path: Path) -> None:
    report = read_ok(office_db, make("xlsx_named_csv", tmp_path))
    assert report.updated == 8
    assert any("Excel workbook" in w and ".csv" in w for w in report.warnings)


def test_lookalike_numbers_update_the_existing_cases(office_db: Engine, tmp_path: Path) -> None:
    report = read_ok(office_db, make("lookalike_case_numbers", tmp_path))
    assert (report.created, report.updated) == (0, 8)
    got = stored(office_db)
    assert got["case_number"].tolist() == base_cases()["case_number"].tolist()
    assert got["address"].tolist() == base_cases()["address"].tolist()
    note = next(w for w in report.warnings if "normalised" in w)
    assert "row 2" in note and "ＢＳ" in note


def test_merged_cells_carry_their_value_to_every_row(office_db: Engine, tmp_path: Path) -> None:
    read_ok(office_db, make("merged_type_cells", tmp_path))
    types = stored(office_db)["priority_type"].tolist()
    assert types == ["commercial"] * 3 + ["public_safety"] * 4 + ["street_river"]


def test_title_rows_above_the_header(office_db: Engine, tmp_path: Path) -> None:
    f = make("title_rows", tmp_path)
    report = import_cases_file(office_db, f.path, actor="t", skip_invalid=True)
    assert [p.row for p in report.rejected] == [5] and report.updated == 7
    csv_file = make("title_rows_csv", tmp_path)
    again = read_ok(office_db, csv_file)
    assert again.loaded == 8 and [p.row for p in again.skipped] == [11]


def distances_to_truth(engine: Engine) -> np.ndarray:
    got = stored(engine).set_index("case_number")
    truth = base_cases().set_index("case_number").geometry.centroid
    return np.asarray(got.geom.centroid.distance(truth.loc[got.index]).to_numpy())


@pytest.mark.parametrize("name", ["gcj02_points", "bd09_points", "gcj02_by_option"])
def test_offset_points_are_converted_to_true_coordinates(
    name: str, office_db: Engine, tmp_path: Path
) -> None:
    f = make(name, tmp_path)
    report = read_ok(office_db, f)
    assert report.updated == 8
    assert any("GCJ-02" in w or "BD-09" in w for w in report.warnings)
    d = distances_to_truth(office_db)
    print(f"{name}: distance to the true centroid max {d.max():.4f} m")
    assert d.max() < 0.1  # the file's 7 decimals (~1 cm) plus the inversion (< 1 mm)


def test_offset_polygons_are_converted_vertex_by_vertex(office_db: Engine, tmp_path: Path) -> None:
    report = read_ok(office_db, make("gcj02_wkt_polygons", tmp_path))
    assert report.updated == 8 and report.source_crs and "GCJ-02" in report.source_crs
    got = stored(office_db).set_index("case_number")
    truth = base_cases().set_index("case_number")
    # vertices back where they were (9 decimals ~ 0.1 mm, plus the inversion < 1 mm)
    assert got.geom.hausdorff_distance(truth.geometry.loc[got.index]).max() < 0.01
    # areas within the rounding of 9-decimal degrees (~0.1 mm on a few metres of edge)
    assert got["area_m2"].to_numpy() == pytest.approx(truth.area.loc[got.index], rel=1e-4)


def test_offset_points_taken_as_cgcs2000_would_be_far_off(tmp_path: Path) -> None:
    """The size of the error the conversion removes (the issue's ~480 m)."""
    from gis_db.inventory_io import read_cases

    f = make("gcj02_by_option", tmp_path)
    wrong = read_cases(f.path, working_crs="EPSG:4549", crs="EPSG:4490")
    truth = base_cases().geometry.centroid
    assert wrong.frame.geometry.centroid.distance(truth).min() > 400


def test_mapping_file_can_name_gcj02_columns(office_db: Engine, tmp_path: Path) -> None:
    f = make("gcj02_points", tmp_path)
    text_ = f.path.read_text(encoding="utf-8-sig")
    text_ = text_.replace("经度(GCJ-02)", "AMAP_X").replace("纬度(GCJ-02)", "AMAP_Y")
    f.path.write_text(text_, encoding="utf-8")
    mapping = tmp_path / "amap.toml"
    mapping.write_text(
        '[cases.fields]\nlon_gcj02 = ["AMAP_X"]\nlat_gcj02 = ["AMAP_Y"]\n', encoding="utf-8"
    )
    read_ok(office_db, f, mapping=mapping)
    assert distances_to_truth(office_db).max() < 0.1


def test_zipped_folder_and_several_shapefiles(office_db: Engine, tmp_path: Path) -> None:
    report = read_ok(office_db, make("zipped_shapefile_in_folder", tmp_path))
    assert report.updated == 8
    several = make("zipped_several_shapefiles", tmp_path)
    report = read_ok(office_db, several, layer="罗店")
    assert report.unchanged == 4


def test_zip_with_gbk_names_is_read(office_db: Engine, tmp_path: Path) -> None:
    report = read_ok(office_db, make("zipped_gbk_names", tmp_path))
    assert report.updated == 8


def test_shapefile_without_prj_reads_with_crs(office_db: Engine, tmp_path: Path) -> None:
    f = make("shapefile_without_prj", tmp_path)
    assert read_ok(office_db, f, crs="EPSG:4549").updated == 8


def test_no_traceback_from_any_generated_file(
    office_db: Engine,
    db_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``weijian inventory import`` on every class: exit 0, or 1 with one '错误 error:' line."""
    from weijian.cli import main
    from weijian.settings import get_settings

    for key in [k for k in os.environ if k.startswith("WEIJIAN_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("WEIJIAN_DATABASE_URL", db_url)
    monkeypatch.setenv("WEIJIAN_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("COLUMNS", "200")
    for name in sorted(GENERATORS):
        sub = tmp_path / name
        sub.mkdir()
        f = make(name, sub)
        args = ["weijian", "inventory", "import", str(f.path)]
        for k, v in f.options.items():
            args += [f"--{k}", str(v)]
        monkeypatch.setattr("sys.argv", args)
        get_settings.cache_clear()
        try:
            main()
            code = 0
        except SystemExit as exc:
            code = int(exc.code or 0)
        finally:
            get_settings.cache_clear()
        captured = capsys.readouterr()
        errors = [x for x in captured.err.splitlines() if x.startswith("错误 error:")]
        assert "Traceback" not in captured.err + captured.out, name
        assert code == (1 if name in REFUSED else 0), (name, captured.err[-500:])
        assert len(errors) == (1 if name in REFUSED else 0), (name, captured.err[-500:])
