"""Connecting to the system of record."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from sqlalchemy import Connection, Engine, create_engine, text
from sqlalchemy.exc import OperationalError

from gis_db.errors import DatabaseUnavailableError


def make_engine(url: str, **kwargs: object) -> Engine:
    """An SQLAlchemy engine for ``url``, checked to reach a PostGIS-capable PostgreSQL.

    A plain ``postgresql://`` URL is given the psycopg 3 driver.
    """
    if url.startswith(("postgresql://", "postgres://")):
        url = "postgresql+psycopg://" + url.split("://", 1)[1]
    engine = create_engine(url, pool_pre_ping=True, **kwargs)
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except OperationalError as exc:
        safe = engine.url.render_as_string(hide_password=True)
        raise DatabaseUnavailableError(
            f"cannot connect to {safe}: {exc.orig}. Check WEIJIAN_DATABASE_URL, or unset it to "
            "use the embedded cluster"
        ) from exc
    return engine


def psycopg_connection(conn: Connection) -> psycopg.Connection[Any]:
    """The psycopg 3 connection under an SQLAlchemy connection (for ``COPY``)."""
    raw = conn.connection.driver_connection
    if not isinstance(raw, psycopg.Connection):
        raise TypeError(f"expected a psycopg 3 connection, got {type(raw).__name__}")
    return raw


@contextmanager
def transaction(bind: Engine | Connection) -> Iterator[Connection]:
    """A connection in a transaction: a new one for an Engine, the caller's for a Connection."""
    if isinstance(bind, Engine):
        with bind.begin() as conn:
            yield conn
    elif bind.in_transaction():
        yield bind
    else:
        with bind.begin():
            yield bind
