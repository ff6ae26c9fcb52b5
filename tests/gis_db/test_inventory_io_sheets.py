"""The pieces under the import of office files: sheet shaping, CSV encodings, case numbers, zips."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pandas as pd
import pytest

from gis_db.errors import InvalidInputError
from gis_db.inventory_io import read_table
from gis_db.inventory_io.case_numbers import check_case_numbers, lookalikes, loose_key, normalise
from gis_db.inventory_io.shapefiles import unzip_vector
from gis_db.inventory_io.sheets import (
    XLS_MAGIC,
    Sheet,
    decode_csv,
    is_total_row,
    read_csv,
    read_xlsx,
    sniff_format,
)
from tests.gis_db.office_files import GENERATORS, base_cases


def is_header(cells: list[str]) -> bool:
    return "案件编号" in cells


def xlsx(name: str, tmp: Path) -> tuple[Path, Sheet]:
    f = GENERATORS[name](tmp)
    return f.path, read_xlsx(f.path, f.path.name, None, is_header)


def test_total_and_blank_rows_are_skipped_with_their_rows(tmp_path: Path) -> None:
    _, sheet = xlsx("total_and_blank_rows", tmp_path)
    assert len(sheet.frame) == 8 and sheet.rows.tolist() == list(range(2, 10))
    skipped = [(s.row, s.reason) for s in sheet.skipped]
    assert skipped[0] == (10, "total row (合计) skipped")
    assert skipped[1][0] == 11 and "11-14" in skipped[1][1]


def test_title_rows_and_merged_cells(tmp_path: Path) -> None:
    _, sheet = xlsx("title_rows", tmp_path)
    assert sheet.header_row == 3 and sheet.rows[0] == 4
    assert any("title row(s) 1-2" in w for w in sheet.warnings)
    _, merged = xlsx("merged_type_cells", tmp_path)
    assert merged.frame["重点类型"].tolist() == ["经营性"] * 3 + ["影响公共安全"] * 4 + ["沿街沿河"]
    assert merged.merged == [("重点类型", 0, 2), ("重点类型", 3, 6)]


def test_error_cells_keep_their_text_and_formulas_are_listed(tmp_path: Path) -> None:
    _, errors = xlsx("excel_error_cells", tmp_path)
    assert errors.frame["地址"].iloc[1] == "#VALUE!"
    assert errors.frame["重点类型"].iloc[3] == "#REF!"
    _, formulas = xlsx("formulas_without_values", tmp_path)
    assert [(h, p) for h, p, _ in formulas.formulas] == [("地址", 0), ("地址", 2)]
    assert formulas.frame["地址"].iloc[0] is None


def test_xlsx_is_recognised_by_content(tmp_path: Path) -> None:
    f = GENERATORS["xlsx_named_csv"](tmp_path)
    assert f.path.suffix == ".csv" and sniff_format(f.path) == "xlsx"


def test_mixed_encodings_are_refused_naming_the_rows(tmp_path: Path) -> None:
    f = GENERATORS["mixed_encoding_csv"](tmp_path)
    with pytest.raises(InvalidInputError) as info:
        decode_csv(f.path.read_bytes(), f.path.name)
    message = str(info.value)
    assert "row 4, field" in message and "row(s) 4, 6 are GBK" in message


def test_one_encoding_is_read_and_csv_title_and_total_rows_shaped(tmp_path: Path) -> None:
    f = GENERATORS["title_rows_csv"](tmp_path)
    sheet = read_csv(decode_csv(f.path.read_bytes(), f.path.name), is_header)
    assert sheet.header_row == 2 and sheet.rows.tolist() == list(range(3, 11))
    assert [s.row for s in sheet.skipped] == [11]
    assert sheet.frame["地址"].tolist() == base_cases()["address"].tolist()


@pytest.mark.parametrize(
    ("cells", "total"),
    [(["合计", None, 35.2], True), ([None, "总计：", 3], True), (["BS1", "合计路1号"], False)],
)
def test_total_rows(cells: list[object], total: bool) -> None:
    assert is_total_row(cells) is total


def test_case_number_rules() -> None:
    cells = pd.Series(
        [
            "ＢＳ０００００１",
            "BS000002\u200b",
            " BS000003\u00a0",
            "3.10113E+17",
            3.10113e17,
            310113201905230017,
            12345.0,
            1.5,
            "A" * 65,
            "BS\n4",
            None,
            "12E34",
        ],
        dtype=object,
    )
    checked = check_case_numbers(cells, max_length=64)
    assert checked.values.tolist()[:3] == ["BS000001", "BS000002", "BS000003"]
    assert checked.values.tolist()[5:7] == ["310113201905230017", "12345"]  # exact integers
    assert checked.values.iat[11] == "12E34"  # no sign in the exponent: not Excel's notation
    assert [p for p, _ in checked.problems] == [3, 4, 7, 8, 9]
    reasons = dict(checked.problems)
    assert "scientific notation" in reasons[3] and "15 digits" in reasons[4]
    assert "65 characters" in reasons[8] and "line break" in reasons[9]
    assert [p for p, _ in checked.normalised] == [0, 1, 2]


def test_lookalikes_of_existing_and_of_each_other() -> None:
    assert normalise("\ufeffＡｂ－1\u3000") == "Ab-1" and loose_key("ab 1") == loose_key("AB-1")
    numbers = pd.Series(["BS000001", "bs000002", "BS-000003", "NEW1", "new-1"], dtype=object)
    found = dict(lookalikes(numbers, ["BS000001", "BS000002", "BS000003"], [2, 3, 4, 5, 6]))
    assert sorted(found) == [1, 2, 4]
    assert "existing case 'BS000002'" in found[1] and "row 5" in found[4]


def test_zip_with_folder_and_several_shapefiles(tmp_path: Path) -> None:
    one = GENERATORS["zipped_shapefile_in_folder"](tmp_path)
    shp, used, chosen = unzip_vector(one.path, one.path.name, None, tmp_path / "x")
    assert shp.suffix == ".shp" and not used and chosen == "台账/台账.shp"
    several = GENERATORS["zipped_several_shapefiles"](tmp_path)
    with pytest.raises(
        InvalidInputError, match=r"2 shapefiles .月浦, 罗店.; choose one with --layer"
    ):
        unzip_vector(several.path, several.path.name, None, tmp_path / "y")
    shp, used, chosen = unzip_vector(several.path, several.path.name, "罗店", tmp_path / "z")
    assert used and chosen == "罗店镇/罗店.shp"


def test_zip_member_names_in_gbk_are_decoded(tmp_path: Path) -> None:
    f = GENERATORS["zipped_gbk_names"](tmp_path)
    with zipfile.ZipFile(f.path) as zf:
        assert not any(i.flag_bits & 0x800 for i in zf.infolist())  # really without the flag
    _, _, chosen = unzip_vector(f.path, f.path.name, None, tmp_path / "x")
    assert chosen == "台账/台账.shp"


@pytest.mark.parametrize("name", ["old.xls", "old.xlsx", "old.csv"])
def test_old_excel_workbooks_are_refused_with_what_to_do(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_bytes(XLS_MAGIC + bytes(504))
    with pytest.raises(InvalidInputError, match=r"old Excel 97-2003.*save it as \.xlsx"):
        read_table(path)


@pytest.mark.parametrize("first_sheet", [["填表说明: 第二页为台账"], []])
def test_a_workbook_whose_cases_are_not_on_the_first_sheet_names_its_sheets(
    first_sheet: list[str], tmp_path: Path
) -> None:
    """Before: "the file has a header but no data rows", with nothing about the other sheet."""
    import openpyxl

    wb = openpyxl.Workbook()
    wb.active.title = "说明"
    if first_sheet:
        wb.active.append(first_sheet)
    cases = wb.create_sheet("台账")
    cases.append(["案件编号", "地址", "WKT"])
    cases.append(["BS-1", "某路 1 号", "POLYGON ((0 0, 10 0, 10 10, 0 10, 0 0))"])
    path = tmp_path / "台账.xlsx"
    wb.save(path)
    with pytest.raises(InvalidInputError, match=r"sheets: 说明, 台账; .* --layer 台账"):
        read_table(path)
    assert read_table(path, layer="台账").frame["案件编号"].tolist() == ["BS-1"]
