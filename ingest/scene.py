"""Describing one scene: footprint, ground sample distance, acquisition time, platform, checksum.

The footprint is the real imaged area (valid-data mask polygonised from a decimated read), not the
bounding box. A STAC Item (pystac) can be written beside the file.
"""

from __future__ import annotations

import hashlib
import json
import re
import warnings
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Literal

import numpy as np
import rasterio.features
import shapely
from affine import Affine
from pyproj import CRS, Geod, Transformer
from rasterio.io import DatasetReader
from shapely import geometry, ops, segmentize, wkt
from shapely.geometry.base import BaseGeometry

from ingest.errors import (
    AcquisitionDateWarning,
    EmptyRasterError,
    ImplausibleBoundsError,
    InvalidDateError,
    MissingAcquisitionDateError,
)
from ingest.raster import check_readable, data_band_indexes, open_raster, parse_crs, resolve_source

Platform = Literal["drone", "satellite"]
DateSource = Literal["explicit", "sidecar", "filename", "tiff-tag"]
#: Time zone assumed for date-times written without one (drone controllers use local time).
#: The same zone as gis_db.domain.SHANGHAI, kept here because ingest imports no later stage.
SHANGHAI = timezone(timedelta(hours=8))
#: Below this ground sample distance (m) a scene is taken for a drone orthophoto.
DRONE_MAX_GSD_M = 0.25
#: How far (degrees) bounds may lie outside their CRS's area of use before they are refused: about
#: 300 km, so a 3-degree Gauss-Kruger zone used a little beyond its edge (as for all of Shanghai in
#: EPSG:4549, whose area of use stops at 121.5 E) is accepted.
AREA_OF_USE_MARGIN_DEG = 3.0
#: Largest side (px) of the decimated mask read used to compute footprints.
FOOTPRINT_MAX_PX = 1024

_FILENAME_DATE = re.compile(
    r"(?<!\d)(20\d{2})[-_.]?([01]\d)[-_.]?([0-3]\d)(?:[T_-]?([0-2]\d)[:_-]?([0-5]\d)[:_-]?([0-5]\d))?(?!\d)"
)


@dataclass(frozen=True)
class Scene:
    """One georeferenced image and what we know about it.

    ``bounds`` and ``footprint_wkt`` are in the scene's own CRS (``crs_wkt``);
    ``footprint_lonlat_wkt`` is in EPSG:4326 (lon, lat order). ``gsd_m`` is the ground size of a
    pixel in metres (mean of x and y, measured geodesically at the image centre, so it is true for
    EPSG:4326 and 3857 too).
    """

    path: str
    source: str
    sha256: str
    crs_wkt: str
    epsg: int | None
    width: int
    height: int
    bands: tuple[int, ...]
    colorinterp: tuple[str, ...]
    dtype: str
    nodata: float | None
    mask: Literal["nodata", "alpha", "internal", "none"]
    transform: tuple[float, float, float, float, float, float]
    bounds: tuple[float, float, float, float]
    footprint_wkt: str
    footprint_lonlat_wkt: str
    valid_fraction: float
    gsd_m: float
    platform: Platform
    sensor: str | None = None
    acquired: datetime | None = None
    acquired_source: DateSource | None = None
    tags: dict[str, str] = field(default_factory=dict)

    @property
    def crs(self) -> CRS:
        """The scene CRS (pyproj)."""
        return CRS.from_wkt(self.crs_wkt)

    @property
    def footprint(self) -> BaseGeometry:
        """Valid-data footprint in the scene CRS."""
        return wkt.loads(self.footprint_wkt)

    def footprint_in(self, crs: Any) -> BaseGeometry:
        """Valid-data footprint reprojected to ``crs`` (densified first so edges stay true)."""
        target = parse_crs(crs)
        if target.equals(self.crs):
            return self.footprint
        return reproject_geometry(self.footprint, self.crs, target)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary (date-time as ISO 8601)."""
        d = asdict(self)
        d["acquired"] = self.acquired.isoformat() if self.acquired else None
        return d

    def summary(self) -> dict[str, Any]:
        """The few fields a person wants to read."""
        return {
            "path": self.path,
            "crs": f"EPSG:{self.epsg}" if self.epsg else CRS.from_wkt(self.crs_wkt).name,
            "size_px": f"{self.width} x {self.height}",
            "bands": len(self.bands),
            "dtype": self.dtype,
            "mask": self.mask,
            "gsd_m": round(self.gsd_m, 4),
            "platform": self.platform,
            "sensor": self.sensor,
            "acquired": self.acquired.isoformat() if self.acquired else None,
            "acquired_from": self.acquired_source,
            "valid_fraction": round(self.valid_fraction, 4),
            "footprint_area_m2": round(footprint_area_m2(self), 1),
            "sha256": self.sha256,
        }


def reproject_geometry(geom: BaseGeometry, src: CRS, dst: CRS) -> BaseGeometry:
    """``geom`` from ``src`` to ``dst`` (x/lon first: ``always_xy``).

    Edges are densified to 1/64 of the geometry's extent first, so they stay true when curved.
    """
    minx, miny, maxx, maxy = geom.bounds
    dense = segmentize(geom, max(maxx - minx, maxy - miny) / 64 or 1.0)
    fwd = Transformer.from_crs(src, dst, always_xy=True)
    return shapely.transform(dense, lambda xy: np.column_stack(fwd.transform(xy[:, 0], xy[:, 1])))


def _fmt_bounds(bounds: tuple[float, float, float, float]) -> str:
    return "(" + ", ".join(f"{v:.10g}" for v in bounds) + ")"


def check_plausible_bounds(
    crs: Any,
    bounds: tuple[float, float, float, float],
    *,
    name: object = None,
    margin_deg: float = AREA_OF_USE_MARGIN_DEG,
) -> tuple[float, float, float, float]:
    """Refuse bounds that are impossible in ``crs`` or lie far outside its area of use.

    ``bounds`` = (left, bottom, right, top) in ``crs`` units (an EPSG code, PROJ/WKT string,
    pyproj or rasterio CRS). Impossible: not finite, empty, latitude beyond ±90° or longitude
    beyond -180..360° in a geographic CRS, or points a projected CRS cannot take back to the earth
    (its inverse fails or does not return to the same coordinates). Far outside: the bounds in
    longitude/latitude do not come within ``margin_deg`` degrees of the CRS's area of use (CRS
    without a declared area of use, such as a custom PROJ string, skip that part).

    Returns the bounds in longitude/latitude degrees (west, south, east, north). Raises
    :class:`ImplausibleBoundsError` with one line that says what to fix. The check only reads
    numbers: it is cheap enough for every image of a flight.
    """
    crs = parse_crs(crs)
    label = f"{name}: " if name is not None else ""
    fix = (
        "check which CRS the coordinates were made in (`gdalinfo`) and assign it with "
        "`gdal_edit.py -a_srs EPSG:... FILE`, or fix the geotransform"
    )
    values = tuple(float(v) for v in bounds)
    left, bottom, right, top = values
    if not all(np.isfinite(values)) or left >= right or bottom >= top:
        raise ImplausibleBoundsError(
            f"{label}bounds {_fmt_bounds(bounds)} are not a finite, non-empty rectangle in "
            f"{crs.name}: {fix}"
        )
    xs = np.linspace(left, right, 5)
    ys = np.linspace(bottom, top, 5)
    gx, gy = (a.ravel() for a in np.meshgrid(xs, ys))
    if crs.is_geographic:
        lon, lat = gx, gy
        bad = bool((lat < -90 - 1e-9).any() or (lat > 90 + 1e-9).any())
        bad = bad or bool((lon < -180 - 1e-9).any() or (lon > 360 + 1e-9).any())
        lon = np.where(lon > 180, lon - 360, lon)
    else:
        geo = crs.geodetic_crs or CRS.from_epsg(4326)
        to_geo = Transformer.from_crs(crs, geo, always_xy=True)
        back = Transformer.from_crs(geo, crs, always_xy=True)
        with np.errstate(all="ignore"):
            lon, lat = (np.asarray(v, dtype=np.float64) for v in to_geo.transform(gx, gy))
            rx, ry = (np.asarray(v, dtype=np.float64) for v in back.transform(lon, lat))
        scale = max(abs(right - left), abs(top - bottom), 1.0)
        bad = not (np.isfinite(lon).all() and np.isfinite(lat).all())
        bad = bad or not (np.isfinite(rx).all() and np.isfinite(ry).all())
        bad = bad or float(np.max(np.hypot(rx - gx, ry - gy))) > max(1.0, 1e-6 * scale)
        bad = bad or bool((np.abs(lat) > 90 + 1e-9).any())
    if bad:
        raise ImplausibleBoundsError(
            f"{label}bounds {_fmt_bounds(bounds)} are impossible in {crs.name} (no place on earth "
            f"has these coordinates): {fix}"
        )
    lonlat = (float(lon.min()), float(lat.min()), float(lon.max()), float(lat.max()))
    area = crs.area_of_use
    if area is None and (code := crs.to_epsg()) is not None:  # WKT from GDAL drops the USAGE
        area = CRS.from_epsg(code).area_of_use
    if area is not None and area.west <= area.east:
        m = margin_deg
        far = (
            lonlat[2] < area.west - m
            or lonlat[0] > area.east + m
            or lonlat[3] < area.south - m
            or lonlat[1] > area.north + m
        )
        if far:
            raise ImplausibleBoundsError(
                f"{label}bounds {_fmt_bounds(bounds)} lie at {lonlat[0]:.3f}..{lonlat[2]:.3f} E, "
                f"{lonlat[1]:.3f}..{lonlat[3]:.3f} N, more than {m:g} degrees outside the area of "
                f"use of {crs.name} ({area.west:g}..{area.east:g} E, {area.south:g}..{area.north:g}"
                f" N): {fix}"
            )
    return lonlat


def sha256_file(path: str | Path, chunk: int = 1 << 22) -> str:
    """SHA-256 of a file, read in 4 MiB chunks (bounded memory). For a VRT: of the VRT text."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def ground_sample_distance_m(crs: CRS, transform: Any, width: int, height: int) -> float:
    """Geodesic size in metres of one pixel at the image centre (mean of x and y sides)."""
    cx, cy = transform @ (width / 2, height / 2)
    px, py = transform @ (width / 2 + 1, height / 2)
    qx, qy = transform @ (width / 2, height / 2 + 1)
    geo = crs.geodetic_crs or CRS.from_epsg(4326)
    to_geo = Transformer.from_crs(crs, geo, always_xy=True)
    (lon0, lon1, lon2), (lat0, lat1, lat2) = to_geo.transform([cx, px, qx], [cy, py, qy])
    geod = geo.get_geod() or Geod(ellps="WGS84")
    _, _, dx = geod.inv(lon0, lat0, lon1, lat1)
    _, _, dy = geod.inv(lon0, lat0, lon2, lat2)
    return float((dx + dy) / 2)


def valid_footprint(
    ds: DatasetReader, max_px: int = FOOTPRINT_MAX_PX
) -> tuple[BaseGeometry, float]:
    """Polygon of the valid pixels in the dataset CRS, and the valid fraction of the raster.

    Reads the dataset mask (nodata, alpha or internal mask) decimated to at most ``max_px`` on a
    side, polygonises it and simplifies it by one decimated pixel. Raises :class:`EmptyRasterError`.
    """
    scale = max(ds.width / max_px, ds.height / max_px, 1.0)
    h, w = max(1, round(ds.height / scale)), max(1, round(ds.width / scale))
    mask = ds.dataset_mask(out_shape=(h, w)) > 0
    fraction = float(mask.mean())
    if not mask.any():
        raise EmptyRasterError(
            f"{ds.name} holds no valid pixel (all nodata or masked): check its nodata value "
            "(`gdalinfo`) or re-export the image"
        )
    t = ds.transform @ Affine.scale(ds.width / w, ds.height / h)
    if mask.all():
        poly: BaseGeometry = geometry.box(*rasterio.transform.array_bounds(h, w, t))
    else:
        shapes = rasterio.features.shapes(
            mask.astype(np.uint8), mask=mask, transform=t, connectivity=8
        )
        poly = ops.unary_union([geometry.shape(g) for g, _ in shapes])
        poly = poly.simplify(abs(t.a), preserve_topology=True).buffer(0)
    return poly, fraction


def parse_datetime(text: str) -> datetime:
    """Parse ``2024-03-15``, ``2024-03-15T10:20:00+08:00`` or EXIF ``2024:03:15 10:20:00``.

    A date-time without zone is taken as Shanghai local time (UTC+8). Raises
    :class:`InvalidDateError`.
    """
    text = text.strip().replace("Z", "+00:00")
    m = re.fullmatch(r"(\d{4}):(\d{2}):(\d{2})([ T].*)?", text)
    if m:
        text = f"{m[1]}-{m[2]}-{m[3]}{(m[4] or '').replace(' ', 'T')}"
    try:
        value = datetime.fromisoformat(text)
    except ValueError as exc:
        raise InvalidDateError(
            f"{text!r} is not a date-time: write it as ISO 8601, e.g. 2024-03-15 or "
            "2024-03-15T10:20:00+08:00"
        ) from exc
    return value if value.tzinfo else value.replace(tzinfo=SHANGHAI)


def _sidecar_metadata(path: Path) -> dict[str, Any]:
    for candidate in (path.with_suffix(".json"), path.with_name(path.name + ".json")):
        if candidate.is_file() and not candidate.name.endswith(".stac.json"):
            try:
                data = json.loads(candidate.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            if isinstance(data, dict):
                return data
    return {}


def acquisition_datetime(
    path: Path, tags: dict[str, str], sidecar: dict[str, Any]
) -> tuple[datetime | None, DateSource | None]:
    """Acquisition date-time from, in order: sidecar JSON, file name, TIFF tags.

    The sidecar (``NAME.json`` beside the image, keys ``acquired`` or ``datetime``) wins; then a
    date in the file name (``20240315``, ``2024-03-15``, ``20240315_102000``); ``TIFFTAG_DATETIME``
    comes last because photogrammetry software writes the *processing* time there.
    """
    for key in ("acquired", "datetime", "acquisition_datetime", "date"):
        if sidecar.get(key):
            return parse_datetime(str(sidecar[key])), "sidecar"
    m = _FILENAME_DATE.search(path.stem) or _FILENAME_DATE.search(path.parent.name)
    if m:
        try:
            y, mo, d = int(m[1]), int(m[2]), int(m[3])
            hh, mm, ss = (int(m[i]) if m[i] else 0 for i in (4, 5, 6))
            return datetime(y, mo, d, hh, mm, ss, tzinfo=SHANGHAI), "filename"
        except ValueError:
            pass
    for key in ("ACQUISITIONDATETIME", "TIFFTAG_DATETIME"):
        if tags.get(key):
            try:
                return parse_datetime(tags[key]), "tiff-tag"
            except InvalidDateError:
                continue
    return None, None


def describe_scene(
    path: str | Path,
    *,
    acquired: datetime | str | None = None,
    platform: Platform | None = None,
    sensor: str | None = None,
    checksum: bool = True,
) -> Scene:
    """Validate and describe one image (file, URL or folder of drone tiles).

    ``acquired``, ``platform`` and ``sensor`` override what is found in the file. Without them the
    platform is ``"drone"`` below 0.25 m GSD, else ``"satellite"``; the sensor comes from the
    sidecar (``sensor``) or TIFF tags (``TIFFTAG_MAKE``/``MODEL``). Warns with
    :class:`AcquisitionDateWarning` when no date-time is known.
    """
    source = resolve_source(path)
    src_path = Path(source)
    with open_raster(source) as ds:
        crs = parse_crs(ds.crs)
        check_plausible_bounds(crs, tuple(ds.bounds), name=path)
        check_readable(ds, path)
        bands = data_band_indexes(ds)
        flags = ds.mask_flag_enums[0]
        mask_kind: Literal["nodata", "alpha", "internal", "none"] = (
            "alpha"
            if len(bands) < ds.count
            else "nodata"
            if ds.nodata is not None
            else "none"
            if [f.name for f in flags] == ["all_valid"]
            else "internal"
        )
        footprint, fraction = valid_footprint(ds)
        tags = {k: str(v) for k, v in ds.tags().items()}
        gsd = ground_sample_distance_m(crs, ds.transform, ds.width, ds.height)
        sidecar = _sidecar_metadata(src_path) if src_path.exists() else {}
        when: datetime | None
        when_source: DateSource | None
        if isinstance(acquired, str):
            when, when_source = parse_datetime(acquired), "explicit"
        elif acquired is not None:
            when = acquired if acquired.tzinfo else acquired.replace(tzinfo=SHANGHAI)
            when_source = "explicit"
        else:
            when, when_source = acquisition_datetime(Path(path), tags, sidecar)
        if when is None:
            warnings.warn(
                f"{path}: no acquisition date-time in sidecar, file name or TIFF tags; "
                "give it explicitly (e.g. `--acquired 2024-03-15T10:00`)",
                AcquisitionDateWarning,
                stacklevel=2,
            )
        if sensor is None:
            sensor = (
                sidecar.get("sensor")
                or " ".join(v for v in (tags.get("TIFFTAG_MAKE"), tags.get("TIFFTAG_MODEL")) if v)
                or None
            )
        if platform is None:
            platform = sidecar.get("platform") or (
                "drone" if gsd < DRONE_MAX_GSD_M else "satellite"
            )
        footprint_ll = reproject_geometry(footprint, crs, CRS.from_epsg(4326))
        return Scene(
            path=str(path),
            source=source,
            sha256=sha256_file(source) if checksum and src_path.is_file() else "",
            crs_wkt=crs.to_wkt(),
            epsg=crs.to_epsg(),
            width=ds.width,
            height=ds.height,
            bands=bands,
            colorinterp=tuple(ds.colorinterp[i - 1].name for i in bands),
            dtype=ds.dtypes[bands[0] - 1],
            nodata=ds.nodata,
            mask=mask_kind,
            transform=tuple(ds.transform)[:6],
            bounds=tuple(ds.bounds),
            footprint_wkt=footprint.wkt,
            footprint_lonlat_wkt=footprint_ll.wkt,
            valid_fraction=fraction,
            gsd_m=gsd,
            platform=platform,  # type: ignore[arg-type]
            sensor=sensor,
            acquired=when,
            acquired_source=when_source,
            tags=tags,
        )


def footprint_area_m2(scene: Scene) -> float:
    """Geodesic area of the valid footprint, m²."""
    return abs(
        Geod(ellps="WGS84").geometry_area_perimeter(wkt.loads(scene.footprint_lonlat_wkt))[0]
    )


def stac_item(scene: Scene) -> Any:
    """A pystac Item for the scene (projection, checksum, GSD as properties; the image as asset)."""
    import pystac

    if scene.acquired is None:
        raise MissingAcquisitionDateError(
            f"{scene.path}: a STAC Item needs the acquisition date-time; give it explicitly "
            "(`weijian scene add FILE --acquired 2024-03-15`) or put it in a NAME.json sidecar"
        )
    fp = wkt.loads(scene.footprint_lonlat_wkt)
    item = pystac.Item(
        id=Path(scene.path).stem,
        geometry=geometry.mapping(fp),
        bbox=list(fp.bounds),
        datetime=scene.acquired.astimezone(UTC),
        properties={
            "gsd": round(scene.gsd_m, 4),
            "platform": scene.platform,
            **({"instruments": [scene.sensor]} if scene.sensor else {}),
            "proj:code": f"EPSG:{scene.epsg}" if scene.epsg else None,
            **({} if scene.epsg else {"proj:wkt2": scene.crs_wkt}),
            "proj:shape": [scene.height, scene.width],
            "proj:transform": list(scene.transform),
            "proj:bbox": list(scene.bounds),
            "weijian:sha256": scene.sha256,
            "weijian:valid_fraction": round(scene.valid_fraction, 4),
            "weijian:acquired_from": scene.acquired_source,
        },
    )
    media = "application/xml" if scene.source.endswith(".vrt") else pystac.MediaType.GEOTIFF
    item.add_asset(
        "image", pystac.Asset(href=Path(scene.source).name, media_type=media, roles=["data"])
    )
    return item


def write_stac_item(scene: Scene, out: str | Path | None = None) -> Path:
    """Write the scene's STAC Item beside the image (``NAME.stac.json``); return its path."""
    src = Path(scene.source)
    out = Path(out) if out else src.with_name(src.stem + ".stac.json")
    item = stac_item(scene)
    out.write_text(
        json.dumps(item.to_dict(include_self_link=False), ensure_ascii=False, indent=2),
        encoding="utf-8",
    )
    return out
