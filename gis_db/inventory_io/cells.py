"""Cell-level refusals of an inventory import: never store what was not in the file.

Used by the validation of ``gis_db.inventory_io`` on the columns that the mapping assigns to a
field (columns that are ignored are never stored, so they are not checked):

* Excel error values (``#VALUE!``, ``#REF!``, ``#N/A`` ...), in a workbook or saved into a CSV;
* formulas without a calculated value (a workbook written by a program, never opened in Excel);
* cells longer than the field's maximum (``[cases.max_length]`` in the mapping file) or than
  Excel's own limit of 32,767 characters;
* merged cells spanning several rows in a column that must differ per row (case number,
  geometry): other columns get the merged value in every row;
* geometries with NaN or infinite coordinates.

Each finding refuses its row (or the file without ``--skip-invalid``) with the sheet row and
the column header as the office wrote it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Protocol

import numpy as np
import pandas as pd
import shapely

from gis_db.inventory_io.sheets import EXCEL_CELL_LIMIT, EXCEL_ERRORS

#: Longest value of a field the mapping file gives no maximum for (categories, dates ...).
DEFAULT_MAX_LENGTH = 200
#: Fields whose value must differ from row to row: a merged cell over rows is refused.
PER_ROW_FIELDS = frozenset(
    {"case_number", "code", "wkt", "lon", "lat", "lon_gcj02", "lat_gcj02", "lon_bd09", "lat_bd09"}
)
#: Fields holding geometry text: no length limit (a WKT polygon may be long).
GEOMETRY_FIELDS = frozenset({"wkt"})


class ProblemSink(Protocol):
    """What collects row problems (``gis_db.inventory_io``'s ``_Problems``)."""

    def add(
        self,
        positions: Iterable[int],
        field_: str | None,
        reason: str | Callable[[int], str],
        values: pd.Series | np.ndarray | None = None,
    ) -> None:
        """Record ``reason`` for the rows at ``positions`` (frame positions) in ``field_``."""


def _says(items: list[str], template: str) -> Callable[[int], str]:
    """A reason per position: ``template`` with ``{}`` replaced by ``items[position]``."""

    def reason(i: int) -> str:
        return template.replace("{}", items[i], 1)

    return reason


def _excel_error(v: object) -> bool:
    return isinstance(v, str) and v.strip().upper() in EXCEL_ERRORS


def check_cells(
    frame: pd.DataFrame,
    cols: Mapping[str, str],
    label: Callable[[str, str], str],
    probs: ProblemSink,
    *,
    rows: np.ndarray,
    max_length: Mapping[str, int],
    formulas: Iterable[tuple[str, int, str]] = (),
    merged: Iterable[tuple[str, int, int]] = (),
) -> set[tuple[int, str]]:
    """Refuse the cells that must not be stored; returns the (position, field) refused.

    ``cols``: {canonical field: file header}; ``label(header, field)``: how a field is named
    in messages; ``rows``: the sheet row of each frame position.
    """
    refused: set[tuple[int, str]] = set()
    by_header = {h: f for f, h in cols.items()}

    def add(positions: Iterable[int], f: str, reason: str | Callable[[int], str]) -> None:
        fresh = [int(p) for p in positions if (int(p), f) not in refused]
        if fresh:
            probs.add(fresh, label(cols[f], f), reason, frame[cols[f]].to_numpy())
            refused.update((p, f) for p in fresh)

    for header, first, last in merged:
        f = by_header.get(header)
        if f in PER_ROW_FIELDS:
            what = "number" if f in ("case_number", "code") else "footprint"
            add(
                range(first, last + 1),
                f,
                f"is one merged cell over rows {rows[first]}-{rows[last]}: every case needs its "
                f"own {what}; unmerge the cells (取消合并单元格) and fill in each row",
            )
    for header, pos, formula in formulas:
        f = by_header.get(header)
        if f is not None:
            add(
                [pos],
                f,
                f"holds the formula {formula[:60]} without a calculated value (the workbook was "
                "written by a program and never calculated): open it in Excel or WPS and save "
                "it, or paste the values only",
            )
    for f, header in cols.items():
        values = frame[header]
        if not (values.dtype == object or pd.api.types.is_string_dtype(values.dtype)):
            continue  # numbers, dates, booleans: no text to check
        strings = [v if isinstance(v, str) else "" for v in values.tolist()]
        # Excel error values start with "#" (after spaces): only those cells are looked at
        texts = ["" for _ in strings]
        for i, v in enumerate(strings):
            if "#" in v[:8] and _excel_error(v):
                texts[i] = v.strip()
        errors = [i for i, t in enumerate(texts) if t]
        add(
            errors,
            f,
            _says(
                texts,
                "holds the Excel error value {} instead of a value (a broken "
                "formula or reference): correct it in Excel, or type the value",
            ),
        )
        if f in GEOMETRY_FIELDS:
            continue
        limit = min(max_length.get(f, DEFAULT_MAX_LENGTH), EXCEL_CELL_LIMIT)
        lengths = [len(v) for v in strings]
        shown = [f"{n:,}" if n > limit else "" for n in lengths]
        add(
            [i for i, n in enumerate(lengths) if n > EXCEL_CELL_LIMIT],
            f,
            _says(
                shown,
                "is {} characters long, beyond Excel's own limit of "
                f"{EXCEL_CELL_LIMIT:,} characters per cell (the file was not saved by Excel, or "
                f"is damaged) and the field's maximum of {limit:,}: check the cell",
            ),
        )
        add(
            [i for i, n in enumerate(lengths) if n > limit],
            f,
            _says(
                shown,
                f"is {{}} characters long; at most {limit:,} are allowed for this field "
                "(max_length in the mapping file): shorten it, or raise the limit with --mapping",
            ),
        )
    return refused


def non_finite_vertices(geoms: np.ndarray) -> dict[int, int]:
    """{position: 1-based vertex number} of the first NaN/infinite vertex of each geometry."""
    coords, index = shapely.get_coordinates(geoms, return_index=True)
    if not len(coords):
        return {}
    bad = ~np.isfinite(coords).all(axis=1)
    out: dict[int, int] = {}
    if bad.any():
        starts = np.searchsorted(index, np.arange(len(geoms)))
        for k in np.flatnonzero(bad):
            pos = int(index[k])
            out.setdefault(pos, int(k - starts[pos]) + 1)
    return out


def blank_refused(values: pd.Series, refused: set[tuple[int, str]], f: str) -> pd.Series:
    """``values`` with the refused cells of field ``f`` set to None.

    So that no later step echoes them: a refused cell may be megabytes long.
    """
    positions = [p for p, g in refused if g == f]
    if not positions:
        return values
    out = values.astype(object).copy()
    out.iloc[positions] = None
    return out
