"""Case numbers (案件编号) are identities: what is safely normalised, what is refused.

An import updates the case whose number it names, so a number that differs from the stored one
only in invisible ways would create the same case twice, and a number Excel mangled would
overwrite or create the wrong one. Rules (docs/decisions/0009-inventory-import.md):

* **Normalised** (safe: the characters mean the same thing): Unicode NFKC (full-width letters,
  digits and spaces become ASCII), zero-width characters removed (U+200B-U+200D, U+2060, BOM,
  soft hyphen), surrounding whitespace trimmed. The import lists the numbers it normalised.
* **Refused**: scientific notation (``3.10113E+17``: Excel made a number of it and kept 6
  digits), numbers stored as floating-point numbers of 16 or more digits (Excel keeps 15),
  numbers with decimals, line breaks and other invisible characters, and lengths beyond the maximum
  (``[cases.max_length] case_number`` in the mapping file, default 64).
* **Look-alikes**: a number that is new but equals an existing one (or another row's) once
  case, spaces and separators (hyphen, underscore, dot, slashes, ·) are ignored is refused
  naming the existing number, instead of creating a second case: ``bs-000002`` next to
  ``BS000002``.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

#: Default longest case number, characters (the mapping file may set another).
DEFAULT_MAX_LENGTH = 64
#: Digits a spreadsheet keeps of a number (IEEE double, as Excel shows it).
EXACT_DIGITS = 15
ZERO_WIDTH = re.compile("[\u200b\u200c\u200d\u2060\ufeff\u00ad\u180e]")
#: What Excel shows, and saves to CSV, for a long number: 3.10113E+17. Its exponent always has a
#: sign, so a number such as "12E34" (a plausible real scheme) is not taken for one.
SCIENTIFIC = re.compile(r"[+-]?\d+(\.\d*)?[eE][+-]\d+")
SEPARATORS = re.compile(r"[\s\-_./\\·•—–:]+")
TEXT_HINT = "format the column as Text (文本) and type or paste the numbers again as text"


def normalise(text: str) -> str:
    """NFKC, zero-width characters removed, surrounding whitespace trimmed."""
    if text.isascii():  # NFKC leaves ASCII alone and zero-width characters are not ASCII
        return text.strip()
    return ZERO_WIDTH.sub("", unicodedata.normalize("NFKC", text)).strip()


def loose_key(text: str) -> str:
    """What two look-alike numbers share: normalised, no separators or spaces, case-folded."""
    if text.isascii() and text.isalnum():  # the common case, without a regex
        return text.lower()
    return SEPARATORS.sub("", normalise(text)).casefold()


@dataclass
class CheckedNumbers:
    """Case numbers after the rules: values (None where missing or refused) and findings."""

    values: pd.Series
    #: (frame position, reason) of refused numbers
    problems: list[tuple[int, str]] = field(default_factory=list)
    #: (frame position, the number as written) of numbers that normalisation changed
    normalised: list[tuple[int, str]] = field(default_factory=list)


def _number_cell(v: float) -> tuple[str | None, str | None]:
    """A numeric cell as a case number: (text, None) or (None, reason)."""
    if not math.isfinite(v):
        return None, None
    if abs(v) >= 10**EXACT_DIGITS:
        return None, (
            f"is a number of {len(str(int(abs(v))))} digits ({v:.6g}) in a number cell: "
            f"Excel keeps only {EXACT_DIGITS} digits of a number, so the last ones are lost; "
            + TEXT_HINT
        )
    if not float(v).is_integer():
        return None, f"is a number with decimals ({v!r}); case numbers are text: " + TEXT_HINT
    return str(int(v)), None


def check_case_numbers(cells: pd.Series, max_length: int = DEFAULT_MAX_LENGTH) -> CheckedNumbers:
    """Apply the rules to a column of raw cells (text, numbers or blanks), position by position."""
    out: list[str | None] = []
    found = CheckedNumbers(pd.Series(dtype=object))
    for pos, v in enumerate(cells.astype(object).tolist()):
        text: str | None
        reason: str | None = None
        if v is None or v is pd.NA or v is pd.NaT:
            text = None
        elif isinstance(v, bool | np.bool_):
            text = str(v)
        elif isinstance(v, int | np.integer):
            text = str(int(v))
        elif isinstance(v, float | np.floating):
            text, reason = _number_cell(float(v))
        else:
            written = str(v)
            text = normalise(written) or None
            if text is not None:
                if SCIENTIFIC.fullmatch(text):
                    reason = (
                        f"{text!r} is in scientific notation: Excel turned a long number into "
                        "a rounded one and its last digits are lost; " + TEXT_HINT
                    )
                elif len(text) > max_length:
                    reason = (
                        f"is {len(text):,} characters long; case numbers have at most "
                        f"{max_length} (max_length in the mapping file): check the cell"
                    )
                elif not text.isprintable():
                    reason = (
                        "holds a line break or another invisible control character: retype "
                        "the number"
                    )
                elif text != written:
                    found.normalised.append((pos, written))
        if reason is not None:
            found.problems.append((pos, reason))
            text = None
        out.append(text)
    found.values = pd.Series(out, index=cells.index, dtype=object)
    return found


def lookalikes(
    numbers: pd.Series, existing: Iterable[str], rows: Sequence[int]
) -> list[tuple[int, str]]:
    """(frame position, reason) for numbers that look like an existing or an earlier one.

    ``numbers``: normalised numbers (None skipped). ``existing``: the numbers in the database.
    ``rows``: the sheet row of each number (for the message). A number equal to an existing
    one is an update, not a look-alike.
    """
    stored: dict[str, set[str]] = {}
    for e in existing:
        stored.setdefault(loose_key(e), set()).add(e)
    exact = {e for group in stored.values() for e in group}
    out: list[tuple[int, str]] = []
    seen: dict[str, tuple[str, int]] = {}
    for pos, n in enumerate(numbers.tolist()):
        if n is None:
            continue
        key = loose_key(n)
        if n not in exact and key in stored:
            other = sorted(stored[key])[0]
            out.append(
                (
                    pos,
                    f"{n!r} looks like the existing case {other!r} (they differ only in upper/"
                    "lower case, spaces or separators): write the number exactly as stored to "
                    "update that case, or give a new case a clearly different number",
                )
            )
            continue
        if key in seen and seen[key][0] != n:
            out.append(
                (
                    pos,
                    f"{n!r} looks like {seen[key][0]!r} in row {rows[seen[key][1]]} of the same "
                    "file (they differ only in case, spaces or separators): use one spelling",
                )
            )
            continue
        seen.setdefault(key, (n, pos))
    return out
