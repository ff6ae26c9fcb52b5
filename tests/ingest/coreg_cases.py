"""Seeded builder of the co-registration test set from the real pairs in ../shared/data.

Placement (the PNGs carry no georeference): every image is written as a GeoTIFF in EPSG:4549 on
the documented nominal transform of :mod:`weijian_testdata.rasters`, ``Affine(0.5, 0, X0, 0, -0.5,
Y0)`` with (X0, Y0) = 121.45 E 31.35 N projected to EPSG:4549 and rounded to whole metres (the
top-left corner), i.e. 0.5 m pixels, the GSD the datasets are published at (LEVIR-CD 0.5 m;
DSIFN-CD and EGY-BCD are resampled Google Earth crops of about that size).

Two sources of the *later* epoch, each keeping its real changes:

* ``real``: the dataset's own later image B. Its residual misregistration to A is whatever the
  dataset has (LEVIR-CD: about 0.5-3 px, varying across the tile; not known exactly), so errors
  on it are measured against the estimate on the unshifted pair (a difference).
* ``pasted``: the earlier image A, blurred (sigma 0.6 px), given B's brightness per band
  (quantile matching over unchanged pixels) and sensor noise (sigma 3 grey levels, seeded), with
  B's pixels pasted where the label says "changed" (dilated by 2 px). Its true misregistration is
  exactly zero, so errors on it are absolute.

Variants of each (``Case.truth_px`` gives the true displacement of every later-epoch feature):

* ``unshifted``: as above;
* ``shift``: the later image declared at a position moved by a known translation (a pure
  georeference error: no resampling when the case is made);
* ``affine``: the later image resampled (cubic spline) with a known affine distortion about its
  centre (rotation, scale, and a translation): the shift varies across the image.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

from weijian_testdata import rasters as data_gen

GSD_M = 0.5
#: Known translations (dx east, dy north; px of the 0.5 m grid): sub-pixel and multi-pixel.
SHIFTS_PX: tuple[tuple[float, float], ...] = ((0.3, -0.45), (-0.8, 0.6), (2.6, -1.8), (-5.4, 3.2))
#: Known affine distortion: rotation (degrees), scale - 1, translation (dx east, dy north; px).
AFFINE = (0.12, 0.0015, (1.5, -1.0))
#: Real pairs used: every folder of ../shared/data/change_pairs (levir_256 minus the crop of
#: levir_1024/test_102).
FOLDERS = ("levir_1024", "levir_256", "dsifn_256", "egy_256")
EXCLUDE = {"levir_256/test_102_0512_0000"}


@dataclass(frozen=True)
class Case:
    """One test pair: GeoTIFF paths and the true displacement of the later epoch."""

    name: str
    source: str  # "real" or "pasted"
    variant: str  # "unshifted", "shift", "affine"
    before: Path
    after: Path
    #: affine displacement model in grid px (a0, a1, a2, b0, b1, b2), rows down, over the
    #: image's own pixels; for "real" sources this is *added* to the dataset's own residual.
    truth_affine_px: tuple[float, float, float, float, float, float]
    width: int
    height: int

    def truth_px(self, col: float, row: float) -> tuple[float, float]:
        """True added displacement (dx east, dy north; px) of a feature at image (col, row)."""
        a0, a1, a2, b0, b1, b2 = self.truth_affine_px
        return a0 + a1 * col + a2 * row, -(b0 + b1 * col + b2 * row)


def pair_names(folders: tuple[str, ...] = FOLDERS) -> list[tuple[str, str]]:
    """(folder, stem) of every real pair used, sorted."""
    out = []
    for folder in folders:
        for png in sorted((data_gen.CHANGE_PAIRS / folder / "A").glob("*.png")):
            if f"{folder}/{png.stem}" not in EXCLUDE:
                out.append((folder, png.stem))
    return out


def _load(folder: str, sub: str, stem: str) -> np.ndarray:
    arr = np.asarray(Image.open(data_gen.CHANGE_PAIRS / folder / sub / f"{stem}.png"))
    return arr[None] if arr.ndim == 2 else np.moveaxis(arr[..., :3], -1, 0)


def pasted_after(folder: str, stem: str, seed: int = 0) -> np.ndarray:
    """A's ground with B's changes pasted in and B's brightness: true misregistration zero."""
    a = _load(folder, "A", stem).astype(np.float32)
    b = _load(folder, "B", stem).astype(np.float32)
    changed = ndimage.binary_dilation(_load(folder, "label", stem)[0] > 0, iterations=2)
    rng = np.random.default_rng(seed)
    out = np.empty_like(a)
    q = np.linspace(0, 1, 101)
    keep = ~changed if (~changed).sum() > 100 else np.ones_like(changed)
    for k in range(a.shape[0]):
        blurred = ndimage.gaussian_filter(a[k], 0.6)
        qa, qb = np.quantile(a[k][keep], q), np.quantile(b[k][keep], q)
        out[k] = np.interp(blurred, qa, qb) + rng.normal(0, 3, blurred.shape)
    out[:, changed] = b[:, changed]
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def affine_truth(
    width: int, height: int, rotation_deg: float, scale: float, shift_px: tuple[float, float]
) -> tuple[float, float, float, float, float, float]:
    """Displacement model (grid px, rows down): rotation/scale about the image centre + shift."""
    t = math.radians(rotation_deg)
    m = np.array([[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]]) * (1 + scale)
    lin = m - np.eye(2)
    cx, cy = width / 2, height / 2
    # d(p) = (M - I)(p - c) + t, with t in (col, row-down)
    t_c, t_r = shift_px[0], -shift_px[1]
    a0 = t_c - lin[0, 0] * cx - lin[0, 1] * cy
    b0 = t_r - lin[1, 0] * cx - lin[1, 1] * cy
    return (a0, lin[0, 0], lin[0, 1], b0, lin[1, 0], lin[1, 1])


def distort(
    image: np.ndarray, model: tuple[float, float, float, float, float, float]
) -> np.ndarray:
    """Resample (bands, h, w) so that a feature at pixel p moves to p + d(p) (cubic spline)."""
    a0, a1, a2, b0, b1, b2 = model
    # output q shows input p with q = p + d(p) = (I + L) p + t  =>  p = (I + L)^-1 (q - t)
    fwd = np.array([[1 + b2, b1], [a2, 1 + a1]])  # (row, col) order
    inv = np.linalg.inv(fwd)
    offset = -inv @ np.array([b0, a0])
    # pixel centres: continuous coordinate = index + 0.5
    offset = offset + inv @ np.array([0.5, 0.5]) - np.array([0.5, 0.5])
    out = np.empty_like(image)
    for k in range(image.shape[0]):
        out[k] = np.clip(
            np.rint(ndimage.affine_transform(image[k].astype(np.float32), inv, offset, order=3)),
            0,
            255,
        ).astype(image.dtype)
    return out


def build_cases(
    out_dir: str | Path,
    pairs: list[tuple[str, str]] | None = None,
    sources: tuple[str, ...] = ("real", "pasted"),
    shifts_px: tuple[tuple[float, float], ...] = SHIFTS_PX,
    affine: bool = True,
) -> Iterator[Case]:
    """Write and yield the cases (GeoTIFFs in ``out_dir``); seeded, so the same every run."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for folder, stem in pairs or pair_names():
        a = _load(folder, "A", stem)
        h, w = a.shape[1:]
        before = data_gen.write_raster(
            out / f"{folder}_{stem}_A.tif",
            np.ascontiguousarray(a),
            crs=data_gen.GROUND_CRS,
            transform=data_gen.ground_transform(GSD_M),
        )
        for source in sources:
            later = _load(folder, "B", stem) if source == "real" else pasted_after(folder, stem)
            name = f"{folder}/{stem}"
            variants: list[tuple[str, tuple[float, float], np.ndarray, tuple[float, ...]]] = [
                ("unshifted", (0.0, 0.0), later, (0, 0, 0, 0, 0, 0))
            ]
            for dx, dy in shifts_px:
                variants.append((f"shift({dx:+g},{dy:+g})", (dx, dy), later, (dx, 0, 0, -dy, 0, 0)))
            if affine:
                rot, scale, shift = AFFINE
                model = affine_truth(w, h, rot, scale, shift)
                variants.append(("affine", (0.0, 0.0), distort(later, model), model))
            for k, (variant, declared_px, data, truth) in enumerate(variants):
                path = data_gen.write_raster(
                    out / f"{folder}_{stem}_{source}_{k}.tif",
                    np.ascontiguousarray(data),
                    crs=data_gen.GROUND_CRS,
                    # a feature displaced by +dx east appears where the image says x + dx
                    transform=data_gen.ground_transform(
                        GSD_M, offset_m=(declared_px[0] * GSD_M, declared_px[1] * GSD_M)
                    ),
                )
                yield Case(
                    name=name,
                    source=source,
                    variant=variant.split("(")[0],
                    before=before,
                    after=path,
                    truth_affine_px=tuple(float(v) for v in truth),  # type: ignore[arg-type]
                    width=w,
                    height=h,
                )
