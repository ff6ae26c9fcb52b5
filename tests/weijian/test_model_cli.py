"""``weijian model add|list|show|ensemble`` with an ensemble file (no database needed)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from change_detection.errors import WeightsError
from change_detection.weights import shipped_weights
from weijian.cli import app
from weijian.errors import WeijianError

runner = CliRunner()


def test_add_list_show_an_ensemble(data_dir: Path) -> None:
    added = runner.invoke(app, ["model", "add", "tinysiam_ensemble"])
    assert added.exit_code == 0, added.output
    assert "registered as v1" in added.output
    listed = runner.invoke(app, ["model", "list"], env={"COLUMNS": "200"})
    assert "tinysiam x3" in listed.output and "* │ shipped" in listed.output  # not in use
    shown = json.loads(runner.invoke(app, ["model", "show", "v1"]).output)
    assert shown["ensemble_size"] == 3 and shown["threshold"] == 0.31
    assert [m["seed"] for m in shown["members"]] == [0, 1, 2]
    assert shown["metrics_validation"]["f1"] == pytest.approx(0.7824)
    missing = runner.invoke(app, ["model", "add", str(data_dir / "none.pt")])
    assert isinstance(missing.exception, WeightsError)  # main() prints it as one line


def test_ensemble_command_refusals(tmp_path: Path, data_dir: Path) -> None:
    one = runner.invoke(app, ["model", "ensemble", "tinysiam", "--out", str(tmp_path / "e.pt")])
    assert isinstance(one.exception, WeijianError) and "two or more" in str(one.exception)
    (tmp_path / "e.pt").write_bytes(b"kept")
    taken = runner.invoke(
        app, ["model", "ensemble", "tinysiam", "tinysiam", "--out", str(tmp_path / "e.pt")]
    )
    assert isinstance(taken.exception, WeijianError) and "--overwrite" in str(taken.exception)
    assert (tmp_path / "e.pt").read_bytes() == b"kept"
    mixed = runner.invoke(
        app,
        [
            "model",
            "ensemble",
            "tinysiam",
            str(shipped_weights("fc_siam_diff")),
            "--out",
            str(tmp_path / "m.pt"),
        ],
    )
    assert isinstance(mixed.exception, WeightsError)
    assert "validated on different pairs" in str(mixed.exception)
    assert not (tmp_path / "m.pt").exists()
