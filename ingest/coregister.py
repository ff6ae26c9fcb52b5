"""Co-registration: the residual shift between two epochs already on one working grid.

Sub-pixel phase correlation (scikit-image, upsampled DFT) on many sample tiles; tiles without
texture or with too many invalid pixels are skipped, and the median over tiles (after dropping
outliers beyond 3 MAD) makes the estimate robust to real changes in part of the scene.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from skimage.filters import window as taper_window
from skimage.registration import phase_cross_correlation

#: Share of both-valid pixels a sample tile needs to take part.
MIN_VALID_SHARE = 0.9
#: Coefficient of variation (std / mean of the grey image) below which a tile is textureless.
MIN_TEXTURE = 0.02
#: At least this many tiles must agree for a shift to be trusted.
MIN_TILES = 3


@dataclass(frozen=True)
class ShiftEstimate:
    """Displacement of the later epoch relative to the earlier one, in working-grid pixels.

    ``dx_px`` is positive east (columns), ``dy_px`` positive north (against rows): a feature at
    ``p`` in the earlier image appears at ``p + (dx, dy)`` in the later one. ``spread_px`` is the
    median absolute deviation of the per-tile estimates that were kept.
    """

    dx_px: float
    dy_px: float
    tiles_used: int
    tiles_tried: int
    spread_px: float

    @property
    def reliable(self) -> bool:
        """Enough tiles agreed to trust the estimate."""
        return self.tiles_used >= MIN_TILES


@lru_cache(maxsize=8)
def _taper(shape: tuple[int, int]) -> np.ndarray:
    return taper_window("hann", shape)


def tile_shift(
    before: np.ndarray, after: np.ndarray, valid: np.ndarray, upsample_factor: int = 20
) -> tuple[float, float] | None:
    """Sub-pixel shift (dx east, dy north; pixels) of ``after`` relative to ``before`` in one tile.

    ``before`` and ``after`` are (bands, h, w) or (h, w) arrays on the same grid, ``valid`` the
    (h, w) both-valid mask. Returns None for tiles with too little valid data or texture.
    """
    a = before.mean(axis=0) if before.ndim == 3 else before.astype(np.float64)
    b = after.mean(axis=0) if after.ndim == 3 else after.astype(np.float64)
    if valid.mean() < MIN_VALID_SHARE:
        return None
    grey = []
    for img in (a, b):
        v = img[valid]
        mean, std = float(v.mean()), float(v.std())
        if std <= MIN_TEXTURE * max(abs(mean), 1e-6):
            return None
        grey.append(np.where(valid, (img - mean) / std, 0.0) * _taper(img.shape))
    shift, _, _ = phase_cross_correlation(
        grey[0], grey[1], upsample_factor=upsample_factor, normalization=None
    )
    # shift registers `after` onto `before`: before(r, c) = after(r - sr, c - sc)
    sr, sc = float(shift[0]), float(shift[1])
    return -sc, sr


def estimate_shift(
    samples: Iterable[tuple[np.ndarray, np.ndarray, np.ndarray]], upsample_factor: int = 20
) -> ShiftEstimate:
    """Robust shift over many ``(before, after, valid)`` sample tiles: median after a 3-MAD cut."""
    tried, shifts = 0, []
    for before, after, valid in samples:
        tried += 1
        s = tile_shift(before, after, valid, upsample_factor)
        if s is not None:
            shifts.append(s)
    if not shifts:
        return ShiftEstimate(0.0, 0.0, 0, tried, float("nan"))
    arr = np.asarray(shifts)
    med = np.median(arr, axis=0)
    dist = np.hypot(*(arr - med).T)
    mad = float(np.median(dist))
    keep = arr[dist <= max(3 * 1.4826 * mad, 0.25)]
    med = np.median(keep, axis=0)
    spread = float(np.median(np.hypot(*(keep - med).T)))
    return ShiftEstimate(float(med[0]), float(med[1]), len(keep), tried, spread)
