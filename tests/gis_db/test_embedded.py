"""The embedded cluster: initialise, start, reuse, stop, restart on the same port."""

from __future__ import annotations

import shutil

import psycopg

from gis_db.embedded import EmbeddedCluster
from tests.conftest import public_tmpdir


def test_lifecycle_and_reuse() -> None:
    root = public_tmpdir("weijian-test-embedded-")
    cluster = EmbeddedCluster(root / "pg")
    assert not cluster.status().initialised
    url = cluster.start()
    try:
        status = cluster.status()
        assert status.initialised and status.running and status.port
        assert (root / "pg" / "password").stat().st_mode & 0o077 == 0
        assert cluster.start() == url  # reused, not re-initialised
        dsn = url.replace("postgresql+psycopg://", "postgresql://")
        with psycopg.connect(dsn) as conn:
            version = conn.execute("SELECT postgis_version()").fetchone()
            assert version and version[0].startswith("3")
        assert cluster.stop()
        assert not cluster.status().running
        assert not cluster.stop()
        assert cluster.start() == url  # same port and password after a restart
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)
