"""Geometry checks of an inventory file: CRS, polygons, extent, safe repair (working CRS, m)."""

from __future__ import annotations

import re

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from pyproj import CRS, Transformer
from pyproj.exceptions import CRSError

from gis_db.errors import InvalidInputError
from gis_db.gcj02 import offset_system, to_wgs84
from gis_db.inventory import (
    RowProblem,
)
from gis_db.inventory_io.cells import non_finite_vertices
from gis_db.inventory_io.mapping import OFFSET_COLUMNS, Kind, _header_crs
from gis_db.inventory_io.problems import _as_text, _label, _Problems
from gis_db.inventory_io.readers import RawTable

#: Shanghai as (lon_min, lat_min, lon_max, lat_max) in CGCS2000 degrees: the extent footprints
#: must lie in while no 街镇 boundaries are loaded.
SHANGHAI_LONLAT = (120.8, 30.6, 122.2, 31.9)


#: Largest relative area change a geometry repair may make and still be accepted.
MAX_REPAIR_AREA_CHANGE = 0.01
#: Where offset (GCJ-02/BD-09) coordinates can lie: China, lon/lat degrees.
CHINA_LONLAT = (72.0, 0.0, 138.0, 56.0)


def _resolve_crs(
    source: str, declared: str | None, given: str | None, hint: str | None = None
) -> CRS:
    given_crs = None
    if given:
        try:
            given_crs = CRS.from_user_input(given)
        except CRSError as exc:
            raise InvalidInputError(
                f"--crs {given!r} is not a CRS PROJ understands: use e.g. EPSG:4490 or EPSG:4549"
            ) from exc
    if declared and given_crs and not CRS.from_user_input(declared).equals(given_crs):
        raise InvalidInputError(
            f"{source}, all rows, field geometry: the file declares {declared} but --crs says "
            f"{given}; "
            "drop --crs or fix the file's CRS"
        )
    if declared:
        return CRS.from_user_input(declared)
    if given_crs is None:
        why = hint or "no .prj, no SRS, no '(EPSG:…)' in the geometry header"
        raise InvalidInputError(
            f"{source}, all rows, field geometry: the file has no CRS ({why}); give it with "
            "--crs, e.g. --crs EPSG:4490 (CGCS2000 lon/lat), --crs EPSG:4549, or --crs GCJ-02 "
            "for points copied from 高德 maps"
        )
    return given_crs


def _crs_name(crs: CRS) -> str:
    code = crs.to_epsg(min_confidence=90)
    return f"EPSG:{code} ({crs.name})" if code else crs.name


def _geometry(
    raw: RawTable, cols: dict[str, str], probs: _Problems, kind: Kind
) -> tuple[np.ndarray, str | None, np.ndarray | None, str]:
    """Geometries as read, the CRS a header declares, square sides for lon/lat, field label."""
    if raw.geometry is not None:
        return raw.geometry, None, None, "geometry"
    if "wkt" in cols:
        header = cols["wkt"]
        text_ = _as_text(raw.frame[header])
        geoms = shapely.from_wkt(text_.to_numpy(), on_invalid="ignore")
        unreadable = [
            int(i)
            for i in np.flatnonzero(text_.notna().to_numpy() & shapely.is_missing(geoms))
            if int(i) not in probs.positions()
        ]
        probs.add(
            unreadable, header, "not valid WKT; write e.g. POLYGON((x y, …))", text_.to_numpy()
        )
        return geoms, _header_crs(header), None, header
    lon_f, lat_f, implied = "lon", "lat", None
    if not ("lon" in cols and "lat" in cols):
        for system, (a, b) in OFFSET_COLUMNS.items():
            if a in cols and b in cols:
                lon_f, lat_f, implied = a, b, system
                break
    if lon_f in cols and lat_f in cols:
        if kind != "cases":
            raise InvalidInputError(
                f"{raw.source}, header row, field geometry: 街镇/居村 boundaries need polygons: "
                "give a WKT column, or a GeoPackage/Shapefile"
            )
        if "area_m2" not in cols:
            raise InvalidInputError(
                f"{raw.source}, header row, field 面积 (area_m2): lon/lat rows need an area "
                "column (m²) to draw a footprint; add one, or give a WKT column"
            )
        lon = pd.to_numeric(raw.frame[cols[lon_f]], errors="coerce").to_numpy(dtype=float)
        lat = pd.to_numeric(raw.frame[cols[lat_f]], errors="coerce").to_numpy(dtype=float)
        area = pd.to_numeric(raw.frame[cols["area_m2"]], errors="coerce").to_numpy(dtype=float)
        known = probs.positions()
        for f, arr in ((lon_f, lon), (lat_f, lat)):
            probs.add(
                [int(i) for i in np.flatnonzero(~np.isfinite(arr)) if int(i) not in known],
                cols[f],
                "not a number",
                raw.frame[cols[f]].to_numpy(),
            )
        probs.add(
            np.flatnonzero(~(area > 0)),
            _label(cols["area_m2"], "area_m2"),
            "area must be a positive number of m² (it sizes the footprint)",
            raw.frame[cols["area_m2"]].to_numpy(),
        )
        ok = np.isfinite(lon) & np.isfinite(lat)
        geoms = np.asarray(shapely.points(np.where(ok, lon, 0), np.where(ok, lat, 0)), dtype=object)
        geoms[~ok] = None
        declared = implied or _header_crs(cols[lon_f]) or _header_crs(cols[lat_f])
        return geoms, declared, np.sqrt(np.where(area > 0, area, np.nan)), "geometry"
    needed = "WKT column, or lon + lat + 面积 columns" if kind == "cases" else "WKT column"
    raise InvalidInputError(
        f"{raw.source}, header row, field geometry: no geometry column (a {needed}); columns "
        f"found: {', '.join(map(str, raw.frame.columns))}. Rename one or add its header to a "
        "--mapping file"
    )


def _extent_check(
    geoms: np.ndarray,
    extent: tuple[float, float, float, float],
    ok: np.ndarray,
    working: CRS,
    probs: _Problems,
    label: str,
    where: str,
) -> np.ndarray:
    """Mark footprints outside ``extent`` (working CRS); returns the mask of those inside."""
    bounds = shapely.bounds(geoms)
    with np.errstate(invalid="ignore"):
        inside = (
            (bounds[:, 0] >= extent[0])
            & (bounds[:, 1] >= extent[1])
            & (bounds[:, 2] <= extent[2])
            & (bounds[:, 3] <= extent[3])
        )
    outside = np.flatnonzero(ok & ~inside)
    if len(outside):
        to_ll = Transformer.from_crs(working, "EPSG:4490", always_xy=True)
        cx, cy = to_ll.transform(
            (bounds[outside, 0] + bounds[outside, 2]) / 2,
            (bounds[outside, 1] + bounds[outside, 3]) / 2,
        )
        lonlat = {int(i): (x, y) for i, x, y in zip(outside, cx, cy, strict=True)}
        probs.add(
            outside,
            label,
            lambda i: (
                f"footprint at lon {lonlat[i][0]:.4f}, lat {lonlat[i][1]:.4f} lies outside "
                f"{where}: check the coordinates and the CRS (--crs)"
            ),
        )
    return ok & inside


def _repair(
    geoms: np.ndarray, ok: np.ndarray, probs: _Problems, label: str, repaired: list[RowProblem]
) -> np.ndarray:
    """Repair invalid polygons in place when safe (<1 % area change); mark the others."""
    invalid = np.flatnonzero(ok & ~shapely.is_valid(geoms))
    for i in invalid:
        g = geoms[i]
        reason = re.sub(
            r"\[(-?[\d.]+) (-?[\d.]+)\]",
            lambda m: f" at x {float(m[1]):.2f}, y {float(m[2]):.2f}",
            shapely.is_valid_reason(g),
        )
        fixed = shapely.make_valid(g)
        polys = [p for p in shapely.get_parts(fixed) if p.geom_type in ("Polygon", "MultiPolygon")]
        fixed = shapely.union_all(polys) if polys else None
        before, after = shapely.area(g), (fixed.area if fixed is not None else 0.0)
        change = abs(after - before) / before if before > 0 else np.inf
        if fixed is not None and not fixed.is_empty and change < MAX_REPAIR_AREA_CHANGE:
            geoms[i] = fixed
            repaired.append(
                RowProblem(
                    row=probs.row(int(i)),
                    field=label,
                    reason=(
                        f"invalid polygon ({reason}) repaired: area {before:.1f} → {after:.1f} m²"
                    ),
                    case_number=probs.number(int(i)),
                )
            )
        else:
            probs.add(
                [int(i)],
                label,
                f"invalid polygon ({reason}) that cannot be repaired safely "
                f"(repair would change its area from {before:.1f} to {after:.1f} m²): "
                "redraw it without self-intersections",
            )
            ok[i] = False
    return ok


def _validate_geometry(
    raw: RawTable,
    cols: dict[str, str],
    probs: _Problems,
    kind: Kind,
    working: CRS,
    crs: str | None,
    extent: tuple[float, float, float, float],
    where: str,
    repaired: list[RowProblem],
    warnings: list[str],
) -> tuple[np.ndarray, CRS, str | None]:
    """Footprints in the working CRS (rows with problems marked), the source CRS and its name.

    The name is set when it is not just the CRS's (offset web-map coordinates converted).
    """
    geoms, declared, sides, label = _geometry(raw, cols, probs, kind)
    source_crs, offset = _source_crs(raw, declared, crs)
    geoms = shapely.force_2d(np.asarray(geoms, dtype=object))
    missing = shapely.is_missing(geoms) | shapely.is_empty(geoms)
    broken = non_finite_vertices(geoms)
    probs.add(
        list(broken),
        label,
        lambda i: (
            f"vertex {broken[i]} has no coordinate (NaN or infinite): the drawing program left "
            "a broken vertex; delete or redraw it and export the layer again"
        ),
    )
    # geometries that failed to parse were reported already
    already = np.zeros(len(geoms), dtype=bool)
    already[list(probs.positions())] = True
    probs.add(np.flatnonzero(missing & ~already), label, "no geometry; every row needs a footprint")
    types = shapely.get_type_id(geoms)
    polygonal = np.isin(types, (3, 6))
    ok = ~missing & (polygonal | (sides is not None))
    wrong = np.flatnonzero(~missing & ~ok)
    what = (
        "cases need footprint polygons (面)" if kind == "cases" else "boundaries must be polygons"
    )
    probs.add(
        wrong,
        label,
        lambda i: (
            f"is a {geoms[i].geom_type}; {what}, not points or lines: export the polygon layer"
        ),
    )
    if sides is not None:
        ok &= np.isfinite(sides)
    ok[list(broken)] = False
    name = None
    if offset is not None:
        geoms = _from_offset(geoms, ok, offset, probs, label)
        name = f"{offset} (web-map coordinates, converted to EPSG:4490 CGCS2000)"
        warnings.append(
            f"{int(ok.sum())} location(s) converted from {offset} ("
            + ("高德/腾讯" if offset == "GCJ-02" else "百度")
            + " web-map coordinates) to CGCS2000 (EPSG:4490); the method and its accuracy "
            "(< 1 m) are in docs/decisions (inventory import)"
        )
    if not source_crs.equals(working):
        geoms = np.asarray(gpd.GeoSeries(geoms, crs=source_crs).to_crs(working).to_numpy())
    if sides is not None:
        x, y = shapely.get_x(geoms), shapely.get_y(geoms)
        with np.errstate(invalid="ignore"):
            geoms = np.where(
                ok & np.isfinite(sides),
                shapely.box(x - sides / 2, y - sides / 2, x + sides / 2, y + sides / 2),
                geoms,
            )
        warnings.append(
            f"{int(ok.sum())} footprint(s) drawn as squares of the given area around "
            "the lon/lat point (approximate; replace them with surveyed polygons)"
        )
    ok = _extent_check(geoms, extent, ok, working, probs, label, where)
    ok = _repair(geoms, ok, probs, label, repaired)
    zero = np.flatnonzero(ok & ~(shapely.area(geoms) > 0))
    probs.add(zero, label, "footprint has zero area; redraw it")
    return geoms, source_crs, name


def _source_crs(raw: RawTable, declared: str | None, given: str | None) -> tuple[CRS, str | None]:
    """The CRS of the file's coordinates, and ``"GCJ-02"``/``"BD-09"`` when they are offset."""
    stated = raw.crs or declared
    stated_offset, given_offset = offset_system(stated), offset_system(given)
    if stated_offset is None and given_offset is None:
        return _resolve_crs(raw.source, stated, given, raw.crs_hint), None
    if stated_offset and given and given_offset != stated_offset:
        raise InvalidInputError(
            f"{raw.source}, all rows, field geometry: the columns say {stated_offset} but --crs "
            f"says {given}; drop --crs (the conversion from {stated_offset} to CGCS2000 is "
            "automatic) or correct the column header"
        )
    if given_offset and stated and not stated_offset:
        raise InvalidInputError(
            f"{raw.source}, all rows, field geometry: the file declares {stated} but --crs says "
            f"{given_offset}; drop --crs or fix the file's CRS"
        )
    return CRS.from_epsg(4490), stated_offset or given_offset


def _from_offset(
    geoms: np.ndarray, ok: np.ndarray, system: str, probs: _Problems, label: str
) -> np.ndarray:
    """Every vertex converted from GCJ-02/BD-09 lon/lat to CGCS2000 (:mod:`gis_db.gcj02`).

    Rows whose coordinates are not lon/lat degrees in China are marked (and left as they are).
    """
    coords, index = shapely.get_coordinates(geoms, return_index=True)
    if not len(coords):
        return geoms
    x0, y0, x1, y1 = CHINA_LONLAT
    with np.errstate(invalid="ignore"):
        inside = (
            (coords[:, 0] >= x0)
            & (coords[:, 0] <= x1)
            & (coords[:, 1] >= y0)
            & (coords[:, 1] <= y1)
        )
    bad = sorted({int(i) for i in index[~inside] if ok[i]})
    probs.add(
        bad,
        label,
        f"{system} coordinates are longitude/latitude degrees in China; these are not: check "
        "the columns and --crs",
    )
    ok[bad] = False
    lon, lat = to_wgs84(system, coords[:, 0], coords[:, 1])
    return np.asarray(shapely.set_coordinates(geoms.copy(), np.column_stack([lon, lat])))


def shanghai_extent(working_crs: str) -> tuple[float, float, float, float]:
    """:data:`SHANGHAI_LONLAT` in the working CRS (minx, miny, maxx, maxy), metres."""
    tr = Transformer.from_crs("EPSG:4490", working_crs, always_xy=True)
    return tr.transform_bounds(*SHANGHAI_LONLAT, densify_pts=21)
