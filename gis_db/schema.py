"""Schema management: Alembic migrations from an empty database, and the working CRS's SRID.

Geometry columns are created in the working CRS given at the first upgrade. That CRS and its
PostGIS SRID are recorded in the table ``db_meta``; a later upgrade with another CRS is refused,
because silently mixing coordinate systems would corrupt every area and overlap.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from importlib.resources import files
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from pyproj import CRS
from sqlalchemy import Connection, Engine, text

from gis_db.errors import GisDbError, InvalidInputError

#: SRIDs from here on are given to working CRSs that have no EPSG code (e.g. 上海2000).
CUSTOM_SRID_BASE = 910000


def _alembic_config(connection: Connection) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(files("gis_db") / "migrations"))
    cfg.attributes["connection"] = connection
    return cfg


def resolve_srid(connection: Connection, working_crs: str) -> int:
    """The PostGIS SRID of ``working_crs``, registering it in spatial_ref_sys when custom."""
    crs = CRS.from_user_input(working_crs)
    epsg = crs.to_epsg(min_confidence=100)
    if epsg is not None:
        known = connection.execute(
            text("SELECT 1 FROM spatial_ref_sys WHERE srid = :s"), {"s": epsg}
        ).scalar()
        if known:
            return epsg
    wkt = crs.to_wkt()
    found = connection.execute(
        text("SELECT srid FROM spatial_ref_sys WHERE auth_name = 'weijian' AND srtext = :w"),
        {"w": wkt},
    ).scalar()
    if found is not None:
        return int(found)
    srid = int(
        connection.execute(
            text(
                "SELECT GREATEST(:base, COALESCE(MAX(srid), :base)) + 1 FROM spatial_ref_sys "
                "WHERE srid > :base"
            ),
            {"base": CUSTOM_SRID_BASE},
        ).scalar_one()
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # PROJ string is informative only
        proj4 = crs.to_proj4()
    connection.execute(
        text(
            "INSERT INTO spatial_ref_sys (srid, auth_name, auth_srid, srtext, proj4text) "
            "VALUES (:s, 'weijian', :s, :w, :p)"
        ),
        {"s": srid, "w": wkt, "p": proj4},
    )
    return srid


def stored_crs(connection: Connection) -> tuple[str, int] | None:
    """(working CRS, SRID) recorded at the first upgrade, or None for an empty database."""
    exists = connection.execute(text("SELECT to_regclass('db_meta')")).scalar()
    if exists is None:
        return None
    rows: dict[str, str] = {
        key: value for key, value in connection.execute(text("SELECT key, value FROM db_meta"))
    }
    return rows["working_crs"], int(rows["srid"])


#: Why a database without the weijian schema cannot be used, and what to do.
NO_SCHEMA = "the database has no weijian schema yet: run 'weijian db upgrade'"


def require_working_crs(connection: Connection) -> tuple[str, int]:
    """(working CRS, SRID) of this database; InvalidInputError before its first upgrade."""
    stored = stored_crs(connection)
    if stored is None:
        raise InvalidInputError(NO_SCHEMA)
    return stored


def working_srid(connection: Connection) -> int:
    """The SRID of every geometry column of this database."""
    return require_working_crs(connection)[1]


def migration_attributes() -> dict[str, Any]:
    """Inside a migration: the values ``upgrade`` handed over (``srid``, ``working_crs``)."""
    from alembic import op

    config = op.get_context().config
    if config is None:
        raise GisDbError("run migrations through gis_db.schema.upgrade, not the alembic CLI")
    return config.attributes


def current_revision(engine: Engine) -> str | None:
    """The Alembic revision the database is at, or None before the first migration."""
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(engine: Engine, working_crs: str, revision: str = "head") -> None:
    """Migrate to ``revision`` (default the newest), creating geometry in ``working_crs``."""
    with engine.begin() as conn:
        conn.execute(text("CREATE EXTENSION IF NOT EXISTS postgis"))
        stored = stored_crs(conn)
        if stored is not None and not CRS.from_user_input(stored[0]).equals(
            CRS.from_user_input(working_crs)
        ):
            raise GisDbError(
                f"this database stores geometry in {stored[0]!r} but the settings ask for "
                f"{working_crs!r}: set WEIJIAN_WORKING_CRS={stored[0]!r} or use a new database"
            )
        cfg = _alembic_config(conn)
        cfg.attributes["working_crs"] = working_crs
        cfg.attributes["srid"] = stored[1] if stored else resolve_srid(conn, working_crs)
        with _revision_named(cfg, revision):
            command.upgrade(cfg, revision)


def downgrade(engine: Engine, revision: str = "base") -> None:
    """Migrate down to ``revision`` (default: drop everything weijian created)."""
    with engine.begin() as conn:
        cfg = _alembic_config(conn)
        with _revision_named(cfg, revision):
            command.downgrade(cfg, revision)


@contextmanager
def _revision_named(cfg: Config, revision: str) -> Iterator[None]:
    """An unknown revision as :class:`InvalidInputError` naming the ones there are."""
    try:
        yield
    except CommandError as exc:
        if "Can't locate revision" not in str(exc) and "No such revision" not in str(exc):
            raise
        known = sorted(s.revision for s in ScriptDirectory.from_config(cfg).walk_revisions())
        raise InvalidInputError(
            f"no schema revision {revision!r}: give one of {', '.join(known)}, 'head' (the "
            "newest) or 'base' (before the first: every table removed)"
        ) from None
