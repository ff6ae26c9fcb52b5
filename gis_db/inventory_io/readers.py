"""Reading inventory files as they are: GIS files, Excel and CSV, and their text encodings.

A Shapefile's ``.dbf`` and a CSV are tried as UTF-8, then the encoding the ``.cpg`` names, then
GBK (GB18030); text that none decodes is refused with the row and field named, and a CSV that
mixes UTF-8 and GBK rows is refused naming them. Spreadsheets are shaped as offices lay them
out (title rows, total and blank rows, merged cells: :mod:`.sheets`); shapefiles must come with
their parts, and zips may hold them in a folder (:mod:`.shapefiles`).
"""

from __future__ import annotations

import csv
import tempfile
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd

from gis_db.errors import InvalidInputError
from gis_db.inventory import RowProblem
from gis_db.inventory_io.shapefiles import check_parts, no_prj_hint, unzip_vector
from gis_db.inventory_io.sheets import Sheet, decode_csv, read_csv, read_xlsx, sniff_format

VECTOR_SUFFIXES = {".gpkg", ".shp", ".geojson", ".json", ".zip"}
TABLE_SUFFIXES = {".xlsx", ".xlsm", ".csv", ".txt"}


@dataclass
class RawTable:
    """A file as read: attributes under their own headers, geometry if it is a GIS file."""

    source: str
    frame: pd.DataFrame
    geometry: np.ndarray | None
    crs: str | None
    #: the row number the user sees for the first data row (1 for GIS files, 2 for sheets)
    first_row: int
    warnings: list[str] = field(default_factory=list)
    #: the row number the user sees for each row of ``frame`` (sheets: header and title rows,
    #: total and blank rows left out); None: ``first_row`` onwards without gaps
    rows: np.ndarray | None = None
    #: spreadsheets: merged cells over rows, formulas without values, rows skipped on purpose
    merged: list[tuple[str, int, int]] = field(default_factory=list)
    formulas: list[tuple[str, int, str]] = field(default_factory=list)
    skipped: list[RowProblem] = field(default_factory=list)
    #: said when the file has no CRS (e.g. a shapefile's missing .prj)
    crs_hint: str | None = None

    def row_numbers(self) -> np.ndarray:
        """The row number the user sees, for every row of ``frame``."""
        if self.rows is not None:
            return self.rows
        return np.arange(len(self.frame)) + self.first_row


def _decode_candidates(declared: str | None) -> list[str]:
    names = ["utf-8"]
    if declared:
        try:
            codec = __import__("codecs").lookup(declared.strip()).name
        except LookupError:
            codec = {"936": "gb18030", "65001": "utf-8"}.get(declared.strip(), "")
        if codec and codec not in ("latin-1", "iso8859-1", "cp1252") and codec not in names:
            names.append(codec)
    if "gb18030" not in names:
        names.append("gb18030")
    return names


def _is_text(series: pd.Series) -> bool:
    return series.dtype == object or pd.api.types.is_string_dtype(series.dtype)


def _decode_cell(value: str, codec: str, header: bool) -> str:
    """Raw bytes (read as latin-1) decoded with ``codec``; raises UnicodeDecodeError.

    DBF field names are cut at 10 bytes, often inside a multi-byte character (a UTF-8 "是否入库"
    becomes "是否入" plus one stray byte): for headers that stray tail is dropped.
    """
    data = value.encode("latin-1")
    try:
        return data.decode(codec)
    except UnicodeDecodeError as exc:
        if header and exc.end == len(data) and len(data) >= 9 and exc.start >= len(data) - 3:
            return data[: exc.start].decode(codec)
        raise


def _decode_shapefile_text(raw: RawTable, declared: str | None) -> None:
    """Decode a shapefile read as latin-1 (raw bytes): UTF-8, the .cpg's encoding, then GBK."""
    text_cols = [c for c in raw.frame.columns if _is_text(raw.frame[c])]
    cells: list[tuple[int | None, str]] = [(None, str(h)) for h in raw.frame.columns]
    for c in text_cols:
        s = raw.frame[c]
        for i in np.flatnonzero(s.map(lambda v: isinstance(v, str) and not v.isascii()).to_numpy()):
            cells.append((int(i), s.iat[i]))

    def fits(codec: str, row: int | None, v: str) -> bool:
        try:
            _decode_cell(v, codec, header=row is None)
            return True
        except UnicodeDecodeError:
            return False

    chosen = next(
        (
            codec
            for codec in _decode_candidates(declared)
            if all(fits(codec, r, v) for r, v in cells)
        ),
        None,
    )
    if chosen is None:
        bad_row, bad = next(
            ((r, v) for r, v in cells if not (fits("utf-8", r, v) or fits("gb18030", r, v))),
            cells[0],
        )
        col = _column_of(raw.frame, bad_row, bad)
        where = "header row" if bad_row is None else f"row {bad_row + raw.first_row}"
        raise InvalidInputError(
            f"{raw.source}, {where}, field {col}: text is neither UTF-8 nor GBK "
            f"(bytes {bad.encode('latin-1')[:12].hex(' ')}): save the file as UTF-8, or add a "
            ".cpg file naming its encoding"
        )
    if declared and chosen not in _decode_candidates(declared)[:2]:
        raw.warnings.append(
            f".cpg declares {declared.strip()} but the text is {chosen}; read as {chosen}"
        )

    def dec(v: object) -> object:
        return _decode_cell(v, chosen, header=False) if isinstance(v, str) else v

    positions = [i for i, c in enumerate(raw.frame.columns) if c in text_cols]
    raw.frame.columns = [_decode_cell(str(h), chosen, header=True) for h in raw.frame.columns]
    for pos in positions:
        raw.frame.isetitem(pos, raw.frame.iloc[:, pos].astype(object).map(dec))


def _decodes(data: bytes, codecs: Iterable[str]) -> bool:
    for codec in codecs:
        try:
            data.decode(codec)
            return True
        except UnicodeDecodeError:
            pass
    return False


def _column_of(frame: pd.DataFrame, row: int | None, value: str) -> str:
    def show(s: str) -> str:
        data = s.encode("latin-1")
        codec = "utf-8" if _decodes(data, ["utf-8"]) else "gb18030"
        return data.decode(codec, "replace")

    if row is None:
        return show(value)
    return next((show(str(c)) for c in frame.columns if frame[c].iat[row] == value), "?")


def _read_vector(path: Path, source: str, layer: str | None) -> RawTable:
    if path.suffix.lower() == ".zip":
        with tempfile.TemporaryDirectory(prefix="weijian-unzip-") as tmp:
            inner, used_layer, chosen = unzip_vector(path, source, layer, Path(tmp))
            raw = _read_vector_file(inner, source, None if used_layer else layer)
            if raw.crs_hint:
                raw.crs_hint = f"{Path(chosen).stem}.prj (its CRS) is missing next to {chosen}"
            return raw
    if path.suffix.lower() == ".shp":
        check_parts(path, source)
    return _read_vector_file(path, source, layer)


def _read_vector_file(path: Path, source: str, layer: str | None) -> RawTable:
    import pyogrio
    from pyogrio.errors import DataLayerError, DataSourceError

    target = str(path)
    kind = {".gpkg": "GeoPackage", ".shp": "Shapefile"}.get(path.suffix.lower(), "GIS file")
    try:
        layers = [str(name) for name, _ in pyogrio.list_layers(target)]
        if layer is None and len(layers) > 1:
            raise InvalidInputError(
                f"{source}: holds {len(layers)} layers ({', '.join(layers)}); choose one with "
                "--layer"
            )
        if layer is not None and layer not in layers:
            raise InvalidInputError(
                f"{source}: no layer {layer!r}; it holds: {', '.join(layers) or 'none'}"
            )
        is_shp = path.suffix.lower() == ".shp"
        with warnings.catch_warnings():  # a NaN vertex is reported per row by validation
            warnings.filterwarnings("ignore", "invalid value encountered", RuntimeWarning)
            frame = pyogrio.read_dataframe(
                target, layer=layer, encoding="latin1" if is_shp else None
            )
    except (DataSourceError, DataLayerError) as exc:
        raise InvalidInputError(
            f"{source}: not a readable {kind} (truncated or corrupt: "
            f"{str(exc).split(';')[-1].strip()[:160]}); export it again from the source program"
        ) from exc
    geometry = None
    if isinstance(frame, gpd.GeoDataFrame):
        geometry = frame.geometry.to_numpy()
        crs = frame.crs.to_string() if frame.crs is not None else None
        frame = pd.DataFrame(frame.drop(columns=frame.geometry.name))
    else:
        crs = None
    raw = RawTable(source, frame, geometry, crs, first_row=1)
    if is_shp:
        raw.crs_hint = no_prj_hint(path)
        cpg = path.with_suffix(".cpg")
        declared = cpg.read_text(errors="replace").strip() if cpg.is_file() else None
        _decode_shapefile_text(raw, declared)
    return raw


def _decode_csv(data: bytes, source: str) -> str:
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    elif data[:2] in (b"\xff\xfe", b"\xfe\xff"):
        return data.decode("utf-16")
    try:
        return decode_csv(data, source)  # UTF-8, GBK, or refused when rows mix the two
    except UnicodeDecodeError:
        pass
    lines = data.split(b"\n")
    header_codec = next(c for c in ("utf-8", "gb18030", "latin-1") if _decodes(lines[0], [c]))
    headers = next(csv.reader([lines[0].decode(header_codec)]))
    for n, line in enumerate(lines, start=1):
        if not _decodes(line, ("utf-8", "gb18030")):
            cells = line.split(b",")
            k = next(i for i, c in enumerate(cells) if not _decodes(c, ("utf-8", "gb18030")))
            col = headers[k] if k < len(headers) and n > 1 else "?"
            where = "header row" if n == 1 else f"row {n}"
            raise InvalidInputError(
                f"{source}, {where}, field {col}: text is neither UTF-8 nor GBK (bytes "
                f"{cells[k][:12].hex(' ')}): save the file as UTF-8 (Excel: CSV UTF-8)"
            )
    raise AssertionError("unreachable")  # pragma: no cover


def _read_table(
    path: Path, source: str, layer: str | None, is_header: Callable[[list[str]], bool]
) -> RawTable:
    """A spreadsheet or CSV shaped as the office laid it out (:mod:`.sheets`)."""
    suffix = path.suffix.lower()
    magic = sniff_format(path)
    notes: list[str] = []
    if magic == "xls":
        raise InvalidInputError(
            f"{source}: is an old Excel 97-2003 workbook (.xls); open it in Excel or WPS and "
            "save it as .xlsx (Excel 工作簿)"
        )
    if suffix in (".csv", ".txt") and magic == "xlsx":
        notes.append(
            f"{source} is an Excel workbook (.xlsx) under a {suffix} name; read as Excel "
            "(rename it to .xlsx)"
        )
        suffix = ".xlsx"
    sheet: Sheet
    if suffix in (".csv", ".txt"):
        try:
            sheet = read_csv(_decode_csv(path.read_bytes(), source), is_header)
        except csv.Error as exc:
            raise InvalidInputError(f"{source}: not a readable CSV file ({exc})") from exc
    else:
        sheet = read_xlsx(path, source, layer, is_header)
    return RawTable(
        source,
        sheet.frame,
        None,
        None,
        first_row=sheet.header_row + 1,
        warnings=notes + sheet.warnings,
        rows=sheet.rows,
        merged=sheet.merged,
        formulas=sheet.formulas,
        skipped=[RowProblem(row=s.row, field=None, reason=s.reason) for s in sheet.skipped],
    )


def _any_row(cells: list[str]) -> bool:
    return any(cells)


def read_table(
    path: str | Path,
    *,
    layer: str | None = None,
    is_header: Callable[[list[str]], bool] = _any_row,
) -> RawTable:
    """Read any supported file as it is: original headers, raw values, geometry if any.

    ``is_header``: for spreadsheets, whether a row's cell texts are the header row (default:
    the first non-blank row); title rows above it, and total and blank rows, are skipped.
    """
    path = Path(path)
    source = path.name
    if not path.exists():
        raise InvalidInputError(f"{path}: no such file")
    suffix = path.suffix.lower()
    if suffix in (".xls", ".et"):
        raise InvalidInputError(
            f"{source}: is an old Excel 97-2003 (or WPS) workbook; open it in Excel or WPS and "
            "save it as .xlsx (Excel 工作簿)"
        )
    if suffix not in VECTOR_SUFFIXES | TABLE_SUFFIXES:
        raise InvalidInputError(
            f"{source}: unsupported file type {suffix!r}; use .gpkg, .shp, .geojson, .xlsx or .csv"
        )
    if path.stat().st_size == 0:
        raise InvalidInputError(f"{source}: the file is empty (0 bytes); nothing to import")
    raw = (
        _read_vector(path, source, layer)
        if suffix in VECTOR_SUFFIXES
        else _read_table(path, source, layer, is_header)
    )
    if raw.frame.empty:
        raise InvalidInputError(
            f"{source}: the file has a header but no data rows; nothing to import"
        )
    return raw
