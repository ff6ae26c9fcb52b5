"""Bad flights are refused before any time is spent, with one line, and leave nothing in PostGIS."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import Engine, text

from tests.weijian.flight_data import (
    add_district,
    levir,
    pair_files,
    run_weijian,
    write_image,
)
from weijian.flight import (
    EXIT_BAD_INPUT,
    EXIT_STEP_FAILED,
    FlightConfig,
    FlightRefusedError,
    run_flight,
)

TABLES = ("scene", "detection_run", "detection", "case_history")


def _counts(engine: Engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {t: conn.execute(text(f"SELECT count(*) FROM {t}")).scalar_one() for t in TABLES}


def _refused(engine: Engine, tmp_path: Path, after: Path, before: str | Path, match: str) -> str:
    config = FlightConfig(output_root=tmp_path / "flights")
    with pytest.raises(FlightRefusedError, match=match) as info:
        run_flight(engine, after, before=before, config=config)
    assert _counts(engine) == dict.fromkeys(TABLES, 0)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_impossible_coordinates(engine: Engine, tmp_path: Path) -> None:
    add_district(engine)
    before, _ = pair_files(tmp_path, size=256)
    a, _ = levir()
    after = write_image(
        tmp_path / "lonlat_20260310.tif",
        np.ascontiguousarray(a[:, :64, :64]),
        gsd=0.000005,
        x0=500.0,
        y0=31.3,
        crs="EPSG:4326",
    )
    _refused(engine, tmp_path, after, before, "impossible|outside|plausible|longitude")


def test_outside_the_district(engine: Engine, tmp_path: Path) -> None:
    add_district(engine, far=True)
    before, after = pair_files(tmp_path, size=256)
    _refused(engine, tmp_path, after, before, "outside every 街镇")


def test_no_boundaries_loaded(engine: Engine, tmp_path: Path) -> None:
    before, after = pair_files(tmp_path, size=256)
    _refused(engine, tmp_path, after, before, "no 街镇 boundaries")


def test_before_later_than_after(engine: Engine, tmp_path: Path) -> None:
    add_district(engine)
    a, b = levir()
    late = write_image(tmp_path / "x_20270101.tif", np.ascontiguousarray(a[:, :256, :256]))
    after = write_image(tmp_path / "x_20260310.tif", np.ascontiguousarray(b[:, :256, :256]))
    _refused(engine, tmp_path, after, late, "not earlier")


def test_gsd_coarser_than_the_model(engine: Engine, tmp_path: Path) -> None:
    add_district(engine)
    a, b = levir()
    before = write_image(tmp_path / "c_20250310.tif", np.ascontiguousarray(a[:, :256, :256]), gsd=2)
    after = write_image(tmp_path / "c_20260310.tif", np.ascontiguousarray(b[:, :256, :256]), gsd=2)
    _refused(engine, tmp_path, after, before, "coarser than the model")


def test_radiometry_not_matchable(engine: Engine, tmp_path: Path) -> None:
    add_district(engine)
    before, _ = pair_files(tmp_path, size=512)
    flat = np.full((3, 512, 512), 200, np.uint8)
    after = write_image(tmp_path / "flat_20260310.tif", flat)
    message = _refused(engine, tmp_path, after, before, "radiometry cannot be matched")
    assert "flat" in message


def test_auto_without_an_earlier_scene(engine: Engine, tmp_path: Path) -> None:
    add_district(engine)
    _, after = pair_files(tmp_path, size=256)
    _refused(engine, tmp_path, after, "auto", "no earlier scene in the catalogue")


def test_command_exit_code_and_json(db_url: str, engine: Engine, tmp_path: Path) -> None:
    """The command line: exit code 2, a JSON summary saying why, one line on stderr."""
    add_district(engine, far=True)
    before, after = pair_files(tmp_path, size=256)
    proc = run_weijian(
        "flight",
        "run",
        str(after),
        "--before",
        str(before),
        "--json",
        db_url=db_url,
        flights=tmp_path / "flights",
    )
    assert proc.returncode == EXIT_BAD_INPUT, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["status"] == "refused"
    assert "outside every 街镇" in summary["error"]
    assert "Traceback" not in proc.stderr
    assert _counts(engine) == dict.fromkeys(TABLES, 0)


def test_unreachable_scheduler_fails_the_detect_step(
    db_url: str, engine: Engine, tmp_path: Path
) -> None:
    """``--scheduler`` reaches detection: an address nobody listens on fails that step (exit 3).

    The steps before it stay recorded, and the error is logged in the flight's folder.
    """
    add_district(engine)
    before, after = pair_files(tmp_path, size=256)
    cmd = ["flight", "run", str(after), "--before", str(before)]
    cmd += ["--scheduler", "tcp://127.0.0.1:9", "--json"]
    proc = run_weijian(*cmd, db_url=db_url, flights=tmp_path / "flights")
    assert proc.returncode == EXIT_STEP_FAILED, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["status"] == "failed" and "tcp://127.0.0.1:9" in summary["error"]
    assert "step detect" in summary["error"]
    folder = tmp_path / "flights" / after.stem
    state = json.loads((folder / "flight_state.json").read_text("utf-8"))
    assert set(state["steps"]) == {"check", "align", "catalogue"}
    assert "tcp://127.0.0.1:9" in (folder / "error.log").read_text("utf-8")
