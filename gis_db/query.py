"""The analysts' API: cases and units as GeoDataFrames in one call, and per-街镇 summaries.

Geometry comes back in the working CRS of the database (metres) unless ``to_crs`` is given,
e.g. ``to_crs="EPSG:4490"`` for CGCS2000 lon/lat.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from typing import Literal

import geopandas as gpd
import pandas as pd
from sqlalchemy import Connection, Engine, text

from gis_db.domain import CaseState, PriorityType
from gis_db.errors import InvalidInputError
from gis_db.schema import working_srid

UnitLevel = Literal["street_town", "village"]


def _listify(value: str | Sequence[str] | None) -> list[str] | None:
    if value is None:
        return None
    return [value] if isinstance(value, str) else list(value)


def _check_units_exist(conn: Connection, level: UnitLevel, given: list[str] | None) -> None:
    """Refuse a 街镇/居村 that is neither a code nor a name in the database (a typo).

    Without this, ``load_cases(engine, street_town="月浦")`` returned no case, as if 月浦镇 had
    none: an analyst could not tell a typo from a clean 街镇.
    """
    if not given:
        return
    rows = conn.execute(text(f"SELECT code, name FROM {level}")).all()  # level: a Literal
    known = {str(v) for row in rows for v in row}
    unknown = [g for g in given if g not in known]
    if unknown:
        names = [str(r[1]) for r in rows]
        close = difflib.get_close_matches(unknown[0], names, n=3, cutoff=0.3)
        label = "街镇" if level == "street_town" else "居村"
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise InvalidInputError(
            f"no {label} with code or name {', '.join(map(repr, unknown))}{hint} "
            f"({len(rows)} {label} loaded)"
        )


def load_cases(
    engine: Engine,
    *,
    street_town: str | Sequence[str] | None = None,
    village: str | Sequence[str] | None = None,
    state: str | Sequence[str] | None = None,
    priority_type: str | Sequence[str] | None = None,
    bbox: tuple[float, float, float, float] | None = None,
    to_crs: str | None = None,
) -> gpd.GeoDataFrame:
    """Inventory cases matching every filter given, one row per case.

    ``street_town`` / ``village`` take codes or Chinese names (one that is neither, a typo,
    raises :class:`InvalidInputError`); ``state`` and ``priority_type`` take codes or Chinese
    labels (see gis_db.domain); ``bbox`` is (minx, miny, maxx, maxy) in
    the working CRS, metres. Columns: every inventory_case column plus ``street_town_name`` and
    ``village_name``.
    """
    where: list[str] = []
    params: dict[str, object] = {}
    if (towns := _listify(street_town)) is not None:
        where.append("(c.street_town_code = ANY(:towns) OR st.name = ANY(:towns))")
        params["towns"] = towns
    if (villages := _listify(village)) is not None:
        where.append("(c.village_code = ANY(:villages) OR v.name = ANY(:villages))")
        params["villages"] = villages
    if (states := _listify(state)) is not None:
        where.append("c.state = ANY(:states)")
        params["states"] = [CaseState.parse(s).value for s in states]
    if (types := _listify(priority_type)) is not None:
        where.append("c.priority_type = ANY(:types)")
        params["types"] = [PriorityType.parse(t).value for t in types]
    with engine.connect() as conn:
        _check_units_exist(conn, "street_town", towns)
        _check_units_exist(conn, "village", villages)
        srid = working_srid(conn)
        if bbox is not None:
            where.append("c.geom && ST_MakeEnvelope(:x0, :y0, :x1, :y1, :srid)")
            params.update(x0=bbox[0], y0=bbox[1], x1=bbox[2], y1=bbox[3], srid=srid)
        sql = (
            "SELECT c.*, st.name AS street_town_name, v.name AS village_name "
            "FROM inventory_case c "
            "LEFT JOIN street_town st ON st.code = c.street_town_code "
            "LEFT JOIN village v ON v.code = c.village_code"
            + (" WHERE " + " AND ".join(where) if where else "")
            + " ORDER BY c.case_number"
        )
        frame = gpd.read_postgis(text(sql), conn, geom_col="geom", params=params, crs=None)
    frame = frame.set_crs(_crs_of(engine, srid), allow_override=True)
    return frame.to_crs(to_crs) if to_crs else frame


def load_units(
    engine: Engine, level: UnitLevel = "street_town", to_crs: str | None = None
) -> gpd.GeoDataFrame:
    """The 街镇 (``level="street_town"``) or 居村 (``"village"``) boundaries."""
    if level not in ("street_town", "village"):
        raise ValueError(f"level must be 'street_town' or 'village', not {level!r}")
    with engine.connect() as conn:
        srid = working_srid(conn)
        frame = gpd.read_postgis(
            text(f"SELECT * FROM {level} ORDER BY code"), conn, geom_col="geom"
        )
    frame = frame.set_crs(_crs_of(engine, srid), allow_override=True)
    return frame.to_crs(to_crs) if to_crs else frame


def summary_by_street_town(engine: Engine) -> pd.DataFrame:
    """Per 街镇: counts of cases (all, priority, 库内, open) and total footprint area in m².

    Counts the cases, the priority cases, the cases in the database (库内) and the open
    cases, and sums the footprint area in m²; one row per 街镇 (including those with no case),
    plus a row ``未落入街镇`` for cases outside every 街镇 when there are any.
    """
    measures = """
               count(c.id) AS cases,
               count(c.id) FILTER (WHERE c.priority_type <> 'non_priority') AS priority_cases,
               count(c.id) FILTER (WHERE c.in_database) AS in_database,
               count(c.id) FILTER (WHERE c.state NOT IN ('written_off', 'reinspected_clean'))
                   AS active_cases,
               coalesce(sum(c.area_m2), 0) AS area_m2"""
    sql = f"""
        SELECT st.code AS street_town_code, st.name AS street_town_name, {measures}
        FROM street_town st LEFT JOIN inventory_case c ON c.street_town_code = st.code
        GROUP BY st.code, st.name
        UNION ALL
        SELECT '-', '未落入街镇', {measures}
        FROM inventory_case c WHERE c.street_town_code IS NULL
        HAVING count(c.id) > 0
        ORDER BY 1
    """
    with engine.connect() as conn:
        return pd.read_sql(text(sql), conn)


def _crs_of(engine: Engine, srid: int) -> str:
    """The CRS (as pyproj input) of an SRID, read from spatial_ref_sys for custom ones."""
    with engine.connect() as conn:
        row = conn.execute(
            text("SELECT auth_name, auth_srid, srtext FROM spatial_ref_sys WHERE srid = :s"),
            {"s": srid},
        ).one()
    return f"EPSG:{row.auth_srid}" if row.auth_name == "EPSG" else str(row.srtext)
