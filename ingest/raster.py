"""Opening and validating rasters: GeoTIFF, COG, VRT and folders of drone tiles (as a VRT mosaic).

Nothing here reads a whole raster: validation touches the header and one or two blocks.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

import rasterio
from pyproj import CRS
from pyproj.exceptions import CRSError
from rasterio.enums import ColorInterp
from rasterio.errors import NotGeoreferencedWarning, RasterioError
from rasterio.io import DatasetReader
from rasterio.windows import Window

from ingest.errors import (
    CorruptRasterError,
    MosaicError,
    NotGeoreferencedError,
    RotatedGridError,
    UnknownCRSError,
)

#: File name extensions taken as tiles when a folder is given.
TILE_SUFFIXES = (".tif", ".tiff", ".jp2", ".img", ".vrt")
#: Name of the mosaic VRT written inside a folder of tiles.
MOSAIC_NAME = "weijian_mosaic.vrt"
#: GDAL settings for every read: a bounded block cache (rasterio takes GDAL_CACHEMAX in bytes) so
#: memory does not grow with the image.
GDAL_ENV: dict[str, Any] = {"GDAL_CACHEMAX": 256 * 1024 * 1024, "GDAL_TIFF_INTERNAL_MASK": True}


def parse_crs(value: Any) -> CRS:
    """A CRS from an EPSG code (``"EPSG:4549"``, ``4549``), a PROJ string, WKT or a rasterio CRS.

    Raises :class:`UnknownCRSError` when PROJ does not understand it or when it is a local
    (engineering) CRS that cannot be related to the earth.
    """
    try:
        crs = CRS.from_user_input(value.to_wkt() if hasattr(value, "to_wkt") else value)
    except CRSError as exc:
        raise UnknownCRSError(
            f"CRS {str(value)[:80]!r} is not understood by PROJ: give an EPSG code such as "
            f"'EPSG:4549' or a valid PROJ/WKT string ({exc})"
        ) from exc
    if not (crs.is_geographic or crs.is_projected):
        raise UnknownCRSError(
            f"CRS {crs.name!r} is a local/engineering CRS with no link to the earth: assign the "
            "real CRS, e.g. `gdal_edit.py -a_srs EPSG:4549 FILE` (CGCS2000 / 3-degree GK CM 120E)"
        )
    return crs


def projected_metres_crs(value: Any) -> CRS:
    """A working CRS: projected, with metre axes. Raises :class:`UnknownCRSError` otherwise."""
    crs = parse_crs(value)
    unit = crs.axis_info[0].unit_name if crs.axis_info else ""
    if not crs.is_projected or unit not in ("metre", "meter", "m"):
        raise UnknownCRSError(
            f"working CRS {crs.name!r} must be projected in metres, e.g. 'EPSG:4549' "
            "(CGCS2000 / 3-degree Gauss-Kruger CM 120E) or 'EPSG:32651' (UTM 51N)"
        )
    return crs


def data_band_indexes(ds: DatasetReader) -> tuple[int, ...]:
    """1-based indexes of the image bands, i.e. every band except an alpha band."""
    return tuple(
        i for i, ci in zip(ds.indexes, ds.colorinterp, strict=True) if ci != ColorInterp.alpha
    )


def resolve_source(path: str | Path) -> str:
    """The absolute path rasterio should open; a folder of tiles becomes its rebuilt mosaic VRT."""
    p = Path(path)
    if p.is_dir():
        return str(build_mosaic_vrt(p).resolve())
    if p.exists():
        return str(p.resolve())
    if "://" not in str(path) and not str(path).startswith("/vsi"):
        raise CorruptRasterError(f"{p} does not exist: check the path")
    return str(path)


@contextmanager
def open_raster(path: str | Path) -> Iterator[DatasetReader]:
    """Open a raster file, URL or folder of tiles and validate its georeference.

    Raises :class:`CorruptRasterError`, :class:`NotGeoreferencedError`,
    :class:`RotatedGridError` or :class:`UnknownCRSError` with a message that says what to do.
    """
    source = resolve_source(path)
    with rasterio.Env(**GDAL_ENV):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", NotGeoreferencedWarning)
                ds = rasterio.open(source)
        except RasterioError as exc:
            raise CorruptRasterError(
                f"{path} cannot be opened as a raster ({exc}): is it a complete GeoTIFF/COG/VRT? "
                "Copy it again or re-export it from the photogrammetry software"
            ) from exc
        try:
            check_georeference(ds, path)
            yield ds
        finally:
            ds.close()


def check_georeference(ds: DatasetReader, name: Any = None) -> CRS:
    """Check that ``ds`` has a known CRS and a north-up geotransform; return the CRS."""
    name = name or ds.name
    t = ds.transform
    if ds.crs is None or t.is_identity:
        hint = (
            " (it has GCPs only: warp it first with `gdalwarp -t_srs EPSG:4549`)"
            if ds.gcps[0]
            else ""
        )
        raise NotGeoreferencedError(
            f"{name} has no georeference{hint}: export it as a GeoTIFF with CRS and geotransform, "
            "or add a world file and assign the CRS with `gdal_edit.py -a_srs EPSG:...`"
        )
    if t.b != 0 or t.d != 0:
        raise RotatedGridError(
            f"{name} has a rotated or sheared geotransform {tuple(t)[:6]}: only north-up grids "
            "are supported; resample it first with `gdalwarp -t_srs EPSG:4549 IN OUT`"
        )
    return parse_crs(ds.crs)


def check_readable(ds: DatasetReader, name: Any = None) -> None:
    """Read the first and the last block of the first band: catches truncated files cheaply.

    For a folder of tiles (``name`` is the folder) every tile is checked so, and a bad one is
    named: a tile half-copied in the middle of a flight is not at either end of the mosaic.
    """
    if name is not None and Path(str(name)).is_dir():
        for tile in mosaic_tiles(Path(str(name))):
            with rasterio.Env(**GDAL_ENV), rasterio.open(tile) as tile_ds:
                check_readable(tile_ds, f"tile {tile.name} of {name}")
    windows = [w for _, w in ds.block_windows(1)] if ds.width * ds.height < 4096**2 else None
    if windows is None:
        bh, bw = ds.block_shapes[0]
        first = Window(0, 0, min(bw, ds.width), min(bh, ds.height))
        last = Window(
            (ds.width - 1) // bw * bw,
            (ds.height - 1) // bh * bh,
            ds.width - (ds.width - 1) // bw * bw,
            ds.height - (ds.height - 1) // bh * bh,
        )
        windows = [first, last]
    else:
        windows = [windows[0], windows[-1]]
    try:
        for w in windows:
            ds.read(1, window=w)
    except RasterioError as exc:
        raise CorruptRasterError(
            f"{name or ds.name} is corrupt or truncated ({exc}): copy the file again from the "
            "drone/satellite delivery and check its size"
        ) from exc


def mosaic_tiles(folder: Path, mosaic_name: str = MOSAIC_NAME) -> list[Path]:
    """The raster tiles of a drone flight's folder, by name (the mosaic VRT itself left out)."""
    return sorted(
        p for p in folder.iterdir() if p.suffix.lower() in TILE_SUFFIXES and p.name != mosaic_name
    )


def build_mosaic_vrt(folder: str | Path, out: str | Path | None = None) -> Path:
    """Assemble a folder of georeferenced tiles (one drone flight) into one VRT mosaic.

    All tiles must share CRS, pixel size, band count and data type. The VRT keeps the tiles'
    nodata, alpha or internal masks as one per-dataset mask band, so areas between tiles are
    invalid rather than black. Written to ``folder/weijian_mosaic.vrt`` unless ``out`` is given;
    tile paths are stored relative to the VRT. Raises :class:`MosaicError`.
    """
    folder = Path(folder)
    out = Path(out) if out else folder / MOSAIC_NAME
    tiles = mosaic_tiles(folder, out.name)
    if not tiles:
        raise MosaicError(f"{folder} holds no raster tiles ({', '.join(TILE_SUFFIXES)})")
    infos = []
    for tile in tiles:
        with open_raster(tile) as ds:
            infos.append(
                {
                    "path": tile,
                    "crs": parse_crs(ds.crs),
                    "t": ds.transform,
                    "w": ds.width,
                    "h": ds.height,
                    "bands": data_band_indexes(ds),
                    "dtype": ds.dtypes[0],
                    "nodata": ds.nodata,
                    "ci": [ds.colorinterp[i - 1].name for i in data_band_indexes(ds)],
                }
            )
    ref = infos[0]
    for info in infos[1:]:
        problem = None
        if not info["crs"].equals(ref["crs"]):
            problem = f"CRS {info['crs'].name} differs from {ref['crs'].name}"
        elif not (
            math.isclose(info["t"].a, ref["t"].a, rel_tol=1e-6)
            and math.isclose(info["t"].e, ref["t"].e, rel_tol=1e-6)
        ):
            problem = f"pixel size {info['t'].a:g} differs from {ref['t'].a:g}"
        elif len(info["bands"]) != len(ref["bands"]) or info["dtype"] != ref["dtype"]:
            problem = (
                f"{len(info['bands'])} {info['dtype']} bands differ from "
                f"{len(ref['bands'])} {ref['dtype']}"
            )
        if problem:
            raise MosaicError(
                f"tile {info['path'].name} cannot join the mosaic of {folder}: {problem}; "
                "re-export all tiles of the flight with the same settings"
            )
    xres, yres = ref["t"].a, ref["t"].e
    left = min(i["t"].c for i in infos)
    top = max(i["t"].f for i in infos) if yres < 0 else min(i["t"].f for i in infos)
    width = math.ceil(max((i["t"].c + i["w"] * xres - left) / xres for i in infos) - 1e-6)
    height = math.ceil(max((i["t"].f + i["h"] * yres - top) / yres for i in infos) - 1e-6)

    def sources(band: str) -> str:
        parts = []
        for i in infos:
            rel = escape(
                str(Path(i["path"]).resolve().relative_to(out.parent.resolve()))
                if Path(i["path"]).resolve().is_relative_to(out.parent.resolve())
                else str(Path(i["path"]).resolve())
            )
            relative = int(not Path(rel).is_absolute())
            dx, dy = (i["t"].c - left) / xres, (i["t"].f - top) / yres
            parts.append(
                f'<SimpleSource><SourceFilename relativeToVRT="{relative}">{rel}</SourceFilename>'
                f"<SourceBand>{band}</SourceBand>"
                f'<SrcRect xOff="0" yOff="0" xSize="{i["w"]}" ySize="{i["h"]}"/>'
                f'<DstRect xOff="{dx:.6f}" yOff="{dy:.6f}" xSize="{i["w"]}" ySize="{i["h"]}"/>'
                "</SimpleSource>"
            )
        return "".join(parts)

    gdal_dtype = {
        "uint8": "Byte",
        "uint16": "UInt16",
        "int16": "Int16",
        "uint32": "UInt32",
        "int32": "Int32",
        "float32": "Float32",
        "float64": "Float64",
    }[ref["dtype"]]
    bands = []
    for n, (bidx, ci) in enumerate(zip(ref["bands"], ref["ci"], strict=True), start=1):
        nodata = f"<NoDataValue>{ref['nodata']}</NoDataValue>" if ref["nodata"] is not None else ""
        bands.append(
            f'<VRTRasterBand dataType="{gdal_dtype}" band="{n}">{nodata}'
            f"<ColorInterp>{ci.capitalize() if ci != 'undefined' else 'Undefined'}</ColorInterp>"
            f"{sources(str(bidx))}</VRTRasterBand>"
        )
    t = (left, xres, 0.0, top, 0.0, yres)
    xml = (
        f'<VRTDataset rasterXSize="{width}" rasterYSize="{height}">'
        f"<SRS>{escape(ref['crs'].to_wkt())}</SRS>"
        f"<GeoTransform>{', '.join(repr(float(v)) for v in t)}</GeoTransform>"
        + "".join(bands)
        + f'<MaskBand><VRTRasterBand dataType="Byte">{sources("mask,1")}</VRTRasterBand></MaskBand>'
        + "</VRTDataset>\n"
    )
    try:
        out.write_text(xml, encoding="utf-8")
    except OSError as exc:
        raise MosaicError(
            f"cannot write the mosaic {out} ({exc}): pass a writable output path"
        ) from exc
    return out
