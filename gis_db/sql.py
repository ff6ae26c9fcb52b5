"""SQL building blocks shared by the loaders and the matching: COPY, unit assignment, changes.

Every function returns SQL text (or streams rows) for statements run by :mod:`gis_db.inventory`
and :mod:`gis_db.matching`; geometry is in the working CRS, lengths and areas in metres / m².
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import TYPE_CHECKING

import geopandas as gpd
import pandas as pd
import shapely
from sqlalchemy import Connection

from gis_db.engine import psycopg_connection

if TYPE_CHECKING:
    from ingest.align import Progress

#: Vertex movements up to this (metres) are not a geometry change (CRS round trips).
GEOM_TOLERANCE_M = 0.001

COPY_CHUNK_ROWS = 20_000


def copy_frame(
    conn: Connection,
    table: str,
    frame: pd.DataFrame,
    geometry: gpd.GeoSeries,
    progress: Progress | None,
) -> None:
    """Stream ``frame`` plus ``geometry`` (as hex WKB in column ``geom``) into ``table``."""
    columns = [*frame.columns, "geom"]
    out = frame.copy()
    out["geom"] = shapely.to_wkb(shapely.force_2d(geometry.values), hex=True)
    total = len(out)
    sql = f"COPY {table} ({', '.join(columns)}) FROM STDIN (FORMAT csv)"
    with psycopg_connection(conn).cursor() as cur, cur.copy(sql) as copy:
        for start in range(0, total, COPY_CHUNK_ROWS):
            buf = io.StringIO()
            out.iloc[start : start + COPY_CHUNK_ROWS].to_csv(
                buf, header=False, index=False, na_rep="", date_format="%Y-%m-%d"
            )
            copy.write(buf.getvalue())
            if progress:
                progress("copy", min(start + COPY_CHUNK_ROWS, total), total)


def largest_overlap_sql(table: str, geom: str, alias: str, area: str | None = None) -> str:
    """SQL: LATERAL join giving the code of the ``table`` unit that ``geom`` overlaps most.

    The one rule by which a case or a detection belongs to a 街镇 / 居村. A unit that covers the
    geometry wholly wins without computing an intersection (its overlap is ``area``, default
    ``ST_Area(geom)``, m²); ties go to the lowest code so that the result is deterministic.
    """
    area = area or f"ST_Area({geom})"
    return f"""
    LEFT JOIN LATERAL (
        SELECT u.code FROM {table} u
        WHERE u.geom && {geom} AND ST_Intersects(u.geom, {geom})
        ORDER BY CASE WHEN ST_Covers(u.geom, {geom}) THEN {area}
                      ELSE ST_Area(ST_Intersection(u.geom, {geom})) END DESC, u.code
        LIMIT 1
    ) {alias} ON true"""


def geom_changed_sql(old: str, new: str) -> str:
    """SQL: the geometries differ by more than :data:`GEOM_TOLERANCE_M` at some vertex.

    Re-reading the same footprint through another CRS (GeoJSON lon/lat, WKT text) moves
    vertices by far less than a millimetre; that is not a change worth a new version.
    """
    return (
        f"(NOT ST_OrderingEquals({old}.geom, {new}.geom) AND "
        f"(ST_NPoints({old}.geom) <> ST_NPoints({new}.geom) OR "
        f"ST_HausdorffDistance({old}.geom, {new}.geom) > {GEOM_TOLERANCE_M}))"
    )


def changes_json_sql(fields: Sequence[str], old: str, new: str, geom: bool) -> str:
    """SQL jsonb {field: [old, new]} of the fields that differ between aliases old and new.

    With ``geom``, a changed geometry is recorded as WKT (mm precision) with its area.
    """
    parts = [
        f"'{f}', CASE WHEN {old}.{f} IS DISTINCT FROM {new}.{f} "
        f"THEN jsonb_build_array({old}.{f}, {new}.{f}) END"
        for f in fields
    ]
    if geom:
        changed = geom_changed_sql(old, new)
        parts.append(
            f"'geom', CASE WHEN {changed} "
            f"THEN jsonb_build_array(ST_AsText({old}.geom, 3), ST_AsText({new}.geom, 3)) END"
        )
        parts.append(
            f"'area_m2', CASE WHEN {changed} "
            f"THEN jsonb_build_array({old}.area_m2, {new}.area_m2) END"
        )
    return "jsonb_strip_nulls(jsonb_build_object(" + ", ".join(parts) + "))"


def differs_sql(fields: Sequence[str], old: str, new: str) -> str:
    """SQL: any of ``fields`` or the geometry differs between aliases ``old`` and ``new``."""
    cols_old = ", ".join(f"{old}.{f}" for f in fields)
    cols_new = ", ".join(f"{new}.{f}" for f in fields)
    return f"(ROW({cols_old}) IS DISTINCT FROM ROW({cols_new}) OR {geom_changed_sql(old, new)})"
