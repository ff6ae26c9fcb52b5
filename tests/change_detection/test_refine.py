"""change_detection.refine: superpixel and guided refinement, multi-scale inference."""

from __future__ import annotations

import numpy as np
import pytest

from change_detection import ChangeModel, predict_proba
from change_detection.errors import InputError
from change_detection.refine import (
    GuidedParams,
    SuperpixelParams,
    guided_filter,
    guided_halo_px,
    proba_at_scale,
    superpixel_labels,
    superpixel_mean,
    superpixel_refine,
)


def _two_roofs(size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """A grey before image and an after image with a bright roof on the left half."""
    before = np.full((size, size, 3), 90, np.uint8)
    after = before.copy()
    after[8:56, 12:36] = (230, 210, 200)
    return before, after


def test_guided_filter_follows_the_guides_edge() -> None:
    before, after = _two_roofs()
    # the network found only the roof's upper half, with a soft edge
    proba = np.zeros((64, 64), np.float32)
    proba[8:32, 12:36] = 0.9
    out = guided_filter(proba, before, after, GuidedParams(radius_px=4, eps=1e-3))
    assert out.dtype == np.float32 and out.shape == proba.shape
    assert 0 <= out.min() and out.max() <= 1
    # across the roof's outline (column 36) the output keeps a step; off the roof it stays low
    assert out[20, 34] - out[20, 38] > 0.5
    assert out[40, 50] < 0.05
    # where the roof continues without change in the probability, the guide carries some of it
    assert out[34, 24] > proba[34, 24] + 0.1


def test_guided_filter_flat_guide_is_a_local_mean_and_radius_0_is_identity() -> None:
    flat = np.full((32, 32, 3), 100, np.uint8)
    rng = np.random.default_rng(1)
    proba = rng.random((32, 32)).astype(np.float32)
    out = guided_filter(proba, flat, flat, GuidedParams(radius_px=2, eps=1e-2))
    assert out.std() < proba.std() / 2  # smoothed where the image has no edge
    np.testing.assert_array_equal(guided_filter(proba, flat, flat, GuidedParams(0, 1e-2)), proba)


def test_guided_filter_blockwise_with_its_halo_equals_the_whole_array() -> None:
    rng = np.random.default_rng(2)
    before = rng.integers(0, 256, (96, 80, 3), dtype=np.uint8)
    after = rng.integers(0, 256, (96, 80, 3), dtype=np.uint8)
    proba = rng.random((96, 80)).astype(np.float32)
    params = GuidedParams(radius_px=3, eps=1e-2)
    whole = guided_filter(proba, before, after, params)
    halo = guided_halo_px(params)
    r0, r1, c0, c1 = 40, 70, 20, 60  # an interior block
    box = (slice(r0 - halo, r1 + halo), slice(c0 - halo, c1 + halo))
    part = guided_filter(proba[box], before[box], after[box], params)
    np.testing.assert_allclose(part[halo:-halo, halo:-halo], whole[r0:r1, c0:c1], atol=1e-6)


def test_nodata_stays_nodata() -> None:
    before, after = _two_roofs(32)
    proba = np.full((32, 32), 0.5, np.float32)
    proba[:, :4] = np.nan
    out = guided_filter(proba, before, after, GuidedParams(2, 1e-2))
    assert np.isnan(out[:, :4]).all() and np.isfinite(out[:, 4:]).all()
    out = superpixel_refine(proba, before, after, 0.5, SuperpixelParams(4.0, 10.0, 1.0))
    assert np.isnan(out[:, :4]).all() and np.isfinite(out[:, 4:]).all()


def test_superpixels_follow_the_roof_and_fill_it() -> None:
    before, after = _two_roofs()
    labels = superpixel_labels(before, after, gsd_m=0.5, superpixel_m2=16.0, compactness=10.0)
    assert labels.shape == (64, 64)
    roof = np.zeros((64, 64), bool)
    roof[8:56, 12:36] = True
    # no superpixel straddles the roof's outline (an edge in the after image)
    for k in np.unique(labels):
        inside = roof[labels == k]
        assert inside.all() or not inside.any()
    # about 16 m² (64 px at 0.5 m) each
    assert 30 < 64 * 64 / len(np.unique(labels)) < 130
    proba = np.zeros((64, 64), np.float32)
    proba[8:32, 12:36] = 0.9  # half the roof
    mean = superpixel_mean(proba, labels)
    for k in np.unique(labels):
        assert np.ptp(mean[labels == k]) == 0
    out = superpixel_refine(proba, before, after, 0.5, SuperpixelParams(16.0, 10.0, 0.5))
    np.testing.assert_allclose(out, 0.5 * proba + 0.5 * mean, atol=1e-6)
    assert not out[~roof].any()  # the change does not leak off the roof
    same = superpixel_refine(proba, before, after, 0.5, SuperpixelParams(16.0, 10.0, 0.0))
    np.testing.assert_array_equal(same, proba)
    given = superpixel_refine(proba, before, after, 0.5, SuperpixelParams(16.0, 10.0, 0.5), labels)
    np.testing.assert_array_equal(given, out)


def test_mismatched_shapes_are_refused() -> None:
    before, after = _two_roofs(32)
    with pytest.raises(InputError, match="differ"):
        guided_filter(np.zeros((16, 16), np.float32), before, after, GuidedParams())


def test_proba_at_scale_is_another_view_on_the_same_grid(model: ChangeModel) -> None:
    rng = np.random.default_rng(3)
    a = rng.integers(0, 256, (40, 56, 3), dtype=np.uint8)
    b = rng.integers(0, 256, (40, 56, 3), dtype=np.uint8)
    p1 = predict_proba(model, a, b)
    p15 = proba_at_scale(model, a, b, 1.5)
    assert p15.shape == (40, 56) and p15.dtype == np.float32
    assert not np.allclose(p15, p1)  # another view of the pair
    np.testing.assert_array_equal(proba_at_scale(model, a, b, 1.0), p1)
    with pytest.raises(InputError, match="positive"):
        proba_at_scale(model, a, b, 0.0)
