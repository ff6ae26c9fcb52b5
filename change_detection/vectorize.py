"""Change polygons from a change-probability raster: pure functions on arrays.

The steps, each a function that can be tuned or evaluated alone:

1. :func:`binary_mask`: ``proba >= threshold`` where the pixel is valid (nodata never becomes a
   change);
2. :func:`clean_mask`: morphological opening (removes specks and one-pixel bridges) then closing
   (closes small gaps; off by default, since it merges neighbouring houses: decision 0015), with
   disk structuring elements of ``opening_px`` / ``closing_px`` radius, then masked by validity
   again;
3. :func:`label_pieces`: connected components (4-connectivity) with their statistics (pixel count,
   sum and max of the probability, sum of the brightness cue), polygonised in *pixel* coordinates
   so pieces cut by block borders can be merged exactly (:func:`merge_pieces`);
4. :func:`finish_polygons`: to map coordinates, holes below ``max_hole_m2`` filled, outline
   regularised (:func:`regularize`), clipped to the valid footprint, polygons below
   ``min_area_m2`` dropped, and (``min_score_max`` > 0) polygons whose highest probability never
   reaches ``min_score_max`` (a hysteresis seed, decision 0015); attributes ``score_mean``,
   ``score_max``, ``area_m2`` and ``change_kind`` (:func:`change_kind`).

Seeded-core objects (``core_threshold`` > 0, decision 0024): the mask of step 1 is cut lower, at
``threshold - grow_margin`` (never under half the threshold: weights with a low threshold,
such as 0.11, would otherwise grow objects down to about 0 and tile the scene), and each
connected region of it (after step 2) is split into the
objects grown from its *cores*, the 4-connected parts where the probability reaches
``core_threshold`` (at least ``core_min_area_m2``): a marker-controlled watershed on the
probability (:func:`grow_objects`), so two houses joined by a weak halo become two objects
(they may share a border), and a region without a core is dropped (a hysteresis seed). A region
is always grown on its own bounding box, alone: the result depends only on its own pixels, so a
region crossing block borders is grown once, whole, after its pieces are merged
(:func:`grow_pending`), and equals the whole-array result exactly.

:func:`polygons_from_proba` runs all of them on one in-memory array; the orthophoto pipeline
(:mod:`change_detection.detect`) runs steps 1-3 block by block with a halo of
:func:`halo_px` pixels and merges pieces across blocks, which gives the same polygons.

Outline regularisation (building-like shapes squared off): a polygon that fills at least
``rectangularity`` of its minimum rotated rectangle becomes that rectangle, shrunk about its
centroid to the polygon's area (so areas are kept); other shapes are simplified with
Douglas-Peucker at ``simplify_px`` pixels, which removes the pixel staircase but keeps L- and
U-shapes. The brightness cue is the change in excess-green index ``(2G - R - B) / (R + G + B)``
from the earlier to the later epoch: a structure built on vegetation lowers it (``appeared``), one
demolished back to green raises it (``disappeared``); small changes say ``unknown``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Container, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import shapely
from affine import Affine
from rasterio import features
from scipy import ndimage
from shapely import affinity
from shapely.geometry import MultiPolygon, Polygon, shape
from shapely.geometry.base import BaseGeometry

#: Brightness-cue (excess-green change) magnitude above which a change kind is named.
CUE_THRESHOLD = 0.08
#: Attributes of every change polygon, in order.
COLUMNS = ("score_mean", "score_max", "area_m2", "change_kind", "n_px")


@dataclass(frozen=True)
class VectorizeParams:
    """Post-processing parameters: probability cut, morphology (px), areas (m²), outlines."""

    threshold: float = 0.5
    min_area_m2: float = 10.0
    opening_px: int = 1
    closing_px: int = 0
    min_score_max: float = 0.0
    max_hole_m2: float = 100.0
    regularize: bool = True
    rectangularity: float = 0.8
    simplify_px: float = 1.0
    cue_threshold: float = CUE_THRESHOLD
    core_threshold: float = 0.0  #: 0: off; else objects grow from cores reaching this probability
    core_min_area_m2: float = 4.0  #: smallest core that seeds an object, m²
    #: with cores, the mask is cut at ``threshold - grow_margin``, never under ``threshold / 2``
    grow_margin: float = 0.1
    #: with cores, a region whose bounding box exceeds this many pixels is not split: it stays
    #: one object (kept if it reaches ``core_threshold``), so memory stays bounded (a watershed
    #: needs about 33 bytes per pixel of the box: 0.5 GB at the default, 13 GB for a 20,000 px
    #: scene changed as one region)
    core_max_box_px: int = 16_000_000

    @property
    def cores(self) -> bool:
        """True when objects are grown from seeded cores (``core_threshold`` > 0)."""
        return self.core_threshold > 0

    @property
    def mask_threshold(self) -> float:
        """The probability cut of the changed mask: with cores, lowered by ``grow_margin``.

        Never under half the threshold: with weights whose threshold is low (0.11 after a
        small validation set) an absolute margin would cut near 0, and the watershed would give
        nearly every pixel of the scene to some core (decision 0026).
        """
        if not self.cores:
            return self.threshold
        return max(self.threshold - self.grow_margin, self.threshold / 2)

    def to_dict(self) -> dict[str, Any]:
        """Plain values for ``detect.json`` and the run key."""
        return {k: getattr(self, k) for k in self.__dataclass_fields__}

    def with_(self, **changes: Any) -> VectorizeParams:
        """A copy with ``changes`` applied (``None`` values are ignored)."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})


def halo_px(params: VectorizeParams) -> int:
    """Pixels of context a block needs on each side so that morphology matches a whole array."""
    return 2 * (params.opening_px + params.closing_px) + 2


def disk(radius: int) -> np.ndarray:
    """Boolean disk structuring element of ``radius`` px (a single pixel for 0)."""
    r = max(int(radius), 0)
    yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
    return np.asarray(xx * xx + yy * yy <= r * r + r)  # +r: rounder small disks


def binary_mask(proba: np.ndarray, threshold: float, valid: np.ndarray | None = None) -> np.ndarray:
    """Bool mask of changed pixels: ``proba >= threshold``, finite, and valid (if given)."""
    mask = np.isfinite(proba) & (proba >= threshold)
    return mask & valid if valid is not None else mask


def clean_mask(
    mask: np.ndarray, opening_px: int, closing_px: int, valid: np.ndarray | None = None
) -> np.ndarray:
    """Opening then closing with disks of the given radii (px); never outside ``valid``.

    The array is padded by edge replication first, so objects at the array border are not eroded.
    """
    pad = opening_px + closing_px + 1
    work = np.pad(mask, pad, mode="edge")
    if opening_px > 0:
        work = ndimage.binary_opening(work, structure=disk(opening_px))
    if closing_px > 0:
        work = ndimage.binary_closing(work, structure=disk(closing_px))
    out = work[pad:-pad, pad:-pad]
    return out & valid if valid is not None else out


@dataclass
class Piece:
    """A connected changed region (or the part of one inside a block).

    ``geom`` is in *grid pixel* coordinates (x = column, y = row, of the whole grid); ``open`` is
    True when the piece touches a block border beyond which the grid continues; ``pending`` (with
    seeded cores) when it is a part of a changed region whose objects are still to be grown, once
    the region is whole (:func:`grow_pending`).
    """

    geom: BaseGeometry
    n_px: int
    score_sum: float
    score_max: float
    cue_sum: float
    open: bool = False
    pending: bool = False


#: 4-connectivity: the changed regions, cores and objects of the polygons
FOUR = np.array([[0, 1, 0], [1, 1, 1], [0, 1, 0]], dtype=bool)


def _touching(labels: np.ndarray, interior_edges: tuple[bool, bool, bool, bool]) -> set[int]:
    """Labels present on the array borders that are block borders inside the grid."""
    top, bottom, left, right = interior_edges
    touching: set[int] = set()
    for flag, line in (
        (top, labels[0]),
        (bottom, labels[-1]),
        (left, labels[:, 0]),
        (right, labels[:, -1]),
    ):
        if flag:
            touching.update(int(v) for v in np.unique(line) if v)
    return touching


def _labelled_pieces(
    labels: np.ndarray,
    n: int,
    proba: np.ndarray,
    cue: np.ndarray | None,
    offset: tuple[int, int],
    touching: Container[int] = (),
    *,
    pending: bool = False,
) -> list[Piece]:
    """One piece per label 1..n of ``labels`` (pixel-coordinate polygon and statistics)."""
    idx = np.arange(1, n + 1)
    p = np.where(np.isfinite(proba), proba, 0.0).astype(np.float64)
    counts = ndimage.sum_labels(np.ones_like(p), labels, idx)
    sums = ndimage.sum_labels(p, labels, idx)
    maxes = ndimage.maximum(p, labels, idx)
    cues = (
        ndimage.sum_labels(np.nan_to_num(cue.astype(np.float64)), labels, idx)
        if cue is not None
        else np.zeros(n)
    )
    col0, row0 = offset
    transform = Affine.translation(col0, row0)
    geoms: dict[int, list[BaseGeometry]] = {}
    for geom, value in features.shapes(
        labels.astype(np.int32), mask=labels > 0, connectivity=4, transform=transform
    ):
        geoms.setdefault(int(value), []).append(shape(geom))
    pieces: list[Piece] = []
    for value, parts in geoms.items():
        k = value - 1
        pieces.append(
            Piece(
                geom=parts[0] if len(parts) == 1 else shapely.union_all(parts),
                n_px=int(counts[k]),
                score_sum=float(sums[k]),
                score_max=float(maxes[k]),
                cue_sum=float(cues[k]),
                open=value in touching,
                pending=pending,
            )
        )
    return pieces


def label_pieces(
    mask: np.ndarray,
    proba: np.ndarray,
    cue: np.ndarray | None = None,
    *,
    offset: tuple[int, int] = (0, 0),
    interior_edges: tuple[bool, bool, bool, bool] = (False, False, False, False),
) -> list[Piece]:
    """Connected components (4-connectivity) of ``mask`` as pixel-coordinate polygons with stats.

    ``offset`` = (col, row) of ``mask[0, 0]`` on the grid. ``interior_edges`` = (top, bottom, left,
    right): which array borders are block borders inside the grid (pieces touching them are
    ``open`` and get merged with their neighbours by :func:`merge_pieces`).
    """
    labels, n = ndimage.label(mask, structure=FOUR)
    if n == 0:
        return []
    return _labelled_pieces(labels, n, proba, cue, offset, _touching(labels, interior_edges))


def core_min_px(params: VectorizeParams, gsd_m: float) -> int:
    """The smallest core that seeds an object, in pixels of ``gsd_m`` metres (at least 1)."""
    return max(1, math.ceil(params.core_min_area_m2 / gsd_m**2 - 1e-9))


def core_objects(
    region: np.ndarray, proba: np.ndarray, params: VectorizeParams, min_core_px: int
) -> tuple[np.ndarray, int]:
    """The objects of one changed region grown from its cores (seeded-core watershed).

    ``region`` (h, w) bool: one 4-connected region of the cleaned mask on its own bounding box;
    ``proba`` the same box. Cores are the 4-connected parts of the region where
    ``proba >= params.core_threshold``, kept from ``min_core_px`` pixels. No core: no object.
    One core: the whole region. Several: a watershed of ``-proba`` from the cores inside the
    region (4-connected flooding), so every pixel goes to the core it reaches along the highest
    probabilities; the objects tile the region. Returns int32 labels 1..k (0 outside the region)
    and k. The result depends only on these arrays: the same box gives the same objects in a
    block and in the whole array. A box larger than ``params.core_max_box_px`` is not split: the
    region is one object if it reaches ``core_threshold`` anywhere (bounded memory).
    """
    p = np.where(region, np.nan_to_num(proba), 0.0).astype(np.float32)
    if region.size > params.core_max_box_px:  # too large to split: one object, as grow_pending
        if p.max() >= params.core_threshold:
            return region.astype(np.int32), 1
        return np.zeros(region.shape, np.int32), 0
    markers, n = ndimage.label(region & (p >= params.core_threshold), structure=FOUR)
    if n == 0:
        return np.zeros(region.shape, np.int32), 0
    sizes = np.bincount(markers.ravel(), minlength=n + 1)
    keep = sizes >= min_core_px
    keep[0] = False
    k = int(keep.sum())
    if k == 0:
        return np.zeros(region.shape, np.int32), 0
    if k == 1:
        return region.astype(np.int32), 1
    from skimage.segmentation import watershed

    lut = np.zeros(n + 1, np.int32)
    lut[keep] = np.arange(1, k + 1, dtype=np.int32)
    return watershed(-p, lut[markers], mask=region, connectivity=1).astype(np.int32), k


def grow_objects(
    region: np.ndarray,
    proba: np.ndarray,
    cue: np.ndarray | None,
    params: VectorizeParams,
    min_core_px: int,
    *,
    offset: tuple[int, int],
) -> list[Piece]:
    """Pieces of the objects of one region (:func:`core_objects`).

    ``cue`` covers the same box; ``offset`` = grid (col, row) of the box's first pixel.
    """
    labels, k = core_objects(region, proba, params, min_core_px)
    return _labelled_pieces(labels, k, proba, cue, offset) if k else []


def _region_pieces(
    cleaned: np.ndarray,
    proba: np.ndarray,
    cue: np.ndarray | None,
    params: VectorizeParams,
    min_core_px: int,
    offset: tuple[int, int],
    interior_edges: tuple[bool, bool, bool, bool],
) -> list[Piece]:
    """Seeded-core objects of the regions of ``cleaned`` that lie wholly in it.

    Each region is grown alone on its own box (:func:`core_objects`); the objects of all of them
    are then polygonised together (one call: the same outlines as one at a time). The parts of
    regions that reach an interior block border come out as ``pending`` open pieces.
    """
    labels, n = ndimage.label(cleaned, structure=FOUR)
    if n == 0:
        return []
    touching = _touching(labels, interior_edges)
    objects = np.zeros(labels.shape, np.int32)
    count = 0
    for k, box in enumerate(ndimage.find_objects(labels), start=1):
        if box is None or k in touching:
            continue
        grown, m = core_objects(labels[box] == k, proba[box], params, min_core_px)
        if m:
            inside = grown > 0
            objects[box][inside] = grown[inside] + count
            count += m
    pieces = _labelled_pieces(objects, count, proba, cue, offset) if count else []
    if touching:
        rest = np.where(np.isin(labels, sorted(touching)), labels, 0)
        pieces += [
            replace(p, open=True, pending=True)
            for p in _labelled_pieces(rest, n, proba, cue, offset)
        ]
    return pieces


def grow_pending(
    pieces: Sequence[Piece],
    read: Callable[[int, int, int, int], tuple[np.ndarray, np.ndarray | None]],
    params: VectorizeParams,
    gsd_m: float,
) -> list[Piece]:
    """Grow the objects of the regions merged across blocks (the ``pending`` pieces).

    ``read(row0, row1, col0, col1)`` returns the probability and the cue (or ``None``) of that
    grid window (rows ``row0:row1``, columns ``col0:col1``). Each region is read on its bounding
    box only (memory: that box), its pixels are its merged outline rasterised (exact: pixel
    coordinates are integers), and it is grown as in a single block (:func:`grow_objects`).
    """
    from rasterio.features import rasterize

    out = [p for p in pieces if not p.pending]
    min_px = core_min_px(params, gsd_m)
    for piece in pieces:
        if not piece.pending:
            continue
        c0, r0, c1, r1 = (round(v) for v in piece.geom.bounds)
        if (r1 - r0) * (c1 - c0) > params.core_max_box_px:  # not split, not read (core_objects)
            if piece.score_max >= params.core_threshold:
                out.append(replace(piece, pending=False))
            continue
        proba, cue = read(r0, r1, c0, c1)
        region = rasterize(
            [(piece.geom, 1)],
            out_shape=(r1 - r0, c1 - c0),
            transform=Affine.translation(c0, r0),
            dtype="uint8",
        ).astype(bool)
        out += grow_objects(region, proba, cue, params, min_px, offset=(c0, r0))
    return out


def merge_pieces(pieces: Sequence[Piece]) -> list[Piece]:
    """Join open pieces that share a border segment (exact: pixel coordinates are integers)."""
    closed = [p for p in pieces if not p.open]
    opened = [p for p in pieces if p.open]
    if len(opened) < 2:
        return closed + [replace(p, open=False) for p in opened]
    geoms = [p.geom for p in opened]
    tree = shapely.STRtree(geoms)
    parent = list(range(len(opened)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    left_idx, right_idx = tree.query(geoms, predicate="intersects")
    for i, j in zip(left_idx.tolist(), right_idx.tolist(), strict=True):
        if i < j and geoms[i].intersection(geoms[j]).length > 0:
            parent[find(i)] = find(j)
    groups: dict[int, list[int]] = {}
    for i in range(len(opened)):
        groups.setdefault(find(i), []).append(i)
    merged = []
    for members in groups.values():
        parts = [opened[i] for i in members]
        geom = parts[0].geom if len(parts) == 1 else shapely.union_all([q.geom for q in parts])
        merged.append(
            Piece(
                geom=geom,
                n_px=sum(q.n_px for q in parts),
                score_sum=sum(q.score_sum for q in parts),
                score_max=max(q.score_max for q in parts),
                cue_sum=sum(q.cue_sum for q in parts),
                open=False,
                pending=any(q.pending for q in parts),
            )
        )
    return closed + merged


def fill_holes(geom: BaseGeometry, max_hole_m2: float) -> BaseGeometry:
    """``geom`` with interior rings smaller than ``max_hole_m2`` (map units²) removed."""
    polys = list(geom.geoms) if isinstance(geom, MultiPolygon) else [geom]
    out = [
        Polygon(p.exterior, [r for r in p.interiors if Polygon(r).area >= max_hole_m2])
        for p in polys
        if isinstance(p, Polygon)
    ]
    return out[0] if len(out) == 1 else MultiPolygon(out)


def regularize(
    geom: BaseGeometry, gsd_m: float, rectangularity: float = 0.8, simplify_px: float = 1.0
) -> BaseGeometry:
    """Square off building-like outlines (see the module docstring for the method)."""
    if geom.is_empty or geom.area <= 0:
        return geom
    if isinstance(geom, Polygon) and not geom.interiors:
        rect = geom.minimum_rotated_rectangle
        if rect.area > 0 and geom.area / rect.area >= rectangularity:
            s = math.sqrt(geom.area / rect.area)
            c = rect.centroid
            return affinity.scale(rect, s, s, origin=(c.x, c.y))
    out = geom.simplify(simplify_px * gsd_m, preserve_topology=True)
    return out if out.is_valid and not out.is_empty else shapely.make_valid(geom)


def change_kind(cue_mean: float, threshold: float = CUE_THRESHOLD) -> str:
    """``appeared`` / ``disappeared`` from the mean excess-green change, else ``unknown``."""
    if not math.isfinite(cue_mean):
        return "unknown"
    if cue_mean <= -threshold:
        return "appeared"
    if cue_mean >= threshold:
        return "disappeared"
    return "unknown"


def excess_green_change(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    """Per-pixel change of ``(2G - R - B) / (R + G + B)`` from ``before`` to ``after`` (C, H, W)."""

    def exg(img: np.ndarray) -> np.ndarray:
        r, g, b = (img[i].astype(np.float32) for i in range(3))
        return (2 * g - r - b) / np.maximum(r + g + b, 1e-3)

    return exg(after) - exg(before)


def finish_polygons(
    pieces: Iterable[Piece],
    transform: Affine,
    params: VectorizeParams,
    *,
    footprint: BaseGeometry | None = None,
) -> list[dict[str, Any]]:
    """Map-coordinate change polygons with attributes, from merged pixel-coordinate pieces.

    ``transform``: the whole grid's affine (pixels -> map units, metres). Returns records with
    ``geometry`` and the :data:`COLUMNS`, largest first. Polygons are clipped to ``footprint``.
    """
    gsd = math.sqrt(abs(transform.a * transform.e - transform.b * transform.d))
    coeffs = [transform.a, transform.b, transform.d, transform.e, transform.c, transform.f]
    records = []
    for piece in pieces:
        if piece.pending:
            raise ValueError("a region crossing blocks was not grown: call grow_pending first")
        if piece.score_max < params.min_score_max:
            continue  # a hysteresis seed: the object never reaches a confident probability
        # canonical pixel outline (no collinear vertices, fixed start) so that a polygon merged
        # from blocks simplifies exactly like the same polygon found whole
        outline = shapely.normalize(shapely.simplify(piece.geom, 0))
        geom = affinity.affine_transform(outline, coeffs)
        geom = fill_holes(geom, params.max_hole_m2)
        if params.regularize:
            geom = regularize(geom, gsd, params.rectangularity, params.simplify_px)
        if footprint is not None:
            geom = geom.intersection(footprint)
        geom = _polygonal(geom)
        if geom is None or geom.area < params.min_area_m2 or geom.area <= 0:
            continue
        cue_mean = piece.cue_sum / piece.n_px if piece.n_px else float("nan")
        records.append(
            {
                "geometry": geom,
                "score_mean": piece.score_sum / piece.n_px,
                "score_max": piece.score_max,
                "area_m2": float(geom.area),
                "change_kind": change_kind(cue_mean, params.cue_threshold),
                "n_px": piece.n_px,
            }
        )
    records.sort(key=lambda r: (-r["area_m2"], r["geometry"].centroid.x, r["geometry"].centroid.y))
    return records


def _polygonal(geom: BaseGeometry) -> BaseGeometry | None:
    if geom.is_empty:
        return None
    if not geom.is_valid:
        geom = shapely.make_valid(geom)
    polys = [p for p in shapely.get_parts(geom) if isinstance(p, Polygon) and p.area > 0]
    if not polys:
        return None
    return polys[0] if len(polys) == 1 else MultiPolygon(polys)


def block_pieces(
    proba: np.ndarray,
    valid: np.ndarray,
    cue: np.ndarray | None,
    params: VectorizeParams,
    *,
    core: tuple[slice, slice],
    offset: tuple[int, int],
    interior_edges: tuple[bool, bool, bool, bool],
    gsd_m: float | None = None,
) -> list[Piece]:
    """Steps 1-3 on one block read with a halo; pieces of the ``core`` part only.

    ``proba``/``valid``/``cue`` cover the block plus halo; ``core`` selects the block inside them;
    ``offset`` = grid (col, row) of the core's first pixel. With seeded cores (``gsd_m``, metres
    per pixel, is then needed for the smallest core), the regions wholly inside the core part
    come out as their grown objects, the others as ``pending`` pieces for :func:`grow_pending`.
    """
    if params.cores and gsd_m is None:
        raise ValueError("seeded cores need gsd_m (metres per pixel) for core_min_area_m2")
    mask = binary_mask(proba, params.mask_threshold, valid)
    # Work only on the changed pixels' bounding box plus a margin that morphology cannot cross
    # (the cleaned mask is empty beyond it): the same pieces as on the whole block, much cheaper
    # where changes are sparse (most of a district).
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return []
    cols = np.flatnonzero(mask.any(axis=0))
    margin = 2 * (params.opening_px + params.closing_px) + 2
    r0, r1 = max(0, int(rows[0]) - margin), min(mask.shape[0], int(rows[-1]) + 1 + margin)
    c0, c1 = max(0, int(cols[0]) - margin), min(mask.shape[1], int(cols[-1]) + 1 + margin)
    rs, cs = core
    rs0, rs1, _ = rs.indices(mask.shape[0])
    cs0, cs1, _ = cs.indices(mask.shape[1])
    # the part of the core inside the box
    a0, a1, b0, b1 = max(r0, rs0), min(r1, rs1), max(c0, cs0), min(c1, cs1)
    if a0 >= a1 or b0 >= b1:
        return []
    box = (slice(r0, r1), slice(c0, c1))
    cleaned = clean_mask(mask[box], params.opening_px, params.closing_px, valid[box])
    core_mask = cleaned[a0 - r0 : a1 - r0, b0 - c0 : b1 - c0]
    # and label only the cleaned changes' own bounding box in the core (specks are gone)
    rows, cols = np.flatnonzero(core_mask.any(axis=1)), np.flatnonzero(core_mask.any(axis=0))
    if rows.size == 0:
        return []
    a0, a1 = a0 + int(rows[0]), a0 + int(rows[-1]) + 1
    b0, b1 = b0 + int(cols[0]), b0 + int(cols[-1]) + 1
    sub = (slice(a0, a1), slice(b0, b1))
    top, bottom, left, right = interior_edges
    # a box side inside the core has an empty mask beyond it: no piece crosses it
    edges = (top and a0 == rs0, bottom and a1 == rs1, left and b0 == cs0, right and b1 == cs1)
    sub_offset = (offset[0] + b0 - cs0, offset[1] + a0 - rs0)
    sub_mask = cleaned[a0 - r0 : a1 - r0, b0 - c0 : b1 - c0]
    sub_cue = None if cue is None else cue[sub]
    if params.cores:
        assert gsd_m is not None
        return _region_pieces(
            sub_mask, proba[sub], sub_cue, params, core_min_px(params, gsd_m), sub_offset, edges
        )
    return label_pieces(sub_mask, proba[sub], sub_cue, offset=sub_offset, interior_edges=edges)


def polygons_from_proba(
    proba: np.ndarray,
    transform: Affine,
    params: VectorizeParams | None = None,
    *,
    valid: np.ndarray | None = None,
    cue: np.ndarray | None = None,
    footprint: BaseGeometry | None = None,
) -> list[dict[str, Any]]:
    """Change polygons of one in-memory probability array (H, W), float in 0..1.

    ``transform`` maps pixels to map coordinates (metres, north-up); ``valid`` (H, W) bool marks
    data pixels (default: finite ``proba``); ``cue`` (H, W) the excess-green change for
    ``change_kind`` (default: all ``unknown``). Returns records (``geometry`` + :data:`COLUMNS`).
    """
    params = params or VectorizeParams()
    proba = np.asarray(proba, dtype=np.float32)
    if valid is None:
        valid = np.isfinite(proba)
    gsd = math.sqrt(abs(transform.a * transform.e - transform.b * transform.d))
    pieces = block_pieces(
        proba,
        valid,
        cue,
        params,
        core=(slice(None), slice(None)),
        offset=(0, 0),
        interior_edges=(False, False, False, False),
        gsd_m=gsd,
    )
    return finish_polygons(pieces, transform, params, footprint=footprint)
