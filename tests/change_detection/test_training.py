"""Training: the loss falls on the real pairs; resume; outputs carry metadata."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from change_detection.data import find_pairs, load_pair
from change_detection.networks import build_network
from change_detection.training import TrainConfig, bce_dice_loss, channel_stats, train
from change_detection.weights import load_model


def test_loss_falls_on_real_pairs(real_pairs: Path) -> None:
    """A few optimiser steps on fixed 64-px crops of real pairs lower the BCE + Dice loss."""
    torch.manual_seed(0)
    pairs = [load_pair(f) for f in find_pairs([real_pairs / "levir_256"])][:4]
    mean, std = channel_stats(pairs)
    m = torch.tensor(mean).view(1, 3, 1, 1)
    s = torch.tensor(std).view(1, 3, 1, 1)

    def batch(key: str) -> torch.Tensor:
        return torch.stack(
            [torch.from_numpy(getattr(p, key)[96:160, 96:160].copy()) for p in pairs]
        )

    a = (batch("before").permute(0, 3, 1, 2).float() - m) / s
    b = (batch("after").permute(0, 3, 1, 2).float() - m) / s
    y = batch("label")[:, None].float()
    net = build_network("tinysiam")
    opt = torch.optim.AdamW(net.parameters(), lr=3e-3)
    losses = []
    for _ in range(8):
        loss = bce_dice_loss(net(a, b), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] * 0.9, losses


class _Stop(Exception):
    pass


def _stop_after_first_epoch(event: dict[str, object]) -> None:
    if "val_f1" in event and event["epoch"] == 0:
        raise _Stop


@pytest.mark.slow
def test_train_resume_and_outputs(tmp_path: Path, tiny_folder: Path) -> None:
    cfg = TrainConfig(
        network="fc_siam_diff",
        epochs=2,
        samples_per_epoch=8,
        crop=32,
        batch_size=4,
        val_fraction=0.2,
        holdout=["tiny/p5"],
        synthetic_fraction=0.5,
        device="cpu",
        threads=1,
        patience=5,
    )
    straight = tmp_path / "straight"
    result = train([tiny_folder], straight, cfg)
    # a run interrupted after its first epoch and resumed gives the same second epoch
    stopped = tmp_path / "stopped"
    with pytest.raises(_Stop):
        train([tiny_folder], stopped, cfg, on_progress=_stop_after_first_epoch)
    resumed = train([tiny_folder], stopped, cfg, resume=True)
    rows = [json.loads(x) for x in (straight / "history.jsonl").read_text().splitlines()]
    rows2 = [json.loads(x) for x in (stopped / "history.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows2] == [0, 1]
    assert rows2[1]["loss"] == pytest.approx(rows[1]["loss"], rel=1e-5)

    model = load_model(resumed.weights, device="cpu")
    meta = model.metadata
    assert meta["split"]["heldout"] == ["tiny/p5"]
    assert "tiny/p5" not in meta["split"]["train"] + meta["split"]["validation"]
    assert meta["metrics_heldout"]["per_pair"][0]["pair"] == "tiny/p5"
    assert 0 <= model.threshold <= 1 and len(model.mean) == 3
    assert result.heldout is not None and "curve" in result.heldout
    assert np.isfinite(meta["metrics_validation"]["f1"])
