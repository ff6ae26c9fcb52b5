"""``weijian detect`` into PostGIS: scenes, run, detections loaded once, matchable; CLI errors."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from change_detection import detect_pair
from gis_db.matching import match_run
from tests.change_detection import detect_data as dd
from weijian.detect_run import load_detect_output


def _weijian(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*dd.WEIJIAN, *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=dd.weijian_env(cwd, **env),
        timeout=600,
        check=False,
    )


def _detect_in_small_tiles(pair_dir: Path, out: Path) -> list[str]:
    """``weijian detect PAIR --out OUT`` without a progress bar, in 128 px tiles overlapping 16."""
    args = ["detect", str(pair_dir), "--out", str(out), "--no-progress"]
    return [*args, "--tile-px", "128", "--overlap-px", "16"]


def test_detection_output_becomes_one_run_loaded_once(engine: Engine, tmp_path: Path) -> None:
    pair_dir, _, _ = dd.roof_pair(tmp_path, size=300, crs="EPSG:4549", roof_m=(50, 30, 70, 45))
    result = detect_pair(
        pair_dir, dd.diff_model(), tmp_path / "out", tile_px=128, overlap_px=16, progress=False
    )
    run_id = load_detect_output(engine, pair_dir, result)
    with engine.connect() as conn:
        loaded_at = conn.execute(
            text("SELECT loaded_at FROM detection_run WHERE id = :r"), {"r": run_id}
        ).scalar_one()
    again = load_detect_output(engine, None, tmp_path / "out")
    assert again == run_id
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT count(*), min(area_m2), max(score) FROM detection WHERE run_id = :r"),
            {"r": run_id},
        ).one()
        scenes = conn.execute(text("SELECT count(*) FROM scene")).scalar_one()
        runs = conn.execute(text("SELECT count(*) FROM detection_run")).scalar_one()
        loaded_again = conn.execute(
            text("SELECT loaded_at FROM detection_run WHERE id = :r"), {"r": run_id}
        ).scalar_one()
    assert rows[0] == len(result.polygons) == 1
    assert rows[1] == pytest.approx(300, rel=0.05) and rows[2] > 0.9
    assert scenes == 2 and runs == 1 and loaded_again == loaded_at
    summary = match_run(engine, run_id, overlap_threshold=0.3, tolerance_m=2.0)
    assert sum(summary.counts.values()) == 1


@pytest.mark.slow
def test_cli_detect_prints_the_run_id_and_loads_it(
    db_url: str, engine: Engine, tmp_path: Path
) -> None:
    pair_dir, _, _ = dd.roof_pair(tmp_path, size=256, crs="EPSG:4549")
    done = _weijian(
        *_detect_in_small_tiles(pair_dir, tmp_path / "out"),
        "--tta",
        cwd=tmp_path,
        WEIJIAN_DATABASE_URL=db_url,
    )
    assert done.returncode == 0, done.stderr
    meta = json.loads((tmp_path / "out" / "detect.json").read_text(encoding="utf-8"))
    assert meta["engine"] == "onnxruntime" and meta["tta"] is True  # the default engine, --tta
    run_id = int(done.stdout.split("run id:")[1].split()[0])
    with engine.connect() as conn:
        n = conn.execute(
            text("SELECT n_detections FROM detection_run WHERE id = :r"), {"r": run_id}
        ).scalar_one()
    assert n is not None and (tmp_path / "out" / "change_proba.tif").is_file()


def test_cli_bad_input_is_one_line(tmp_path: Path) -> None:
    done = _weijian(
        "detect", str(tmp_path / "missing"), "--out", str(tmp_path / "o"), "--no-db", cwd=tmp_path
    )
    assert done.returncode == 1
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) <= 2 and "weijian pair prepare" in done.stderr
    assert "Traceback" not in done.stderr


def test_cli_core_threshold_under_the_threshold_is_one_line(tmp_path: Path) -> None:
    pair_dir, _, _ = dd.roof_pair(tmp_path, size=128, crs="EPSG:4549", roof_m=(20, 20, 40, 35))
    args = ("detect", str(pair_dir), "--out", str(tmp_path / "o"), "--no-db", "--no-progress")
    done = _weijian(*args, "--threshold", "0.5", "--core-threshold", "0.4", cwd=tmp_path)
    assert done.returncode == 1
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) <= 2 and "Traceback" not in done.stderr
    assert "core threshold 0.4 is not above the threshold 0.5" in done.stderr
    assert not (tmp_path / "o" / "changes.gpkg").exists()


@pytest.mark.slow
def test_cli_detect_with_the_single_network_setting_records_it(
    db_url: str, engine: Engine, tmp_path: Path
) -> None:
    """``detection.weights = "tinysiam"`` instead of the default ensemble: recorded as such.

    The seeded-core settings (environment) reach ``detect.json`` too.
    """
    from change_detection import load_model
    from change_detection.detect import weights_checksum

    pair_dir, _, _ = dd.roof_pair(tmp_path, size=256, crs="EPSG:4549")
    done = _weijian(
        *_detect_in_small_tiles(pair_dir, tmp_path / "out"),
        cwd=tmp_path,
        WEIJIAN_DATABASE_URL=db_url,
        WEIJIAN_DETECTION__WEIGHTS="tinysiam",
        WEIJIAN_DETECTION__CORE_THRESHOLD="0.8",
        WEIJIAN_DETECTION__CORE_MIN_AREA_M2="3",
        WEIJIAN_DETECTION__GROW_MARGIN="0.05",
    )
    assert done.returncode == 0, done.stderr
    meta = json.loads((tmp_path / "out" / "detect.json").read_text(encoding="utf-8"))
    single = load_model("tinysiam", "cpu")
    assert meta["weights_metadata"].get("ensemble_size", 1) == 1
    assert meta["threshold"] == single.threshold == 0.23
    # the seeded-core settings, grown 0.05 below the weights' own threshold
    cores = {k: meta["vectorize"][k] for k in ("core_threshold", "core_min_area_m2", "grow_margin")}
    assert cores == {"core_threshold": 0.8, "core_min_area_m2": 3, "grow_margin": 0.05}
    run_id = int(done.stdout.split("run id:")[1].split()[0])
    with engine.connect() as conn:
        recorded = conn.execute(
            text("SELECT network, weights_checksum FROM detection_run WHERE id = :r"),
            {"r": run_id},
        ).one()
    assert tuple(recorded) == ("tinysiam", weights_checksum(single))
    assert recorded[1] != weights_checksum(load_model(device="cpu"))  # the default ensemble's
