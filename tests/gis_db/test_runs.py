"""The imagery catalogue and idempotent loading of detection runs."""

from __future__ import annotations

from datetime import datetime

import geopandas as gpd
import pytest
from shapely.geometry import Point, Polygon
from sqlalchemy import Engine, create_engine, inspect, text

from gis_db import matching, runs, schema, workflow
from gis_db.errors import ConflictError, InvalidInputError, NotFoundError
from weijian_testdata.runs import (
    CRS,
    add_case,
    add_scenes,
    detection_ids,
    frame,
    make_run,
    random_rects,
    rect,
)


def _count(engine: Engine, sql: str) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text(sql)).scalar_one())


def test_scene_and_run_are_identified_by_checksums(engine: Engine) -> None:
    before, after = add_scenes(engine)
    assert add_scenes(engine) == (before, after)
    args = {
        "before_scene_id": before,
        "after_scene_id": after,
        "network": "tinysiam",
        "weights_checksum": "w0",
    }
    run = runs.create_run(engine, **args, params={"threshold": 0.5})
    assert runs.create_run(engine, **args, params={"threshold": 0.5}) == run
    assert runs.create_run(engine, **args, params={"threshold": 0.6}) != run
    assert runs.get_run(engine, run)["status"] == "created"
    with pytest.raises(InvalidInputError, match="older"):
        runs.create_run(engine, **{**args, "before_scene_id": after, "after_scene_id": before})
    with pytest.raises(NotFoundError):
        runs.create_run(engine, **{**args, "before_scene_id": 999})


def test_scene_in_another_crs_is_refused(engine: Engine) -> None:
    with pytest.raises(InvalidInputError, match="reproject"):
        runs.register_scene(
            engine,
            checksum="x",
            footprint=rect(0, 0),
            crs="EPSG:4326",
            acquired_at=datetime(2026, 1, 1),
        )


def test_loading_the_same_run_twice_changes_nothing(engine: Engine) -> None:
    geoms = random_rects(50, seed=1)
    run_id = make_run(engine, geoms)
    ids = detection_ids(engine, run_id)
    again = runs.load_detections(engine, run_id, frame(geoms))
    assert again.unchanged and again.n_detections == 50
    assert detection_ids(engine, run_id) == ids
    assert make_run(engine, geoms) == run_id  # the same flight, weights, params: the same run


def test_reloading_replaces_detections_and_never_touches_cases(engine: Engine) -> None:
    case_id = add_case(engine, "K", rect(0, 0, 20, 20))
    run_id = make_run(engine, [rect(0, 0, 20, 20), rect(100, 100)])
    matching.match_run(engine, run_id)
    result = runs.load_detections(
        engine, run_id, frame([rect(0, 0, 20, 20), rect(200, 200), rect(300, 300)])
    )
    assert (result.replaced, result.n_detections, result.unchanged) == (2, 3, False)
    assert _count(engine, "SELECT count(*) FROM detection") == 3
    assert runs.get_run(engine, run_id)["status"] == "loaded"
    assert _count(engine, "SELECT count(*) FROM inventory_case") == 1
    assert workflow.history(engine, case_id=case_id) == []
    summary = matching.match_run(engine, run_id)
    assert summary.counts["known_case"] == 1 and summary.counts["new_suspect"] == 2


def test_reloading_a_reviewed_run_is_refused(engine: Engine) -> None:
    run_id = make_run(engine, [rect(0, 0), rect(50, 50)])
    matching.match_run(engine, run_id)
    workflow.review_detection(engine, detection_ids(engine, run_id)[0], "confirm", actor="r")
    with pytest.raises(ConflictError, match="new run"):
        runs.load_detections(engine, run_id, frame([rect(0, 0)]))
    assert _count(engine, "SELECT count(*) FROM detection") == 2


def test_detection_input_is_validated_and_repaired(engine: Engine) -> None:
    before, after = add_scenes(engine)
    run_id = runs.create_run(
        engine, before_scene_id=before, after_scene_id=after, network="n", weights_checksum="w"
    )
    bowtie = Polygon([(630000, 3470000), (630010, 3470010), (630010, 3470000), (630000, 3470010)])
    runs.load_detections(engine, run_id, frame([bowtie], kinds=["建筑消失"]))
    with engine.connect() as conn:
        kind, area, valid = conn.execute(
            text("SELECT change_kind, area_m2, ST_IsValid(geom) FROM detection")
        ).one()
    assert (kind, valid) == ("disappeared", True) and area == pytest.approx(50.0)
    for bad, match in [
        (gpd.GeoDataFrame(geometry=[Point(630000, 3470000)], crs=CRS), "not a polygon"),
        (frame([rect(0, 0)], scores=[1.5]), "score"),
        (frame([rect(0, 0)], kinds=["exploded"]), "exploded"),
        (gpd.GeoDataFrame(geometry=[rect(0, 0)]), "no CRS"),
        (frame([rect(0, 0)]).to_crs("EPSG:4326"), "reproject"),
    ]:
        with pytest.raises((InvalidInputError, ValueError), match=match):
            runs.load_detections(engine, run_id, bad)
    with pytest.raises(NotFoundError):
        runs.load_detections(engine, 999, frame([rect(0, 0)]))


def test_list_runs(engine: Engine) -> None:
    run_id = make_run(engine, random_rects(5))
    listed = runs.list_runs(engine)
    assert listed.loc[0, "id"] == run_id and listed.loc[0, "pending"] == 5


def test_migration_0002_goes_down_and_up(empty_db_url: str) -> None:
    engine = create_engine(empty_db_url)
    schema.upgrade(engine, CRS)
    schema.downgrade(engine, "0001")
    tables = set(inspect(engine).get_table_names())
    assert "inventory_case" in tables and "detection" not in tables and "scene" not in tables
    with engine.connect() as conn:
        assert (
            conn.execute(
                text(
                    "SELECT count(*) FROM information_schema.columns WHERE table_name = "
                    "'inventory_case' "
                    "AND column_name = 'written_off_by'"
                )
            ).scalar_one()
            == 0
        )
    schema.upgrade(engine, CRS, "0002")
    assert schema.current_revision(engine) == "0002"
    engine.dispose()
