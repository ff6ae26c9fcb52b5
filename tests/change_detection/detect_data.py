"""Seeded pairs for the orthophoto-scale detection tests, and a transparent difference network.

``DiffNet`` is a real torch module (no parameters): its change logit grows with the mean absolute
RGB difference of the two epochs, so a bright synthetic roof painted into the later image is a
change with probability ~1 and unchanged ground ~0. It lets the tiling, blending, resampling,
georeferencing and vectorising be checked to the pixel; the shipped network is used where its
own behaviour matters (seams of the mosaic, Dask, resume).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import rasterio
import torch
from pyproj import Transformer
from torch import nn

import ingest
from change_detection.weights import ChangeModel
from weijian_testdata import rasters as data_gen

REPO = Path(__file__).resolve().parents[2]
#: The ``weijian`` command of this checkout, run in a child process (with :func:`weijian_env`).
WEIJIAN = [sys.executable, "-c", "from weijian.cli import main; main()"]


def weijian_env(home: Path, **env: str) -> dict[str, str]:
    """A bare environment for :data:`WEIJIAN`: no settings file, ``home`` as HOME, plus ``env``."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "WEIJIAN_CONFIG": "",
        "PYTHONPATH": str(REPO),
        "HOME": str(home),
        **env,
    }


class DiffNet(nn.Module):
    """Logit = 10 x (mean |after - before| over RGB, in units of 64 grey levels, - 0.5)."""

    def forward(self, before: torch.Tensor, after: torch.Tensor) -> torch.Tensor:
        return 10.0 * ((after - before).abs().mean(dim=1, keepdim=True) - 0.5)


def diff_model(threshold: float = 0.5) -> ChangeModel:
    """:class:`DiffNet` as a :class:`ChangeModel` at 0.5 m (pixels / 64, no mean)."""
    meta = {"threshold": threshold, "gsd_m": 0.5, "mean": [0.0] * 3, "std": [64.0] * 3}
    return ChangeModel("diffnet", DiffNet().eval(), meta)


def paint_roof(path: Path, out: Path, box_xy: tuple[float, float, float, float]) -> Path:
    """Copy ``path`` with a magenta roof (250, 20, 250) over ``box_xy`` (map units, its CRS).

    ``box_xy`` = (minx, miny, maxx, maxy); pixels whose centre falls inside are painted.
    """
    with rasterio.open(path) as src:
        data = src.read()
        profile = src.profile
        rows, cols = np.mgrid[0 : src.height, 0 : src.width]
        xs, ys = rasterio.transform.xy(src.transform, rows.ravel(), cols.ravel())
    xs = np.asarray(xs).reshape(rows.shape)
    ys = np.asarray(ys).reshape(rows.shape)
    inside = (xs >= box_xy[0]) & (xs <= box_xy[2]) & (ys >= box_xy[1]) & (ys <= box_xy[3])
    for band, value in zip(data, (250, 20, 250), strict=False):
        band[inside] = value
    with rasterio.open(out, "w", **profile) as dst:
        dst.write(data)
    return out


def roof_pair(
    folder: Path,
    *,
    size: int = 512,
    roof_m: tuple[float, float, float, float] = (100.0, 60.0, 130.0, 80.0),
    crs: str = "EPSG:32651",
    gsd_m: float = 0.5,
    working_gsd_m: float = 0.5,
    seed: int = 3,
) -> tuple[Path, tuple[float, float, float, float], str]:
    """A prepared pair (folder with pair.json) whose later epoch has one new roof.

    The ground is drawn in EPSG:4549 and both epochs are warped into ``crs`` at ``gsd_m``; the
    roof is painted in ``crs`` coordinates: ``roof_m`` = (x0, y0, x1, y1) metres east/south of the
    image's top-left corner. Returns (pair folder, roof box in ``crs``, ``crs``).
    """
    folder.mkdir(parents=True, exist_ok=True)
    ground = data_gen.make_ground(folder / "ground.tif", size=size, seed=seed)
    before = data_gen.resample_to(ground, folder / "site_20230601.tif", crs, gsd_m)
    plain = data_gen.resample_to(ground, folder / "plain.tif", crs, gsd_m)
    left, top = data_gen.ground_transform(gsd_m, crs) @ (0, 0)
    box = (left + roof_m[0], top - roof_m[3], left + roof_m[2], top - roof_m[1])
    after = paint_roof(plain, folder / "site_20240601.tif", box)
    pair = ingest.prepare_pair(
        before, after, working_crs="EPSG:4549", gsd_m=working_gsd_m, coregister=False
    )
    ingest.write_report(pair, folder / "pair")
    return folder / "pair", box, crs


def to_crs(x: float, y: float, src: str, dst: str) -> tuple[float, float]:
    """A point from ``src`` to ``dst`` (x east / lon, y north / lat)."""
    return Transformer.from_crs(src, dst, always_xy=True).transform(x, y)
