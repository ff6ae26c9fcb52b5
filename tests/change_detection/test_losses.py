"""The object-aware loss weighs small buildings and the gaps between buildings more."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from change_detection.losses import lovasz_hinge, object_weights, weighted_bce_dice_loss
from change_detection.training import TrainConfig, bce_dice_loss, train
from tests.change_detection.conftest import tiny_config


def test_weights_favour_small_objects_and_gaps() -> None:
    mask = np.zeros((64, 64), dtype=bool)
    mask[4:34, 4:24] = True  # 600 px: weight 1
    mask[4:34, 27:47] = True  # its neighbour, 3 px away
    mask[50:54, 50:54] = True  # 16 px: small, weight capped at 3
    w = object_weights(mask)
    assert w[10, 10] == pytest.approx(1.0)
    assert w[51, 51] == pytest.approx(3.0)
    gap, open_ground = w[15, 25], w[60, 10]
    assert open_ground == pytest.approx(1.0, abs=1e-3)
    assert gap > 2.0  # the background between the two neighbours
    # a lone object has no gap term and an empty mask weighs 1 everywhere
    assert object_weights(mask[:40, :25]).max() == pytest.approx(1.0)
    assert np.all(object_weights(np.zeros((8, 8), dtype=bool)) == 1)


def test_weighted_loss_equals_plain_loss_on_uniform_weights() -> None:
    torch.manual_seed(0)
    logits = torch.randn(2, 1, 32, 32)
    empty = torch.zeros(2, 1, 32, 32)
    assert weighted_bce_dice_loss(logits, empty).item() == pytest.approx(
        bce_dice_loss(logits, empty).item(), rel=1e-6
    )
    target = empty.clone()
    target[:, :, 2:6, 2:6] = 1  # small: misses there cost more than in the plain loss
    miss = torch.full_like(target, -4.0)
    assert weighted_bce_dice_loss(miss, target) > bce_dice_loss(miss, target)


def test_training_with_object_loss(tmp_path: Path, tiny_folder: Path) -> None:
    cfg = tiny_config(holdout=["tiny/p5"], loss="objects")
    result = train([tiny_folder], tmp_path / "objects", cfg)
    assert result.weights.is_file()
    with pytest.raises(ValueError, match="unknown loss"):
        train([tiny_folder], tmp_path / "bad", TrainConfig(loss="focal", device="cpu"))


def test_lovasz_hinge_rewards_the_right_mask() -> None:
    target = torch.zeros(1, 1, 16, 16)
    target[..., 4:10, 4:10] = 1
    right = (target * 2 - 1) * 3  # margin 3 on every pixel: no hinge error
    wrong = -right
    assert lovasz_hinge(right, target).item() == pytest.approx(0.0, abs=1e-6)
    half = right.clone()
    half[..., 4:10, 4:7] = -3  # half the building missed
    assert 0 < lovasz_hinge(half, target).item() < lovasz_hinge(wrong, target).item()
