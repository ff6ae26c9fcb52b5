"""Data folders: layout checks, scene-wise split, augmentation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from change_detection.data import (
    IGNORE,
    UNKNOWN,
    TrainingSamples,
    drop_contained_crops,
    find_pairs,
    load_pair,
    scene_of,
    split_pairs,
)
from change_detection.errors import ChangeDetectionError, DatasetError, DatasetNotFoundError


def test_layout_errors_say_how_to_fix(tmp_path: Path, tiny_folder: Path) -> None:
    with pytest.raises(DatasetNotFoundError):
        find_pairs([tmp_path / "nowhere"])
    (tmp_path / "bad" / "A").mkdir(parents=True)
    with pytest.raises(DatasetError, match="lacks B/, label/"):
        find_pairs([tmp_path / "bad"])
    (tiny_folder / "label" / "p0.png").rename(tiny_folder / "label" / "other.png")
    with pytest.raises(DatasetError, match="same file names"):
        find_pairs([tiny_folder])


def test_size_mismatch(tiny_folder: Path) -> None:
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(tiny_folder / "label" / "p1.png")
    files = {p.name: p for p in find_pairs([tiny_folder])}
    with pytest.raises(ChangeDetectionError, match="sizes differ"):
        load_pair(files["tiny/p1"])


def test_empty_label_folder_and_non_binary_labels(tiny_folder: Path) -> None:
    grey = np.zeros((64, 64), np.uint8)
    grey[:10], grey[10:20] = 128, 255  # three values: a grey-level picture, not a mask
    Image.fromarray(grey).save(tiny_folder / "label" / "p2.png")
    files = {p.name: p for p in find_pairs([tiny_folder])}
    with pytest.raises(DatasetError, match=r"tiny/p2 is not binary \(values 0, 128, 255\)"):
        load_pair(files["tiny/p2"])
    ones = (grey > 0).astype(np.uint8)  # 0/1 masks are binary too
    Image.fromarray(ones).save(tiny_folder / "label" / "p2.png")
    assert load_pair(files["tiny/p2"]).label.sum() == 20 * 64
    for label in (tiny_folder / "label").iterdir():
        label.unlink()
    with pytest.raises(DatasetError, match="A/ and label/ do not hold the same file names"):
        find_pairs([tiny_folder])


def test_scene_split_keeps_crops_with_their_tile(real_pairs: Path) -> None:
    assert scene_of("levir_256", "test_102_0512_0000") == scene_of("levir_1024", "test_102")
    files = find_pairs([real_pairs / d for d in ("levir_256", "levir_1024", "dsifn_256")])
    assert len(files) == 24
    train, val, held = split_pairs(files, ["levir_1024/test_102"], 0.15, seed=0)
    held_names = {p.name for p in held}
    assert held_names == {"levir_1024/test_102", "levir_256/test_102_0512_0000"}
    # test_7 and its crop levir_256/test_7_0256_0512 fall on one side together
    for part in (train, val):
        names = {p.name for p in part}
        assert ("levir_1024/test_7" in names) == ("levir_256/test_7_0256_0512" in names)
    assert len(train) + len(val) + len(held) == 24
    # seeded and independent of order
    again = split_pairs(list(reversed(files)), ["levir_1024/test_102"], 0.15, seed=0)
    assert {p.name for p in again[1]} == {p.name for p in val}
    assert [p.name for p in drop_contained_crops(held)] == ["levir_1024/test_102"]


def test_samples_are_seeded_and_augmented(tiny_folder: Path) -> None:
    pairs = [load_pair(f) for f in find_pairs([tiny_folder])]
    ds = TrainingSamples(pairs, crop=48, length=4, seed=3, synthetic_fraction=0.5)
    a, b, m = ds[1]
    assert a.shape == b.shape == (3, 48, 48) and m.shape == (1, 48, 48)
    assert 0 <= float(a.min()) and float(a.max()) <= 255
    assert set(torch.unique(m).tolist()) <= {0.0, 1.0}
    again = ds[1]
    assert all(torch.equal(x, y) for x, y in zip((a, b, m), again, strict=True))
    ds.set_epoch(1)
    assert not torch.equal(ds[1][0], a)


def test_explicit_validation_patterns(tiny_folder: Path) -> None:
    files = find_pairs([tiny_folder])
    train, val, held = split_pairs(files, ["tiny/p0"], validation=["tiny/p1", "tiny/p2"])
    assert [p.name for p in val] == ["tiny/p1", "tiny/p2"]
    assert [p.name for p in held] == ["tiny/p0"]
    assert len(train) == 3


def test_partly_labelled_pairs_mark_unknown_pixels(tiny_folder: Path) -> None:
    """127 in a label is "unknown": kept apart from change, and IGNORE in the training masks."""
    grey = np.full((64, 64), UNKNOWN, np.uint8)
    grey[:20] = 0  # decided: no change
    grey[20:30, :10] = 255  # decided: change
    Image.fromarray(grey).save(tiny_folder / "label" / "p3.png")
    files = {p.name: p for p in find_pairs([tiny_folder])}
    pair = load_pair(files["tiny/p3"])
    assert pair.known is not None and int(pair.known.sum()) == 20 * 64 + 10 * 10
    assert int(pair.label.sum()) == 100 and not pair.label[30:].any()
    assert load_pair(files["tiny/p0"]).known is None  # fully labelled
    ds = TrainingSamples([pair], crop=64, length=2, seed=0, scale_range=(1.0, 1.0))
    mask = ds[0][2]
    assert set(torch.unique(mask).tolist()) == {IGNORE, 0.0, 1.0}
    assert int((mask == IGNORE).sum()) == 64 * 64 - int(pair.known.sum())
    grey[40:] = 128  # a fourth value is still refused
    Image.fromarray(grey).save(tiny_folder / "label" / "p3.png")
    with pytest.raises(DatasetError, match="not binary"):
        load_pair(files["tiny/p3"])
