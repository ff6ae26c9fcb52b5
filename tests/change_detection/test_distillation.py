"""Distilling an ensemble of teachers into one network (``weijian train --teacher``)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from change_detection.data import IGNORE
from change_detection.errors import WeightsError
from change_detection.training import (
    distillation_loss,
    train,
)
from change_detection.weights import (
    load_model,
    network_kwargs_of,
    save_ensemble_weights,
    save_weights,
)
from ingest.scene import sha256_file
from tests.change_detection.conftest import history, tiny_config, write_folder
from weijian.cli import app

#: a fixed split (validation and held-out named), so every seed normalises alike, as the shipped
#: recipe's seeds do
CONFIG = tiny_config(epochs=2, holdout=["tiny/p5"], validation=["tiny/p4"], patience=5)


@pytest.fixture(scope="module")
def teachers(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path]]:
    """The tiny data folder and two teachers trained on it with seeds 0 and 1."""
    root = tmp_path_factory.mktemp("distill")
    data = write_folder(root / "tiny", [f"p{i}" for i in range(6)])
    files = [
        train([data], root / f"t{seed}", replace(CONFIG, seed=seed)).weights for seed in (0, 1)
    ]
    return data, files


def test_distillation_on_all_pixels() -> None:
    """``pixels="all"``: BCE towards the teacher's probability on known and unknown pixels."""
    target = torch.zeros(1, 1, 4, 4)
    target[..., 2:, :] = IGNORE
    teacher = torch.full_like(target, 2.0)
    logits = torch.zeros_like(target, requires_grad=True)
    loss = distillation_loss(logits, target, teacher, "all")
    expected = torch.nn.functional.binary_cross_entropy_with_logits(logits, torch.sigmoid(teacher))
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    loss.backward()
    assert logits.grad is not None
    assert float(logits.grad.max()) < 0  # every pixel pushed up, towards the teacher's 0.88
    at_teacher = distillation_loss(teacher.clone(), target, teacher, "all")
    assert at_teacher.item() < loss.item()
    with pytest.raises(ValueError, match="'unknown' or 'all'"):
        distillation_loss(logits, target, teacher, "known")


def test_student_trains_and_records_its_teachers(
    tmp_path: Path, teachers: tuple[Path, list[Path]]
) -> None:
    """A student trained towards two teachers records their files, seeds and thresholds."""
    data, files = teachers
    cfg = replace(CONFIG, seed=2, teachers=[str(f) for f in files], distill_weight=1.0)
    result = train([data], tmp_path / "student", cfg)
    model = load_model(result.weights, "cpu")
    meta = model.metadata
    assert meta["distill_weight"] == 1.0
    assert [t["sha256"] for t in meta["teachers"]] == [sha256_file(f) for f in files]
    assert [t["seed"] for t in meta["teachers"]] == [0, 1]
    for record, path in zip(meta["teachers"], files, strict=True):
        assert record["path"] == str(path)
        assert record["threshold"] == load_model(path, "cpu").threshold
    assert meta["config"]["teachers"] == [str(f) for f in files]
    # the student is one network, not the ensemble
    assert meta["parameters"] == load_model(files[0], "cpu").metadata["parameters"]
    # the distillation term is part of the loss: the same seed without teachers trains otherwise
    plain = train([data], tmp_path / "plain", replace(CONFIG, seed=2))
    assert [r["loss"] for r in history(tmp_path / "student")] != [
        r["loss"] for r in history(tmp_path / "plain")
    ]
    assert "teachers" not in load_model(plain.weights, "cpu").metadata


def test_zero_weight_leaves_training_identical(
    tmp_path: Path, teachers: tuple[Path, list[Path]]
) -> None:
    """``distill_weight=0``: the teachers run but the student is bit-identical to a plain run."""
    data, files = teachers
    cfg = replace(CONFIG, seed=0, teachers=[str(f) for f in files], distill_weight=0.0)
    student = train([data], tmp_path / "zero", cfg)
    plain = files[0].parent  # seed 0 without teachers
    timeless = [
        [{k: v for k, v in row.items() if k != "seconds"} for row in history(out)]
        for out in (plain, tmp_path / "zero")
    ]
    assert timeless[0] == timeless[1] and len(timeless[0]) == CONFIG.epochs
    ours = load_model(student.weights, "cpu").net.state_dict()
    theirs = load_model(files[0], "cpu").net.state_dict()
    assert ours.keys() == theirs.keys()
    for key, value in ours.items():
        assert torch.equal(value, theirs[key]), key


def test_mismatched_teacher_is_one_clear_line(
    tmp_path: Path, teachers: tuple[Path, list[Path]]
) -> None:
    """A teacher of another normalisation or GSD is refused before training, in one line."""
    data, files = teachers
    other = load_model(files[1], "cpu")
    other.metadata["mean"] = [m + 10 for m in other.mean]
    shifted = save_weights(
        tmp_path / "other.pt", other.net, "tinysiam", other.metadata, network_kwargs_of(files[1])
    )
    for name, cfg in (
        ("mean", replace(CONFIG, teachers=[str(files[0]), str(shifted)])),
        ("gsd", replace(CONFIG, teachers=[str(files[1])], gsd_m=0.3)),
    ):
        out = tmp_path / name
        with pytest.raises(WeightsError, match="same recipe") as info:
            train([data], out, cfg)
        assert "\n" not in str(info.value) and cfg.teachers[-1] in str(info.value)
        assert not (out / "model.pt").exists() and not (out / "last.pt").exists()


def test_cli_teacher_options(tmp_path: Path, teachers: tuple[Path, list[Path]]) -> None:
    """``weijian train --teacher W --distill-weight L`` trains; the weight needs a teacher."""
    data, files = teachers
    common = ["train", str(data), "--network", "tinysiam", "--epochs", "1"]
    common += ["--samples-per-epoch", "4", "--batch-size", "2", "--crop", "32"]
    common += ["--holdout", "tiny/p5", "--validation", "tiny/p4", "--device", "cpu"]
    common += ["--threads", "1"]
    out = tmp_path / "cli"
    args = ["--out", str(out), "--teacher", str(files[0]), "--teacher", str(files[1])]
    result = CliRunner().invoke(app, [*common, *args, "--distill-weight", "0.5"])
    assert result.exit_code == 0, result.output
    meta = load_model(out / "model.pt", "cpu").metadata
    assert meta["distill_weight"] == 0.5 and len(meta["teachers"]) == 2
    alone = CliRunner().invoke(
        app, [*common, "--out", str(tmp_path / "x"), "--distill-weight", "1"]
    )
    assert alone.exit_code == 2 and "--distill-weight only goes with --teacher" in alone.output


def test_an_ensemble_file_teaches_alone(tmp_path: Path, teachers: tuple[Path, list[Path]]) -> None:
    """One ensemble weights file is a teacher as its members given one by one are."""
    data, files = teachers
    members = [load_model(f, "cpu") for f in files]
    ensemble = save_ensemble_weights(
        tmp_path / "ensemble.pt",
        [m.net for m in members],
        "tinysiam",
        {
            "mean": members[0].mean,
            "std": members[0].std,
            "gsd_m": 0.5,
            "threshold": 0.4,
            "members": [
                {"seed": seed, "epoch": m.metadata["epoch"], "threshold": m.threshold, "x": 1}
                for seed, m in enumerate(members)
            ],
        },
        network_kwargs_of(files[0]),
    )
    one = train([data], tmp_path / "one", replace(CONFIG, seed=2, teachers=[str(ensemble)]))
    apart = train(
        [data], tmp_path / "apart", replace(CONFIG, seed=2, teachers=list(map(str, files)))
    )
    losses = [[r["loss"] for r in history(out)] for out in (tmp_path / "one", tmp_path / "apart")]
    assert losses[0] == pytest.approx(losses[1], rel=1e-4)
    (record,) = load_model(one.weights, "cpu").metadata["teachers"]
    assert record["sha256"] == sha256_file(ensemble) and record["threshold"] == 0.4
    assert [m["seed"] for m in record["members"]] == [0, 1] and "x" not in record["members"][0]
    assert apart.weights.is_file()
