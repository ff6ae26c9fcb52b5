"""Object-level post-processing of a change probability: from pixels to building-like objects.

Measured by ``scripts/postprocess_eval.py --objects`` (figures in ``docs/model_card.md``), where
each setting is chosen on validation pairs and scored on objects (IoU >= 0.5 matching). Steps,
each optional, on one probability array ``(H, W)`` in 0..1:

1. threshold, then a morphological opening of ``opening_px`` (removes specks and thin bridges);
2. ``split_px``: touching buildings are split along the valleys of the distance transform
   (a watershed from distance maxima at least ``split_px`` apart), so two neighbouring houses
   joined by a few pixels become two objects;
   or, with ``core_threshold`` (seeded cores, decision 0024), each connected region is split
   into the objects grown from its *cores*, the 8-connected parts where the probability reaches
   ``core_threshold`` (at least ``core_min_area_m2``): a marker-controlled watershed of the
   probability inside the region, so two houses joined by a weak halo (above the threshold,
   below the cores) become two objects, and a region without a core is dropped;
3. objects smaller than ``min_area_m2`` are dropped; with ``seed_threshold`` (hysteresis),
   objects whose highest probability stays under it are dropped (weak, diffuse responses);
   with ``min_solidity``, objects whose area is under that share of their convex hull (ragged,
   not building-like shapes) are dropped.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy import ndimage


@dataclass(frozen=True)
class ObjectParams:
    """Settings of :func:`object_labels` (pixels in px, areas in m², probabilities 0..1)."""

    threshold: float = 0.5
    opening_px: int = 0
    split_px: int = 0  #: 0: no splitting; else the smallest distance between two seeds, px
    min_area_m2: float = 10.0
    seed_threshold: float | None = None  #: keep objects reaching this probability somewhere
    min_solidity: float = 0.0  #: keep objects filling at least this share of their convex hull
    core_threshold: float | None = None  #: grow objects from cores reaching this probability
    core_min_area_m2: float = 4.0  #: smallest core that seeds an object, m²

    def to_dict(self) -> dict[str, Any]:
        """Plain values, for reports."""
        return asdict(self)

    def name(self) -> str:
        """A short readable name of the setting."""
        parts = [f"t {self.threshold:.2f}", f"open {self.opening_px}"]
        if self.split_px:
            parts.append(f"split {self.split_px}")
        if self.core_threshold is not None:
            parts.append(f"core {self.core_threshold:.2f} >= {self.core_min_area_m2:g} m²")
        parts.append(f"min {self.min_area_m2:g} m²")
        if self.seed_threshold is not None:
            parts.append(f"seed {self.seed_threshold:.2f}")
        if self.min_solidity:
            parts.append(f"solidity {self.min_solidity:g}")
        return ", ".join(parts)


def _disk(radius: int) -> np.ndarray:
    y, x = np.ogrid[-radius : radius + 1, -radius : radius + 1]
    return np.asarray(x * x + y * y <= radius * radius)


def candidate_labels(proba: np.ndarray, threshold: float, opening_px: int, split_px: int) -> Any:
    """Steps 1-2: int32 object labels (0 = background) of the thresholded, opened, split mask."""
    mask = np.asarray(proba) >= threshold
    if opening_px > 0:
        mask = ndimage.binary_opening(mask, structure=_disk(opening_px))
    eight = np.ones((3, 3), dtype=bool)
    if split_px <= 0 or not mask.any():
        labels, _ = ndimage.label(mask, structure=eight)
        return labels.astype(np.int32)
    from skimage.feature import peak_local_max
    from skimage.segmentation import watershed

    distance = ndimage.distance_transform_edt(mask)
    components, _ = ndimage.label(mask, structure=eight)
    peaks = peak_local_max(distance, min_distance=split_px, labels=components, exclude_border=False)
    markers = np.zeros(mask.shape, np.int32)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
    # a component without a peak (too thin) keeps one seed of its own
    seeded = np.unique(components[markers > 0])
    missing = np.setdiff1d(np.arange(1, components.max() + 1), seeded)
    if len(missing):
        extra = np.isin(components, missing)
        markers[extra] = components[extra] + len(peaks)
    return watershed(-distance, markers, mask=mask).astype(np.int32)


def core_labels(
    proba: np.ndarray,
    threshold: float,
    opening_px: int,
    core_threshold: float,
    core_min_px: int,
) -> Any:
    """Step 2 with seeded cores: int32 labels of the objects grown from the cores.

    Markers are the 8-connected components of ``proba >= core_threshold`` inside the (opened)
    mask ``proba >= threshold``, kept from ``core_min_px`` pixels; ``watershed(-proba)`` from
    them inside the mask (8-connected); mask pixels no marker reaches are dropped.
    """
    proba = np.asarray(proba)
    mask = proba >= threshold
    if opening_px > 0:
        mask = ndimage.binary_opening(mask, structure=_disk(opening_px))
    eight = np.ones((3, 3), dtype=bool)
    markers, n = ndimage.label(mask & (proba >= core_threshold), structure=eight)
    if n == 0:
        return np.zeros(mask.shape, np.int32)
    sizes = np.bincount(markers.ravel(), minlength=n + 1)
    keep = sizes >= core_min_px
    keep[0] = False
    lut = np.zeros(n + 1, np.int32)
    lut[keep] = np.arange(1, int(keep.sum()) + 1, dtype=np.int32)
    if not keep.any():
        return np.zeros(mask.shape, np.int32)
    from skimage.segmentation import watershed

    return watershed(-proba, lut[markers], mask=mask, connectivity=2).astype(np.int32)


def filter_labels(labels: np.ndarray, proba: np.ndarray, params: ObjectParams, gsd_m: float) -> Any:
    """Step 3: ``labels`` without the objects that are too small, too weak or too ragged."""
    n = int(labels.max())
    if n == 0:
        return labels
    index = np.arange(1, n + 1)
    area = np.bincount(labels.ravel(), minlength=n + 1)[1:]
    keep = area >= np.ceil(params.min_area_m2 / gsd_m**2)
    if params.seed_threshold is not None:
        peak = np.asarray(ndimage.maximum(proba, labels, index))
        keep &= peak >= params.seed_threshold
    if params.min_solidity > 0:
        from skimage.measure import regionprops

        for region in regionprops(labels):
            i = region.label - 1
            if keep[i] and region.area >= 3 and region.solidity < params.min_solidity:
                keep[i] = False
    lut = np.zeros(n + 1, np.int32)
    lut[1:][keep] = index[keep]
    return lut[labels]


def object_labels(proba: np.ndarray, params: ObjectParams, gsd_m: float) -> Any:
    """All steps: int32 labels ``(H, W)`` of the change objects (0 = no change)."""
    if params.core_threshold is not None:
        min_px = max(1, int(np.ceil(params.core_min_area_m2 / gsd_m**2 - 1e-9)))
        labels = core_labels(
            proba, params.threshold, params.opening_px, params.core_threshold, min_px
        )
    else:
        labels = candidate_labels(proba, params.threshold, params.opening_px, params.split_px)
    return filter_labels(labels, np.asarray(proba), params, gsd_m)
