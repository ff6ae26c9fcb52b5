"""Image-guided refinement of a change probability, and multi-scale inference.

Three ways to make a change probability follow the image (issue 12: roofs found only in part,
outlines off the roof's edges), each a pure function on arrays, measured by
``scripts/postprocess_eval.py WEIGHTS --refine`` against the product's polygons:

* :func:`superpixel_refine`: SLIC superpixels of the before/after pair (both epochs stacked, in
  CIE Lab), of about ``superpixel_m2`` of ground each; the probability becomes a blend of the
  per-pixel value and its superpixel's mean, ``(1 - weight) * p + weight * mean``.
* :func:`guided_filter`: the edge-preserving guided filter of He, Sun and Tang (2013) with the
  pair's mean brightness as the guide: box filters of ``radius`` px, regularisation ``eps``
  (in squared units of the guide, 0..1 brightness); local, so exact block by block with a halo
  of ``2 * radius`` px (:func:`guided_halo_px`).
* multi-scale inference: the mean of the network's probability at scale 1 and at ``scale``
  (:func:`proba_at_scale`: the pair resampled bilinearly, predicted, the probability resampled
  back); ``scale ** 2`` more network time.

Measured on validation, none of them is better than the product's polygons (decision 0025,
the model card's "Image-guided refinement and multi-scale inference"): ``weijian detect``
does not use them.

Images are ``(H, W, 3)`` uint8 or float arrays on the probability's grid; probabilities
``(H, W)`` float32 in 0..1 (non-finite values, nodata, are kept as they are).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from change_detection.errors import InputError
from change_detection.inference import predict_proba, resample
from change_detection.weights import ChangeModel


@dataclass(frozen=True)
class SuperpixelParams:
    """SLIC superpixel refinement: superpixel size (m² of ground), compactness, blend weight."""

    superpixel_m2: float = 10.0
    compactness: float = 10.0
    weight: float = 0.5

    def name(self) -> str:
        """Short label for tables."""
        return f"superpixels {self.superpixel_m2:g} m² c{self.compactness:g} w{self.weight:g}"


@dataclass(frozen=True)
class GuidedParams:
    """Guided filtering: box radius (px), regularisation eps (guide units², 0..1 brightness)."""

    radius_px: int = 4
    eps: float = 1e-2

    def name(self) -> str:
        """Short label for tables."""
        return f"guided r{self.radius_px} eps {self.eps:g}"


def _unit(image: np.ndarray) -> np.ndarray:
    """``(H, W, 3)`` image as float32 in 0..1 (uint8/uint16 by their range, floats as given)."""
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] < 3:
        raise InputError(f"an image must be (H, W, 3), got shape {image.shape}")
    image = image[..., :3]
    if np.issubdtype(image.dtype, np.integer):
        return image.astype(np.float32) / float(np.iinfo(image.dtype).max)
    return image.astype(np.float32)


def _check(proba: np.ndarray, *images: np.ndarray) -> None:
    for image in images:
        if image.shape[:2] != proba.shape:
            raise InputError(
                f"image {image.shape[:2]} and probability {proba.shape} differ: give the pair on "
                "the probability's grid"
            )


def superpixel_labels(
    before: np.ndarray, after: np.ndarray, gsd_m: float, superpixel_m2: float, compactness: float
) -> np.ndarray:
    """SLIC superpixel labels ``(H, W)`` int of the pair, about ``superpixel_m2`` m² each.

    Both epochs in CIE Lab stacked (6 channels), so an edge in either epoch bounds a superpixel;
    ``compactness`` as for SLIC on Lab (10: balanced). Deterministic.
    """
    from skimage.color import rgb2lab
    from skimage.segmentation import slic

    _check(np.empty(before.shape[:2]), after)
    stack = np.concatenate([rgb2lab(_unit(before)), rgb2lab(_unit(after))], axis=-1)
    px = max(superpixel_m2 / gsd_m**2, 1.0)
    n_segments = max(1, round(stack.shape[0] * stack.shape[1] / px))
    # slic rescales its input to 0..1 before weighing colour against distance: rescale the
    # compactness with it, so that it keeps its meaning on Lab units (0..100 lightness)
    spread = float(stack.max() - stack.min())
    return np.asarray(
        slic(
            stack,
            n_segments=n_segments,
            compactness=compactness / spread if spread > 0 else compactness,
            convert2lab=False,
            channel_axis=-1,
            start_label=0,
            enforce_connectivity=True,
        )
    )


def superpixel_mean(proba: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """The mean of the finite ``proba`` over each superpixel of ``labels``, per pixel."""
    finite = np.isfinite(proba)
    p = np.where(finite, proba, 0.0).astype(np.float64)
    flat = labels.ravel()
    n = int(flat.max()) + 1
    sums = np.bincount(flat, weights=p.ravel(), minlength=n)
    counts = np.bincount(flat, weights=finite.ravel().astype(np.float64), minlength=n)
    means = sums / np.maximum(counts, 1)
    return means[labels].astype(np.float32)


def superpixel_refine(
    proba: np.ndarray,
    before: np.ndarray,
    after: np.ndarray,
    gsd_m: float,
    params: SuperpixelParams,
    labels: np.ndarray | None = None,
) -> np.ndarray:
    """``(1 - weight) * proba + weight * superpixel mean`` (float32 ``(H, W)``; nodata kept).

    ``gsd_m``: metres per pixel of the pair. ``labels``: the pair's :func:`superpixel_labels`
    for ``params`` when already computed (they depend on the images only).
    """
    proba = np.asarray(proba, np.float32)
    _check(proba, before, after)
    if labels is None:
        labels = superpixel_labels(before, after, gsd_m, params.superpixel_m2, params.compactness)
    out = (1 - params.weight) * proba + params.weight * superpixel_mean(proba, labels)
    return np.where(np.isfinite(proba), out, proba).astype(np.float32)


def guided_halo_px(params: GuidedParams) -> int:
    """Context a block needs on each side for :func:`guided_filter` to equal a whole array."""
    return 2 * params.radius_px


def _box(a: np.ndarray, radius: int) -> np.ndarray:
    """Mean over a ``2r+1`` square; near the borders over the part inside the array."""
    size = 2 * radius + 1
    ones = ndimage.uniform_filter(np.ones_like(a), size=size, mode="constant")
    return ndimage.uniform_filter(a, size=size, mode="constant") / ones


def guided_filter(
    proba: np.ndarray, before: np.ndarray, after: np.ndarray, params: GuidedParams
) -> np.ndarray:
    """The guided filter (He et al.) of ``proba`` with the pair's mean grey level as the guide.

    Where the guide is flat in a ``2r+1`` window the probability is smoothed; where it has an
    edge (variance well above ``eps``) the output follows the guide's edge. Float32
    ``(H, W)`` clipped to 0..1; nodata (non-finite) pixels are kept and do not count.
    """
    proba = np.asarray(proba, np.float32)
    _check(proba, before, after)
    r = int(params.radius_px)
    if r <= 0:
        return proba.copy()
    guide = ((_unit(before).mean(axis=-1) + _unit(after).mean(axis=-1)) / 2).astype(np.float64)
    finite = np.isfinite(proba)
    p = np.where(finite, proba, 0.0).astype(np.float64)
    mean_i = _box(guide, r)
    mean_p = _box(p, r)
    cov_ip = _box(guide * p, r) - mean_i * mean_p
    var_i = _box(guide * guide, r) - mean_i * mean_i
    a = cov_ip / (var_i + params.eps)
    b = mean_p - a * mean_i
    out = _box(a, r) * guide + _box(b, r)
    out = np.clip(out, 0.0, 1.0).astype(np.float32)
    return np.where(finite, out, proba)


def proba_at_scale(
    model: ChangeModel, before: np.ndarray, after: np.ndarray, scale: float, *, tta: bool = False
) -> np.ndarray:
    """The probability of the pair predicted at ``scale``, resampled back to the pair's grid."""
    if not scale > 0:
        raise InputError(f"scale must be positive, got {scale}")
    shape = before.shape[:2]
    size = (max(1, round(shape[0] * scale)), max(1, round(shape[1] * scale)))
    p = predict_proba(model, resample(before, size), resample(after, size), tta=tta)
    if p.shape == shape:
        return p
    t = torch.from_numpy(p)[None, None]
    down = F.interpolate(t, size=shape, mode="bilinear", align_corners=False, antialias=True)
    return down[0, 0].numpy().astype(np.float32)
