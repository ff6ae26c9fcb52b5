"""Polygon post-processing on arrays: blocks merge exactly, outlines, holes, change kind."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import shapely
from affine import Affine
from scipy import ndimage
from shapely.geometry import Polygon, box

from change_detection.vectorize import (
    VectorizeParams,
    block_pieces,
    change_kind,
    fill_holes,
    finish_polygons,
    grow_pending,
    halo_px,
    merge_pieces,
    polygons_from_proba,
    regularize,
)

T = Affine(0.5, 0, 600_000, 0, -0.5, 3_400_000)


def _blobs(size: int = 300, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    field = ndimage.gaussian_filter(rng.standard_normal((size, size)), 6)
    return (1 / (1 + np.exp(-field / field.std() * 3))).astype(np.float32)


def _blockwise(proba: np.ndarray, params: VectorizeParams, block: int) -> list[dict]:
    """Polygons computed as ``weijian detect`` does: blocks with a halo, merged, then grown."""
    halo, n = halo_px(params), proba.shape[0]
    pieces = []
    for r0 in range(0, n, block):
        for c0 in range(0, n, block):
            r1, c1 = min(r0 + block, n), min(c0 + block, n)
            R0, C0, R1, C1 = (
                max(0, r0 - halo),
                max(0, c0 - halo),
                min(n, r1 + halo),
                min(n, c1 + halo),
            )
            sub = proba[R0:R1, C0:C1]
            pieces += block_pieces(
                sub,
                np.ones_like(sub, bool),
                None,
                params,
                core=(slice(r0 - R0, r1 - R0), slice(c0 - C0, c1 - C0)),
                offset=(c0, r0),
                interior_edges=(r0 > 0, r1 < n, c0 > 0, c1 < n),
                gsd_m=T.a,
            )
    merged = merge_pieces(pieces)
    if params.cores:
        assert any(p.pending for p in merged)  # some regions do cross block borders
        merged = grow_pending(merged, lambda a, b, c, d: (proba[a:b, c:d], None), params, T.a)
    return finish_polygons(merged, T, params)


def _assert_same(whole: list[dict], blocked: list[dict]) -> None:
    assert len(blocked) == len(whole)
    key = lambda r: (r["n_px"], r["score_mean"])  # noqa: E731
    for a, b in zip(sorted(whole, key=key), sorted(blocked, key=key), strict=True):
        assert a["n_px"] == b["n_px"]
        assert abs(a["score_mean"] - b["score_mean"]) < 1e-9
        assert a["geometry"].symmetric_difference(b["geometry"]).area < 1e-6


def test_blocks_with_halo_give_the_same_polygons_as_the_whole_array() -> None:
    proba = _blobs()
    params = VectorizeParams(threshold=0.6, min_area_m2=1.0, max_hole_m2=5.0)
    whole = polygons_from_proba(proba, T, params)
    assert len(whole) > 10
    _assert_same(whole, _blockwise(proba, params, 128))


def test_seeded_core_objects_blockwise_equal_the_whole_array() -> None:
    # quantised like the stored probability raster (many equal values: ties in the flooding)
    proba = np.round(_blobs(seed=3) * 254) / 254
    params = VectorizeParams(
        threshold=0.6, min_area_m2=1.0, core_threshold=0.8, core_min_area_m2=1.0, grow_margin=0.2
    )
    whole = polygons_from_proba(proba, T, params)
    assert len(whole) > 10
    # more objects than regions: cores split some regions, and some objects touch
    regions = polygons_from_proba(proba, T, replace(params, core_threshold=0.0, threshold=0.4))
    assert len(whole) > len([r for r in regions if r["score_max"] >= 0.8])
    for block in (64, 97):
        _assert_same(whole, _blockwise(proba, params, block))


def test_nodata_never_becomes_a_polygon() -> None:
    proba = np.zeros((100, 100), np.float32)
    proba[20:60, 20:60] = 0.9
    proba[:, 40:] = np.nan  # nodata: half of the square
    out = polygons_from_proba(proba, T, VectorizeParams(threshold=0.5, min_area_m2=0))
    assert len(out) == 1
    minx = T.c + 40 * 0.5
    assert out[0]["geometry"].bounds[2] <= minx + 1e-6


def test_speck_removed_and_minimum_area_in_square_metres() -> None:
    proba = np.zeros((100, 100), np.float32)
    proba[10, 10] = 1.0  # one pixel: opened away
    proba[50:56, 50:56] = 1.0  # 36 px = 9 m²
    proba[20:40, 60:90] = 1.0  # 600 px = 150 m²
    params = VectorizeParams(threshold=0.5, min_area_m2=10.0, regularize=False)
    out = polygons_from_proba(proba, T, params)
    assert [round(r["area_m2"]) for r in out] == [150]
    assert out[0]["score_mean"] == 1.0 and out[0]["score_max"] == 1.0


def test_hysteresis_seed_drops_objects_that_never_reach_it() -> None:
    proba = np.zeros((100, 100), np.float32)
    proba[10:30, 10:40] = 0.6  # above the cut everywhere, never confident
    proba[50:70, 50:80] = 0.6
    proba[60, 65] = 0.95  # one confident pixel seeds the whole object
    params = VectorizeParams(threshold=0.5, opening_px=0, regularize=False)
    assert len(polygons_from_proba(proba, T, params)) == 2
    seeded = polygons_from_proba(proba, T, replace(params, min_score_max=0.8))
    assert len(seeded) == 1
    assert seeded[0]["score_max"] == np.float32(0.95) and round(seeded[0]["area_m2"]) == 150


def test_regularize_squares_a_ragged_rectangle_and_keeps_its_area() -> None:
    rng = np.random.default_rng(0)
    mask = np.zeros((80, 80), bool)
    mask[20:50, 10:60] = True
    mask[20, 10:60] = rng.random(50) > 0.5  # ragged top edge
    poly = polygons_from_proba(
        mask.astype(np.float32), Affine.identity(), VectorizeParams(min_area_m2=0, opening_px=0)
    )[0]["geometry"]
    assert len(poly.exterior.coords) == 5  # four corners
    assert abs(poly.area - mask.sum()) / mask.sum() < 0.01


def test_regularize_keeps_an_l_shape() -> None:
    ell = shapely.union_all([box(0, 0, 40, 10), box(0, 0, 10, 30)])
    out = regularize(ell, gsd_m=0.5)
    assert out.symmetric_difference(ell).area < 1.0
    assert len(out.exterior.coords) == 7


def test_small_holes_filled_large_holes_kept() -> None:
    outer = [(0, 0), (50, 0), (50, 50), (0, 50)]
    small = [(10, 10), (12, 10), (12, 12), (10, 12)]
    large = [(20, 20), (40, 20), (40, 40), (20, 40)]
    poly = Polygon(outer, [small, large])
    filled = fill_holes(poly, max_hole_m2=100.0)
    assert len(filled.interiors) == 1 and Polygon(filled.interiors[0]).area == 400


def test_change_kind_from_the_excess_green_cue() -> None:
    assert change_kind(-0.3) == "appeared"
    assert change_kind(0.3) == "disappeared"
    assert change_kind(0.01) == "unknown"
    assert change_kind(float("nan")) == "unknown"


def _two_houses() -> np.ndarray:
    proba = np.zeros((40, 60), np.float32)
    proba[10:30, 5:25] = proba[10:30, 35:55] = 0.9  # two 10 m x 10 m houses ...
    proba[16:24, 25:35] = 0.35  # ... joined by a weak halo above the cut
    return proba


def test_a_region_too_large_to_split_is_one_object_blockwise_and_whole() -> None:
    proba = np.round(_blobs(seed=3) * 254) / 254
    params = VectorizeParams(
        threshold=0.6, min_area_m2=1.0, core_threshold=0.8, core_min_area_m2=1.0, grow_margin=0.2
    )
    capped = replace(params, core_max_box_px=3000)
    split, whole = polygons_from_proba(proba, T, params), polygons_from_proba(proba, T, capped)
    assert len(whole) < len(split)  # large regions are no longer split
    big = [r for r in whole if r["n_px"] > 3000]
    assert big and all(r["score_max"] >= 0.8 for r in whole)
    for block in (64, 97):  # capped regions crossing blocks are never read back nor grown
        _assert_same(whole, _blockwise(proba, capped, block))


def test_seeded_cores_separate_two_houses_joined_by_a_weak_bridge() -> None:
    params = VectorizeParams(threshold=0.3, opening_px=0, min_area_m2=10, regularize=False)
    assert len(polygons_from_proba(_two_houses(), T, params)) == 1  # one component
    cored = replace(params, core_threshold=0.7, core_min_area_m2=4.0, grow_margin=0.0)
    houses = polygons_from_proba(_two_houses(), T, cored)
    assert len(houses) == 2
    a, b = (r["geometry"] for r in houses)
    assert a.intersection(b).area == 0 and a.touches(b)  # one border shared, no overlap
    assert sorted(r["n_px"] for r in houses) == [440, 440]  # each takes half of the bridge


def test_objects_never_grow_under_half_a_low_threshold() -> None:
    """Weights with threshold 0.11 and the default margin 0.1 must not tile the scene."""
    proba = np.full((60, 60), 0.03, np.float32)  # faint background everywhere
    proba[10:30, 10:30] = 0.9  # one confident house
    params = VectorizeParams(
        threshold=0.11, opening_px=0, regularize=False, core_threshold=0.6, core_min_area_m2=2.0
    )
    assert abs(params.mask_threshold - 0.055) < 1e-9  # not 0.01
    assert [r["n_px"] for r in polygons_from_proba(proba, T, params)] == [400]
    assert VectorizeParams(threshold=0.31, core_threshold=0.6).mask_threshold == 0.31 - 0.1


def test_a_region_without_a_core_is_dropped_and_small_cores_seed_nothing() -> None:
    proba = np.zeros((60, 60), np.float32)
    proba[5:25, 5:25] = 0.9  # a confident house
    proba[35:55, 5:25] = 0.6  # a weak response: no core
    proba[35:55, 35:55] = 0.6
    proba[44:46, 44:46] = 0.95  # a 1 m² core: under core_min_area_m2
    params = VectorizeParams(
        threshold=0.5, opening_px=0, regularize=False, core_threshold=0.8, core_min_area_m2=2.0
    )
    out = polygons_from_proba(proba, T, params)
    assert [r["n_px"] for r in out] == [400]
    assert len(polygons_from_proba(proba, T, replace(params, core_min_area_m2=1.0))) == 2
    # grown down to threshold - grow_margin: the weak squares' halo at 0.45 joins the objects
    proba[4, 5:25] = 0.45
    assert [r["n_px"] for r in polygons_from_proba(proba, T, params)] == [420]
    assert [r["n_px"] for r in polygons_from_proba(proba, T, replace(params, grow_margin=0))] == [
        400
    ]
