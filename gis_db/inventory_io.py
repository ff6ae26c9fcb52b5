"""Reading, validating and writing inventory files: GeoPackage, Shapefile, GeoJSON, Excel, CSV.

Reading a user file (``read_cases`` / ``read_units``) gives a clean GeoDataFrame in the working
CRS with canonical columns and domain codes, plus the rows rejected and repaired. Rules:

* **Formats**: ``.gpkg``, ``.shp`` (also ``.zip`` holding one), ``.geojson``/``.json``,
  ``.xlsx``, ``.csv``/``.txt``. Excel and CSV carry geometry as a WKT column, or as
  longitude + latitude columns plus an area column (m²): such a case gets a square footprint of
  that area around the point, and the import says so.
* **Text encoding**: GeoPackage, GeoJSON and Excel are Unicode. A Shapefile's ``.dbf`` and a
  CSV are tried as UTF-8, then the encoding the ``.cpg`` names, then GBK (GB18030); text that
  none decodes, or that holds U+FFFD replacement characters (mojibake), is refused.
* **CRS**: the file's own CRS (``.prj``, GeoPackage SRS, GeoJSON = EPSG:4326, or a header such
  as ``WKT (EPSG:4549)``) is used and reported; ``--crs`` supplies one for files without it
  (a CSV of lon/lat without ``--crs`` is refused: CGCS2000 and a local grid cannot be told
  apart safely) and must agree with a declared one. Everything is reprojected to the working CRS.
* **Headers** map to fields through ``gis_db/mappings/inventory.toml`` (``--mapping`` adds to
  it). Unknown columns are ignored with a warning, or refused with ``strict=True``.
* **Rows** are numbered as the user sees them: sheet row / CSV line for Excel and CSV (the
  header is row 1), 1-based feature number for GIS files. Every problem names file, row, field.
* **Geometry**: polygons only; an invalid polygon is repaired with ``make_valid`` when the
  repair is polygonal and changes the area by less than 1 %, otherwise rejected; footprints must
  lie within the district (the 街镇 already loaded, else a Shanghai bounding box).

Without ``skip_invalid`` the first problem is raised as ``InvalidInputError`` and nothing is
written; with it, the problem rows are left out and listed in a report file (CSV, UTF-8 with
BOM so that Excel opens it).
"""

from __future__ import annotations

import csv
import io
import re
import time
import tomllib
import zipfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from importlib.resources import files
from pathlib import Path
from typing import Any, Literal

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from pyproj import CRS, Transformer
from pyproj.exceptions import CRSError
from sqlalchemy import Engine, text

from gis_db import domain
from gis_db.errors import InvalidInputError
from gis_db.inventory import (
    CASE_FIELDS,
    ImportReport,
    Progress,
    RowProblem,
    UnitLevel,
    upsert_cases,
    upsert_units,
)
from gis_db.schema import stored_crs

Kind = Literal["cases", "street_town", "village"]

#: Shanghai as (lon_min, lat_min, lon_max, lat_max) in CGCS2000 degrees: the extent footprints
#: must lie in while no 街镇 boundaries are loaded.
SHANGHAI_LONLAT = (120.8, 30.6, 122.2, 31.9)
#: Tolerance around the loaded 街镇 extent, metres.
DISTRICT_MARGIN_M = 500.0
#: Largest relative area change a geometry repair may make and still be accepted.
MAX_REPAIR_AREA_CHANGE = 0.01

VECTOR_SUFFIXES = {".gpkg", ".shp", ".geojson", ".json", ".zip"}
TABLE_SUFFIXES = {".xlsx", ".xlsm", ".csv", ".txt"}
ENUM_FIELDS: dict[str, type[domain.LabelledEnum]] = {
    "priority_type": domain.PriorityType,
    "construction_status": domain.ConstructionStatus,
    "exemption": domain.Exemption,
    "disposal": domain.Disposal,
    "source": domain.DiscoverySource,
}
TEXT_FIELDS = ("address", "owner", "remark")
REQUIRED: dict[str, tuple[str, ...]] = {
    "cases": ("case_number",),
    "street_town": ("code", "name"),
    "village": ("code", "name"),
}


# --------------------------------------------------------------------------------------------
# mapping


@dataclass
class FieldMapping:
    """Header aliases per canonical field, extra value spellings, headers to ignore."""

    fields: dict[str, list[str]]
    values: dict[str, dict[str, Any]] = field(default_factory=dict)
    ignore: list[str] = field(default_factory=list)


def _norm_header(text_: object) -> str:
    """Header compared ignoring case, spaces, ``_``/``-`` and a trailing ``(...)``."""
    s = re.sub(r"[（(][^()（）]*[)）]\s*$", "", str(text_).strip())
    return re.sub(r"[\s_\-]+", "", s).lower()


def _header_crs(header: str) -> str | None:
    """The CRS a header declares in a trailing ``(...)``, e.g. ``WKT (EPSG:4549)``."""
    m = re.search(r"[（(]([^()（）]*)[)）]\s*$", str(header))
    if not m:
        return None
    try:
        return CRS.from_user_input(m.group(1).strip()).to_string()
    except CRSError:
        return None


def load_mapping(kind: Kind, path: str | Path | None = None) -> FieldMapping:
    """The header/value mapping for ``kind``: the shipped TOML, with ``path``'s entries first."""

    def section(doc: dict[str, Any]) -> dict[str, Any]:
        return doc.get(kind, {})

    shipped = section(
        tomllib.loads((files("gis_db") / "mappings" / "inventory.toml").read_text(encoding="utf-8"))
    )
    user: dict[str, Any] = {}
    if path is not None:
        try:
            user = section(tomllib.loads(Path(path).read_text(encoding="utf-8")))
        except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise InvalidInputError(
                f"{path}: cannot read the mapping file ({exc}); it must be UTF-8 TOML shaped "
                "like gis_db/mappings/inventory.toml"
            ) from exc
    fields_ = {k: list(v) for k, v in shipped.get("fields", {}).items() if k != "ignore"}
    for k, v in user.get("fields", {}).items():
        if k != "ignore":
            fields_[k] = list(v) + fields_.get(k, [])
    ignore = list(user.get("fields", {}).get("ignore", [])) + list(
        shipped.get("fields", {}).get("ignore", [])
    )
    values: dict[str, dict[str, Any]] = {}
    for doc in (shipped, user):
        for f, m in doc.get("values", {}).items():
            values.setdefault(f, {}).update({str(k).strip().lower(): v for k, v in m.items()})
    return FieldMapping(fields_, values, ignore)


def _truncated_match(key: str, lookup: dict[str, str]) -> str | None:
    """The field of the one alias that ``key`` is a DBF-truncated form of (10-byte names)."""
    if len(key) < 2 or key.isascii():
        return None
    hits = {
        f
        for alias, f in lookup.items()
        if alias.startswith(key) and len(alias.encode("utf-8")) > 10
    }
    return hits.pop() if len(hits) == 1 else None


def map_headers(
    source: str, headers: Iterable[str], mapping: FieldMapping, *, strict: bool = False
) -> tuple[dict[str, str], list[str]]:
    """{file header: canonical field} and the unknown headers (an error when ``strict``)."""
    lookup: dict[str, str] = {}
    for canonical, aliases in mapping.fields.items():
        for alias in [canonical, *aliases]:
            lookup.setdefault(_norm_header(alias), canonical)
    ignored = {_norm_header(a) for a in mapping.ignore}
    found: dict[str, str] = {}
    unknown: list[str] = []
    for h in headers:
        key = _norm_header(h)
        f: str | None = lookup.get(key) or _truncated_match(key, lookup)
        if f is None:
            if key not in ignored:
                unknown.append(str(h))
            continue
        if f in found.values():
            other = next(k for k, v in found.items() if v == f)
            raise InvalidInputError(
                f"{source}, header row, field {h}: columns {other!r} and {h!r} both map to "
                f"{f}; rename one of them or pass --mapping with a narrower alias list"
            )
        found[str(h)] = f
    if unknown and strict:
        raise InvalidInputError(
            f"{source}, header row, field {unknown[0]}: unknown column (--strict); add it to "
            "a --mapping file or remove it"
        )
    return found, unknown


# --------------------------------------------------------------------------------------------
# reading raw files


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
    import pyogrio
    from pyogrio.errors import DataLayerError, DataSourceError

    target = f"/vsizip/{path}" if path.suffix.lower() == ".zip" else str(path)
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
        is_shp = path.suffix.lower() in (".shp", ".zip")
        frame = pyogrio.read_dataframe(target, layer=layer, encoding="latin1" if is_shp else None)
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
        cpg = path.with_suffix(".cpg")
        declared = cpg.read_text(errors="replace").strip() if cpg.is_file() else None
        _decode_shapefile_text(raw, declared)
    return raw


def _decode_csv(data: bytes, source: str) -> str:
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    elif data[:2] in (b"\xff\xfe", b"\xfe\xff"):
        return data.decode("utf-16")
    for codec in ("utf-8", "gb18030"):
        try:
            return data.decode(codec)
        except UnicodeDecodeError:
            continue
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


def _read_table(path: Path, source: str, layer: str | None) -> RawTable:
    suffix = path.suffix.lower()
    if suffix in (".csv", ".txt"):
        content = _decode_csv(path.read_bytes(), source)
        first = content.split("\n", 1)[0]
        sep = "\t" if "\t" in first and "," not in first else ","
        try:
            frame = pd.read_csv(io.StringIO(content), sep=sep, dtype=str, keep_default_na=False)
        except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
            raise InvalidInputError(f"{source}: not a readable CSV file ({exc})") from exc
    else:
        try:
            frame = pd.read_excel(path, sheet_name=layer if layer else 0, dtype=object)
        except (zipfile.BadZipFile, OSError, KeyError, ValueError) as exc:
            raise InvalidInputError(
                f"{source}: not a readable Excel workbook ({exc}); save it again as .xlsx"
                + ("" if layer is None else " or check --layer (the sheet name)")
            ) from exc
    frame.columns = [str(c).strip() for c in frame.columns]
    return RawTable(source, frame, None, None, first_row=2)


def read_table(path: str | Path, *, layer: str | None = None) -> RawTable:
    """Read any supported file as it is: original headers, raw values, geometry if any."""
    path = Path(path)
    source = path.name
    if not path.exists():
        raise InvalidInputError(f"{path}: no such file")
    suffix = path.suffix.lower()
    if suffix not in VECTOR_SUFFIXES | TABLE_SUFFIXES:
        raise InvalidInputError(
            f"{source}: unsupported file type {suffix!r}; use .gpkg, .shp, .geojson, .xlsx or .csv"
        )
    if path.stat().st_size == 0:
        raise InvalidInputError(f"{source}: the file is empty (0 bytes); nothing to import")
    raw = (
        _read_vector(path, source, layer)
        if suffix in VECTOR_SUFFIXES
        else _read_table(path, source, layer)
    )
    if raw.frame.empty:
        raise InvalidInputError(
            f"{source}: the file has a header but no data rows; nothing to import"
        )
    return raw


# --------------------------------------------------------------------------------------------
# validation


class _Problems:
    """Row problems collected during validation, keyed by frame position."""

    def __init__(self, source: str, first_row: int, numbers: pd.Series | None) -> None:
        self.source = source
        self.first_row = first_row
        self.numbers = numbers
        self.items: list[tuple[int, RowProblem]] = []
        self.bad = np.zeros(0, dtype=bool)

    def add(
        self,
        positions: Iterable[int],
        field_: str | None,
        reason: str | Callable[[int], str],
        values: pd.Series | np.ndarray | None = None,
    ) -> None:
        for i in positions:
            i = int(i)
            value = None if values is None else values[i]
            number = None if self.numbers is None else self.numbers.iat[i]
            self.items.append(
                (
                    i,
                    RowProblem(
                        row=i + self.first_row,
                        field=field_,
                        reason=reason(i) if callable(reason) else reason,
                        value=None if value is None or value is pd.NA else str(value)[:80],
                        case_number=None if number is None or number is pd.NA else str(number),
                    ),
                )
            )

    def positions(self) -> set[int]:
        return {i for i, _ in self.items}

    def sorted(self) -> list[RowProblem]:
        return [p for _, p in sorted(self.items, key=lambda t: (t[0], t[1].field or ""))]

    def raise_first(self) -> None:
        if not self.items:
            return
        problems = self.sorted()
        more = len(problems) - 1
        tail = (
            (
                f" (and {more} more problem{'s' if more > 1 else ''}: --skip-invalid --report "
                "FILE imports the valid rows and lists them all)"
            )
            if more
            else ""
        )
        raise InvalidInputError(problems[0].message(self.source) + tail)


def _label(header: str, canonical: str) -> str:
    return header if _norm_header(header) == _norm_header(canonical) else f"{header} ({canonical})"


def _blank(series: pd.Series) -> np.ndarray:
    s = series.astype("object")
    return (s.isna() | s.map(lambda v: isinstance(v, str) and not v.strip())).to_numpy(bool)


def _as_text(series: pd.Series) -> pd.Series:
    """Cell values as stripped strings (integral floats without '.0'), blanks as None."""

    def conv(v: object) -> object:
        if v is None or v is pd.NA or v is pd.NaT or (isinstance(v, float) and np.isnan(v)):
            return None
        if isinstance(v, float) and v.is_integer():
            v = int(v)
        s = str(v).strip()
        return s or None

    return series.astype("object").map(conv)


def _parse_date(value: object) -> date:
    if isinstance(value, datetime | pd.Timestamp):
        return value.date()
    if isinstance(value, date):
        return value
    if isinstance(value, int | float) and 20000 < float(value) < 80000:  # Excel serial day
        return date(1899, 12, 30) + timedelta(days=int(value))
    s = re.sub(r"[年月./]", "-", str(value).strip()).replace("日", "").strip("-")
    s = s.split(" ")[0].split("T")[0]
    if re.fullmatch(r"\d{8}", s):
        s = f"{s[:4]}-{s[4:6]}-{s[6:]}"
    return datetime.strptime(s, "%Y-%m-%d").date()


def _map_unique(series: pd.Series, fn: Callable[[Any], Any]) -> tuple[pd.Series, dict[Any, str]]:
    """Apply ``fn`` once per distinct non-blank value; returns mapped values and failures."""
    errors: dict[Any, str] = {}
    table: dict[Any, Any] = {}
    for v in pd.unique(series.dropna()):
        try:
            table[v] = fn(v)
        except (ValueError, TypeError, OverflowError) as exc:
            errors[v] = str(exc)
    return series.map(lambda v: table.get(v) if v is not None else None), errors


def _validate_attributes(
    cols: dict[str, str], frame: pd.DataFrame, mapping: FieldMapping, probs: _Problems, today: date
) -> pd.DataFrame:
    """Canonical case attributes (codes, booleans, dates) from the mapped file columns."""
    out = pd.DataFrame(index=frame.index)
    for f, header in cols.items():
        if f not in CASE_FIELDS:
            continue
        label = _label(header, f)
        values = _as_text(frame[header]) if f != "discovered_on" else frame[header].astype(object)
        if f in ENUM_FIELDS:
            enum = ENUM_FIELDS[f]
            extra = mapping.values.get(f, {})

            def parse(
                v: str, enum: type[domain.LabelledEnum] = enum, extra: dict[str, Any] = extra
            ) -> str:
                key = v.strip().lower()
                return str(extra[key]) if key in extra else enum.parse(v).value

            mapped, errs = _map_unique(values, parse)
            for v, msg in errs.items():
                probs.add(
                    np.flatnonzero((values == v).to_numpy()),
                    label,
                    msg + f"; fix the value or add it under [cases.values.{f}] in a --mapping file",
                    values.to_numpy(),
                )
            out[f] = mapped
        elif f == "in_database":
            extra = mapping.values.get(f, {})

            def parse_bool(v: str, extra: dict[str, Any] = extra) -> bool:
                key = v.strip().lower()
                if key in extra:
                    return bool(extra[key])
                raise ValueError(
                    f"unknown 入库状态 {v!r}; allowed: 库内, 库外 (or 是/否, true/false)"
                )

            mapped, errs = _map_unique(values, parse_bool)
            for v, msg in errs.items():
                probs.add(np.flatnonzero((values == v).to_numpy()), label, msg, values.to_numpy())
            out[f] = mapped
        elif f == "discovered_on":
            blank = _blank(values)
            values = values.where(~blank, None)
            mapped, errs = _map_unique(values, _parse_date)
            for v in errs:
                probs.add(
                    np.flatnonzero((values == v).to_numpy()),
                    label,
                    "not a date; write it as 2024-03-05 or 2024年3月5日",
                    values.to_numpy(),
                )
            future = np.flatnonzero(mapped.map(lambda d: d is not None and d > today).to_numpy())
            probs.add(
                future,
                label,
                f"discovery date lies in the future (today is {today}); check the date",
                mapped.to_numpy(),
            )
            out[f] = mapped
        else:
            out[f] = values
        if f in TEXT_FIELDS or f in ENUM_FIELDS:
            moj = np.flatnonzero(
                out[f].map(lambda v: isinstance(v, str) and "\ufffd" in v).to_numpy()
            )
            probs.add(
                moj,
                label,
                "text holds U+FFFD replacement characters (mojibake): the "
                "file was saved with a wrong encoding; export it again as UTF-8",
                out[f].to_numpy(),
            )
    return out


def _resolve_crs(source: str, declared: str | None, given: str | None) -> CRS:
    given_crs = None
    if given:
        try:
            given_crs = CRS.from_user_input(given)
        except CRSError as exc:
            raise InvalidInputError(
                f"--crs {given!r} is not a CRS PROJ understands: use e.g. EPSG:4490 or EPSG:4549"
            ) from exc
    if declared and given_crs and not CRS.from_user_input(declared).equals(given_crs):
        raise InvalidInputError(
            f"{source}, all rows, field geometry: the file declares {declared} but --crs says "
            f"{given}; "
            "drop --crs or fix the file's CRS"
        )
    if declared:
        return CRS.from_user_input(declared)
    if given_crs is None:
        raise InvalidInputError(
            f"{source}, all rows, field geometry: the file has no CRS (no .prj, no SRS, no "
            "'(EPSG:…)' in "
            "the geometry header); give it with --crs, e.g. --crs EPSG:4490 (CGCS2000 lon/lat) "
            "or --crs EPSG:4549"
        )
    return given_crs


def _crs_name(crs: CRS) -> str:
    code = crs.to_epsg(min_confidence=90)
    return f"EPSG:{code} ({crs.name})" if code else crs.name


def _geometry(
    raw: RawTable, cols: dict[str, str], probs: _Problems, kind: Kind
) -> tuple[np.ndarray, str | None, np.ndarray | None, str]:
    """Geometries as read, the CRS a header declares, square sides for lon/lat, field label."""
    if raw.geometry is not None:
        return raw.geometry, None, None, "geometry"
    if "wkt" in cols:
        header = cols["wkt"]
        text_ = _as_text(raw.frame[header])
        geoms = shapely.from_wkt(text_.to_numpy(), on_invalid="ignore")
        unreadable = np.flatnonzero(text_.notna().to_numpy() & shapely.is_missing(geoms))
        probs.add(
            unreadable, header, "not valid WKT; write e.g. POLYGON((x y, …))", text_.to_numpy()
        )
        return geoms, _header_crs(header), None, header
    if "lon" in cols and "lat" in cols:
        if kind != "cases":
            raise InvalidInputError(
                f"{raw.source}, header row, field geometry: 街镇/居村 boundaries need polygons: "
                "give a WKT column, or a GeoPackage/Shapefile"
            )
        if "area_m2" not in cols:
            raise InvalidInputError(
                f"{raw.source}, header row, field 面积 (area_m2): lon/lat rows need an area "
                "column (m²) to draw a footprint; add one, or give a WKT column"
            )
        lon = pd.to_numeric(raw.frame[cols["lon"]], errors="coerce").to_numpy(dtype=float)
        lat = pd.to_numeric(raw.frame[cols["lat"]], errors="coerce").to_numpy(dtype=float)
        area = pd.to_numeric(raw.frame[cols["area_m2"]], errors="coerce").to_numpy(dtype=float)
        for f, arr in (("lon", lon), ("lat", lat)):
            probs.add(
                np.flatnonzero(~np.isfinite(arr)),
                cols[f],
                "not a number",
                raw.frame[cols[f]].to_numpy(),
            )
        probs.add(
            np.flatnonzero(~(area > 0)),
            _label(cols["area_m2"], "area_m2"),
            "area must be a positive number of m² (it sizes the footprint)",
            raw.frame[cols["area_m2"]].to_numpy(),
        )
        ok = np.isfinite(lon) & np.isfinite(lat)
        geoms = np.asarray(shapely.points(np.where(ok, lon, 0), np.where(ok, lat, 0)), dtype=object)
        geoms[~ok] = None
        declared = _header_crs(cols["lon"]) or _header_crs(cols["lat"])
        return geoms, declared, np.sqrt(np.where(area > 0, area, np.nan)), "geometry"
    needed = "WKT column, or lon + lat + 面积 columns" if kind == "cases" else "WKT column"
    raise InvalidInputError(
        f"{raw.source}, header row, field geometry: no geometry column (a {needed}); columns "
        f"found: {', '.join(map(str, raw.frame.columns))}. Rename one or add its header to a "
        "--mapping file"
    )


def _extent_check(
    geoms: np.ndarray,
    extent: tuple[float, float, float, float],
    ok: np.ndarray,
    working: CRS,
    probs: _Problems,
    label: str,
    where: str,
) -> np.ndarray:
    """Mark footprints outside ``extent`` (working CRS); returns the mask of those inside."""
    bounds = shapely.bounds(geoms)
    with np.errstate(invalid="ignore"):
        inside = (
            (bounds[:, 0] >= extent[0])
            & (bounds[:, 1] >= extent[1])
            & (bounds[:, 2] <= extent[2])
            & (bounds[:, 3] <= extent[3])
        )
    outside = np.flatnonzero(ok & ~inside)
    if len(outside):
        to_ll = Transformer.from_crs(working, "EPSG:4490", always_xy=True)
        cx, cy = to_ll.transform(
            (bounds[outside, 0] + bounds[outside, 2]) / 2,
            (bounds[outside, 1] + bounds[outside, 3]) / 2,
        )
        lonlat = {int(i): (x, y) for i, x, y in zip(outside, cx, cy, strict=True)}
        probs.add(
            outside,
            label,
            lambda i: (
                f"footprint at lon {lonlat[i][0]:.4f}, lat {lonlat[i][1]:.4f} lies outside "
                f"{where}: check the coordinates and the CRS (--crs)"
            ),
        )
    return ok & inside


def _repair(
    geoms: np.ndarray, ok: np.ndarray, probs: _Problems, label: str, repaired: list[RowProblem]
) -> np.ndarray:
    """Repair invalid polygons in place when safe (<1 % area change); mark the others."""
    invalid = np.flatnonzero(ok & ~shapely.is_valid(geoms))
    for i in invalid:
        g = geoms[i]
        reason = re.sub(
            r"\[(-?[\d.]+) (-?[\d.]+)\]",
            lambda m: f" at x {float(m[1]):.2f}, y {float(m[2]):.2f}",
            shapely.is_valid_reason(g),
        )
        fixed = shapely.make_valid(g)
        polys = [p for p in shapely.get_parts(fixed) if p.geom_type in ("Polygon", "MultiPolygon")]
        fixed = shapely.union_all(polys) if polys else None
        before, after = shapely.area(g), (fixed.area if fixed is not None else 0.0)
        change = abs(after - before) / before if before > 0 else np.inf
        if fixed is not None and not fixed.is_empty and change < MAX_REPAIR_AREA_CHANGE:
            geoms[i] = fixed
            repaired.append(
                RowProblem(
                    row=int(i) + probs.first_row,
                    field=label,
                    reason=(
                        f"invalid polygon ({reason}) repaired: area {before:.1f} → {after:.1f} m²"
                    ),
                    case_number=None if probs.numbers is None else probs.numbers.iat[i],
                )
            )
        else:
            probs.add(
                [int(i)],
                label,
                f"invalid polygon ({reason}) that cannot be repaired safely "
                f"(repair would change its area from {before:.1f} to {after:.1f} m²): "
                "redraw it without self-intersections",
            )
            ok[i] = False
    return ok


def _validate_geometry(
    raw: RawTable,
    cols: dict[str, str],
    probs: _Problems,
    kind: Kind,
    working: CRS,
    crs: str | None,
    extent: tuple[float, float, float, float],
    where: str,
    repaired: list[RowProblem],
    warnings: list[str],
) -> tuple[np.ndarray, CRS]:
    geoms, declared, sides, label = _geometry(raw, cols, probs, kind)
    source_crs = _resolve_crs(raw.source, raw.crs or declared, crs)
    geoms = shapely.force_2d(np.asarray(geoms, dtype=object))
    missing = shapely.is_missing(geoms) | shapely.is_empty(geoms)
    # geometries that failed to parse were reported already
    already = np.zeros(len(geoms), dtype=bool)
    already[list(probs.positions())] = True
    probs.add(np.flatnonzero(missing & ~already), label, "no geometry; every row needs a footprint")
    types = shapely.get_type_id(geoms)
    polygonal = np.isin(types, (3, 6))
    ok = ~missing & (polygonal | (sides is not None))
    wrong = np.flatnonzero(~missing & ~ok)
    what = (
        "cases need footprint polygons (面)" if kind == "cases" else "boundaries must be polygons"
    )
    probs.add(
        wrong,
        label,
        lambda i: (
            f"is a {geoms[i].geom_type}; {what}, not points or lines: export the polygon layer"
        ),
    )
    if sides is not None:
        ok &= np.isfinite(sides)
    if not source_crs.equals(working):
        geoms = np.asarray(gpd.GeoSeries(geoms, crs=source_crs).to_crs(working).to_numpy())
    if sides is not None:
        x, y = shapely.get_x(geoms), shapely.get_y(geoms)
        with np.errstate(invalid="ignore"):
            geoms = np.where(
                ok & np.isfinite(sides),
                shapely.box(x - sides / 2, y - sides / 2, x + sides / 2, y + sides / 2),
                geoms,
            )
        warnings.append(
            f"{int(ok.sum())} footprint(s) drawn as squares of the given area around "
            "the lon/lat point (approximate; replace them with surveyed polygons)"
        )
    ok = _extent_check(geoms, extent, ok, working, probs, label, where)
    ok = _repair(geoms, ok, probs, label, repaired)
    zero = np.flatnonzero(ok & ~(shapely.area(geoms) > 0))
    probs.add(zero, label, "footprint has zero area; redraw it")
    return geoms, source_crs


@dataclass
class ReadResult:
    """A validated file: canonical frame in the working CRS and what was left out or fixed."""

    frame: gpd.GeoDataFrame
    #: for each row of ``frame``, the row number the user sees in the file
    rows: list[int]
    rejected: list[RowProblem]
    repaired: list[RowProblem]
    warnings: list[str]
    source_crs: str
    seconds_read: float = 0.0
    seconds_validate: float = 0.0


def shanghai_extent(working_crs: str) -> tuple[float, float, float, float]:
    """:data:`SHANGHAI_LONLAT` in the working CRS (minx, miny, maxx, maxy), metres."""
    tr = Transformer.from_crs("EPSG:4490", working_crs, always_xy=True)
    return tr.transform_bounds(*SHANGHAI_LONLAT, densify_pts=21)


def district_extent(
    engine: Engine, working_crs: str
) -> tuple[tuple[float, float, float, float], str]:
    """Where footprints must lie: the loaded 街镇' extent (+ margin) or Shanghai; and its name."""
    with engine.connect() as conn:
        row = conn.execute(
            text(
                "SELECT ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e), n "
                "FROM (SELECT ST_Extent(geom) e, count(*) n FROM street_town) s"
            )
        ).one()
    if row[0] is None:
        return shanghai_extent(working_crs), "Shanghai (no 街镇 loaded yet)"
    m = DISTRICT_MARGIN_M
    return (row[0] - m, row[1] - m, row[2] + m, row[3] + m), f"the district (its {row[4]} 街镇)"


def _read(
    path: str | Path,
    kind: Kind,
    *,
    working_crs: str,
    crs: str | None,
    mapping: str | Path | None,
    layer: str | None,
    strict: bool,
    skip_invalid: bool,
    extent: tuple[float, float, float, float] | None,
    extent_name: str,
    today: date | None,
) -> ReadResult:
    t0 = time.perf_counter()
    raw = read_table(path, layer=layer)
    t1 = time.perf_counter()
    fmap = load_mapping(kind, mapping)
    found, unknown = map_headers(raw.source, raw.frame.columns, fmap, strict=strict)
    cols = {f: h for h, f in found.items()}
    for f in REQUIRED[kind]:
        if f not in cols:
            raise InvalidInputError(
                f"{raw.source}, header row, field {f}: required column missing (accepted "
                f"headers: {', '.join(fmap.fields[f][:6])}); columns found: "
                f"{', '.join(map(str, raw.frame.columns))}. Rename the column or add its header "
                "to a --mapping file"
            )
    warnings = list(raw.warnings)
    if unknown:
        warnings.append(
            f"ignored column(s) not in the mapping: {', '.join(unknown)} "
            "(add them to a --mapping file to import them)"
        )
    key = "case_number" if kind == "cases" else "code"
    numbers = _as_text(raw.frame[cols[key]])
    probs = _Problems(raw.source, raw.first_row, numbers)
    key_label = _label(cols[key], key)
    probs.add(
        np.flatnonzero(numbers.isna().to_numpy()),
        key_label,
        f"{'case number' if kind == 'cases' else 'code'} is missing; every row needs one",
    )
    dup = numbers.notna() & numbers.duplicated(keep=False)
    if dup.any():
        rows_of = numbers[dup].groupby(numbers[dup]).groups
        probs.add(
            np.flatnonzero(dup.to_numpy()),
            key_label,
            lambda i: (
                f"{numbers.iat[i]!r} occurs more than once (rows "
                + ", ".join(str(j + raw.first_row) for j in list(rows_of[numbers.iat[i]])[:5])
                + "); each must be unique in one file"
            ),
        )
    working = CRS.from_user_input(working_crs)
    repaired: list[RowProblem] = []
    if kind == "cases":
        attrs = _validate_attributes(cols, raw.frame, fmap, probs, today or date.today())
    else:
        attrs = pd.DataFrame({"name": _as_text(raw.frame[cols["name"]])})
        probs.add(
            np.flatnonzero(attrs["name"].isna().to_numpy()),
            _label(cols["name"], "name"),
            "name is missing",
        )
        if "street_town_code" in cols:
            attrs["street_town_code"] = _as_text(raw.frame[cols["street_town_code"]])
    geoms, source_crs = _validate_geometry(
        raw,
        cols,
        probs,
        kind,
        working,
        crs,
        extent or shanghai_extent(working_crs),
        extent_name,
        repaired,
        warnings,
    )
    if not skip_invalid:
        probs.raise_first()
    bad = probs.positions()
    keep = np.array([i not in bad for i in range(len(raw.frame))], dtype=bool)
    attrs.insert(0, key, numbers)
    frame = gpd.GeoDataFrame(attrs[keep].reset_index(drop=True), geometry=geoms[keep], crs=working)
    rows = (np.flatnonzero(keep) + raw.first_row).tolist()
    t2 = time.perf_counter()
    return ReadResult(
        frame,
        rows,
        probs.sorted(),
        repaired,
        warnings,
        _crs_name(source_crs),
        seconds_read=t1 - t0,
        seconds_validate=t2 - t1,
    )


def read_cases(
    path: str | Path,
    *,
    working_crs: str,
    crs: str | None = None,
    mapping: str | Path | None = None,
    layer: str | None = None,
    strict: bool = False,
    skip_invalid: bool = False,
    extent: tuple[float, float, float, float] | None = None,
    extent_name: str = "Shanghai",
    today: date | None = None,
) -> ReadResult:
    """Read and validate an inventory file (see the module docstring for the rules).

    ``working_crs``: the CRS of the result (metres). ``crs``: CRS of a file that declares none.
    ``extent``: (minx, miny, maxx, maxy) in the working CRS that every footprint must lie in
    (default: Shanghai). Raises ``InvalidInputError`` on the first problem unless
    ``skip_invalid``, in which case the problem rows are left out and listed in ``rejected``.
    """
    return _read(
        path,
        "cases",
        working_crs=working_crs,
        crs=crs,
        mapping=mapping,
        layer=layer,
        strict=strict,
        skip_invalid=skip_invalid,
        extent=extent,
        extent_name=extent_name,
        today=today,
    )


def read_units(
    path: str | Path,
    level: UnitLevel,
    *,
    working_crs: str,
    crs: str | None = None,
    mapping: str | Path | None = None,
    layer: str | None = None,
    strict: bool = False,
) -> ReadResult:
    """Read and validate a 街镇 or 居村 boundary file (columns code, name[, street_town_code])."""
    return _read(
        path,
        level,
        working_crs=working_crs,
        crs=crs,
        mapping=mapping,
        layer=layer,
        strict=strict,
        skip_invalid=False,
        extent=None,
        extent_name="Shanghai",
        today=None,
    )


def write_problem_report(
    path: str | Path, rejected: list[RowProblem], repaired: list[RowProblem]
) -> Path:
    """CSV of rejected and repaired rows (UTF-8 with BOM, so that Excel shows the Chinese)."""
    path = Path(path)
    with path.open("w", encoding="utf-8-sig", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(
            [
                "处理 outcome",
                "行 row",
                "字段 field",
                "案件编号 case_number",
                "值 value",
                "原因 reason",
            ]
        )
        for outcome, items in (("拒绝 rejected", rejected), ("修复 repaired", repaired)):
            for p in items:
                w.writerow(
                    [
                        outcome,
                        p.row if p.row is not None else "header",
                        p.field or "",
                        p.case_number or "",
                        p.value or "",
                        p.reason,
                    ]
                )
    return path


# --------------------------------------------------------------------------------------------
# the whole import


def _working_crs(engine: Engine) -> str:
    with engine.connect() as conn:
        stored = stored_crs(conn)
    if stored is None:
        raise InvalidInputError("the database has no weijian schema yet: run 'weijian db upgrade'")
    return stored[0]


def import_cases_file(
    engine: Engine,
    path: str | Path,
    *,
    actor: str,
    crs: str | None = None,
    mapping: str | Path | None = None,
    layer: str | None = None,
    skip_invalid: bool = False,
    strict: bool = False,
    report_path: str | Path | None = None,
    progress: Progress | None = None,
) -> ImportReport:
    """``weijian inventory import``: read, validate, and upsert a file's cases in one transaction.

    With ``skip_invalid`` the rejected and repaired rows are written to ``report_path``
    (default ``<file>.report.csv`` next to the input). Timings: read, validate, load (s).
    """
    started = time.perf_counter()
    working = _working_crs(engine)
    extent, where = district_extent(engine, working)
    if progress:
        progress("read", 0, 1)
    result = read_cases(
        path,
        working_crs=working,
        crs=crs,
        mapping=mapping,
        layer=layer,
        strict=strict,
        skip_invalid=skip_invalid,
        extent=extent,
        extent_name=where,
    )
    if progress:
        progress("read", 1, 1)
    report = upsert_cases(
        engine,
        result.frame,
        actor=actor,
        reason="import",
        source_file=Path(path).name,
        row_numbers=result.rows,
        progress=progress,
    )
    report.rejected, report.repaired = result.rejected, result.repaired
    report.warnings = result.warnings + report.warnings
    report.source_crs = result.source_crs
    report.timings = {
        "read": result.seconds_read,
        "validate": result.seconds_validate,
        "load": time.perf_counter() - started - result.seconds_read - result.seconds_validate,
    }
    if skip_invalid and (report.rejected or report.repaired):
        target = Path(report_path) if report_path else Path(str(path) + ".report.csv")
        write_problem_report(target, report.rejected, report.repaired)
        report.warnings.append(f"rejected and repaired rows listed in {target}")
    report.seconds = time.perf_counter() - started
    return report


def import_units_file(
    engine: Engine,
    path: str | Path,
    level: UnitLevel,
    *,
    actor: str,
    crs: str | None = None,
    mapping: str | Path | None = None,
    layer: str | None = None,
    strict: bool = False,
    district: str | None = None,
    progress: Progress | None = None,
) -> ImportReport:
    """``weijian admin import``: read, validate and upsert 街镇 / 居村 boundaries (all or none)."""
    started = time.perf_counter()
    result = read_units(
        path,
        level,
        working_crs=_working_crs(engine),
        crs=crs,
        mapping=mapping,
        layer=layer,
        strict=strict,
    )
    report = upsert_units(
        engine, level, result.frame, actor=actor, district=district, progress=progress
    )
    report.repaired, report.source_crs = result.repaired, result.source_crs
    report.warnings = result.warnings + report.warnings
    report.seconds = time.perf_counter() - started
    return report


# --------------------------------------------------------------------------------------------
# export

#: Export columns: canonical name -> Chinese header.
EXPORT_HEADERS = {
    "case_number": "案件编号",
    "in_database": "入库状态",
    "priority_type": "重点类型",
    "construction_status": "建设状态",
    "exemption": "豁免情形",
    "disposal": "处置方式",
    "source": "发现来源",
    "discovered_on": "发现日期",
    "address": "地址",
    "owner": "当事人",
    "remark": "备注",
    "area_m2": "面积",
    "street_town_code": "街镇代码",
    "street_town_name": "街镇",
    "village_code": "居村代码",
    "village_name": "居村",
    "state": "案件状态",
    "version": "版本",
    "updated_at": "更新时间",
}
EXPORT_LABELS: dict[str, type[domain.LabelledEnum]] = {**ENUM_FIELDS, "state": domain.CaseState}


def export_cases(
    engine: Engine,
    path: str | Path,
    *,
    street_town: str | Sequence[str] | None = None,
    state: str | Sequence[str] | None = None,
    priority_type: str | Sequence[str] | None = None,
    language: Literal["zh", "en"] = "zh",
) -> int:
    """Write the cases matching the filters to ``path``; returns the number written.

    The format follows the suffix: ``.gpkg`` (working CRS, layer ``inventory_case``),
    ``.geojson`` (EPSG:4326 lon/lat as RFC 7946 requires; CGCS2000 and WGS 84 agree within a
    metre), ``.xlsx`` (one sheet, geometry as WKT in the working CRS, its header naming the CRS
    so that the file imports again as is). ``language="zh"``: Chinese headers and labels
    (what the office reads); ``"en"``: canonical column names and codes. Filters take codes or
    Chinese names/labels. An export imports again unchanged (round trip).
    """
    from gis_db.query import load_cases

    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".gpkg", ".geojson", ".json", ".xlsx"):
        raise InvalidInputError(
            f"{path.name}: export writes .gpkg, .geojson or .xlsx, not {suffix!r}"
        )
    try:
        frame = load_cases(
            engine, street_town=street_town, state=state, priority_type=priority_type
        )
    except ValueError as exc:
        raise InvalidInputError(f"export filter: {exc}") from exc
    working = frame.crs
    out = frame[[*EXPORT_HEADERS, frame.geometry.name]].copy()
    out["updated_at"] = (
        pd.to_datetime(out["updated_at"], utc=True)
        .dt.tz_convert("Asia/Shanghai")
        .dt.strftime("%Y-%m-%d %H:%M:%S")
    )
    out["discovered_on"] = out["discovered_on"].map(lambda d: d.isoformat() if d else None)
    out["area_m2"] = out["area_m2"].round(2)
    if language == "zh":
        for col, enum in EXPORT_LABELS.items():
            labels = {m.value: m.zh for m in enum}
            out[col] = out[col].map(lambda v, labels=labels: labels.get(v, v))
        out["in_database"] = out["in_database"].map({True: "库内", False: "库外"})
        out = out.rename(columns=EXPORT_HEADERS)
    out = gpd.GeoDataFrame(out, geometry=frame.geometry.name, crs=working)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        path.unlink()
    if suffix == ".gpkg":
        out.to_file(path, layer="inventory_case", driver="GPKG", engine="pyogrio")
    elif suffix in (".geojson", ".json"):
        out.to_crs("EPSG:4326").to_file(
            path,
            driver="GeoJSON",
            engine="pyogrio",
            layer_options={"RFC7946": "YES", "COORDINATE_PRECISION": 9},
        )
    else:
        crs = CRS.from_user_input(working)
        label = f"EPSG:{crs.to_epsg()}" if crs.to_epsg() else "working CRS"
        geom_header = f"{'几何' if language == 'zh' else 'wkt'} ({label})"
        table = pd.DataFrame(out.drop(columns=out.geometry.name))
        table[geom_header] = shapely.to_wkt(out.geometry.to_numpy(), rounding_precision=-1)
        with pd.ExcelWriter(path, engine="openpyxl") as xl:
            table.to_excel(xl, index=False, sheet_name="违建点位" if language == "zh" else "cases")
    return len(out)
