"""upsert_cases / upsert_units: one transaction, update in place by case number, history."""

from __future__ import annotations

import geopandas as gpd
import pandas as pd
import pytest
import shapely
from sqlalchemy import Engine, text

from gis_db.errors import InvalidInputError
from gis_db.inventory import upsert_cases, upsert_units
from gis_db.inventory_io import import_cases_file
from weijian_testdata.inventory import make_cases, street_town_grid, write_gpkg


def counts(engine: Engine) -> tuple[int, int]:
    with engine.connect() as conn:
        return (
            conn.execute(text("SELECT count(*) FROM inventory_case")).scalar_one(),
            conn.execute(text("SELECT count(*) FROM case_history")).scalar_one(),
        )


def test_gpkg_import_creates_then_reimport_changes_nothing(engine: Engine, tmp_path) -> None:  # type: ignore[no-untyped-def]
    upsert_units(engine, "street_town", street_town_grid(), actor="tester")
    cases = make_cases(300)
    write_gpkg(cases, tmp_path / "cases.gpkg")
    first = import_cases_file(engine, tmp_path / "cases.gpkg", actor="tester")
    assert (first.created, first.updated, first.unchanged) == (300, 0, 0)
    assert first.source_crs and first.source_crs.startswith("EPSG:4549")
    assert counts(engine) == (300, 300)
    with engine.connect() as conn:
        unassigned, area = conn.execute(
            text(
                "SELECT count(*) FILTER (WHERE street_town_code IS NULL), sum(area_m2) FROM "
                "inventory_case"
            )
        ).one()
        action, comment = conn.execute(
            text("SELECT action, comment FROM case_history ORDER BY id LIMIT 1")
        ).one()
    assert unassigned == 0
    assert area == pytest.approx(cases.area.sum(), rel=1e-9)
    assert action == "import_create" and comment == "import: cases.gpkg row 1"
    again = import_cases_file(engine, tmp_path / "cases.gpkg", actor="tester")
    assert (again.created, again.updated, again.unchanged) == (0, 0, 300)
    assert counts(engine) == (300, 300)


def test_changed_rows_are_updated_with_history(engine: Engine) -> None:
    cases = make_cases(50)
    upsert_cases(engine, cases, actor="a")
    cases.loc[3, "priority_type"] = (
        "commercial" if cases.loc[3, "priority_type"] != "commercial" else "non_priority"
    )
    old_type = make_cases(50).loc[3, "priority_type"]
    cases.loc[7, "geometry"] = shapely.affinity.scale(cases.loc[7, "geometry"], 2, 2)
    more = make_cases(5, seed=9, prefix="NEW")
    both = gpd.GeoDataFrame(pd.concat([cases, more], ignore_index=True), crs=cases.crs)
    report = upsert_cases(engine, both, actor="b", reason="correction", source_file="fix.gpkg")
    assert (report.created, report.updated, report.unchanged) == (5, 2, 48)
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT c.case_number, c.version, h.changes, h.actor, h.comment FROM case_history "
                "h "
                "JOIN inventory_case c ON c.id = h.case_id WHERE h.action = 'import_update' "
                "ORDER BY c.case_number"
            )
        ).all()
    assert [r.case_number for r in rows] == ["BS000004", "BS000008"]
    assert rows[0].changes == {"priority_type": [old_type, cases.loc[3, "priority_type"]]}
    assert set(rows[1].changes) == {"geom", "area_m2"}
    assert rows[1].changes["area_m2"][1] == pytest.approx(4 * rows[1].changes["area_m2"][0])
    assert all(r.version == 2 and r.actor == "b" for r in rows)
    assert rows[0].comment == "correction: fix.gpkg row 4"


def test_frame_in_wrong_crs_or_with_duplicates_is_refused(engine: Engine) -> None:
    cases = make_cases(3)
    with pytest.raises(InvalidInputError, match="reproject"):
        upsert_cases(engine, cases.to_crs("EPSG:4326"), actor="a")
    dup = make_cases(3)
    dup.loc[2, "case_number"] = dup.loc[0, "case_number"]
    with pytest.raises(InvalidInputError, match="more than once"):
        upsert_cases(engine, dup, actor="a")
    assert counts(engine) == (0, 0)


def test_units_then_cases_are_reassigned_by_largest_overlap(engine: Engine) -> None:
    grid = street_town_grid(2, 1)
    (x0, y0, x1, _) = grid.total_bounds
    mid = (x0 + x1) / 2
    # 30 % in ST01, 70 % in ST02
    case = make_cases(1)
    case.loc[0, "geometry"] = shapely.box(mid - 3, y0 + 100, mid + 7, y0 + 110)
    upsert_cases(engine, case, actor="a")
    report = upsert_units(engine, "street_town", grid, actor="admin", district="宝山区")
    assert report.created == 2 and "1 case(s) moved" in report.warnings[0]
    with engine.connect() as conn:
        code = conn.execute(text("SELECT street_town_code FROM inventory_case")).scalar_one()
        action = conn.execute(
            text("SELECT action FROM case_history ORDER BY id DESC LIMIT 1")
        ).scalar_one()
        district = conn.execute(text("SELECT ST_Area(geom) FROM district")).scalar_one()
    assert code == "ST02" and action == "unit_reassign"
    assert district == pytest.approx(grid.area.sum())
    again = upsert_units(engine, "street_town", grid, actor="admin", district="宝山区")
    assert (again.created, again.updated, again.unchanged) == (0, 0, 2)
