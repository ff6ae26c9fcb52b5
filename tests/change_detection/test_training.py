"""Training: the loss falls on the real pairs; resume; outputs carry metadata."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from change_detection.data import IGNORE, find_pairs, load_pair
from change_detection.errors import WeightsError
from change_detection.networks import build_network
from change_detection.training import (
    TrainConfig,
    average_epochs,
    bce_dice_loss,
    channel_stats,
    distillation_loss,
    top_epochs,
    train,
)
from change_detection.weights import load_model
from tests.change_detection.conftest import history, tiny_config


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


def test_masked_loss_ignores_unknown_pixels() -> None:
    """Unknown pixels (partial labels) change neither the loss nor the gradient."""
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 1, 16, 16, generator=gen, requires_grad=True)
    target = (torch.rand(2, 1, 16, 16, generator=gen) > 0.7).float()
    full = bce_dice_loss(logits, target)
    # without unknown pixels the loss is plain BCE + soft Dice
    p = torch.sigmoid(logits)
    dice = 1 - (2 * (p * target).sum() + 1) / (p.sum() + target.sum() + 1)
    plain = torch.nn.functional.binary_cross_entropy_with_logits(logits, target) + dice
    assert full.item() == pytest.approx(plain.item(), rel=1e-6)
    unknown = torch.zeros_like(target, dtype=torch.bool)
    unknown[:, :, :, 8:] = True
    partial = torch.where(unknown, torch.full_like(target, IGNORE), target)
    loss = bce_dice_loss(logits, partial)
    # the same as the loss over the known pixels alone
    known_only = bce_dice_loss(
        logits[~unknown].view(1, 1, 1, -1), target[~unknown].view(1, 1, 1, -1)
    )
    assert loss.item() == pytest.approx(known_only.item(), rel=1e-6)
    loss.backward()
    assert logits.grad is not None
    assert float(logits.grad[unknown].abs().max()) == 0.0
    assert float(logits.grad[~unknown].abs().max()) > 0.0
    # whatever the network says on unknown pixels does not matter
    other = logits.detach().clone()
    other[unknown] = 20.0
    assert bce_dice_loss(other, partial).item() == pytest.approx(loss.item(), rel=1e-6)


def test_distillation_acts_on_unknown_pixels_only() -> None:
    """On unknown pixels the fine-tuned network is pulled to its parent's probability."""
    target = torch.zeros(1, 1, 4, 4)
    target[..., 2:, :] = IGNORE
    teacher = torch.full_like(target, 2.0)
    logits = torch.zeros_like(target, requires_grad=True)
    loss = distillation_loss(logits, target, teacher)
    loss.backward()
    assert logits.grad is not None
    assert float(logits.grad[..., :2, :].abs().max()) == 0.0  # decided pixels: not its business
    assert float(logits.grad[..., 2:, :].max()) < 0  # pushed up, towards the teacher's 0.88
    at_teacher = distillation_loss(teacher.clone(), target, teacher)
    assert at_teacher.item() < loss.item()
    assert distillation_loss(logits, torch.zeros_like(target), teacher).item() == 0.0


def test_partial_labels_do_not_teach_missing_changes(real_pairs: Path) -> None:
    """Fine-tuning the shipped model on a real crop decided only in one strip keeps the others.

    Labelling undecided pixels "no change" (the old review chips) drives the probability of the
    buildings nobody decided down; marking them unknown leaves them as the network saw them.
    """
    files = find_pairs([real_pairs / "levir_256"])
    pair = load_pair(next(f for f in files if f.name == "levir_256/test_55_0256_0000"))
    truth = torch.from_numpy(pair.label.copy())[None, None].float()
    rows = np.nonzero(pair.label.any(axis=1))[0]
    decided = torch.zeros_like(truth, dtype=torch.bool)
    decided[..., int(rows[0]) : int(rows[0]) + 32, :] = True  # one strip with a building
    other_buildings = (truth > 0) & ~decided
    assert int(other_buildings.sum()) > 500  # the crop has buildings nobody decided
    partial = torch.where(decided, truth, torch.full_like(truth, IGNORE))
    as_negative = torch.where(decided, truth, torch.zeros_like(truth))
    means = {}
    for name, target in (("unknown", partial), ("no change", as_negative)):
        model = load_model("tinysiam", device="cpu")
        m = torch.tensor(model.mean).view(1, 3, 1, 1)
        s = torch.tensor(model.std).view(1, 3, 1, 1)
        a = (torch.from_numpy(pair.before.copy()).permute(2, 0, 1)[None].float() - m) / s
        b = (torch.from_numpy(pair.after.copy()).permute(2, 0, 1)[None].float() - m) / s
        net = model.net.float().train()
        opt = torch.optim.AdamW(net.parameters(), lr=5e-4)
        torch.manual_seed(0)
        for _ in range(10):
            loss = bce_dice_loss(net(a, b), target)
            opt.zero_grad()
            loss.backward()
            opt.step()
        net.eval()
        with torch.no_grad():
            proba = torch.sigmoid(net(a, b))
        means[name] = float(proba[other_buildings].mean())
    assert means["unknown"] > means["no change"] + 0.05, means


class _Stop(Exception):
    pass


def _stop_after_first_epoch(event: dict[str, object]) -> None:
    if "val_f1" in event and event["epoch"] == 0:
        raise _Stop


@pytest.mark.slow
def test_train_resume_and_outputs(tmp_path: Path, tiny_folder: Path) -> None:
    cfg = tiny_config(
        network="fc_siam_diff",
        epochs=2,
        val_fraction=0.2,
        holdout=["tiny/p5"],
        synthetic_fraction=0.5,
        patience=5,
    )
    straight = tmp_path / "straight"
    result = train([tiny_folder], straight, cfg)
    # a run interrupted after its first epoch and resumed gives the same second epoch
    stopped = tmp_path / "stopped"
    with pytest.raises(_Stop):
        train([tiny_folder], stopped, cfg, on_progress=_stop_after_first_epoch)
    resumed = train([tiny_folder], stopped, cfg, resume=True)
    rows = history(straight)
    rows2 = history(stopped)
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


def test_wider_tinysiam_is_stored_and_fine_tuned(tmp_path: Path, tiny_folder: Path) -> None:
    """A tinysiam with other widths keeps them in its file: it loads and fine-tunes as it is."""
    cfg = tiny_config(
        network_kwargs={"widths": [24, 32, 64, 128], "decoder": 64}, holdout=["tiny/p5"]
    )
    first = train([tiny_folder], tmp_path / "wide", cfg)
    model = load_model(first.weights, device="cpu")
    assert model.metadata["parameters"] > 500_000  # the shipped tinysiam has 295,809
    assert sum(p.numel() for p in model.net.parameters()) == model.metadata["parameters"]
    tuned_cfg = tiny_config(init_weights=str(first.weights), fixed_threshold=0.42)
    tuned = load_model(train([tiny_folder], tmp_path / "tuned", tuned_cfg).weights, "cpu")
    assert tuned.metadata["parameters"] == model.metadata["parameters"]
    assert tuned.threshold == 0.42


def test_average_top_epochs(tmp_path: Path, tiny_folder: Path) -> None:
    """--average-top K: the final weights are the mean of the K best epochs' weights files."""
    cfg = tiny_config(epochs=3, val_fraction=0.2, holdout=["tiny/p5"], average_top=2)
    out = tmp_path / "avg"
    result = train([tiny_folder], out, cfg)
    assert sorted(p.name for p in (out / "epochs").iterdir()) == [
        "epoch_01.pt",
        "epoch_02.pt",
        "epoch_03.pt",
    ]
    rows = history(out)
    scores = {r["epoch"]: r["val"]["best_f1"] for r in rows}
    chosen = top_epochs(out / "history.jsonl", 2)
    assert len(chosen) == 2
    assert min(scores[e] for e in chosen) >= max(scores[e] for e in scores if e not in chosen)
    final = load_model(result.weights, device="cpu")
    assert final.metadata["averaged_epochs"] == chosen
    assert 0 <= final.threshold <= 1
    members = [load_model(out / "epochs" / f"epoch_{e + 1:02d}.pt", "cpu") for e in chosen]
    for key, value in final.net.state_dict().items():
        if value.is_floating_point():
            mean = (members[0].net.state_dict()[key] + members[1].net.state_dict()[key]) / 2
            # the file stores float16
            assert torch.allclose(value, mean, atol=2e-3, rtol=2e-3), key
    # one epoch "averaged" is that epoch
    single = average_epochs(out, [chosen[0]])
    for key, value in single.net.state_dict().items():
        assert torch.equal(value, members[0].net.state_dict()[key]), key


def test_average_epochs_needs_kept_epochs(tmp_path: Path) -> None:
    """Averaging a run trained without --keep-epochs says how to get the files."""
    from change_detection.errors import WeightsError

    with pytest.raises(WeightsError, match="--keep-epochs"):
        average_epochs(tmp_path, [0, 1])


def test_an_ensemble_is_not_fine_tuned_as_one_network(tmp_path: Path, tiny_folder: Path) -> None:
    """``--init-weights`` of an ensemble file: one clear error naming what to do instead."""
    from change_detection.weights import shipped_weights

    cfg = tiny_config(init_weights=str(shipped_weights("tinysiam_ensemble")))
    with pytest.raises(WeightsError, match="is an ensemble of 3 tinysiam networks: fine-tune each"):
        train([tiny_folder], tmp_path / "tuned", cfg)
    assert not (tmp_path / "tuned" / "model.pt").exists()


def test_training_imports_no_gdal() -> None:
    """Training and evaluation load without rasterio or the vector stack (a bare GPU machine)."""
    code = (
        "import sys, change_detection, change_detection.training, change_detection.evaluation\n"
        "heavy = [m for m in ('rasterio', 'shapely', 'geopandas', 'pyproj', 'ingest') "
        "if m in sys.modules]\n"
        "assert not heavy, heavy\n"
        "from change_detection import detect_pair\n"
        "assert 'rasterio' in sys.modules\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_refused_inputs_leave_no_output_folder(tmp_path: Path, tiny_folder: Path) -> None:
    """A missing data folder or unusable start weights: the error, and no empty ``out`` left."""
    from change_detection.errors import DatasetNotFoundError
    from change_detection.weights import shipped_weights

    cfg = TrainConfig(epochs=1, samples_per_epoch=8, crop=32, batch_size=4, device="cpu")
    with pytest.raises(DatasetNotFoundError, match="nosuchdir does not exist"):
        train([tmp_path / "nosuchdir"], tmp_path / "out" / "run", cfg)
    assert not (tmp_path / "out").exists()
    cfg.init_weights = str(shipped_weights("tinysiam_ensemble"))
    with pytest.raises(WeightsError, match="is an ensemble"):
        train([tiny_folder], tmp_path / "tuned", cfg)
    assert not (tmp_path / "tuned").exists()
