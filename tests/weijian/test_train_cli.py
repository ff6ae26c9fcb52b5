"""``weijian train --init-weights``: fine-tuning from a weights file on labelled folders."""

from __future__ import annotations

from pathlib import Path

import torch
from click.testing import Result
from typer.testing import CliRunner

from change_detection.errors import WeightsError
from change_detection.weights import load_model, save_weights, shipped_weights
from ingest.scene import sha256_file
from tests.change_detection.conftest import write_folder
from weijian.cli import app

runner = CliRunner()
TINY = ["--epochs", "1", "--samples-per-epoch", "8", "--batch-size", "4", "--crop", "32"]
CPU = ["--device", "cpu", "--threads", "1"]


def test_fine_tuning_starts_from_the_parent_and_records_it(tmp_path: Path, data_dir: Path) -> None:
    """With a learning rate of 0 the fine-tuned parameters are the parent's; lineage is kept."""
    tiny = write_folder(tmp_path / "tiny", [f"p{i}" for i in range(6)])
    added = runner.invoke(app, ["model", "add", "tinysiam"])
    assert "registered as v1" in added.output, added.output
    out = tmp_path / "tuned"
    args = ["train", str(tiny), "--out", str(out), *TINY, *CPU, "--holdout", "tiny/p5"]
    result = runner.invoke(app, [*args, "--init-weights", "v1", "--lr", "0", "--loss", "lovasz"])
    assert result.exit_code == 0, result.output
    parent = load_model("tinysiam", "cpu")
    tuned = load_model(out / "model.pt", "cpu")
    assert tuned.network == "tinysiam" and tuned.mean == parent.mean  # parent's normalisation
    theirs = dict(parent.net.named_parameters())
    for name, value in tuned.net.named_parameters():
        # equal up to the float16 of the file (a network trained from scratch is nowhere near)
        assert torch.allclose(value, theirs[name], rtol=1e-3, atol=1e-6), name
    lineage = tuned.metadata["lineage"]
    assert lineage["parent"] == "v1"
    assert lineage["parent_sha256"] == sha256_file(shipped_weights("tinysiam"))
    assert lineage["parent_threshold"] == parent.threshold
    assert lineage["parent_seed"] == parent.metadata["config"]["seed"]
    assert tuned.metadata["config"]["init_weights"] == lineage["parent_path"]
    assert tuned.metadata["config"]["loss"] == "lovasz"


def _train(tiny: Path, out: Path, *extra: str) -> Result:
    """``weijian train`` of one tiny epoch on the CPU with ``extra`` options."""
    return runner.invoke(app, ["train", str(tiny), "--out", str(out), *TINY, *CPU, *extra])


def test_init_weights_refusals(tmp_path: Path, data_dir: Path) -> None:
    """An ensemble, another network or band count, a missing file: one clear line each."""
    tiny = write_folder(tmp_path / "tiny", [f"p{i}" for i in range(6)])
    # an ensemble is refused in one line (main() prints it), before any weights are written
    ensemble = _train(tiny, tmp_path / "e", "--init-weights", "tinysiam_ensemble")
    assert isinstance(ensemble.exception, WeightsError)
    assert "is an ensemble of 3 tinysiam networks" in str(ensemble.exception)
    assert not (tmp_path / "e" / "model.pt").exists()
    other = _train(tiny, tmp_path / "f", "--init-weights", "tinysiam", "--network", "fc_siam_diff")
    assert isinstance(other.exception, WeightsError)
    assert "fine-tune with --network tinysiam" in str(other.exception)
    wider = _train(tiny, tmp_path / "g", "--init-weights", "tinysiam", "--widths", "24,32,64,128")
    assert wider.exit_code == 2 and "come from --init-weights" in wider.output
    missing = _train(tiny, tmp_path / "h", "--init-weights", "v9")
    assert isinstance(missing.exception, WeightsError)
    assert "does not exist" in str(missing.exception)
    four = load_model("tinysiam", "cpu")
    meta = {**four.metadata, "mean": [*four.mean, 100.0], "std": [*four.metadata["std"], 50.0]}
    save_weights(tmp_path / "nir.pt", four.net, "tinysiam", meta)
    bands = _train(tiny, tmp_path / "i", "--init-weights", str(tmp_path / "nir.pt"))
    assert isinstance(bands.exception, WeightsError)
    assert "takes 4 bands, the training pairs 3" in str(bands.exception)
    assert not (tmp_path / "i" / "model.pt").exists()
