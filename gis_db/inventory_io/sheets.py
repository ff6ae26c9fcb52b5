"""Spreadsheets and CSV files as district offices make them: the raw grid, shaped into a table.

Offices send ledgers (台账) with title rows above the header, a 合计 (total) row and blank rows
at the end, category columns written once over a block of merged cells, Excel error values,
formulas a program wrote but never calculated, and CSV files whose rows were pasted together
from files in different encodings. This module reads such a file cell by cell and says what it
found; it never guesses a value that is not in the file:

* **Excel** (``.xlsx``/``.xlsm``, read with openpyxl): cached values only. Error values
  (``#VALUE!``, ``#REF!``, ``#N/A`` ...) are kept as their text, so that validation refuses
  them; formula cells without a cached value are listed in :attr:`Sheet.formulas` (their value
  is unknown); merged cells carry their value to every cell they span and are listed in
  :attr:`Sheet.merged` (validation refuses spans over identity or geometry columns).
* **CSV**: UTF-8 (with or without BOM), UTF-16 with BOM, or GBK (GB18030) for the whole file. A
  file whose records mix UTF-8 and GBK is refused naming the records (never stored garbled).
* **Shape**: the header is the first of the first :data:`HEADER_SEARCH_ROWS` rows that holds
  at least two known headers (title rows above it are skipped and said so); fully blank rows
  and total rows (合计, 总计, 小计, ...) are skipped and listed in :attr:`Sheet.skipped`.
* **Row numbers** are the sheet's own (what the office sees in Excel, or the record number of
  a CSV, header = its own row number).
"""

from __future__ import annotations

import codecs
import csv
import io
import re
import unicodedata
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from gis_db.errors import InvalidInputError

#: Rows searched for the header (title rows above it are skipped).
HEADER_SEARCH_ROWS = 15
#: The values Excel writes for a formula error (also what it saves into a CSV).
EXCEL_ERRORS = frozenset(
    {
        "#NULL!",
        "#DIV/0!",
        "#VALUE!",
        "#REF!",
        "#NAME?",
        "#NUM!",
        "#N/A",
        "#GETTING_DATA",
        "#SPILL!",
        "#CALC!",
        "#FIELD!",
        "#BLOCKED!",
        "#UNKNOWN!",
        "#CONNECT!",
        "#BUSY!",
    }
)
#: Excel's own limit on the characters in one cell.
EXCEL_CELL_LIMIT = 32_767
#: First cells that mark a total row (compared after NFKC, without spaces and a trailing colon).
TOTAL_WORDS = frozenset({"合计", "总计", "小计", "共计", "累计", "总数", "合计数", "total", "sum"})
#: Magic bytes of the workbook formats.
XLSX_MAGIC = b"PK\x03\x04"
XLS_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"


@dataclass
class Skipped:
    """A row left out on purpose (not a refusal): its sheet row and why."""

    row: int
    reason: str


@dataclass
class Sheet:
    """A table as the office laid it out: headers, values, and the sheet row of each value row."""

    headers: list[str]
    frame: pd.DataFrame
    #: the sheet row number (1-based, as Excel shows it) of each row of ``frame``
    rows: np.ndarray
    header_row: int
    #: (column header, frame position of the first row, of the last row) of merged cells that
    #: span several rows; their value was copied to every row
    merged: list[tuple[str, int, int]] = field(default_factory=list)
    #: (column header, frame position, formula text) of formulas that have no calculated value
    formulas: list[tuple[str, int, str]] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def sniff_format(path: Path) -> str | None:
    """``"xlsx"`` or ``"xls"`` when the file's first bytes say it is a workbook, else None."""
    with path.open("rb") as fh:
        head = fh.read(8)
    if head.startswith(XLSX_MAGIC):
        return "xlsx"
    if head == XLS_MAGIC:
        return "xls"
    return None


def _cell_text(v: object) -> str:
    if v is None:
        return ""
    if isinstance(v, float) and np.isnan(v):
        return ""
    return str(v)


def _norm_word(v: object) -> str:
    s = unicodedata.normalize("NFKC", _cell_text(v))
    return re.sub(r"\s+", "", s).rstrip(":").lower()


def is_total_row(cells: Sequence[object]) -> bool:
    """Whether a row is a total line: one of its first three filled cells is 合计, 总计, ..."""
    filled = [c for c in cells if _cell_text(c).strip()][:3]
    for c in filled:
        word = _norm_word(c)
        if word in TOTAL_WORDS or re.fullmatch(r"(合计|总计|小计|共计)[:：].*", word):
            return True
    return False


def _is_blank(cells: Sequence[object]) -> bool:
    return not any(_cell_text(c).strip() for c in cells)


def _ranges(rows: list[int]) -> str:
    """'11-14' or '7, 9' style list of row numbers."""
    if not rows:
        return ""
    parts: list[str] = []
    start = prev = rows[0]
    for r in [*rows[1:], None]:
        if r is not None and r == prev + 1:
            prev = r
            continue
        parts.append(str(start) if start == prev else f"{start}-{prev}")
        if r is not None:
            start = prev = r
    return ", ".join(parts)


def shape_table(
    grid: list[list[Any]],
    sheet_rows: list[int],
    is_header: Callable[[list[str]], bool],
    *,
    merged_cells: list[tuple[int, int, int, int]] | None = None,
    formula_cells: dict[tuple[int, int], str] | None = None,
) -> Sheet:
    """Find the header, drop blank and total rows, and return the table below the header.

    ``grid``: rows of cell values; ``sheet_rows``: the sheet row number of each grid row.
    ``is_header``: whether a row's cell texts are the header (knows the mapping).
    ``merged_cells``: (first grid row, last grid row, first column, last column) of merged
    ranges whose value was already copied to every cell. ``formula_cells``: (grid row, column)
    -> formula text of formulas without a value.
    """
    width = max((len(r) for r in grid), default=0)
    grid = [list(r) + [None] * (width - len(r)) for r in grid]
    header_at = None
    for i, row in enumerate(grid[:HEADER_SEARCH_ROWS]):
        if is_header([_cell_text(c).strip() for c in row]):
            header_at = i
            break
    if header_at is None:  # the first non-blank row: the caller reports what is missing
        header_at = next((i for i, r in enumerate(grid) if not _is_blank(r)), 0)
    raw_headers = [_cell_text(c).strip() for c in grid[header_at]] if grid else []
    # columns without a header and without any value are formatting, not data
    keep_cols = [
        k
        for k in range(width)
        if raw_headers[k] or any(_cell_text(r[k]).strip() for r in grid[header_at + 1 :])
    ]
    headers: list[str] = []
    for k in keep_cols:
        h = raw_headers[k] or f"(column {_column_letter(k)})"
        base, n = h, 1
        while h in headers:
            h, n = f"{base}.{n}", n + 1
        headers.append(h)
    warnings: list[str] = []
    if header_at > 0:
        warnings.append(
            f"header found in row {sheet_rows[header_at]}; title row(s) "
            f"{_ranges(sheet_rows[:header_at])} above it skipped"
        )
    body = grid[header_at + 1 :]
    body_rows = sheet_rows[header_at + 1 :]
    last_data = max((i for i, r in enumerate(body) if not _is_blank(r)), default=-1)
    skipped: list[Skipped] = []
    kept: list[int] = []
    for i, r in enumerate(body):
        if i > last_data:
            break
        if _is_blank(r):
            skipped.append(Skipped(body_rows[i], "blank row skipped"))
        elif is_total_row(r):
            first = next(_cell_text(c).strip() for c in r if _cell_text(c).strip())
            skipped.append(Skipped(body_rows[i], f"total row ({first}) skipped"))
        else:
            kept.append(i)
    trailing = body_rows[last_data + 1 :]
    if trailing:
        skipped.append(
            Skipped(trailing[0], f"blank row(s) {_ranges(list(trailing))} at the end skipped")
        )
    if skipped:
        totals = [s.row for s in skipped if s.reason.startswith("total")]
        blanks = [s.row for s in skipped if s.reason == "blank row skipped"] + list(trailing)
        said = []
        if totals:
            said.append(f"total (合计) row(s) {_ranges(totals)}")
        if blanks:
            said.append(f"blank row(s) {_ranges(sorted(blanks))}")
        warnings.append(" and ".join(said) + " skipped")
    frame = pd.DataFrame(
        [[body[i][k] for k in keep_cols] for i in kept], columns=headers, dtype=object
    )
    if frame.empty:
        frame = pd.DataFrame(columns=headers, dtype=object)
    position = {body_i + header_at + 1: pos for pos, body_i in enumerate(kept)}
    col_of = {k: headers[j] for j, k in enumerate(keep_cols)}
    merged: list[tuple[str, int, int]] = []
    for r0, r1, c0, c1 in sorted(merged_cells or []):
        spanned = [position[g] for g in range(r0, r1 + 1) if g in position]
        if len(spanned) < 2:
            continue
        for k in range(c0, c1 + 1):
            if k in col_of:
                merged.append((col_of[k], spanned[0], spanned[-1]))
    formulas = [
        (col_of[k], position[g], text)
        for (g, k), text in sorted((formula_cells or {}).items())
        if g in position and k in col_of
    ]
    return Sheet(
        headers,
        frame,
        np.array([body_rows[i] for i in kept], dtype=int),
        sheet_rows[header_at] if grid else 1,
        merged,
        formulas,
        skipped,
        warnings,
    )


def _column_letter(k: int) -> str:
    from openpyxl.utils import get_column_letter

    return get_column_letter(k + 1)


# --------------------------------------------------------------------------------------------
# Excel


def _has_formulas(path: Path) -> bool:
    """Whether any sheet holds a formula (``<f>`` element): cheap check before a second read."""
    try:
        with zipfile.ZipFile(path) as zf:
            names = [n for n in zf.namelist() if n.startswith("xl/worksheets/sheet")]
            return any(b"<f>" in zf.read(n) or b"<f " in zf.read(n) for n in names)
    except (zipfile.BadZipFile, OSError, KeyError):
        return False


def read_xlsx(
    path: Path, source: str, sheet: str | None, is_header: Callable[[list[str]], bool]
) -> Sheet:
    """Read one sheet of an .xlsx workbook cell by cell (see the module docstring)."""
    import openpyxl
    from openpyxl.utils.exceptions import InvalidFileException

    try:  # a file object: openpyxl refuses a workbook by its name (an .xlsx renamed .csv)
        with path.open("rb") as fh:
            wb = openpyxl.load_workbook(io.BytesIO(fh.read()), data_only=True)
    except (zipfile.BadZipFile, OSError, KeyError, ValueError, InvalidFileException) as exc:
        raise InvalidInputError(
            f"{source}: not a readable Excel workbook ({str(exc)[:160]}); save it again as .xlsx"
        ) from exc
    names = wb.sheetnames
    if sheet is not None and sheet not in names:
        raise InvalidInputError(
            f"{source}: no sheet {sheet!r} (--layer); the workbook holds: {', '.join(names)}"
        )
    ws = wb[sheet] if sheet is not None else wb.worksheets[0]
    grid: list[list[Any]] = []
    sheet_rows: list[int] = []
    for r, row in enumerate(ws.iter_rows(values_only=True), start=1):
        grid.append(list(row))
        sheet_rows.append(r)
    merged = []
    for rng in ws.merged_cells.ranges:
        r0, c0, r1, c1 = rng.min_row - 1, rng.min_col - 1, rng.max_row - 1, rng.max_col - 1
        value = grid[r0][c0] if r0 < len(grid) and c0 < len(grid[r0]) else None
        for g in range(r0, min(r1, len(grid) - 1) + 1):
            for k in range(c0, c1 + 1):
                if k < len(grid[g]):
                    grid[g][k] = value
        if r1 > r0:
            merged.append((r0, r1, c0, c1))
    formulas: dict[tuple[int, int], str] = {}
    if _has_formulas(path):
        with path.open("rb") as fh:
            wbf = openpyxl.load_workbook(io.BytesIO(fh.read()), data_only=False, read_only=True)
        try:
            for g, row in enumerate(wbf[ws.title].iter_rows(values_only=True)):
                for k, v in enumerate(row):
                    if (
                        isinstance(v, str)
                        and v.startswith("=")
                        and g < len(grid)
                        and k < len(grid[g])
                        and grid[g][k] is None
                    ):
                        formulas[(g, k)] = v
        finally:
            wbf.close()

    def other_sheets() -> InvalidInputError:
        return InvalidInputError(
            f"{source}: its first sheet {ws.title!r} holds no data rows, and the workbook holds "
            f"{len(names)} sheets: {', '.join(names)}; name the sheet of the cases with --layer, "
            f"e.g. --layer {names[1]}"
        )

    try:
        shaped = shape_table(
            grid, sheet_rows, is_header, merged_cells=merged, formula_cells=formulas
        )
    except InvalidInputError:
        if sheet is None and len(names) > 1:
            raise other_sheets() from None
        raise
    if shaped.frame.empty and sheet is None and len(names) > 1:
        raise other_sheets()
    return shaped


# --------------------------------------------------------------------------------------------
# CSV


def _kind(data: bytes) -> str:
    """'ascii', 'utf-8', 'gbk' (GB18030 but not UTF-8) or 'neither' for one cell's bytes."""
    if data.isascii():
        return "ascii"
    try:
        data.decode("utf-8")
        return "utf-8"
    except UnicodeDecodeError:
        pass
    try:
        data.decode("gb18030")
        return "gbk"
    except UnicodeDecodeError:
        return "neither"


def _records(text: str, sep: str) -> list[list[str]]:
    limit = csv.field_size_limit()
    csv.field_size_limit(2**31 - 1)
    try:
        return list(csv.reader(io.StringIO(text, newline=""), delimiter=sep))
    finally:
        csv.field_size_limit(limit)


def _separator(first_line: str) -> str:
    if "\t" in first_line and "," not in first_line:
        return "\t"
    if ";" in first_line and "," not in first_line and "\t" not in first_line:
        return ";"
    return ","


def decode_csv(data: bytes, source: str) -> str:
    """The CSV's text: UTF-8 / UTF-16 with BOM / GBK for the whole file; mixed files refused.

    A file that holds both UTF-8 and GBK records (rows pasted from files in two encodings) is
    refused naming the minority's rows and a field, so that it is never stored garbled.
    Raises ``UnicodeDecodeError`` (untouched) when the file is in neither encoding at all, for
    the caller's row-by-row message.
    """
    if data.startswith(codecs.BOM_UTF8):
        data = data[3:]
    elif data[:2] in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE):
        return data.decode("utf-16")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    # latin-1 keeps every byte; separators and quotes are ASCII and never part of a GBK or
    # UTF-8 multi-byte character, so the records split the same way in either encoding
    latin = data.decode("latin-1")
    records = _records(latin, _separator(latin.split("\n", 1)[0]))
    kinds: dict[str, list[tuple[int, int]]] = {"utf-8": [], "gbk": []}
    for r, rec in enumerate(records, start=1):
        for k, cell in enumerate(rec):
            kind = _kind(cell.encode("latin-1"))
            if kind in kinds:
                kinds[kind].append((r, k))
    if kinds["utf-8"] and kinds["gbk"]:
        utf8_rows = sorted({r for r, _ in kinds["utf-8"]})
        gbk_rows = sorted({r for r, _ in kinds["gbk"]})
        odd, odd_name, other_name = (
            (gbk_rows, "GBK", "UTF-8")
            if len(gbk_rows) <= len(utf8_rows)
            else (utf8_rows, "UTF-8", "GBK")
        )
        odd_set = set(odd)
        first_row, first_col = next(
            (r, k) for r, k in sorted(kinds[odd_name.lower()]) if r in odd_set
        )
        header = records[0] if records else []
        name = header[first_col].encode("latin-1") if first_col < len(header) else b"?"
        codec = "utf-8" if _kind(name) in ("ascii", "utf-8") else "gb18030"
        field_name = name.decode(codec, "replace")
        shown = ", ".join(map(str, odd[:10])) + (" ..." if len(odd) > 10 else "")
        raise InvalidInputError(
            f"{source}, row {first_row}, field {field_name}: the file mixes text encodings: "
            f"row(s) {shown} are {odd_name} while the others are {other_name} (rows pasted in "
            "from another file); nothing was imported. Open it in Excel or WPS, check those "
            "rows, and save it again as 'CSV UTF-8'"
        )
    return data.decode("gb18030")


def read_csv(text: str, is_header: Callable[[list[str]], bool]) -> Sheet:
    """Shape a decoded CSV's records (record number = sheet row, header included)."""
    first = text.split("\n", 1)[0]
    records = _records(text, _separator(first))
    return shape_table([list(r) for r in records], list(range(1, len(records) + 1)), is_header)
