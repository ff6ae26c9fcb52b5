"""The database the settings point at: the configured server or the embedded cluster, migrated."""

from __future__ import annotations

from sqlalchemy import Engine

from weijian.settings import Settings, get_settings


def database_url(settings: Settings | None = None, start: bool = True) -> str:
    """The URL in force: ``WEIJIAN_DATABASE_URL`` or the embedded cluster (started if needed)."""
    from gis_db.embedded import EmbeddedCluster

    settings = settings or get_settings()
    if settings.database_url:
        return settings.database_url
    cluster = EmbeddedCluster(settings.data_dir / "pg")
    return cluster.start() if start else cluster.url()


def connect(settings: Settings | None = None, migrate: bool = True) -> Engine:
    """An engine on the database in force, migrated to the newest schema (analysts start here).

    ``migrate=False`` leaves the schema as it is. Dispose of the engine when done (the command
    line uses :func:`weijian.cli.options.database`, which always does). Example::

        from gis_db.query import load_cases
        from weijian.database import connect

        engine = connect()
        cases = load_cases(engine, street_town="月浦镇")  # a GeoDataFrame in the working CRS
    """
    from gis_db import schema
    from gis_db.engine import make_engine

    settings = settings or get_settings()
    engine = make_engine(database_url(settings))
    if migrate:
        schema.upgrade(engine, settings.working_crs)
    return engine
