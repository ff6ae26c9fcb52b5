"""Header mapping of inventory files: canonical fields, aliases and value spellings.

The aliases ship in ``gis_db/mappings/inventory.toml``; a ``--mapping`` file adds to them.
"""

from __future__ import annotations

import re
import tomllib
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import Any, Literal

from pyproj import CRS
from pyproj.exceptions import CRSError

from gis_db import domain
from gis_db.errors import InvalidInputError
from gis_db.gcj02 import offset_system

Kind = Literal["cases", "street_town", "village"]


ENUM_FIELDS: dict[str, type[domain.LabelledEnum]] = {
    "priority_type": domain.PriorityType,
    "construction_status": domain.ConstructionStatus,
    "exemption": domain.Exemption,
    "disposal": domain.Disposal,
    "source": domain.DiscoverySource,
}
TEXT_FIELDS = ("address", "owner", "remark")
#: lon/lat columns that the mapping names as offset web-map coordinates, per system
OFFSET_COLUMNS = {"GCJ-02": ("lon_gcj02", "lat_gcj02"), "BD-09": ("lon_bd09", "lat_bd09")}
REQUIRED: dict[str, tuple[str, ...]] = {
    "cases": ("case_number",),
    "street_town": ("code", "name"),
    "village": ("code", "name"),
}


@dataclass
class FieldMapping:
    """Header aliases per canonical field, extra value spellings, headers to ignore."""

    fields: dict[str, list[str]]
    values: dict[str, dict[str, Any]] = field(default_factory=dict)
    ignore: list[str] = field(default_factory=list)
    #: longest text per field, characters (``[cases.max_length]``)
    max_length: dict[str, int] = field(default_factory=dict)


def _norm_header(text_: object) -> str:
    """Header compared ignoring width (NFKC), case, spaces, ``_``/``-`` and a trailing ``(...)``."""
    s = unicodedata.normalize("NFKC", str(text_)).strip()
    s = re.sub(r"[（(][^()（）]*[)）]\s*$", "", s)
    return re.sub(r"[\s_\-]+", "", s).lower()


def _header_crs(header: str) -> str | None:
    """The CRS a header declares in a trailing ``(...)``, e.g. ``WKT (EPSG:4549)``.

    ``"GCJ-02"`` or ``"BD-09"`` for the offset web-map systems (``经度(GCJ-02)``, ``(百度)``).
    """
    m = re.search(r"[（(]([^()（）]*)[)）]\s*$", str(header))
    if not m:
        return None
    offset = offset_system(m.group(1))
    if offset:
        return offset
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
    max_length: dict[str, int] = {}
    for doc in (shipped, user):
        for f, m in doc.get("values", {}).items():
            values.setdefault(f, {}).update({str(k).strip().lower(): v for k, v in m.items()})
        for f, n in doc.get("max_length", {}).items():
            if not isinstance(n, int) or isinstance(n, bool) or n < 1:
                raise InvalidInputError(
                    f"{path}: [{kind}.max_length] {f} = {n!r}: give a whole number of characters"
                )
            max_length[f] = n
    return FieldMapping(fields_, values, ignore, max_length)


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
    headers = [str(h) for h in headers]
    for h in headers:
        key = _norm_header(h)
        f: str | None = lookup.get(key) or _truncated_match(key, lookup)
        # a header that appears twice is read as "经度" and "经度.1": which one holds the data?
        twice = re.fullmatch(r"(.+)\.\d+", h)
        if f is None and twice and twice.group(1) in headers:
            if lookup.get(_norm_header(twice.group(1))):
                raise InvalidInputError(
                    f"{source}, header row, field {twice.group(1)}: the header "
                    f"{twice.group(1)!r} appears in two columns; delete or rename one of them"
                )
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


def header_predicate(fmap: FieldMapping, kind: Kind) -> Callable[[list[str]], bool]:
    """Whether a sheet row is the header: it holds the required column and another known one."""
    lookup: dict[str, str] = {}
    for canonical, aliases in fmap.fields.items():
        for alias in [canonical, *aliases]:
            lookup.setdefault(_norm_header(alias), canonical)

    def is_header(cells: list[str]) -> bool:
        found = {lookup[k] for k in (_norm_header(c) for c in cells if c) if k in lookup}
        return REQUIRED[kind][0] in found and len(found) >= 2

    return is_header
