"""A flight killed with SIGKILL (twice) resumes and ends with the rows and files of an unbroken run.

Real subprocesses of ``weijian flight run`` on real LEVIR-CD tiles (part of the demo flight), two
real PostGIS databases (one for the uninterrupted reference, one for the killed flight), the
shipped network.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio.features
from shapely.geometry import shape
from sqlalchemy import create_engine, text

from tests.conftest import _scratch_database
from tests.weijian.flight_data import CRS, WEIJIAN, add_district, demo_crop_files
from weijian.flight import STATE_FILE, FlightState

TABLES = (
    "scene",
    "detection_run",
    "detection",
    "inventory_case",
    "case_history",
    "case_detection",
    "permit",
)
SIZE_PX = 768  # four 512 px tiles with their overlap: something to be killed in the middle of


@pytest.fixture()
def second_db_url(pg_server_url: str, template_db: str) -> Iterator[str]:
    """Another fresh migrated database (the killed flight's)."""
    yield from _scratch_database(pg_server_url, template=template_db)


def _seed(url: str, before: Path, truth: np.ndarray) -> None:
    """The district, a known case and a written-off case on real changes of the tile."""
    from gis_db.inventory import upsert_cases
    from gis_db.workflow import CaseAction, transition_case

    engine = create_engine(url)
    add_district(engine)
    with rasterio.open(before) as src:
        transform = src.transform
    mask = (truth == 1).astype(np.uint8)
    polys = sorted(
        (shape(g) for g, _ in rasterio.features.shapes(mask, mask=mask > 0, transform=transform)),
        key=lambda p: -p.area,
    )
    numbers = ["T-W1", "T-W2", "T-W3", "T-K1", "T-K2"]
    cases = gpd.GeoDataFrame(
        {
            "case_number": numbers,
            "discovered_on": [date(2025, 1, 1)] * 5,
            "source": ["drone"] * 5,
        },
        geometry=polys[:5],
        crs=CRS,
    )
    upsert_cases(engine, cases, actor="test")
    with engine.connect() as conn:
        ids = (
            conn.execute(text("SELECT id FROM inventory_case WHERE case_number LIKE 'T-W%'"))
            .scalars()
            .all()
        )
    steps = (
        (CaseAction.DISPATCH, "office", "office", {}),
        (CaseAction.VERIFY, "street", "street_town", {}),
        (CaseAction.DISPOSE, "street", "street_town", {"disposal": "demolish"}),
        (CaseAction.REQUEST_WRITE_OFF, "street", "street_town", {"evidence": ["photo"]}),
        (CaseAction.WRITE_OFF, "approver", "office", {}),
    )
    for case_id in ids:
        for action, actor, role, extra in steps:
            transition_case(engine, case_id, action, actor=actor, role=role, **extra)  # type: ignore[arg-type]
    engine.dispose()


def _env(url: str, out: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WEIJIAN_")}
    return {
        **env,
        "WEIJIAN_DATABASE_URL": url,
        "WEIJIAN_FLIGHT__OUTPUT_DIR": str(out),
        "WEIJIAN_DETECTION__DEVICE": "cpu",
    }


def _command(before: Path, after: Path) -> list[str]:
    return [WEIJIAN, "flight", "run", str(after), "--before", str(before), "--name", "f", "--json"]


def _run(cmd: list[str], env: dict[str, str]) -> dict[str, object]:
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout)  # type: ignore[no-any-return]


def _kill_when(cmd: list[str], env: dict[str, str], ready: object, timeout: float = 400) -> None:
    """Start the flight, wait until ``ready()`` is true, then SIGKILL it."""
    proc = subprocess.Popen(
        cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    deadline = time.monotonic() + timeout
    try:
        while not ready():  # type: ignore[operator]
            assert proc.poll() is None, "the flight ended before the kill point"
            assert time.monotonic() < deadline, "the kill point was never reached"
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL


def _steps_done(folder: Path) -> set[str]:
    try:
        return set(json.loads((folder / STATE_FILE).read_text("utf-8"))["steps"])
    except (OSError, ValueError):
        return set()


def _database(url: str) -> dict[str, object]:
    engine = create_engine(url)
    with engine.connect() as conn:
        out: dict[str, object] = {
            t: conn.execute(text(f"SELECT count(*) FROM {t}")).scalar_one() for t in TABLES
        }
        out["classes"] = dict(
            conn.execute(
                text("SELECT match_class, count(*) FROM detection GROUP BY 1 ORDER BY 1")
            ).all()
        )
        out["detections"] = conn.execute(
            text(
                "SELECT md5(string_agg(seq || change_kind || round(score::numeric, 6) || "
                "ST_AsText(geom) || match_class, '|' ORDER BY seq)) FROM detection"
            )
        ).scalar_one()
        out["case_states"] = dict(
            conn.execute(text("SELECT case_number, state FROM inventory_case")).all()
        )
        out["history"] = conn.execute(
            text("SELECT count(*) FROM case_history WHERE actor = 'system'")
        ).scalar_one()
    engine.dispose()
    return out


def _files(folder: Path) -> dict[str, str]:
    """Relative path -> SHA-256 of the flight's deterministic outputs; names of all the others."""
    out = {}
    for p in sorted(folder.rglob("*")):
        if not p.is_file() or p.name in (STATE_FILE, "error.log") or ".detect-work" in p.parts:
            continue
        rel = str(p.relative_to(folder))
        deterministic = p.suffix in (".tif", ".geojson", ".png") or p.name == "pair.json"
        out[rel] = hashlib.sha256(p.read_bytes()).hexdigest() if deterministic else "present"
    return out


@pytest.mark.slow
def test_killed_flight_resumes_to_the_same_rows_and_files(
    db_url: str, second_db_url: str, tmp_path: Path
) -> None:
    before, after, truth = demo_crop_files(tmp_path / "images", size=SIZE_PX)
    for url in (db_url, second_db_url):
        _seed(url, before, truth)
    cmd = _command(before, after)

    reference = _run(cmd, _env(db_url, tmp_path / "ref"))
    assert reference["status"] == "done"
    assert reference["counts"]["rebound"] >= 1, json.dumps(reference["counts"])  # type: ignore[index]
    # the report's chips show the worst first: a rebound (反弹回潮)
    report = (tmp_path / "ref" / "f" / "report.html").read_text(encoding="utf-8")
    first_chip = report.split('<div class="chip"><h4>', 1)[1].split("</h4>", 1)[0]
    assert " · 反弹回潮 · " in first_chip, first_chip

    env = _env(second_db_url, tmp_path / "killed")
    folder = tmp_path / "killed" / "f"
    work = folder / "detect" / ".detect-work"
    # 1. killed in the middle of detection, after at least one tile was finished
    _kill_when(cmd, env, lambda: work.is_dir() and any(work.rglob("*.npy")))
    assert _steps_done(folder) == {"check", "align", "catalogue"}
    # 2. killed again as soon as the detections are in the database
    _kill_when(cmd, env, lambda: "load" in _steps_done(folder))
    assert "publish" not in _steps_done(folder)
    resumed = _run(cmd, env)
    steps = resumed["steps"]
    assert {s for s, v in steps.items() if v["status"] == "skipped"} >= {  # type: ignore[union-attr]
        "check",
        "align",
        "catalogue",
        "detect",
        "load",
    }
    assert steps["publish"]["status"] == "ran"  # type: ignore[index]

    assert _database(second_db_url) == _database(db_url)
    assert _files(folder) == _files(tmp_path / "ref" / "f")
    # the demolition pass ran near the two open cases only, on the same area in both flights
    areas = [
        json.loads((f / "detect_reverse_area.json").read_text("utf-8"))
        for f in (folder, tmp_path / "ref" / "f")
    ]
    assert areas[0] == areas[1]
    assert areas[0]["active_cases"] == 2 and 0 < areas[0]["share_of_pair"] < 1
    assert (folder / "detect_reverse" / "changes.gpkg").is_file()

    again = _run(cmd, env)
    assert again["status"] == "nothing to do"
    assert all(v["status"] == "skipped" for v in again["steps"].values())  # type: ignore[union-attr]
    assert _database(second_db_url) == _database(db_url)


def test_a_killed_writers_temporary_file_is_removed_when_the_flight_is_opened_again(
    tmp_path: Path,
) -> None:
    """`.NAME.PID.tmp` of a dead writer goes; a live writer's temporary file stays."""
    finished = subprocess.Popen(["true"])
    finished.wait()  # reaped: its pid no longer names a process
    stale = tmp_path / f".{STATE_FILE}.{finished.pid}.tmp"
    live = tmp_path / f".report.html.{os.getpid()}.tmp"
    stale.write_text("{")
    live.write_text("<html>")
    FlightState.open(tmp_path, "f")
    assert not stale.exists() and live.exists()
