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

    def __init__(self, source: str, rows: np.ndarray, numbers: pd.Series | None) -> None:
        self.source = source
        #: the row number the user sees for each frame position
        self.rows = rows
        #: case numbers (or codes) by frame position, named in the report; set when known
        self.numbers = numbers
        self.items: list[tuple[int, RowProblem]] = []
        self._seen: set[tuple[int, str | None]] = set()

    def row(self, i: int) -> int:
        """The row number the user sees for frame position ``i``."""
        return int(self.rows[i])

    def number(self, i: int) -> str | None:
        """The case number (or code) of frame position ``i``, if known."""
        n = None if self.numbers is None else self.numbers.iat[i]
        return None if n is None or n is pd.NA else str(n)

    def add(
        self,
        positions: Iterable[int],
        field_: str | None,
        reason: str | Callable[[int], str],
        values: pd.Series | np.ndarray | None = None,
    ) -> None:
        """Record ``reason`` for each frame position; one problem per row and field (the first)."""
        for i in positions:
            i = int(i)
            if (i, field_) in self._seen:
                continue
            self._seen.add((i, field_))
            value = None if values is None else values[i]
            self.items.append(
                (
                    i,
                    RowProblem(
                        row=self.row(i),
                        field=field_,
                        reason=reason(i) if callable(reason) else reason,
                        value=None if value is None or value is pd.NA else str(value)[:80],
                    ),
                )
            )

    def positions(self) -> set[int]:
        """Frame positions with at least one problem."""
        return {i for i, _ in self.items}

    def sorted(self) -> list[RowProblem]:
        """The problems by row, then field; each with its case number when known."""
        out = []
        for i, p in sorted(self.items, key=lambda t: (t[0], t[1].field or "")):
            if p.case_number is None:
                p.case_number = self.number(i)
            out.append(p)
        return out

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
