"""Seeded generator of small test rasters for the ingest tests and benchmarks.

Nominal location: every generated or real test image is placed around BAOSHAN = (121.45 E,
31.35 N), Baoshan district, Shanghai. The *ground truth* scene is drawn in EPSG:4549 (CGCS2000 /
3-degree Gauss-Kruger CM 120E); other CRS/GSD variants are made from it with rasterio's warp, so
every variant shows the same ground.

Real pairs (../shared/data/change_pairs, plain PNGs) are placed by :func:`real_pair_geotiffs` on
the documented transform ``Affine(0.5, 0, X0, 0, -0.5, Y0)`` in EPSG:4549 where (X0, Y0) is
BAOSHAN projected to EPSG:4549 and rounded to whole metres: the image's top-left corner.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from affine import Affine
from PIL import Image
from pyproj import Transformer
from rasterio.enums import ColorInterp, Resampling
from rasterio.warp import reproject
from scipy import ndimage

from weijian_testdata import SHARED_DATA

BAOSHAN_LONLAT = (121.45, 31.35)
GROUND_CRS = "EPSG:4549"
#: The real pairs (plain PNGs), found relative to the repository.
CHANGE_PAIRS = SHARED_DATA / "change_pairs"


def baoshan_xy(crs: str = GROUND_CRS) -> tuple[float, float]:
    """BAOSHAN in ``crs`` (x east, y north), rounded to whole metres for projected CRS."""
    x, y = Transformer.from_crs("EPSG:4326", crs, always_xy=True).transform(*BAOSHAN_LONLAT)
    return (round(x), round(y)) if abs(x) > 360 else (x, y)


def texture(height: int, width: int, seed: int = 0, bands: int = 3) -> np.ndarray:
    """A seeded uint8 (bands, h, w) image that looks vaguely urban: smooth ground, roofs, roads."""
    rng = np.random.default_rng(seed)
    img = np.zeros((bands, height, width), dtype=np.float32)
    for sigma, amp in ((24, 50), (6, 25), (1.5, 12)):
        noise = ndimage.gaussian_filter(
            rng.standard_normal((height, width)).astype(np.float32), sigma
        )
        img += amp * noise / (noise.std() + 1e-6)
    img += 110
    for _ in range(max(4, height * width // 6000)):
        h, w = rng.integers(6, 30, size=2)
        r, c = rng.integers(0, max(1, height - h)), rng.integers(0, max(1, width - w))
        img[:, r : r + h, c : c + w] = rng.uniform(40, 230, size=(bands, 1, 1))
    for _ in range(3):
        if rng.random() < 0.5:
            r = rng.integers(0, height)
            img[:, r : r + 4, :] = 80
        else:
            c = rng.integers(0, width)
            img[:, :, c : c + 4] = 80
    img += rng.normal(0, 2, size=img.shape).astype(np.float32)
    return np.clip(img, 1, 255).astype(np.uint8)


def write_raster(
    path: str | Path,
    data: np.ndarray,
    *,
    crs: str | None,
    transform: Affine | None,
    nodata: float | None = None,
    mask: np.ndarray | None = None,
    alpha: np.ndarray | None = None,
    tags: dict[str, str] | None = None,
    **profile: Any,
) -> Path:
    """Write (bands, h, w) ``data`` as a tiled GeoTIFF, optionally with nodata, mask or alpha."""
    path = Path(path)
    count = data.shape[0] + (alpha is not None)
    prof: dict[str, Any] = {
        "driver": "GTiff",
        "width": data.shape[2],
        "height": data.shape[1],
        "count": count,
        "dtype": data.dtype,
        "crs": crs,
        "transform": transform or Affine.identity(),
        "nodata": nodata,
        "tiled": True,
        "blockxsize": 256,
        "blockysize": 256,
        "compress": "DEFLATE",
    }
    prof.update(profile)
    with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True), rasterio.open(path, "w", **prof) as dst:
        dst.write(data, indexes=list(range(1, data.shape[0] + 1)))
        if alpha is not None:
            dst.write(alpha.astype(data.dtype), count)
        ci = [ColorInterp.red, ColorInterp.green, ColorInterp.blue][: data.shape[0]]
        if len(ci) == data.shape[0]:
            dst.colorinterp = ci + ([ColorInterp.alpha] if alpha is not None else [])
        if mask is not None:
            dst.write_mask(mask.astype(np.uint8) * 255)
        if tags:
            dst.update_tags(**tags)
    return path


def ground_transform(
    gsd_m: float, crs: str = GROUND_CRS, offset_m: tuple[float, float] = (0, 0)
) -> Affine:
    """North-up transform at ``gsd_m`` with its top-left corner at BAOSHAN (+ offset metres)."""
    x, y = baoshan_xy(crs)
    if crs in ("EPSG:4326", "EPSG:4490"):
        deg_y = gsd_m / 111_320.0
        deg_x = gsd_m / (111_320.0 * math.cos(math.radians(y)))
        return Affine(
            deg_x,
            0,
            x + offset_m[0] / 111_320.0 / math.cos(math.radians(y)),
            0,
            -deg_y,
            y + offset_m[1] / 111_320.0,
        )
    scale = 1 / math.cos(math.radians(BAOSHAN_LONLAT[1])) if crs == "EPSG:3857" else 1.0
    return Affine(
        gsd_m * scale, 0, x + offset_m[0] * scale, 0, -gsd_m * scale, y + offset_m[1] * scale
    )


def make_ground(
    path: str | Path, size: int = 512, gsd_m: float = 0.5, seed: int = 0, **kw: Any
) -> Path:
    """The ground-truth scene: ``size``² px of :func:`texture` in EPSG:4549 at ``gsd_m``."""
    return write_raster(
        path, texture(size, size, seed), crs=GROUND_CRS, transform=ground_transform(gsd_m), **kw
    )


def resample_to(
    src_path: str | Path,
    dst_path: str | Path,
    crs: str,
    gsd_m: float,
    *,
    offset_m: tuple[float, float] = (0.0, 0.0),
    size: int | None = None,
    nodata: float | None = None,
    resampling: Resampling = Resampling.bilinear,
    **kw: Any,
) -> Path:
    """Reproject the ground scene into ``crs`` at ``gsd_m`` (ground m), shifted by ``offset_m``.

    ``offset_m`` = (dx east, dy north): the ground content of the result appears displaced by this
    much, as if the image had a georeferencing error. ``size`` defaults to cover the same area.
    """
    with rasterio.open(src_path) as src:
        data = src.read()
        extent = src.width * src.transform.a
        n = size or round(extent / gsd_m)
        dst_t = ground_transform(gsd_m, crs)
        out = np.zeros((src.count, n, n), dtype=data.dtype)
        reproject(
            data,
            out,
            src_transform=src.transform,
            src_crs=src.crs,
            dst_transform=dst_t,
            dst_crs=crs,
            resampling=resampling,
            src_nodata=src.nodata,
            dst_nodata=nodata or 0,
        )
    # the georeference error: the same pixels declared at a position moved by offset_m
    declared = ground_transform(gsd_m, crs, offset_m)
    return write_raster(dst_path, out, crs=crs, transform=declared, nodata=nodata, **kw)


def real_pair_geotiffs(
    out_dir: str | Path,
    name: str = "test_7",
    folder: str = "levir_1024",
    after_offset_m: tuple[float, float] = (0.0, 0.0),
) -> tuple[Path, Path, Path]:
    """A real change pair as GeoTIFFs on the documented nominal transform; returns (A, B, label)."""
    out_dir = Path(out_dir)
    paths = []
    for sub, offset in (("A", (0.0, 0.0)), ("B", after_offset_m), ("label", (0.0, 0.0))):
        arr = np.asarray(Image.open(CHANGE_PAIRS / folder / sub / f"{name}.png"))
        arr = arr[None] if arr.ndim == 2 else np.moveaxis(arr[..., :3], -1, 0)
        paths.append(
            write_raster(
                out_dir / f"{name}_{sub}.tif",
                np.ascontiguousarray(arr),
                crs=GROUND_CRS,
                transform=ground_transform(0.5, offset_m=offset),
            )
        )
    return paths[0], paths[1], paths[2]
