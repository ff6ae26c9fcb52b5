"""Approved constructions (审批, from the planning and housing bureaus): they must not be flagged.

Permits are keyed by their number: upserting the same permits again changes nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import shapely
from sqlalchemy import Engine, text

from gis_db.domain import PermitIssuer
from gis_db.errors import InvalidInputError
from gis_db.schema import stored_crs

if TYPE_CHECKING:
    import geopandas as gpd


def upsert_permits(engine: Engine, frame: gpd.GeoDataFrame) -> tuple[int, int]:
    """Insert or update permits by ``permit_number``; returns (inserted, updated) counts.

    ``frame``: polygons in the working CRS (metres), columns ``permit_number``, ``valid_from``
    (date), optional ``valid_to`` (date or empty), ``issuer`` (planning / housing / other, or the
    Chinese label) and ``description``. Rows equal to the stored ones are left untouched.
    """
    from pyproj import CRS

    if frame.crs is None:
        raise InvalidInputError("the permits frame has no CRS: set it (frame.set_crs(...))")
    inserted = updated = 0
    with engine.begin() as conn:
        stored = stored_crs(conn)
        if stored is None:
            raise InvalidInputError("the database has no weijian schema: run 'weijian db upgrade'")
        if not CRS.from_user_input(frame.crs).equals(CRS.from_user_input(stored[0])):
            raise InvalidInputError(
                f"the permits are in {frame.crs.to_string()}, the database stores {stored[0]}: "
                "reproject them first"
            )
        for row in frame.itertuples(index=False):
            geom = shapely.force_2d(row.geometry)
            if geom is None or geom.is_empty:
                raise InvalidInputError(f"permit {row.permit_number}: empty geometry")
            issuer = PermitIssuer.parse(str(getattr(row, "issuer", None) or "planning")).value
            result = conn.execute(
                text(
                    "INSERT INTO permit (permit_number, issuer, description, valid_from, "
                    "valid_to, geom) VALUES (:n, :i, :d, :f, :t, "
                    "ST_Multi(ST_GeomFromWKB(:g, :srid))) "
                    "ON CONFLICT (permit_number) DO UPDATE SET issuer = EXCLUDED.issuer, "
                    "description = EXCLUDED.description, valid_from = EXCLUDED.valid_from, "
                    "valid_to = EXCLUDED.valid_to, geom = EXCLUDED.geom "
                    "WHERE (permit.issuer, permit.description, permit.valid_from, permit.valid_to) "
                    "IS DISTINCT FROM (EXCLUDED.issuer, EXCLUDED.description, "
                    "EXCLUDED.valid_from, EXCLUDED.valid_to) "
                    "OR NOT ST_Equals(permit.geom, EXCLUDED.geom) "
                    "RETURNING (xmax = 0) AS inserted"
                ),
                {
                    "n": str(row.permit_number),
                    "i": issuer,
                    "d": getattr(row, "description", None),
                    "f": row.valid_from,
                    "t": getattr(row, "valid_to", None),
                    "g": shapely.to_wkb(geom),
                    "srid": stored[1],
                },
            ).first()
            if result is not None:
                inserted += int(bool(result.inserted))
                updated += int(not result.inserted)
    return inserted, updated
