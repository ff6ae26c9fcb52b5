"""predict_proba: layouts, dtypes, odd sizes, determinism, errors."""

from __future__ import annotations

import numpy as np
import pytest

from change_detection import ChangeModel, predict_proba
from change_detection.errors import InputError
from change_detection.inference import resample


def test_layouts_and_dtypes_agree(model: ChangeModel) -> None:
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (50, 70, 3), dtype=np.uint8)  # not a multiple of 16
    b = rng.integers(0, 256, (50, 70, 3), dtype=np.uint8)
    p = predict_proba(model, a, b)
    assert p.shape == (50, 70) and p.dtype == np.float32
    assert 0 <= p.min() and p.max() <= 1
    np.testing.assert_array_equal(
        predict_proba(model, a.transpose(2, 0, 1), b.transpose(2, 0, 1)), p
    )
    rgba = np.concatenate([a, np.full((50, 70, 1), 255, np.uint8)], axis=2)
    np.testing.assert_array_equal(
        predict_proba(model, rgba, np.concatenate([b, rgba[..., 3:]], 2)), p
    )
    # uint16 with an explicit full-scale value is the same picture
    p16 = predict_proba(
        model, a.astype(np.uint16) * 257, b.astype(np.uint16) * 257, max_value=65535
    )
    np.testing.assert_allclose(p16, p, atol=1e-4)


def test_deterministic(model: ChangeModel) -> None:
    rng = np.random.default_rng(1)
    a, b = (rng.integers(0, 256, (64, 64, 3), dtype=np.uint8) for _ in range(2))
    np.testing.assert_array_equal(predict_proba(model, a, b), predict_proba(model, a, b))


def test_input_errors(model: ChangeModel) -> None:
    a = np.zeros((32, 32, 3), np.uint8)
    with pytest.raises(InputError, match="differ"):
        predict_proba(model, a, np.zeros((32, 40, 3), np.uint8))
    with pytest.raises(InputError, match="3-D"):
        predict_proba(model, a[..., 0], a[..., 0])
    with pytest.raises(InputError, match="max_value"):
        predict_proba(model, a.astype(np.float32), a.astype(np.float32))


def test_tta_is_equivariant_and_deterministic(model: ChangeModel) -> None:
    """Averaging over the 8 flips/rotations gives a flip-equivariant map of the same shape."""
    rng = np.random.default_rng(2)
    a, b = (rng.integers(0, 256, (48, 64, 3), dtype=np.uint8) for _ in range(2))
    p = predict_proba(model, a, b, tta=True)
    assert p.shape == (48, 64) and 0 <= p.min() and p.max() <= 1
    assert not np.array_equal(p, predict_proba(model, a, b))  # it does average something
    flipped = predict_proba(model, a[:, ::-1], b[:, ::-1], tta=True)
    np.testing.assert_allclose(flipped[:, ::-1], p, atol=1e-5)
    rotated = predict_proba(model, np.rot90(a), np.rot90(b), tta=True)
    np.testing.assert_allclose(np.rot90(rotated, -1), p, atol=1e-5)


def test_gsd_resamples_to_the_model_grid(model: ChangeModel) -> None:
    """A pair at half the model's GSD is predicted on the model's grid and mapped back."""
    rng = np.random.default_rng(3)
    # smooth images (random 8x8 enlarged), so the change map varies slowly enough to compare
    a, b = (resample(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8), (64, 64)) for _ in range(2))
    fine_a, fine_b = (np.repeat(np.repeat(x, 2, 0), 2, 1) for x in (a, b))  # 0.25 m/px
    p = predict_proba(model, fine_a, fine_b, gsd_m=model.gsd_m / 2)
    assert p.shape == (128, 128)
    coarse = predict_proba(model, a, b)
    # the resampled input is exactly the 0.5 m pair (2x2 block means): the maps agree up to the
    # bilinear interpolation of the probability back onto the fine grid
    assert np.abs(p[::2, ::2] - coarse).mean() < 0.01
    assert np.abs(p[::2, ::2] - coarse).max() < 0.2
    same = predict_proba(model, a, b, gsd_m=model.gsd_m * 1.005)  # within 1 %: untouched
    np.testing.assert_array_equal(same, coarse)
    with pytest.raises(InputError, match="gsd_m"):
        predict_proba(model, a, b, gsd_m=0)
