"""Seeded test data for the flight pipeline: small georeferenced images from real LEVIR-CD tiles.

Images are written as GeoTIFFs in EPSG:4549 at 0.5 m with the acquisition date in the file name;
``district`` is one 街镇 square around them (or far away, to test the refusal).
"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import date
from pathlib import Path

import geopandas as gpd
import numpy as np
import rasterio
from affine import Affine
from shapely.geometry import box
from sqlalchemy import Engine

from tests.conftest import SHARED_DATA

X0, Y0 = 630_352.0, 3_471_700.0  # the demo flight's origin, 顾村镇
CRS = "EPSG:4549"
#: The installed ``weijian`` command next to this interpreter.
WEIJIAN = str(Path(sys.executable).with_name("weijian"))


def levir(name: str = "test_7") -> tuple[np.ndarray, np.ndarray]:
    """(A, B) of a real LEVIR-CD 1024 tile, uint8 (3, H, W)."""
    from PIL import Image

    folder = SHARED_DATA / "change_pairs" / "levir_1024"
    return tuple(  # type: ignore[return-value]
        np.moveaxis(np.asarray(Image.open(folder / e / f"{name}.png").convert("RGB")), -1, 0)
        for e in ("A", "B")
    )


def write_image(
    path: Path,
    data: np.ndarray,
    *,
    gsd: float = 0.5,
    x0: float = X0,
    y0: float = Y0,
    crs: str = CRS,
) -> Path:
    """Write ``data`` (bands, h, w) as a tiled GeoTIFF with its NW corner at (x0, y0)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=data.shape[2],
        height=data.shape[1],
        count=data.shape[0],
        dtype=data.dtype,
        crs=crs,
        transform=Affine(gsd, 0, x0, 0, -gsd, y0),
        tiled=True,
        blockxsize=256,
        blockysize=256,
    ) as dst:
        dst.write(data)
    return path


def add_district(engine: Engine, *, far: bool = False) -> None:
    """One 街镇 (顾村镇) square of 4 km around the test images, or 50 km away with ``far``."""
    from gis_db.inventory import upsert_units

    dx = 50_000 if far else 0
    towns = gpd.GeoDataFrame(
        {"code": ["310113109"], "name": ["顾村镇"]},
        geometry=[box(X0 - 1500 + dx, Y0 - 2500, X0 + 2500 + dx, Y0 + 1500)],
        crs=CRS,
    )
    upsert_units(engine, "street_town", towns, actor="test")


def pair_files(folder: Path, name: str = "test_7", size: int = 1024) -> tuple[Path, Path]:
    """A before (2025-03-10) and after (2026-03-10) image of a real tile, ``size`` px square."""
    a, b = levir(name)
    before = write_image(folder / f"{name}_20250310.tif", np.ascontiguousarray(a[:, :size, :size]))
    after = write_image(folder / f"{name}_20260310.tif", np.ascontiguousarray(b[:, :size, :size]))
    return before, after


BEFORE_DAY, AFTER_DAY = date(2025, 3, 10), date(2026, 3, 10)


def demo_crop_files(folder: Path, size: int = 768) -> tuple[Path, Path, np.ndarray]:
    """A ``size`` px crop of the demo flight's south-east quarter: before, after and the truth.

    That quarter holds the levir_256 tiles, where the shipped network finds most changes;
    truth 1 = a building appeared.
    """
    from weijian.demo_flight import build_mosaic

    before, after, truth = build_mosaic()
    cut = (slice(1024, 1024 + size), slice(1024, 1024 + size))
    b = write_image(folder / "se_20250310.tif", np.ascontiguousarray(before[:, cut[0], cut[1]]))
    a = write_image(folder / "se_20260310.tif", np.ascontiguousarray(after[:, cut[0], cut[1]]))
    return b, a, np.ascontiguousarray(truth[cut])


def run_weijian(*args: str, db_url: str, flights: Path) -> subprocess.CompletedProcess[str]:
    """``weijian ARGS`` in a child process on ``db_url``, flights' folders under ``flights``."""
    env = {**os.environ, "WEIJIAN_DATABASE_URL": db_url, "WEIJIAN_FLIGHT__OUTPUT_DIR": str(flights)}
    return subprocess.run(
        [WEIJIAN, *args], capture_output=True, text=True, env=env, check=False, timeout=300
    )
