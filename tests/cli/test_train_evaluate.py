"""``weijian train`` and ``weijian evaluate`` end to end on tiny folders."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from change_detection import load_model
from change_detection.errors import DatasetError, DatasetNotFoundError
from weijian.cli import app

runner = CliRunner()
#: a training run small enough for a test, on one CPU thread
TINY = ["--epochs", "1", "--samples-per-epoch", "4", "--batch-size", "2", "--crop", "32"]
CPU = ["--device", "cpu", "--threads", "1"]


def _folder(root: Path, n: int = 4, size: int = 64) -> Path:
    rng = np.random.default_rng(0)
    for sub in ("A", "B", "label"):
        (root / sub).mkdir(parents=True)
    for i in range(n):
        a = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
        b, label = a.copy(), np.zeros((size, size), np.uint8)
        b[8:24, 8:24], label[8:24, 8:24] = 220, 255
        Image.fromarray(a).save(root / "A" / f"t{i}.png")
        Image.fromarray(b).save(root / "B" / f"t{i}.png")
        Image.fromarray(label).save(root / "label" / f"t{i}.png")
    return root


@pytest.mark.slow
def test_train_then_evaluate(tmp_path: Path) -> None:
    data = _folder(tmp_path / "pairs")
    out = tmp_path / "run"
    result = runner.invoke(
        app,
        [
            "train",
            str(data),
            "--out",
            str(out),
            "--network",
            "tinysiam",
            *TINY,
            "--holdout",
            "pairs/t3",
            *CPU,
        ],
    )
    assert result.exit_code == 0, result.output
    assert "held-out" in result.output and (out / "model.pt").is_file()
    report = tmp_path / "eval.json"
    result = runner.invoke(
        app,
        [
            "evaluate",
            str(data),
            "--weights",
            str(out / "model.pt"),
            "--only",
            "pairs/t3",
            "--json",
            str(report),
            "--device",
            "cpu",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "pixel F1" in result.output
    figures = json.loads(report.read_text())
    assert figures["pairs"] == ["pairs/t3"]
    assert len(figures["curve"]) == 100
    for key in ("precision", "recall", "f1", "iou", "best_threshold"):
        assert 0 <= figures[key] <= 1
    assert "false_positives_per_km2" in figures["objects"]


@pytest.mark.slow
def test_full_dataset_command_shape(tmp_path: Path) -> None:
    """The model card's LEVIR-CD command: train/ val/ test/ split by --validation/--holdout."""
    folders = [_folder(tmp_path / "LEVIR-CD" / part, n=2) for part in ("train", "val", "test")]
    out = tmp_path / "run"
    result = runner.invoke(
        app,
        [
            "train",
            *map(str, folders),
            "--validation",
            "val/*",
            "--holdout",
            "test/*",
            "--network",
            "fc_siam_diff",
            *TINY,
            "--patience",
            "40",
            *CPU,
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    split = load_model(out / "model.pt", device="cpu").metadata["split"]
    assert split["train"] == ["train/t0", "train/t1"]
    assert split["validation"] == ["val/t0", "val/t1"]
    assert split["heldout"] == ["test/t0", "test/t1"]


def test_bad_folder_is_one_clear_line(tmp_path: Path) -> None:
    (tmp_path / "only_a" / "A").mkdir(parents=True)
    result = runner.invoke(app, ["evaluate", str(tmp_path / "only_a"), "--weights", "tinysiam"])
    assert isinstance(result.exception, DatasetError)  # main() prints it as one line, exit 1
    assert "lacks B/, label/" in str(result.exception)


def test_train_on_a_missing_folder_leaves_no_output_folder(tmp_path: Path) -> None:
    """``weijian train nosuchdir --out X``: the error names the folder, and X is not created."""
    out = tmp_path / "X"
    result = runner.invoke(app, ["train", str(tmp_path / "nosuchdir"), "--out", str(out)])
    assert isinstance(result.exception, DatasetNotFoundError)  # main(): one line, exit 1
    assert "nosuchdir does not exist" in str(result.exception)
    assert not out.exists()


def test_evaluate_at_another_gsd_with_tta(tmp_path: Path) -> None:
    """--gsd resamples to the model's GSD and reports densities per km² of ground; --tta runs."""
    data = _folder(tmp_path / "pairs", n=1, size=64)
    figures = {}
    for name, extra in (("plain", []), ("fine", ["--gsd", "0.25", "--tta"])):
        report = tmp_path / f"{name}.json"
        result = runner.invoke(
            app,
            ["evaluate", str(data), "--weights", "tinysiam", "--json", str(report), *extra],
        )
        assert result.exit_code == 0, result.output
        figures[name] = json.loads(report.read_text())
    plain, fine = figures["plain"], figures["fine"]
    assert not plain["resampled"] and not plain["tta"] and plain["objects"]["gsd_m"] == 0.5
    assert fine["resampled"] and fine["tta"] and fine["objects"]["gsd_m"] == 0.25
    assert "resampled 0.25" in result.output
    # the same 64 x 64 pixels cover a quarter of the ground at 0.25 m/px
    assert fine["objects"]["area_km2"] * 4 == pytest.approx(plain["objects"]["area_km2"])
