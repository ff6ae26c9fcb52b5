"""Synthetic pairs: seeded, roofs labelled, negatives empty."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from change_detection.data import find_pairs, load_pair
from change_detection.synthetic import synthetic_pair, write_dataset


def _background() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(60, 140, (128, 128, 3), dtype=np.uint8)


def test_seeded_and_consistent() -> None:
    bg = _background()
    one = synthetic_pair(bg, np.random.default_rng(5), negative_share=0.0)
    two = synthetic_pair(bg, np.random.default_rng(5), negative_share=0.0)
    assert all(np.array_equal(x, y) for x, y in zip(one, two, strict=True))
    before, after, mask = one
    assert before.dtype == after.dtype == np.uint8 and mask.dtype == bool
    assert np.array_equal(before, bg)
    assert mask.any()
    # roofs change the image far more than the illumination shift does elsewhere
    diff = np.abs(after.astype(int) - before.astype(int)).mean(axis=2)
    assert diff[mask].mean() > diff[~mask].mean()


def test_negatives_are_illumination_only() -> None:
    before, after, mask = synthetic_pair(
        _background(), np.random.default_rng(1), negative_share=1.0
    )
    assert not mask.any()
    assert not np.array_equal(before, after)


def test_write_dataset_is_a_levir_folder(tmp_path: Path) -> None:
    write_dataset(tmp_path / "syn", [_background()], count=3, seed=0, size=64)
    pairs = [load_pair(f) for f in find_pairs([tmp_path / "syn"])]
    assert len(pairs) == 3 and pairs[0].label.shape == (64, 64)
