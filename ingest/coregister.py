"""Co-registration: the residual misregistration between two epochs already on one working grid.

Method (details and measured figures in ``docs/decisions/0005-coregistration-confidence.md``):

1. **Blocks.** The common area is cut into blocks (256 px on large images); each block is
   phase-correlated (whitened cross-power spectrum with a soft low-pass, Hann taper) and refined
   to 0.05 px with an upsampled DFT around the peak.
2. **Per-block quality.** A block takes part only with enough valid pixels and texture, and when
   its correlation peak stands out: the peak's 3x3 energy, as a z-score against the rest of the
   correlation surface (``peak_z``), must reach :data:`MIN_PEAK_Z`. Blocks over changed ground
   (new buildings, construction sites, fields turned into housing) give flat surfaces and are
   dropped, not voted.
3. **Consensus.** The translation is the one that most surviving blocks agree on within
   ``tolerance_px``; an affine model (RANSAC over the block centres) replaces it when it explains
   clearly more blocks, i.e. when the misregistration varies across the image.
4. **Confidence.** ``confidence`` = agreeing blocks / blocks with a clear peak. The estimate is
   *confident* when at least ``min_agreeing`` blocks agree and ``confidence >= min_confidence``;
   only then is it applied (and only a confident large shift can refuse a pair).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

import numpy as np
from skimage.filters import window as taper_window

#: Share of both-valid pixels a sample block needs to take part.
MIN_VALID_SHARE = 0.9
#: Coefficient of variation (std / mean of the grey image) below which a block is textureless.
MIN_TEXTURE = 0.02
#: Minimum peak z-score (3x3 peak energy against the rest of the correlation surface). Measured on
#: the real pairs: unrelated blocks (changed ground) score 5-8, blocks of the same ground 10-40.
MIN_PEAK_Z = 10.0
#: Blocks whose shifts differ by at most this many pixels agree.
TOLERANCE_PX = 1.0
#: At least this many blocks must agree for an estimate to be confident.
MIN_AGREEING = 4
#: And at least this share of the blocks with a clear peak must agree (no rival solution).
MIN_CONFIDENCE = 0.5
#: Kept for callers of the first version: the least number of agreeing blocks.
MIN_TILES = MIN_AGREEING
#: Low-pass applied to the whitened cross-power spectrum (Gaussian sigma, cycles per pixel): the
#: finest detail differs most between seasons and sensors.
LOWPASS_SIGMA = 0.15
#: An affine model may change scale/shear/rotation by at most this much (5 px per 1000 px).
MAX_AFFINE_LINEAR = 0.005
#: An affine model is chosen only when it explains at least this many more blocks than a
#: translation, or the same blocks with a residual this much smaller (ratio).
AFFINE_EXTRA_BLOCKS = 2
AFFINE_RESIDUAL_RATIO = 0.6
#: ... and only when its shifts vary by at least this much (px) over the blocks it explains.
AFFINE_MIN_VARIATION_PX = 0.5

Model = Literal["none", "translation", "affine"]


@dataclass(frozen=True)
class BlockShift:
    """The shift measured in one block (working-grid pixels, dx east, dy north)."""

    col: float
    row: float
    dx_px: float
    dy_px: float
    peak_z: float


@dataclass(frozen=True)
class ShiftEstimate:
    """Displacement of the later epoch relative to the earlier one, in working-grid pixels.

    ``dx_px`` is positive east (columns), ``dy_px`` positive north (against rows): a feature at
    ``p`` in the earlier image appears at ``p + (dx, dy)`` in the later one. For an affine model
    they are its displacement at the centre of the blocks, and ``affine_px`` holds the model:
    ``(a0, a1, a2, b0, b1, b2)`` with the displacement of a feature at working-grid pixel
    (col, row) being ``a0 + a1*col + a2*row`` columns and ``b0 + b1*col + b2*row`` rows (down).

    ``tiles_used`` is the number of blocks that agree with the model, ``tiles_tried`` the number
    of blocks sampled, ``blocks_textured`` those with enough valid pixels and texture,
    ``blocks_peaked`` those whose correlation peak stood out. ``spread_px`` is the median distance
    of the agreeing blocks to the model and ``residual_px`` their root-mean-square distance.
    ``confidence`` = agreeing / peaked blocks (0 when none has a clear peak). ``model`` is the
    model that fitted best ("none" without any usable block); apply it only when ``confident``.
    """

    dx_px: float
    dy_px: float
    tiles_used: int
    tiles_tried: int
    spread_px: float
    blocks_textured: int = 0
    blocks_peaked: int = 0
    confidence: float = 0.0
    confident: bool = False
    model: Model = "none"
    residual_px: float = float("nan")
    affine_px: tuple[float, float, float, float, float, float] | None = None

    @property
    def reliable(self) -> bool:
        """Confident enough to apply (the name of the first version)."""
        return self.confident

    @property
    def blocks_agreeing(self) -> int:
        """Blocks that agree with the model."""
        return self.tiles_used

    def displacement_px(self, col: float, row: float) -> tuple[float, float]:
        """Model displacement (dx east, dy north; px) of a feature at working-grid (col, row)."""
        if self.affine_px is None:
            return self.dx_px, self.dy_px
        a0, a1, a2, b0, b1, b2 = self.affine_px
        return a0 + a1 * col + a2 * row, -(b0 + b1 * col + b2 * row)


@lru_cache(maxsize=8)
def _taper(shape: tuple[int, int]) -> np.ndarray:
    return np.asarray(taper_window("hann", shape))


@lru_cache(maxsize=8)
def _lowpass(shape: tuple[int, int]) -> np.ndarray:
    fy = np.fft.fftfreq(shape[0])[:, None]
    fx = np.fft.fftfreq(shape[1])[None, :]
    return np.asarray(np.exp(-(fx**2 + fy**2) / (2 * LOWPASS_SIGMA**2)))


def _grey_pair(
    before: np.ndarray, after: np.ndarray, valid: np.ndarray
) -> tuple[np.ndarray, np.ndarray] | None:
    """Standardised, tapered grey images of a block, or None without valid data or texture."""
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
    return grey[0], grey[1]


def _peak_offset(minus: float, centre: float, plus: float) -> float:
    """Sub-pixel offset of a peak from three samples: Gaussian fit (parabola if not positive).

    The low-passed correlation peak is a sampled Gaussian (the whitened spectrum times a Gaussian
    window), so the fit on logarithms is nearly exact.
    """
    if minus > 0 and centre > 0 and plus > 0:
        lm, lc, lp = math.log(minus), math.log(centre), math.log(plus)
        den = lm - 2 * lc + lp
        if den < 0:
            return float(np.clip((lm - lp) / (2 * den), -0.5, 0.5))
    den = minus - 2 * centre + plus
    return float(np.clip((minus - plus) / (2 * den), -0.5, 0.5)) if den < 0 else 0.0


def block_shift(
    before: np.ndarray, after: np.ndarray, valid: np.ndarray, upsample_factor: int = 20
) -> tuple[float, float, float] | None:
    """Sub-pixel shift and peak quality of one block: ``(dx east, dy north, peak_z)``, pixels.

    ``before`` and ``after`` are (bands, h, w) or (h, w) arrays on the same grid, ``valid`` the
    (h, w) both-valid mask. Returns None for blocks with too little valid data or texture; the
    caller decides from ``peak_z`` (see :data:`MIN_PEAK_Z`) whether the peak is trustworthy.
    """
    grey = _grey_pair(before, after, valid)
    if grey is None:
        return None
    fa, fb = np.fft.fft2(grey[0]), np.fft.fft2(grey[1])
    cross = fa * np.conj(fb)
    cross = cross / (np.abs(cross) + 1e-12) * _lowpass(cross.shape)
    surface = np.fft.ifft2(cross).real
    energy = np.zeros_like(surface)  # 3x3 sums: a sub-pixel peak keeps its energy
    for i in (-1, 0, 1):
        for j in (-1, 0, 1):
            energy += np.roll(surface, (i, j), axis=(0, 1))
    h, w = surface.shape
    pr, pc = np.unravel_index(int(np.argmax(energy)), energy.shape)
    rest = np.roll(energy, (3 - int(pr), 3 - int(pc)), axis=(0, 1))
    peak = float(rest[3, 3])
    mask = np.ones_like(rest, dtype=bool)
    mask[:7, :7] = False
    others = rest[mask]
    z = (peak - float(others.mean())) / max(float(others.std()), 1e-12)
    # integer peak of the surface itself, refined by a Gaussian fit along each axis
    ir, ic = (int(v) for v in np.unravel_index(int(np.argmax(surface)), surface.shape))
    dr = _peak_offset(surface[ir - 1, ic], surface[ir, ic], surface[(ir + 1) % h, ic])
    dc = _peak_offset(surface[ir, ic - 1], surface[ir, ic], surface[ir, (ic + 1) % w])
    sr = (ir - h if ir > h // 2 else ir) + dr
    sc = (ic - w if ic > w // 2 else ic) + dc
    sr, sc = (
        round(sr * upsample_factor) / upsample_factor,
        round(sc * upsample_factor) / upsample_factor,
    )
    # the surface peaks at s where before(x) = after(x - s): the later content moved by -s
    return -sc, sr, z


def tile_shift(
    before: np.ndarray, after: np.ndarray, valid: np.ndarray, upsample_factor: int = 20
) -> tuple[float, float] | None:
    """Sub-pixel shift (dx east, dy north; pixels) of ``after`` relative to ``before`` in one block.

    None for blocks with too little valid data or texture (the peak quality is not checked: use
    :func:`block_shift` for it).
    """
    s = block_shift(before, after, valid, upsample_factor)
    return None if s is None else (s[0], s[1])


def _consensus(shifts: np.ndarray, weights: np.ndarray, tol: float) -> np.ndarray:
    """Indexes of the largest group of shifts within ``tol`` of one another's centre."""
    best: np.ndarray = np.zeros(0, dtype=int)
    best_score = (-1, -1.0)
    for i in range(len(shifts)):
        members = np.flatnonzero(np.hypot(*(shifts - shifts[i]).T) <= tol)
        centre = np.median(shifts[members], axis=0)
        members = np.flatnonzero(np.hypot(*(shifts - centre).T) <= tol)
        score = (len(members), float(weights[members].sum()))
        if score > best_score:
            best, best_score = members, score
    return best


def _fit_affine(xy: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """Least-squares coefficients (3, 2) of uv = [1, x, y] @ coef."""
    design = np.column_stack([np.ones(len(xy)), xy])
    coef, *_ = np.linalg.lstsq(design, uv, rcond=None)
    return np.asarray(coef)


def _affine_consensus(
    xy: np.ndarray, uv: np.ndarray, tol: float, seed: int = 0
) -> tuple[np.ndarray, np.ndarray] | None:
    """RANSAC affine over block centres ``xy`` and shifts ``uv`` (px): (coef, inlier indexes)."""
    n = len(xy)
    triples: Iterable[tuple[int, ...]]
    if n <= 24:
        triples = itertools.combinations(range(n), 3)
    else:
        rng = np.random.default_rng(seed)
        triples = (tuple(rng.choice(n, 3, replace=False)) for _ in range(2000))
    extent = max(float(np.ptp(xy[:, 0])), float(np.ptp(xy[:, 1])), 1.0)
    best: tuple[int, float, np.ndarray, np.ndarray] | None = None
    for t in triples:
        idx = list(t)
        p = xy[idx] - xy[idx].mean(axis=0)
        area = abs(p[1, 0] * p[2, 1] - p[1, 1] * p[2, 0]) / 2
        if area < 0.02 * extent**2:  # nearly collinear: the affine is not determined
            continue
        coef = _fit_affine(xy[idx], uv[idx])
        if np.abs(coef[1:]).max() > MAX_AFFINE_LINEAR:
            continue
        res = np.hypot(*(uv - np.column_stack([np.ones(n), xy]) @ coef).T)
        inliers = np.flatnonzero(res <= tol)
        score = (len(inliers), -float(res[inliers].sum()))
        if best is None or score > (best[0], best[1]):
            best = (score[0], score[1], coef, inliers)
    if best is None or best[0] < 3:
        return None
    inliers = best[3]
    for _ in range(3):  # refit on the inliers, then take the inliers of the refit
        coef = _fit_affine(xy[inliers], uv[inliers])
        if np.abs(coef[1:]).max() > MAX_AFFINE_LINEAR:
            return None
        res = np.hypot(*(uv - np.column_stack([np.ones(n), xy]) @ coef).T)
        new = np.flatnonzero(res <= tol)
        if len(new) < 3 or np.array_equal(new, inliers):
            break
        inliers = new
    return coef, inliers


def estimate_shift(
    samples: Iterable[tuple[np.ndarray, np.ndarray, np.ndarray]],
    upsample_factor: int = 20,
    *,
    centres: Sequence[tuple[float, float]] | None = None,
    min_peak_z: float = MIN_PEAK_Z,
    tolerance_px: float = TOLERANCE_PX,
    min_agreeing: int = MIN_AGREEING,
    min_confidence: float = MIN_CONFIDENCE,
    allow_affine: bool = True,
) -> ShiftEstimate:
    """Robust shift over many ``(before, after, valid)`` sample blocks, with a confidence.

    ``centres`` gives each block's centre (col, row) on the working grid; without it no affine
    model is tried. Blocks without texture or without a clear correlation peak are dropped; the
    remaining ones vote by consensus (see the module docstring). A result that is not
    ``confident`` still carries the best translation found, for the report: do not apply it.
    """
    blocks: list[BlockShift] = []
    tried = textured = 0
    centre_list = list(centres) if centres is not None else None
    for k, (before, after, valid) in enumerate(samples):
        tried += 1
        s = block_shift(before, after, valid, upsample_factor)
        if s is None:
            continue
        textured += 1
        if s[2] >= min_peak_z:
            col, row = centre_list[k] if centre_list is not None else (0.0, 0.0)
            blocks.append(BlockShift(col, row, s[0], s[1], s[2]))
    if not blocks:
        return ShiftEstimate(0.0, 0.0, 0, tried, float("nan"), textured, 0)
    shifts = np.array([(b.dx_px, b.dy_px) for b in blocks])
    weights = np.array([b.peak_z for b in blocks])
    members = _consensus(shifts, weights, tolerance_px)
    dx, dy = (float(v) for v in np.median(shifts[members], axis=0))
    # the translation: median of every clear block near the consensus (a shift that varies
    # across the image then gives a stable average rather than one sub-group's)
    near = np.hypot(shifts[:, 0] - dx, shifts[:, 1] - dy) <= 2 * tolerance_px
    dx, dy = (float(v) for v in np.median(shifts[near], axis=0))
    dist = np.hypot(shifts[members, 0] - dx, shifts[members, 1] - dy)
    model: Model = "translation"
    agreeing = len(members)
    spread, residual = float(np.median(dist)), float(np.sqrt(np.mean(dist**2)))
    affine: tuple[float, float, float, float, float, float] | None = None
    if allow_affine and centre_list is not None and len(blocks) >= 6:
        # model in grid pixels, rows down: uv = (d_col, d_row)
        xy = np.array([(b.col, b.row) for b in blocks])
        uv = np.column_stack([shifts[:, 0], -shifts[:, 1]])
        fit = _affine_consensus(xy, uv, tolerance_px * 0.75)
        if fit is not None:
            coef, inliers = fit
            pred = np.column_stack([np.ones(len(xy)), xy]) @ coef
            res = np.hypot(*(uv[inliers] - pred[inliers]).T)
            aff_residual = float(np.sqrt(np.mean(res**2)))
            variation = float(np.ptp(pred[inliers], axis=0).max())
            better = len(inliers) >= agreeing + AFFINE_EXTRA_BLOCKS or (
                len(inliers) >= agreeing and aff_residual < AFFINE_RESIDUAL_RATIO * residual
            )
            if better and len(inliers) >= 6 and variation >= AFFINE_MIN_VARIATION_PX:
                model, agreeing = "affine", len(inliers)
                spread, residual = float(np.median(res)), aff_residual
                affine = (
                    float(coef[0, 0]),
                    float(coef[1, 0]),
                    float(coef[2, 0]),
                    float(coef[0, 1]),
                    float(coef[1, 1]),
                    float(coef[2, 1]),
                )
                u, v = pred[inliers].mean(axis=0)  # the model at the centre of its blocks
                dx, dy = float(u), float(-v)
    confidence = agreeing / len(blocks)
    confident = agreeing >= min_agreeing and confidence >= min_confidence
    return ShiftEstimate(
        dx,
        dy,
        agreeing,
        tried,
        spread,
        blocks_textured=textured,
        blocks_peaked=len(blocks),
        confidence=confidence,
        confident=confident,
        model=model,
        residual_px=residual,
        affine_px=affine,
    )
