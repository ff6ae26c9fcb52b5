"""scripts/seed_sweep.py: its base recipe is the shipped command, and the sweep runs end to end."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.scripts.conftest import SCRIPTS, load_script

sweep = load_script("seed_sweep")
SHELL = (SCRIPTS / "train_shipped_weights.sh").read_text()


def _block(name: str) -> str:
    """The text of the bash array ``name=( ... )`` in train_shipped_weights.sh."""
    found = re.search(rf"^{name}=\((.*?)\)\n", SHELL, re.S | re.M)
    assert found, name
    return found.group(1)


def test_base_recipe_is_the_shipped_command() -> None:
    """Split, validation tiles and options equal those of scripts/train_shipped_weights.sh."""
    assert re.findall(r"--holdout '([^']+)'", _block("HOLDOUT")) == sweep.HOLDOUT
    assert re.findall(r"--validation '([^']+)'", _block("VAL6")) == sweep.VALIDATION
    common = dict(re.findall(r"--([a-z-]+) \"\$\{[A-Z]+:-([^}]+)\}\"", _block("COMMON")))
    common |= dict(re.findall(r"--([a-z-]+) (\d+(?:\.\d+)?)\b", _block("COMMON")))
    shipped = sweep.SHIPPED
    assert int(common["epochs"]) == shipped["epochs"]
    assert int(common["samples-per-epoch"]) == shipped["samples_per_epoch"]
    assert int(common["crop"]) == shipped["crop"]
    assert int(common["batch-size"]) == shipped["batch_size"]
    assert int(common["patience"]) == shipped["patience"]
    assert float(common["synthetic"]) == shipped["synthetic_fraction"]
    assert float(common["gsd"]) == shipped["gsd_m"]
    assert int(common["threads"]) == shipped["threads"]
    assert re.search(r'echo "\$\{LR:-([0-9.e-]+)\}"', SHELL).group(1) == "3e-3"  # type: ignore[union-attr]
    assert shipped["lr"] == 3e-3
    assert sweep.RECIPES["base"].overrides == {}
    assert sweep.parse_seeds("0-3") == [0, 1, 2, 3]
    assert sweep.parse_seeds("2,5") == [2, 5]


@pytest.mark.slow
def test_sweep_trains_and_evaluates(tmp_path: Path) -> None:
    """Two short runs of a 2-member recipe train side by side and are scored as one ensemble."""
    out = tmp_path / "sweep"
    script = str(SCRIPTS / "seed_sweep.py")
    common = ["--out", str(out), "--recipes", "wide"]
    trained = subprocess.run(
        [sys.executable, script, "train", *common, "--seeds", "0-1", "--smoke", "--parallel", "2"],
        capture_output=True,
        text=True,
    )
    assert trained.returncode == 0, trained.stderr
    assert trained.stdout.count(" ok (") == 2, trained.stdout
    again = subprocess.run(
        [sys.executable, script, "train", *common, "--seeds", "0-1", "--smoke"],
        capture_output=True,
        text=True,
    )
    assert "0 runs to train" in again.stdout  # finished runs are never trained again
    scored = subprocess.run(
        [
            sys.executable,
            script,
            "evaluate",
            str(out),
            "--recipes",
            "wide",
            "--json",
            str(tmp_path / "sweep.json"),
        ],
        capture_output=True,
        text=True,
        env={"TORCH_THREADS": "1", **os.environ},
    )
    assert scored.returncode == 0, scored.stderr
    rows = json.loads((tmp_path / "sweep.json").read_text())["wide"]
    assert [r["seeds"] for r in rows] == [[0, 1]]
    assert 0.0 <= rows[0]["val_f1"] <= 1.0 and rows[0]["val_fp_per_km2"] >= 0.0
    assert "| wide:" in scored.stdout


def test_fraction_data_cuts_only_training_pairs(tmp_path: Path) -> None:
    """The learning curve's data: training pairs cut to the share, the rest whole, seeded."""
    from PIL import Image

    assert sweep.RECIPES["frac25"].area_fraction == 0.25
    folders = [sweep.DATA / f for f in sweep.FOLDERS]

    class Split:
        holdout = sweep.HOLDOUT
        seed = 0
        validation = sweep.VALIDATION

    def sizes(seed: int) -> dict[str, tuple[int, int, str]]:
        out = tmp_path / f"seed{seed}"
        new = sweep.fraction_data(folders, 0.25, seed, out, Split)
        assert [p.name for p in new] == list(sweep.FOLDERS)
        found = {}
        for path in sorted(out.glob("*/label/*.png")):
            with Image.open(path) as label, Image.open(path.parent.parent / "A" / path.name) as a:
                assert label.size == a.size
                found[f"{path.parent.parent.name}/{path.stem}"] = (
                    *label.size,
                    str(a.getpixel((0, 0))),
                )
        return found

    first, again, other = sizes(0), sizes(0), sizes(1)
    assert first == again  # a pure function of the seed
    assert first != other  # another seed, other windows
    assert first["levir_1024/test_7"][:2] == (512, 512)  # a quarter of a 1024 px training tile
    assert first["levir_1024/test_102"][:2] == (1024, 1024)  # held out: whole
    assert first["dsifn_256/5_3"][:2] == (256, 256)  # validation: whole
    assert first["dsifn_256/1_1"][:2] == (128, 128)
    assert "levir_256/test_7_0256_0512" not in first  # a crop of a training tile: once only
    assert sweep.training_mpx(sweep.DATA, 0.25) == pytest.approx(
        sum(w * h for w, h, *_ in first.values() if (w, h) in {(512, 512), (128, 128)}) / 1e6,
        rel=0.02,
    )


def test_half_of_the_scenes_has_the_pixels_of_half_the_area(tmp_path: Path) -> None:
    """scenes50's data: one of the two large tiles and half of the small pairs, whole."""
    from PIL import Image

    from change_detection.data import find_pairs, split_pairs

    class Split:
        holdout = sweep.HOLDOUT
        seed = 0
        validation = sweep.VALIDATION

    folders = [sweep.DATA / f for f in sweep.FOLDERS]
    kept = []
    for seed in range(4):
        out = tmp_path / f"seed{seed}"
        pairs = find_pairs(sweep.fraction_data(folders, 1.0, seed, out, Split, half_scenes=True))
        sizes = {}
        for pair in pairs:
            with Image.open(pair.label) as im:
                sizes[pair.name] = im.size[0] * im.size[1]
        train, _, _ = split_pairs(pairs, sweep.HOLDOUT, 0.0, 0, sweep.VALIDATION)
        training = {p.name: sizes[p.name] for p in train}
        assert sorted(training.values()) == [65_536] * 4 + [1_048_576]
        assert sum(training.values()) / 1e6 == pytest.approx(sweep.training_mpx(sweep.DATA, 0.5))
        assert sizes["levir_1024/test_102"] == 1_048_576 and sizes["dsifn_256/5_3"] == 65_536
        kept.append(frozenset(training))
    assert len(set(kept)) > 1  # another seed, other places


def test_slope_of_a_line() -> None:
    """The learning curve's fit: a slope and its standard error."""
    b, se = sweep.slope([0.0, 1.0, 2.0, 3.0], [1.0, 3.0, 5.0, 7.0])
    assert b == pytest.approx(2.0) and se == pytest.approx(0.0, abs=1e-12)
    b, se = sweep.slope([0.0, 0.0, 1.0, 1.0], [0.0, 0.2, 0.4, 0.6])
    assert b == pytest.approx(0.4) and se > 0
