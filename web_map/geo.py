"""GeoJSON for the maps, built in PostGIS: detections, cases and units by bounding box.

Geometry is stored in the working CRS (metres); the browser speaks WGS84 lon/lat (EPSG:4326;
CGCS2000 differs from it by centimetres). A bounding box ``(west, south, east, north)`` in degrees
is transformed to the working CRS once per query, so the GiST indexes are used. The whole
FeatureCollection is assembled by PostgreSQL as one JSON text (no per-feature Python work).

``street_town``: the 街镇 code a 街镇 user is bound to; when given, only that 街镇's records are
returned. Every query binds its parameters; nothing from the request is formatted into SQL.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

from sqlalchemy import Connection, text

from gis_db.errors import InvalidInputError
from gis_db.schema import working_srid

BBox = tuple[float, float, float, float]
#: Coordinates in GeoJSON: 6 decimals of a degree, about 0.1 m.
DECIMALS = 6


def parse_bbox(value: str | None) -> BBox | None:
    """``"west,south,east,north"`` in degrees as a tuple (None when not given)."""
    if value is None or value == "":
        return None
    try:
        parts = [float(v) for v in value.split(",")]
    except ValueError:
        raise InvalidInputError(
            f"bbox {value!r} is not four numbers: give west,south,east,north in degrees",
            code="bad_bbox",
        ) from None
    if len(parts) != 4 or not all(math.isfinite(p) for p in parts):
        raise InvalidInputError(
            f"bbox {value!r}: give four numbers west,south,east,north", code="bad_bbox"
        )
    w, s, e, n = parts
    if not (-180 <= w < e <= 180 and -90 <= s < n <= 90):
        raise InvalidInputError(
            f"bbox {value!r} is not west<east, south<north in degrees", code="bad_bbox"
        )
    return w, s, e, n


def _collection(conn: Connection, sql: str, params: dict[str, Any], limit: int) -> str:
    """Wrap a feature query (columns ``id``, ``geom``, ``props``) as a FeatureCollection text.

    One more row than ``limit`` is read so that the answer can say it was truncated.
    """
    wrapped = f"""
    WITH f AS ({sql} LIMIT :limit_plus),
         c AS (SELECT count(*) AS n FROM f)
    SELECT json_build_object(
        'type', 'FeatureCollection',
        'truncated', (SELECT n FROM c) > :limit,
        'limit', :limit,
        'features', COALESCE((SELECT json_agg(json_build_object(
            'type', 'Feature', 'id', f.id,
            'geometry', ST_AsGeoJSON(ST_Transform(f.geom, 4326), {DECIMALS})::json,
            'properties', f.props)) FROM (SELECT * FROM f LIMIT :limit) f), '[]'::json)
    )::text"""
    return str(
        conn.execute(
            text(wrapped), {**params, "limit": limit, "limit_plus": limit + 1}
        ).scalar_one()
    )


def _bbox_clause(alias: str, bbox: BBox | None, params: dict[str, Any], srid: int) -> str:
    if bbox is None:
        return "true"
    params.update(w=bbox[0], s=bbox[1], e=bbox[2], n=bbox[3], srid=srid)
    return (
        f"{alias}.geom && ST_Transform(ST_MakeEnvelope(:w, :s, :e, :n, 4326), CAST(:srid AS int))"
    )


def detections_geojson(
    conn: Connection,
    run_id: int,
    *,
    bbox: BBox | None = None,
    street_town: str | None = None,
    match_classes: Sequence[str] | None = None,
    states: Sequence[str] | None = None,
    limit: int = 20000,
    srid: int | None = None,
    detail: bool = False,
) -> str:
    """The run's detections in ``bbox`` as GeoJSON text (EPSG:4326), highest score first.

    Properties are what the map styles by (match class, review state, score, version, 街镇);
    the rest comes from ``/api/detections/{id}`` when a popup opens, to keep views with
    thousands of detections light. ``detail``: also number, area (m²), change kind and case.

    ``srid``: the working SRID when the caller knows it (saves a query).
    """
    params: dict[str, Any] = {"run": run_id}
    where = ["d.run_id = :run", _bbox_clause("d", bbox, params, srid or working_srid(conn))]
    if street_town is not None:
        where.append("d.street_town_code = :st")
        params["st"] = street_town
    if match_classes:
        where.append("d.match_class = ANY(:classes)")
        params["classes"] = list(match_classes)
    if states:
        where.append("d.state = ANY(:states)")
        params["states"] = list(states)
    sql = (
        "SELECT d.id, d.geom, json_build_object('score', round(d.score::numeric, 3), "
        "'match_class', d.match_class, 'state', d.state, 'version', d.version, "
        "'street_town', d.street_town_code"
        + (
            ", 'seq', d.seq, 'area_m2', round(d.area_m2::numeric, 1), "
            "'change_kind', d.change_kind, 'case_id', d.matched_case_id"
            if detail
            else ""
        )
        + ") AS props "
        "FROM detection d WHERE " + " AND ".join(where) + " ORDER BY d.score DESC NULLS LAST, d.id"
    )
    return _collection(conn, sql, params, limit)


def cases_geojson(
    conn: Connection,
    *,
    bbox: BBox | None = None,
    street_town: str | None = None,
    states: Sequence[str] | None = None,
    limit: int = 20000,
    srid: int | None = None,
) -> str:
    """Inventory cases in ``bbox`` as GeoJSON text (EPSG:4326); ``srid`` as above."""
    params: dict[str, Any] = {}
    where = [_bbox_clause("c", bbox, params, srid or working_srid(conn))]
    if street_town is not None:
        where.append("c.street_town_code = :st")
        params["st"] = street_town
    if states:
        where.append("c.state = ANY(:states)")
        params["states"] = list(states)
    sql = (
        "SELECT c.id, c.geom, json_build_object('case_number', c.case_number, 'state', c.state, "
        "'version', c.version, 'address', c.address, 'area_m2', round(c.area_m2::numeric, 1), "
        "'priority_type', c.priority_type, 'street_town', c.street_town_code) AS props "
        "FROM inventory_case c WHERE " + " AND ".join(where) + " ORDER BY c.id"
    )
    return _collection(conn, sql, params, limit)


def units_geojson(
    conn: Connection,
    warnings: dict[str, str] | None = None,
    street_town: str | None = None,
    *,
    level: Literal["street_town", "village"] = "street_town",
    bbox: BBox | None = None,
    srid: int | None = None,
) -> str:
    """The 街镇 (or 居村) boundaries, simplified to 5 m, with their colour warning (GeoJSON).

    ``street_town``: only that 街镇 (or its 居村); ``bbox``: only units meeting it.
    """
    params: dict[str, Any] = {"warn": _json(warnings or {})}
    table, town_col = (
        ("street_town", "s.code")
        if level == "street_town"
        else (
            "village",
            "s.street_town_code",
        )
    )
    where = [_bbox_clause("s", bbox, params, srid or working_srid(conn)) if bbox else "true"]
    if street_town is not None:
        where.append(f"{town_col} = :st")
        params["st"] = street_town
    sql = (
        "SELECT s.code AS id, ST_SimplifyPreserveTopology(s.geom, 5) AS geom, "
        "json_build_object('code', s.code, 'name', s.name, "
        "'warning', CAST(:warn AS jsonb) ->> s.code) AS props "
        f"FROM {table} s WHERE {' AND '.join(where)} ORDER BY s.code"
    )
    return _collection(conn, sql, params, 10000)


def _json(value: Any) -> str:
    import json

    return json.dumps(value, ensure_ascii=False)


def lonlat_bounds(conn: Connection, sql_geom: str, params: dict[str, Any]) -> BBox | None:
    """(west, south, east, north) in degrees of a geometry expression (None when empty)."""
    row = conn.execute(
        text(
            f"SELECT ST_XMin(b), ST_YMin(b), ST_XMax(b), ST_YMax(b) FROM "
            f"(SELECT ST_Transform(ST_Envelope(({sql_geom})), 4326) AS b) q"
        ),
        params,
    ).first()
    if row is None or row[0] is None:
        return None
    return float(row[0]), float(row[1]), float(row[2]), float(row[3])
