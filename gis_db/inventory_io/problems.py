"""Row problems found while validating a file, numbered as the user sees the rows."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np
import pandas as pd

from gis_db.errors import InvalidInputError
from gis_db.inventory import (
    RowProblem,
)
from gis_db.inventory_io.mapping import _norm_header


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
