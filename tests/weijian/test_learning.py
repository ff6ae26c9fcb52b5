"""Learning from reviews on a real PostGIS: chips from decisions, fine-tuning, the registry gate."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import numpy as np
import pytest
import rasterio
import shapely
from PIL import Image
from rasterio.features import shapes
from sqlalchemy import Engine, text
from typer.testing import CliRunner

from change_detection import load_model
from change_detection.data import UNKNOWN
from change_detection.registry import Registry
from gis_db import runs
from gis_db.errors import InvalidInputError, NotFoundError
from gis_db.matching import match_run
from gis_db.reviews import decided_cases, reviewed_detections
from gis_db.workflow import review_detection
from weijian.cli import app
from weijian.settings import get_settings
from weijian_testdata.rasters import CHANGE_PAIRS, real_pair_geotiffs
from weijian_testdata.runs import AFTER, BEFORE, CRS, add_case, frame

runner = CliRunner()
#: the size of the fine-tunes below: 8 crops per epoch in batches of 4, on one CPU thread
SMALL = ["--samples-per-epoch", "8", "--batch-size", "4", "--device", "cpu", "--threads", "1"]
PAIR = "test_7_0256_0512"  # a real LEVIR-CD crop with several new buildings


def _from_reviews(run: int, out: Path, *options: str) -> list[str]:
    """The arguments of ``weijian train --from-reviews --runs RUN --out OUT [options]``."""
    return ["train", "--from-reviews", "--runs", str(run), "--out", str(out), *options]


@pytest.fixture()
def env(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Settings on the test database with a fresh data folder (the registry lives there)."""
    if not (CHANGE_PAIRS / "levir_256" / "A" / f"{PAIR}.png").is_file():
        pytest.fail(f"the real change pairs are missing at {CHANGE_PAIRS}")
    monkeypatch.setenv("WEIJIAN_DATABASE_URL", db_url)
    monkeypatch.setenv("WEIJIAN_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("WEIJIAN_USER", "tester")
    get_settings.cache_clear()
    yield tmp_path
    get_settings.cache_clear()


def _reviewed_run(
    engine: Engine, folder: Path, review: bool = True
) -> tuple[int, dict[str, list[int]]]:
    """A run over a real pair as COGs: its label's buildings plus two false alarms, reviewed."""
    folder.mkdir(parents=True, exist_ok=True)
    before, after, label = real_pair_geotiffs(folder, PAIR, "levir_256")
    with rasterio.open(label) as src:
        mask = src.read(1) > 0
        transform, bounds = src.transform, src.bounds
    footprint = shapely.box(*bounds)
    buildings = [
        shapely.geometry.shape(g)
        for g, v in shapes(mask.astype(np.uint8), mask=mask, transform=transform)
        if v and shapely.geometry.shape(g).area >= 20
    ]
    x0, y0 = bounds.left, bounds.bottom
    alarms = [
        shapely.box(x0 + 10, y0 + 10, x0 + 22, y0 + 20),
        shapely.box(x0 + 100, y0 + 8, x0 + 110, y0 + 18),
    ]
    alarms = [a for a in alarms if not any(a.intersects(b) for b in buildings)]
    ids = {}
    for tag, path, when in (("before", before, BEFORE), ("after", after, AFTER)):
        ids[tag] = runs.register_scene(
            engine,
            checksum=f"{tag}-{PAIR}",
            footprint=footprint,
            acquired_at=when,
            platform="satellite",
            gsd_m=0.5,
            path=path,
            crs=CRS,
        )
    run = runs.create_run(
        engine,
        before_scene_id=ids["before"],
        after_scene_id=ids["after"],
        network="tinysiam",
        weights_checksum="shipped",
        params={},
    )
    runs.load_detections(engine, run, frame(buildings + alarms))
    match_run(engine, run)
    with engine.connect() as conn:
        det = list(
            conn.execute(
                text("SELECT id FROM detection WHERE run_id = :r ORDER BY seq"), {"r": run}
            ).scalars()
        )
    decided = {"confirmed": det[: len(buildings)], "false_positive": det[len(buildings) :]}
    if review:
        for d in decided["confirmed"]:
            review_detection(engine, d, "confirm", actor="alice")
        for d in decided["false_positive"]:
            review_detection(engine, d, "false_positive", actor="alice")
    return run, decided


def test_reviews_are_read_with_their_imagery(env: Path, engine: Engine) -> None:
    run, decided = _reviewed_run(engine, env / "cogs")
    frame_ = reviewed_detections(engine, [run])
    assert sorted(frame_["detection_id"]) == sorted(
        decided["confirmed"] + decided["false_positive"]
    )
    assert set(frame_["state"]) == {"confirmed", "false_positive"}
    assert (
        frame_["before_path"].iloc[0].endswith("_A.tif")
        and frame_["reviewed_by"].iloc[0] == "alice"
    )
    with pytest.raises(NotFoundError, match="999"):
        reviewed_detections(engine, [999])
    # a case verified on site, discovered between the two acquisitions, inside the footprint
    inside = frame_.geometry.iloc[0].centroid.buffer(4).envelope
    case = add_case(engine, "C-77", inside, state="verified")
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE inventory_case SET discovered_on = :d WHERE id = :i"),
            {"d": date(2026, 4, 1), "i": case},
        )
    cases = decided_cases(engine, [run])
    assert (
        case in set(cases["case_id"]) and cases.set_index("case_id").loc[case, "kind"] == "appeared"
    )


def test_run_without_reviews_is_one_clear_error(env: Path, engine: Engine) -> None:
    run, _ = _reviewed_run(engine, env / "cogs", review=False)
    with pytest.raises(InvalidInputError, match="no reviewed detections in run"):
        reviewed_detections(engine, [run])
    result = runner.invoke(app, _from_reviews(run, env / "ft"))
    assert isinstance(result.exception, InvalidInputError)  # main() prints it as one line
    assert not (env / "data" / "models").exists()
    assert not (env / "ft").exists()  # nothing half-made left behind


def test_from_reviews_that_fails_after_cutting_chips_leaves_no_out_folder(
    env: Path, engine: Engine
) -> None:
    """A refusal met after the chips are cut (here: a device torch does not know) removes OUT."""
    run, _ = _reviewed_run(engine, env / "cogs")
    result = runner.invoke(app, _from_reviews(run, env / "ft", "--device", "tpu"))
    assert "unknown device 'tpu'" in str(result.exception)
    assert not (env / "ft").exists()
    assert not (env / "data" / "models").exists()


@pytest.mark.slow
def test_from_reviews_fine_tunes_registers_and_gates(env: Path, engine: Engine) -> None:
    run, decided = _reviewed_run(engine, env / "cogs")
    out = env / "ft"
    result = runner.invoke(
        app,
        _from_reviews(run, out, "--epochs", "2", *SMALL),
    )
    assert result.exit_code == 0, result.output
    assert "registered model v1" in result.output
    n_conf, n_fp = len(decided["confirmed"]), len(decided["false_positive"])
    assert f"{n_conf} confirmed, {n_fp} false positives" in result.output
    chips = out / "chips"
    # a false alarm's chip is labelled "no change" where the alarm was (its centre)
    fp_label = np.asarray(
        Image.open(chips / "label" / f"r{run}_d{decided['false_positive'][0]}.png")
    )
    assert (
        fp_label.shape[0] >= 128 and fp_label[fp_label.shape[0] // 2, fp_label.shape[1] // 2] == 0
    )
    ok_label = np.asarray(Image.open(chips / "label" / f"r{run}_d{decided['confirmed'][0]}.png"))
    assert ok_label.max() == 255
    # partial labels: pixels outside every decided detection are unknown (127), never "no change"
    for label in (fp_label, ok_label):
        assert set(np.unique(label).tolist()) <= {0, UNKNOWN, 255}
    assert (ok_label == UNKNOWN).mean() > 0.3 and (fp_label == 0).sum() >= 100
    v1 = load_model(Registry(env / "data" / "models").entry("v1")["path"], "cpu")
    assert v1.threshold == load_model(device="cpu").threshold  # keeps its parent's threshold
    registry = Registry(env / "data" / "models")
    assert registry.versions() == ["v1"] and registry.current is None  # registered, not in use
    entry = registry.entry("v1")
    assert entry["parent"] == "shipped" and entry["lineage"]["runs"] == [run]
    assert sorted(entry["lineage"]["confirmed_detections"]) == sorted(decided["confirmed"])
    assert sorted(entry["lineage"]["false_positive_detections"]) == sorted(
        decided["false_positive"]
    )
    assert load_model(entry["path"], "cpu").metadata["lineage"]["parent"] == "shipped"
    shown = runner.invoke(app, ["model", "show", "v1"])
    assert (
        shown.exit_code == 0 and json.loads(shown.output)["lineage"]["decisions"] == n_conf + n_fp
    )
    assert "v1" in runner.invoke(app, ["model", "list"]).output

    # the gate on two held-out real pairs: promoted only if not worse, else nothing changes
    promoted = runner.invoke(
        app,
        [
            "model",
            "promote",
            "v1",
            "--eval",
            str(CHANGE_PAIRS / "levir_256"),
            "--only",
            "levir_256/test_55_*",
            "--only",
            "levir_256/test_121_*",
        ],
    )
    if promoted.exception is None:
        assert "is now the current model" in promoted.output and registry.current == "v1"
        assert load_model(registry=registry.root, device="cpu").metadata["lineage"]["runs"] == [run]
    else:
        assert "was not promoted" in str(promoted.exception) and registry.current is None
    assert len(registry.entry("v1")["evaluations"]) == 1


def test_a_surveyed_case_outline_replaces_the_detection_outline(env: Path, engine: Engine) -> None:
    """A confirmed detection whose case was verified and surveyed is labelled by the survey."""
    import geopandas as gpd
    from rasterio.features import rasterize

    from gis_db.inventory import upsert_cases
    from gis_db.workflow import transition_case
    from weijian.learning import _chip_grid, build_review_chips

    run, decided = _reviewed_run(engine, env / "cogs")
    with engine.connect() as conn:
        areas = dict(
            conn.execute(
                text("SELECT id, area_m2 FROM detection WHERE id = ANY(:d)"),
                {"d": decided["confirmed"]},
            ).all()
        )
        det = max(areas, key=lambda d: areas[d])  # the largest building: room to shift it
        case, number, wkb = conn.execute(
            text(
                "SELECT c.id, c.case_number, ST_AsBinary(d.geom) FROM case_detection l "
                "JOIN inventory_case c ON c.id = l.case_id "
                "JOIN detection d ON d.id = l.detection_id WHERE l.detection_id = :d"
            ),
            {"d": det},
        ).one()
    drawn = shapely.from_wkb(bytes(wkb))
    # the surveyor's outline: the building 2 m further east than the model drew it
    survey = shapely.affinity.translate(drawn, xoff=2.0)
    transition_case(engine, case, "dispatch", actor="office")
    transition_case(engine, case, "verify", actor="surveyor", role="street_town")
    upsert_cases(
        engine,
        gpd.GeoDataFrame({"case_number": [number]}, geometry=[survey], crs=CRS),
        actor="surveyor",
    )
    chips = build_review_chips(engine, env / "chips", [run], 0.5, CRS)
    assert chips.surveyed == [case] and case not in chips.cases
    assert not (env / "chips" / "label" / f"r{run}_c{case}.png").exists()  # no chip of its own
    label = np.asarray(Image.open(env / "chips" / "label" / f"r{run}_d{det}.png"))
    transform, px = _chip_grid(shapely.union_all([drawn, survey]), 0.5)
    assert label.shape == (px, px)

    def inside(geom: shapely.Geometry) -> np.ndarray:
        return rasterize([(geom, 1)], out_shape=(px, px), transform=transform) > 0

    others = shapely.union_all(
        [g for g in reviewed_detections(engine, [run]).geometry if not g.equals(drawn)]
    )
    assert (label[inside(survey)] == 255).all()  # the surveyed building is change
    only_drawn = inside(drawn.difference(survey).difference(others))
    assert only_drawn.sum() >= 10
    # what only the model drew is not the building: unknown, no longer taught as change
    assert (label[only_drawn] == UNKNOWN).all()


def test_a_patrol_report_of_a_missed_building_is_a_positive(env: Path, engine: Engine) -> None:
    """A case found on patrol that no detection pointed to teaches the model, even with no review.

    The office imports it (source 巡查, discovered between the run's acquisitions), dispatches it
    and the 街镇 verifies it on site: it is a decided case, cut as its own chip, change inside its
    surveyed outline, unknown elsewhere; nothing of the run was reviewed.
    """
    import geopandas as gpd
    from rasterio.features import rasterize

    from gis_db.inventory import upsert_cases
    from gis_db.workflow import transition_case
    from weijian.learning import _chip_grid, build_review_chips

    run, _ = _reviewed_run(engine, env / "cogs", review=False)
    with engine.connect() as conn:
        wkb = conn.execute(
            text("SELECT ST_AsBinary(geom) FROM detection WHERE run_id = :r ORDER BY area_m2 DESC"),
            {"r": run},
        ).first()
    building = shapely.from_wkb(bytes(wkb[0]))  # a labelled building, as the surveyor outlines it
    upsert_cases(
        engine,
        gpd.GeoDataFrame(
            {
                "case_number": ["XC-2026-001"],
                "source": ["patrol"],
                "construction_status": ["new"],
                "discovered_on": [date(2026, 4, 15)],
            },
            geometry=[building],
            crs=CRS,
        ),
        actor="patrol",
        reason="patrol report",
    )
    with engine.connect() as conn:
        case = conn.execute(
            text("SELECT id FROM inventory_case WHERE case_number = 'XC-2026-001'")
        ).scalar_one()
    # only cases confirmed on site are decisions: an open report is not
    with pytest.raises(InvalidInputError, match="no reviewed detections and no decided cases"):
        build_review_chips(engine, env / "open", [run], 0.5, CRS)
    transition_case(engine, case, "dispatch", actor="office")
    transition_case(engine, case, "verify", actor="street town", role="street_town")
    chips = build_review_chips(engine, env / "chips", [run], 0.5, CRS)
    assert chips.runs == [run] and chips.cases == [case]
    assert chips.confirmed == [] and chips.false_positive == [] and chips.chips == 1
    label = np.asarray(Image.open(env / "chips" / "label" / f"r{run}_c{case}.png"))
    transform, px = _chip_grid(building, 0.5)
    inside = rasterize([(building, 1)], out_shape=(px, px), transform=transform) > 0
    assert label.shape == (px, px) and inside.sum() >= 40
    assert (label[inside] == 255).all() and (label[~inside] == UNKNOWN).all()
    # and with every run (no --runs), the same chip
    assert build_review_chips(engine, env / "all", None, 0.5, CRS).cases == [case]


@pytest.mark.slow
def test_from_reviews_fine_tunes_each_member_of_a_current_ensemble(
    env: Path, engine: Engine
) -> None:
    """The current model is an ensemble: every member is fine-tuned, the result an ensemble."""
    registry = Registry(env / "data" / "models")
    parent = load_model(device="cpu")  # the shipped default, the three-seed ensemble
    assert registry.current is None and parent.ensemble_size == 3
    run, decided = _reviewed_run(engine, env / "cogs")
    result = runner.invoke(
        app,
        _from_reviews(run, env / "ft", "--epochs", "1", *SMALL),
    )
    assert result.exit_code == 0, result.output
    assert "registered model v1" in result.output
    entry = registry.entry("v1")
    assert entry["parent"] == "shipped" and entry["ensemble_size"] == 3
    assert len(entry["members"]) == 3
    tuned = load_model(entry["path"], "cpu")
    assert tuned.ensemble_size == 3 and tuned.threshold == parent.threshold  # parent's threshold
    assert tuned.metadata["lineage"]["runs"] == [run]
    assert sorted(tuned.metadata["lineage"]["confirmed_detections"]) == sorted(decided["confirmed"])
    for i in range(3):  # each member was fine-tuned from its own parent member
        member = load_model(env / "ft" / f"member_{i}" / "model.pt", "cpu")
        assert member.ensemble_size == 1 and member.metadata["lineage"]["member"] == i
        history = (env / "ft" / f"member_{i}" / "history.jsonl").read_text().splitlines()
        assert len(history) == 1 and "loss" in json.loads(history[0])  # one epoch trained
    assert registry.current is None  # registered, not in use
