"""Migrations from an empty database, up and down, and the append-only history."""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.exc import DBAPIError, IntegrityError

from gis_db import schema
from gis_db.errors import GisDbError

SHANGHAI_LOCAL = (
    "+proj=tmerc +lat_0=31.2363 +lon_0=121.4645 +k=1 +x_0=0 +y_0=0 +ellps=GRS80 +units=m +no_defs"
)


def test_upgrade_and_downgrade_from_empty(empty_db_url: str) -> None:
    engine = create_engine(empty_db_url)
    schema.upgrade(engine, "EPSG:4549")
    tables = set(inspect(engine).get_table_names())
    assert {"street_town", "village", "inventory_case", "permit", "case_history"} <= tables
    with engine.connect() as conn:
        geom_types = dict(
            conn.execute(
                text(
                    "SELECT f_table_name, srid FROM geometry_columns WHERE f_table_name = "
                    "'inventory_case'"
                )
            ).all()
        )
        gist = conn.execute(
            text("SELECT count(*) FROM pg_indexes WHERE indexdef ILIKE '%USING gist%'")
        ).scalar_one()
    assert geom_types == {"inventory_case": 4549}
    assert gist >= 4
    schema.downgrade(engine, "base")
    assert "inventory_case" not in inspect(engine).get_table_names()
    assert schema.current_revision(engine) is None
    schema.upgrade(engine, "EPSG:4549")  # and up again on the downgraded database
    assert schema.current_revision(engine) is not None
    engine.dispose()


def test_custom_proj_string_working_crs(empty_db_url: str) -> None:
    engine = create_engine(empty_db_url)
    schema.upgrade(engine, SHANGHAI_LOCAL)
    with engine.connect() as conn:
        _crs, srid = schema.stored_crs(conn)  # type: ignore[misc]
        assert srid > schema.CUSTOM_SRID_BASE
        column_srid = conn.execute(
            text("SELECT srid FROM geometry_columns WHERE f_table_name = 'permit'")
        ).scalar_one()
    assert column_srid == srid
    with pytest.raises(GisDbError, match="WEIJIAN_WORKING_CRS"):
        schema.upgrade(engine, "EPSG:4549")
    engine.dispose()


def test_history_refuses_update_and_delete(engine) -> None:  # type: ignore[no-untyped-def]
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO inventory_case (case_number, area_m2, geom) VALUES "
                "('T-1', 100, ST_Multi(ST_MakeEnvelope(0, 0, 10, 10, 4549)))"
            )
        )
        conn.execute(
            text(
                "INSERT INTO case_history (case_id, actor, action) "
                "SELECT id, 'tester', 'create' FROM inventory_case"
            )
        )
    for statement in (
        "UPDATE case_history SET actor = 'x'",
        "DELETE FROM case_history",
        "TRUNCATE case_history",
    ):
        with pytest.raises(DBAPIError, match="append-only"), engine.begin() as conn:
            conn.execute(text(statement))
    with engine.connect() as conn:
        assert conn.execute(text("SELECT actor FROM case_history")).scalar_one() == "tester"


def test_invalid_category_refused_by_database(engine) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(IntegrityError), engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO inventory_case (case_number, area_m2, priority_type, geom) VALUES "
                "('T-2', 1, 'nonsense', ST_Multi(ST_MakeEnvelope(0, 0, 1, 1, 4549)))"
            )
        )


def test_an_unknown_revision_names_the_revisions_there_are(engine) -> None:  # type: ignore[no-untyped-def]
    """``weijian db downgrade nosuchrev`` was alembic's traceback."""
    from gis_db.errors import InvalidInputError

    before = schema.current_revision(engine)
    for move in (
        lambda: schema.downgrade(engine, "nosuchrev"),
        lambda: schema.upgrade(engine, "EPSG:4549", "9999"),
    ):
        with pytest.raises(InvalidInputError, match=rf"give one of 0001, .*{before}, 'head'"):
            move()
    assert schema.current_revision(engine) == before  # nothing moved
