"""Seeded generator of the malformed inventory files district offices really send (issue 15).

Each generator writes one file (or a shapefile's set of files) into a folder and returns an
:class:`OfficeFile`: where it is, the import options an office would use with it, and what it
is. The files are built from :func:`base_cases` (8 cases, seed 15, numbers ``BS000001`` ...), so
that a database seeded with the same cases shows whether a refused import changed anything.
Nothing here touches the database or the code under test.

Write the whole corpus to a folder (for trying ``weijian inventory import`` by hand)::

    .venv/bin/python -m tests.gis_db.office_files /tmp/office_files
"""

from __future__ import annotations

import shutil
import sys
import warnings
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import openpyxl
import pandas as pd
import shapely
from openpyxl.styles import Border, Side

from gis_db.gcj02 import gcj02_to_bd09, wgs84_to_gcj02
from weijian_testdata.inventory import as_ledger, make_cases, write_gpkg

SEED = 15
N_CASES = 8
PREFIX = "BS"
GEOM_HEADER = "几何 (EPSG:4549)"


@dataclass
class OfficeFile:
    """One generated file: its path, the import options to use, what is wrong with it."""

    path: Path
    what: str
    options: dict[str, Any] = field(default_factory=dict)


def base_cases(seed: int = SEED) -> gpd.GeoDataFrame:
    """The cases every file is built from (canonical columns, EPSG:4549)."""
    return make_cases(N_CASES, seed=seed, prefix=PREFIX)


def ledger_rows(cases: gpd.GeoDataFrame | None = None) -> tuple[list[str], list[list[Any]]]:
    """The cases as an office ledger: Chinese headers and labels, WKT geometry; (header, rows)."""
    cases = base_cases() if cases is None else cases
    ledger = as_ledger(cases)
    table = pd.DataFrame(ledger.drop(columns=ledger.geometry.name))
    table["备注"] = table["备注"].astype(object)
    table[GEOM_HEADER] = shapely.to_wkt(ledger.geometry.to_numpy(), rounding_precision=-1)
    rows = [[_cell(v) for v in row] for row in table.itertuples(index=False)]
    return list(table.columns), rows


def _cell(v: Any) -> Any:
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return None
    if isinstance(v, np.generic):
        return v.item()
    return v


def write_sheet(
    path: Path,
    rows: list[list[Any]],
    *,
    merges: tuple[str, ...] = (),
    formats: dict[str, str] | None = None,
    bordered_blank_rows: int = 0,
) -> Path:
    """An .xlsx with ``rows`` from A1, the given merged ranges and number formats per column.

    ``bordered_blank_rows``: empty rows with cell borders after the data (what an office's
    template leaves: Excel counts them in the sheet's used range).
    """
    wb = openpyxl.Workbook()
    ws = wb.active
    assert ws is not None
    ws.title = "违建台账"
    for row in rows:
        ws.append([_cell(v) for v in row])
    width = max(len(r) for r in rows)
    thin = Side(style="thin")
    for k in range(bordered_blank_rows):
        for c in range(1, width + 1):
            ws.cell(row=len(rows) + 1 + k, column=c).border = Border(top=thin, bottom=thin)
    for ref in merges:
        ws.merge_cells(ref)
    for col, fmt in (formats or {}).items():
        for cell in ws[col]:
            cell.number_format = fmt
    wb.save(path)
    return path


def _col(headers: list[str], name: str) -> int:
    return headers.index(name)


# --------------------------------------------------------------------------------------------
# the classes of issue 15


def total_and_blank_rows(folder: Path) -> OfficeFile:
    """合计 row, an empty row with spaces, and bordered blank rows after the data (xlsx)."""
    headers, rows = ledger_rows()
    headers = [*headers, "面积"]
    rows = [[*r, round(float(a), 1)] for r, a in zip(rows, base_cases().area, strict=True)]
    total: list[Any] = [None] * len(headers)
    total[0] = "合计"
    total[_col(headers, "地址")] = f"{len(rows)}处"
    total[-1] = round(float(base_cases().area.sum()), 1)
    spaces: list[Any] = [None] * len(headers)
    spaces[1] = "  "
    path = write_sheet(
        folder / "total_rows.xlsx", [headers, *rows, total, spaces], bordered_blank_rows=3
    )
    return OfficeFile(path, "a 合计 row, then blank rows with empty geometry cells at the end")


def xlsx_named_csv(folder: Path) -> OfficeFile:
    """An Excel workbook whose file name says .csv."""
    headers, rows = ledger_rows()
    path = write_sheet(folder / "台账.xlsx", [headers, *rows])
    return OfficeFile(path.rename(folder / "xlsx_named.csv"), "an XLSX file renamed .csv")


def gpkg_nan_vertex(folder: Path) -> OfficeFile:
    """A GeoPackage whose 3rd polygon has a NaN vertex."""
    cases = base_cases()
    x0, y0, x1, y1 = cases.geometry.iloc[2].bounds
    cases.loc[2, "geometry"] = shapely.Polygon([(x0, y0), (x1, y0), (np.nan, y1), (x0, y1)])
    path = folder / "nan_vertex.gpkg"
    write_gpkg(cases, path)
    return OfficeFile(path, "a GeoPackage polygon with a NaN vertex (row 3)")


def excel_error_cells(folder: Path) -> OfficeFile:
    """#VALUE! in 地址 (sheet row 3), #REF! in 重点类型 (row 5), #N/A in 当事人 (row 6)."""
    headers, rows = ledger_rows()
    rows[1][_col(headers, "地址")] = "#VALUE!"
    rows[3][_col(headers, "重点类型")] = "#REF!"
    rows[4][_col(headers, "当事人")] = "#N/A"
    path = write_sheet(folder / "error_cells.xlsx", [headers, *rows])
    return OfficeFile(path, "Excel error cells #VALUE! #REF! #N/A (rows 3, 5, 6)")


def formulas_without_values(folder: Path) -> OfficeFile:
    """地址 of sheet rows 2 and 4 are formulas never calculated (written by a program)."""
    headers, rows = ledger_rows()
    rows[0][_col(headers, "地址")] = '="上海市宝山区"&"测试路1号"'
    rows[2][_col(headers, "地址")] = "=CONCATENATE(A4,B4)"
    path = write_sheet(folder / "formulas.xlsx", [headers, *rows])
    return OfficeFile(path, "formula cells without cached values (rows 2, 4)")


def scientific_case_numbers_csv(folder: Path) -> OfficeFile:
    """A CSV saved by Excel after it turned long numeric case numbers into 3.10113E+17."""
    headers, rows = ledger_rows()
    rows[2][0] = "3.10113E+17"
    path = folder / "scientific.csv"
    pd.DataFrame(rows, columns=headers).to_csv(path, index=False, encoding="utf-8-sig")
    return OfficeFile(path, "case number 3.10113E+17 in a CSV (row 4)")


def numeric_case_numbers_xlsx(folder: Path) -> OfficeFile:
    """Case numbers typed into number cells: 18 digits (kept only 15) and a 0.00E+00 display."""
    headers, rows = ledger_rows()
    rows[1][0] = 310113201905230017  # what the office typed; Excel keeps 310113201905230000
    rows[3][0] = 3.10113e17
    path = write_sheet(folder / "numeric_numbers.xlsx", [headers, *rows], formats={"A": "0.00E+00"})
    wb = openpyxl.load_workbook(path)  # store what Excel stores: a double of 15 digits
    ws = wb.active
    assert ws is not None
    ws["A3"].value = float("3.10113201905230e17")
    wb.save(path)
    return OfficeFile(path, "case numbers as numbers of 18 digits (rows 3, 5)")


def overlong_case_number(folder: Path) -> OfficeFile:
    """A case number of 5,000 characters (a paste gone wrong) in sheet row 3 of a CSV."""
    headers, rows = ledger_rows()
    rows[1][0] = "BS" + "0123456789" * 500
    path = folder / "long_number.csv"
    pd.DataFrame(rows, columns=headers).to_csv(path, index=False, encoding="utf-8-sig")
    return OfficeFile(path, "a case number of 5,002 characters (row 3)")


def lookalike_case_numbers(folder: Path) -> OfficeFile:
    """The existing cases' numbers as offices mangle them: safe to normalise (all rows)."""
    headers, rows = ledger_rows()
    full_width = str.maketrans(
        "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ",
        "０１２３４５６７８９ＡＢＣＤＥＦＧＨＩＪＫＬＭＮＯＰＱＲＳＴＵＶＷＸＹＺ",
    )
    rows[0][0] = str(rows[0][0]).translate(full_width)  # ＢＳ００００01
    rows[1][0] = f"{rows[1][0]}\u200b"  # zero-width space
    rows[2][0] = f"{rows[2][0]}   "  # trailing spaces
    rows[3][0] = f"\u3000{rows[3][0]}"  # ideographic space in front
    rows[4][0] = f"\ufeff{rows[4][0]}\u00a0"  # BOM in front, no-break space after
    path = write_sheet(folder / "lookalike_normalised.xlsx", [headers, *rows])
    return OfficeFile(path, "full-width, zero-width, trailing-space forms of existing numbers")


def lookalike_different_numbers(folder: Path) -> OfficeFile:
    """Numbers that look like existing ones but are not the same once normalised (row 3, 4)."""
    headers, rows = ledger_rows()
    rows[1][0] = str(rows[1][0]).lower()  # bs000002
    rows[2][0] = f"{str(rows[2][0])[:2]}-{str(rows[2][0])[2:]}"  # BS-000003
    path = write_sheet(folder / "lookalike_other.xlsx", [headers, *rows])
    return OfficeFile(path, "bs000002 and BS-000003 next to existing BS000002, BS000003")


def huge_cell_csv(folder: Path, megabytes: float = 20.0) -> OfficeFile:
    """A CSV with a remark of ``megabytes`` MB in sheet row 4."""
    headers, rows = ledger_rows()
    rows[2][_col(headers, "备注")] = "违" * int(megabytes * 1e6 / 3)
    path = folder / "huge_cell.csv"
    pd.DataFrame(rows, columns=headers).to_csv(path, index=False, encoding="utf-8")
    return OfficeFile(path, f"a {megabytes:g} MB remark (row 4)")


def beyond_excel_cell(folder: Path) -> OfficeFile:
    """An .xlsx (written by a program) with a 40,000-character remark (row 2).

    openpyxl cuts strings at Excel's limit when it writes, so the long text is put into the
    sheet's XML directly (what other programs write).
    """
    headers, rows = ledger_rows()
    rows[0][_col(headers, "备注")] = "LONG_CELL_PLACEHOLDER"
    path = write_sheet(folder / "long_cell.xlsx", [headers, *rows])
    with zipfile.ZipFile(path) as zf:
        parts = {name: zf.read(name) for name in zf.namelist()}
    for name, data in parts.items():
        parts[name] = data.replace(b"LONG_CELL_PLACEHOLDER", ("备" * 40_000).encode("utf-8"))
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in parts.items():
            zf.writestr(name, data)
    return OfficeFile(path, "a cell longer than Excel's 32,767 characters (row 2)")


def long_remark(folder: Path) -> OfficeFile:
    """A remark of 5,000 characters: within Excel's limit, beyond the field's maximum."""
    headers, rows = ledger_rows()
    rows[5][_col(headers, "备注")] = "说明" * 2_500
    path = write_sheet(folder / "long_remark.xlsx", [headers, *rows])
    return OfficeFile(path, "a 5,000-character remark (row 7)")


def merged_type_cells(folder: Path) -> OfficeFile:
    """重点类型 written once per block of rows (merged cells B2:B4 and B5:B8 style)."""
    headers, rows = ledger_rows()
    k = _col(headers, "重点类型")
    letter = openpyxl.utils.get_column_letter(k + 1)
    for i in range(0, 3):
        rows[i][k] = "经营性" if i == 0 else None
    for i in range(3, 7):
        rows[i][k] = "影响公共安全" if i == 3 else None
    rows[7][k] = "沿街沿河"
    path = write_sheet(
        folder / "merged.xlsx",
        [headers, *rows],
        merges=(f"{letter}2:{letter}4", f"{letter}5:{letter}8"),
    )
    return OfficeFile(path, "重点类型 merged over rows 2-4 (经营性) and 5-8 (影响公共安全)")


def merged_case_numbers(folder: Path) -> OfficeFile:
    """案件编号 merged over rows 3-4: two footprints under one number."""
    headers, rows = ledger_rows()
    rows[2][0] = None
    path = write_sheet(folder / "merged_numbers.xlsx", [headers, *rows], merges=("A3:A4",))
    return OfficeFile(path, "案件编号 merged over rows 3-4")


def title_rows(folder: Path) -> OfficeFile:
    """A merged title and a 填报单位 line above the header (header in sheet row 3).

    The 2nd case's 重点类型 is an unknown value: it must be reported as sheet row 5.
    """
    headers, rows = ledger_rows()
    rows[1][_col(headers, "重点类型")] = "违章搭建"
    width = len(headers)
    letter = openpyxl.utils.get_column_letter(width)
    title: list[Any] = ["宝山区违法建筑点位台账（2024年）"] + [None] * (width - 1)
    unit: list[Any] = ["填报单位：测试镇城建中心", None, None, "填报日期：", datetime(2024, 5, 6)]
    unit += [None] * (width - len(unit))
    path = write_sheet(
        folder / "title_rows.xlsx", [title, unit, headers, *rows], merges=(f"A1:{letter}1",)
    )
    return OfficeFile(path, "two title rows above the header; bad 重点类型 in sheet row 5")


def title_rows_csv(folder: Path) -> OfficeFile:
    """The same ledger as a CSV with a title line and a 合计 line (GBK, as Excel saves it)."""
    headers, rows = ledger_rows()
    table = pd.DataFrame(rows, columns=headers)
    body = table.to_csv(index=False)
    text = "宝山区违法建筑点位台账" + "," * (len(headers) - 1) + "\n" + body
    text += "合计," + "," * (len(headers) - 2) + "\n"
    path = folder / "title_rows.csv"
    path.write_bytes(text.encode("gbk"))
    return OfficeFile(path, "CSV with a title line and a 合计 line", {"crs": "EPSG:4549"})


def mixed_encoding_csv(folder: Path) -> OfficeFile:
    """A CSV whose sheet rows 4 and 6 are GBK, the rest UTF-8 (rows pasted from another file)."""
    headers, rows = ledger_rows()
    table = pd.DataFrame(rows, columns=headers)
    lines = table.to_csv(index=False).splitlines(keepends=True)
    data = b"".join(
        line.encode("gbk" if n in (4, 6) else "utf-8") for n, line in enumerate(lines, start=1)
    )
    path = folder / "mixed_encoding.csv"
    path.write_bytes(data)
    return OfficeFile(path, "rows 4 and 6 in GBK, the others UTF-8")


def _points(system: str | None) -> tuple[pd.DataFrame, gpd.GeoDataFrame]:
    cases = base_cases()
    centre = cases.geometry.centroid.to_crs("EPSG:4490")
    lon, lat = centre.x.to_numpy(), centre.y.to_numpy()
    if system in ("GCJ-02", "BD-09"):
        lon, lat = wgs84_to_gcj02(lon, lat)
    if system == "BD-09":
        lon, lat = gcj02_to_bd09(lon, lat)
    table = pd.DataFrame(
        {
            "案件编号": cases["case_number"],
            "lon": np.round(lon, 7),
            "lat": np.round(lat, 7),
            "面积": np.round(cases.area.to_numpy(), 1),
            "地址": cases["address"],
        }
    )
    return table, cases


def gcj02_points(folder: Path) -> OfficeFile:
    """Points copied from 高德: headers 经度(GCJ-02), 纬度(GCJ-02), as offices write them."""
    table, _ = _points("GCJ-02")
    table = table.rename(columns={"lon": "经度(GCJ-02)", "lat": "纬度(GCJ-02)"})
    path = folder / "gcj02_points.csv"
    table.to_csv(path, index=False, encoding="utf-8-sig")
    return OfficeFile(path, "GCJ-02 lon/lat points (高德) with an area column")


def bd09_points(folder: Path) -> OfficeFile:
    """Points copied from 百度 maps, in Excel: headers 经度（BD-09）, 纬度（BD-09）."""
    table, _ = _points("BD-09")
    table = table.rename(columns={"lon": "经度（BD-09）", "lat": "纬度（BD-09）"})
    path = folder / "bd09_points.xlsx"
    write_sheet(path, [list(table.columns), *table.to_numpy().tolist()])
    return OfficeFile(path, "BD-09 lon/lat points (百度) in Excel")


def gcj02_by_option(folder: Path) -> OfficeFile:
    """GCJ-02 points under plain 经度/纬度 headers; the office says so with --crs GCJ-02."""
    table, _ = _points("GCJ-02")
    table = table.rename(columns={"lon": "经度", "lat": "纬度"})
    path = folder / "gcj02_plain.csv"
    table.to_csv(path, index=False, encoding="utf-8-sig")
    return OfficeFile(path, "GCJ-02 points, plain headers", {"crs": "GCJ-02"})


def gcj02_wkt_polygons(folder: Path) -> OfficeFile:
    """Footprints traced on 高德 maps: WKT lon/lat polygons under a "WKT (GCJ-02)" header."""
    cases = base_cases().to_crs("EPSG:4490")

    def offset(coords: np.ndarray) -> np.ndarray:
        lon, lat = wgs84_to_gcj02(coords[:, 0], coords[:, 1])
        return np.column_stack([lon, lat])

    polygons = shapely.transform(cases.geometry.to_numpy(), offset)
    table = pd.DataFrame(
        {
            "案件编号": cases["case_number"],
            "地址": cases["address"],
            "WKT (GCJ-02)": shapely.to_wkt(polygons, rounding_precision=9),
        }
    )
    path = folder / "gcj02_wkt.xlsx"
    write_sheet(path, [list(table.columns), *table.to_numpy().tolist()])
    return OfficeFile(path, "GCJ-02 polygons as WKT (traced on 高德 maps)")


def gcj02_header_contradicts_crs(folder: Path) -> OfficeFile:
    """Header says GCJ-02 but --crs says CGCS2000: refused, never guessed."""
    table, _ = _points("GCJ-02")
    table = table.rename(columns={"lon": "经度(GCJ-02)", "lat": "纬度(GCJ-02)"})
    path = folder / "gcj02_contradiction.csv"
    table.to_csv(path, index=False, encoding="utf-8-sig")
    return OfficeFile(path, "GCJ-02 header with --crs EPSG:4490", {"crs": "EPSG:4490"})


def _shapefile(folder: Path, name: str, cases: gpd.GeoDataFrame | None = None) -> Path:
    cases = base_cases() if cases is None else cases
    path = folder / f"{name}.shp"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # GDAL: DBF field names cut at 10 bytes
        as_ledger(cases).to_file(path, encoding="utf-8", engine="pyogrio")
    return path


def shapefile_without(part: str) -> Callable[[Path], OfficeFile]:
    """A generator of a shapefile whose ``part`` (".dbf", ".shx" or ".prj") is missing."""

    def make(folder: Path) -> OfficeFile:
        path = _shapefile(folder, f"no_{part[1:]}")
        path.with_suffix(part).unlink()
        return OfficeFile(path, f"a shapefile without its {part}")

    make.__name__ = f"shapefile_without_{part[1:]}"
    return make


def zipped_shapefile_in_folder(folder: Path) -> OfficeFile:
    """A zip made by compressing a folder (台账/台账.shp ...), with macOS's __MACOSX entries."""
    work = folder / "_zip_work"
    (work / "台账").mkdir(parents=True, exist_ok=True)
    shp = _shapefile(work / "台账", "台账")
    path = folder / "zipped_folder.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for f in sorted(shp.parent.iterdir()):
            zf.write(f, f"台账/{f.name}")
            zf.writestr(f"__MACOSX/台账/._{f.name}", b"\x00\x05\x16\x07junk")
    shutil.rmtree(work)
    return OfficeFile(path, "a zipped folder holding one shapefile (+ __MACOSX)")


def zipped_gbk_names(folder: Path) -> OfficeFile:
    """A zip made on Chinese Windows: member names in GBK, without the zip's UTF-8 flag."""
    work = folder / "_zip_work3"
    work.mkdir(parents=True, exist_ok=True)
    shp = _shapefile(work, "LEDG")  # 4 ASCII bytes, the length of "台账" in GBK
    path = folder / "zipped_gbk.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for f in sorted(work.iterdir()):
            zf.write(f, f"LEDG/{f.name}")
    shutil.rmtree(work)
    # same length, so every offset in the zip stays right; the names are not checksummed
    path.write_bytes(path.read_bytes().replace(b"LEDG", "台账".encode("gbk")))
    del shp
    return OfficeFile(path, "a zipped folder whose names are GBK (台账/台账.shp)")


def zipped_several_shapefiles(folder: Path) -> OfficeFile:
    """A zip with two shapefiles in two folders; --layer picks one."""
    work = folder / "_zip_work2"
    cases = base_cases()
    parts = {"月浦镇/月浦": cases.iloc[:4], "罗店镇/罗店": cases.iloc[4:]}
    path = folder / "zipped_several.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, subset in parts.items():
            sub = work / name.split("/")[0]
            sub.mkdir(parents=True, exist_ok=True)
            shp = _shapefile(sub, name.split("/")[1], subset.reset_index(drop=True))
            for f in sorted(sub.iterdir()):
                if f.stem == shp.stem:
                    zf.write(f, f"{name.split('/')[0]}/{f.name}")
    shutil.rmtree(work)
    return OfficeFile(path, "two shapefiles in one zip (月浦, 罗店)")


#: name -> generator, one per class of issue 15 (several for some classes)
GENERATORS: dict[str, Callable[[Path], OfficeFile]] = {
    "total_and_blank_rows": total_and_blank_rows,
    "xlsx_named_csv": xlsx_named_csv,
    "gpkg_nan_vertex": gpkg_nan_vertex,
    "excel_error_cells": excel_error_cells,
    "formulas_without_values": formulas_without_values,
    "scientific_case_numbers_csv": scientific_case_numbers_csv,
    "numeric_case_numbers_xlsx": numeric_case_numbers_xlsx,
    "overlong_case_number": overlong_case_number,
    "lookalike_case_numbers": lookalike_case_numbers,
    "lookalike_different_numbers": lookalike_different_numbers,
    "huge_cell_csv": huge_cell_csv,
    "beyond_excel_cell": beyond_excel_cell,
    "long_remark": long_remark,
    "merged_type_cells": merged_type_cells,
    "merged_case_numbers": merged_case_numbers,
    "title_rows": title_rows,
    "title_rows_csv": title_rows_csv,
    "mixed_encoding_csv": mixed_encoding_csv,
    "gcj02_points": gcj02_points,
    "bd09_points": bd09_points,
    "gcj02_by_option": gcj02_by_option,
    "gcj02_wkt_polygons": gcj02_wkt_polygons,
    "gcj02_header_contradicts_crs": gcj02_header_contradicts_crs,
    "shapefile_without_dbf": shapefile_without(".dbf"),
    "shapefile_without_shx": shapefile_without(".shx"),
    "shapefile_without_prj": shapefile_without(".prj"),
    "zipped_shapefile_in_folder": zipped_shapefile_in_folder,
    "zipped_several_shapefiles": zipped_several_shapefiles,
    "zipped_gbk_names": zipped_gbk_names,
}


def write_corpus(folder: Path) -> list[OfficeFile]:
    """Every generated file, each in its own sub-folder of ``folder`` (named after the class)."""
    out = []
    for name, make in GENERATORS.items():
        sub = folder / name
        sub.mkdir(parents=True, exist_ok=True)
        out.append(make(sub))
    return out


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "office_files")
    for f in write_corpus(target):
        opts = " ".join(f"--{k} {v}" for k, v in f.options.items())
        print(f"{f.path}  {opts:<20} {f.what}")
    print(f"(base cases: {N_CASES}, seed {SEED}, today {date.today()})")
