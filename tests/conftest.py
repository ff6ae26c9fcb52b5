"""Shared fixtures: a real PostGIS server for the whole session, a fresh database per test.

The server is ``WEIJIAN_TEST_DATABASE_URL`` when set (a role allowed to CREATE DATABASE),
otherwise an embedded cluster started in a temporary folder, which also exercises the
embedded default. When it cannot be had, tests that need it are skipped locally and fail
under ``CI=true``: CI must never pass without the real database.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

from weijian_testdata import SHARED_DATA as SHARED_DATA  # also imported from here by tests

WORKING_CRS = "EPSG:4549"
IN_CI = os.environ.get("CI", "").lower() == "true"


def skip_or_fail(reason: str) -> NoReturn:
    """Skip a test whose real component or data is missing; under ``CI=true`` fail it instead."""
    if IN_CI:
        pytest.fail(f"CI=true and {reason}")
    pytest.skip(reason)


def _unavailable(reason: str) -> NoReturn:
    skip_or_fail(f"PostGIS is unavailable: {reason}")


@pytest.fixture(scope="session")
def pg_server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL of a PostGIS server's maintenance database for this test session."""
    external = os.environ.get("WEIJIAN_TEST_DATABASE_URL")
    if external:
        yield external
        return
    from gis_db.embedded import EmbeddedCluster
    from gis_db.errors import GisDbError

    root = public_tmpdir("weijian-test-pg-")
    cluster = EmbeddedCluster(root)
    try:
        url = cluster.start()
    except GisDbError as exc:
        _unavailable(str(exc))
    yield url
    cluster.stop()
    shutil.rmtree(root, ignore_errors=True)


def public_tmpdir(prefix: str) -> Path:
    """A temporary folder the ``postgres`` system user can enter (pytest's own are private)."""
    root = Path(tempfile.mkdtemp(prefix=prefix))
    root.chmod(0o755)
    return root


@pytest.fixture(scope="session")
def template_db(pg_server_url: str) -> str:
    """Name of a database migrated to head, used as the template of each test's database."""
    from gis_db import schema

    admin = create_engine(pg_server_url, isolation_level="AUTOCOMMIT")
    name = f"weijian_tpl_{uuid.uuid4().hex[:8]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    engine = create_engine(make_url(pg_server_url).set(database=name))
    schema.upgrade(engine, WORKING_CRS)
    engine.dispose()
    admin.dispose()
    return name


@pytest.fixture()
def empty_db_url(pg_server_url: str) -> Iterator[str]:
    """URL of a brand-new database with nothing in it (for migration tests)."""
    yield from _scratch_database(pg_server_url, template=None)


@pytest.fixture()
def db_url(pg_server_url: str, template_db: str) -> Iterator[str]:
    """URL of a fresh database migrated to head, dropped after the test."""
    yield from _scratch_database(pg_server_url, template=template_db)


@pytest.fixture()
def engine(db_url: str) -> Iterator[Engine]:
    """An engine on a fresh, migrated database."""
    eng = create_engine(db_url)
    yield eng
    eng.dispose()


def _scratch_database(server_url: str, template: str | None) -> Iterator[str]:
    admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
    name = f"weijian_t_{uuid.uuid4().hex[:10]}"
    clause = f' TEMPLATE "{template}"' if template else ""
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"{clause}'))
    try:
        yield make_url(server_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
