"""Validating a whole inventory file: attributes, keys, then geometry; no database access."""

from __future__ import annotations

import csv
import re
import time
import zipfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from pyproj import CRS

from gis_db import domain
from gis_db.errors import InvalidInputError
from gis_db.inventory import (
    CASE_FIELDS,
    RowProblem,
    UnitLevel,
)
from gis_db.inventory_io.case_numbers import DEFAULT_MAX_LENGTH as CASE_NUMBER_MAX
from gis_db.inventory_io.case_numbers import check_case_numbers, lookalikes
from gis_db.inventory_io.cells import blank_refused, check_cells
from gis_db.inventory_io.geometry import _crs_name, _validate_geometry, shanghai_extent
from gis_db.inventory_io.mapping import (
    ENUM_FIELDS,
    REQUIRED,
    TEXT_FIELDS,
    FieldMapping,
    Kind,
    header_predicate,
    load_mapping,
    map_headers,
)
from gis_db.inventory_io.problems import _as_text, _blank, _label, _Problems
from gis_db.inventory_io.readers import read_table


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
    #: rows left out on purpose (total and blank rows of a sheet), not errors
    skipped: list[RowProblem] = field(default_factory=list)


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
    existing_numbers: Iterable[str] | None = None,
) -> ReadResult:
    t0 = time.perf_counter()
    fmap = load_mapping(kind, mapping)
    raw = read_table(path, layer=layer, is_header=header_predicate(fmap, kind))
    t1 = time.perf_counter()
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
    row_numbers = raw.row_numbers()
    probs = _Problems(raw.source, row_numbers, None)
    key_label = _label(cols[key], key)
    # cells that must not be stored (Excel errors, formulas without values, over-long text,
    # merged identity cells) refuse their row and are blanked, so no later step echoes them
    refused = check_cells(
        raw.frame,
        cols,
        _label,
        probs,
        rows=row_numbers,
        max_length=fmap.max_length,
        formulas=raw.formulas,
        merged=raw.merged,
    )
    clean = raw.frame.copy()
    for f, header in cols.items():
        clean[header] = blank_refused(clean[header], refused, f)
    raw.frame = clean
    numbers = _key_values(clean[cols[key]], kind, fmap, probs, key_label, warnings)
    probs.numbers = numbers
    refused_keys = {p for p, f in refused if f == key}
    probs.add(
        [int(i) for i in np.flatnonzero(numbers.isna().to_numpy()) if int(i) not in refused_keys],
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
                + ", ".join(str(row_numbers[j]) for j in list(rows_of[numbers.iat[i]])[:5])
                + "); each must be unique in one file"
            ),
        )
    if kind == "cases":
        for pos, reason in lookalikes(numbers, existing_numbers or (), row_numbers.tolist()):
            probs.add([pos], key_label, reason)
    working = CRS.from_user_input(working_crs)
    repaired: list[RowProblem] = []
    if kind == "cases":
        attrs = _validate_attributes(cols, clean, fmap, probs, today or date.today())
    else:
        attrs = pd.DataFrame({"name": _as_text(clean[cols["name"]])})
        probs.add(
            np.flatnonzero(attrs["name"].isna().to_numpy()),
            _label(cols["name"], "name"),
            "name is missing",
        )
        if "street_town_code" in cols:
            attrs["street_town_code"] = _as_text(clean[cols["street_town_code"]])
    geoms, source_crs, source_name = _validate_geometry(
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
    rows = [int(r) for r in row_numbers[keep]]
    t2 = time.perf_counter()
    return ReadResult(
        frame,
        rows,
        probs.sorted(),
        repaired,
        warnings,
        source_name or _crs_name(source_crs),
        seconds_read=t1 - t0,
        seconds_validate=t2 - t1,
        skipped=raw.skipped,
    )


def _key_values(
    cells: pd.Series,
    kind: Kind,
    fmap: FieldMapping,
    probs: _Problems,
    label: str,
    warnings: list[str],
) -> pd.Series:
    """Case numbers after the identity rules (:mod:`.case_numbers`); unit codes as text."""
    if kind != "cases":
        return _as_text(cells)
    checked = check_case_numbers(cells, fmap.max_length.get("case_number", CASE_NUMBER_MAX))
    for pos, reason in checked.problems:
        probs.add([pos], label, reason, cells.to_numpy())
    if checked.normalised:
        shown = ", ".join(
            f"row {probs.row(p)} {w!r} → {checked.values.iat[p]!r}"
            for p, w in checked.normalised[:5]
        )
        more = len(checked.normalised) - 5
        warnings.append(
            f"{len(checked.normalised)} case number(s) normalised (full-width or zero-width "
            f"characters, spaces): {shown}" + (f" and {more} more" if more > 0 else "")
        )
    return checked.values


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
    existing_numbers: Iterable[str] | None = None,
) -> ReadResult:
    """Read and validate an inventory file (see the package docstring for the rules).

    ``working_crs``: the CRS of the result (metres). ``crs``: CRS of a file that declares none,
    or ``GCJ-02`` / ``BD-09`` for web-map lon/lat (converted to CGCS2000).
    ``extent``: (minx, miny, maxx, maxy) in the working CRS that every footprint must lie in
    (default: Shanghai). ``existing_numbers``: the case numbers already stored, for refusing
    look-alikes. Raises ``InvalidInputError`` on the first problem unless ``skip_invalid``, in
    which case the problem rows are left out and listed in ``rejected``.
    """
    return _guarded(
        path,
        lambda: _read(
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
            existing_numbers=existing_numbers,
        ),
    )


def _guarded(path: str | Path, read: Callable[[], ReadResult]) -> ReadResult:
    """Run ``read``; an unexpected error becomes one line naming the file, never a traceback."""
    try:
        return read()
    except InvalidInputError:
        raise
    except (
        ValueError,
        TypeError,
        KeyError,
        IndexError,
        OSError,
        UnicodeError,
        csv.Error,
        zipfile.BadZipFile,
        shapely.errors.ShapelyError,
    ) as exc:
        raise InvalidInputError(
            f"{Path(path).name}: cannot be read ({type(exc).__name__}: {str(exc)[:200]}); "
            "nothing was imported. Export the file again from the program that made it; if "
            "that does not help, send it to the developers (the import's checks missed a case)"
        ) from exc


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
    return _guarded(
        path,
        lambda: _read(
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
        ),
    )


def write_problem_report(
    path: str | Path,
    rejected: list[RowProblem],
    repaired: list[RowProblem],
    skipped: Sequence[RowProblem] = (),
) -> Path:
    """CSV of rejected, repaired and skipped rows (UTF-8 with BOM, so that Excel shows Chinese)."""
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
        for outcome, items in (
            ("拒绝 rejected", rejected),
            ("修复 repaired", repaired),
            ("跳过 skipped", skipped),
        ):
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
