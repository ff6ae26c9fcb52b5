"""A small seeded district for the review application.

Two 街镇, cases, a matched run with real
COG orthophotos on disk, one account per role, and an HTTP client on the real application.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import rasterio
from fastapi.testclient import TestClient
from rasterio.transform import from_origin
from sqlalchemy import Engine

from gis_db import matching, runs
from web_map import WebConfig, accounts, create_app
from weijian_testdata import runs as rf

PASSWORD = "correct-horse-9"
SECRET = "test-secret-key-" + "x" * 32


def write_orthophoto(
    path: Path, seed: int, squares: list[tuple[float, float, float, float]]
) -> None:
    """A 2 m RGB COG over the factory's 2 x 2 km scene extent, with bright roofs.

    ``squares``: (x, y, w, h) in metres from the factory origin.
    """
    gsd, size = 2.0, 1000
    rng = np.random.default_rng(seed)
    data = rng.integers(60, 110, (3, size, size), dtype=np.uint8)
    data[1] += 30  # greenish ground
    left, top = rf.X0 - 1000, rf.Y0 + 1000
    for x, y, w, h in squares:
        c0, c1 = int((x + 1000) / gsd), int((x + w + 1000) / gsd)
        r0, r1 = int((1000 - y - h) / gsd), int((1000 - y) / gsd)
        data[:, r0:r1, c0:c1] = np.array([220, 200, 190], dtype=np.uint8)[:, None, None]
    profile = {
        "driver": "COG",
        "width": size,
        "height": size,
        "count": 3,
        "dtype": "uint8",
        "crs": rf.CRS,
        "transform": from_origin(left, top, gsd, gsd),
        "compress": "deflate",
    }
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)


@pytest.fixture(scope="session")
def orthophotos(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("ortho")
    before, after = root / "before_20260301.tif", root / "after_20260601.tif"
    roofs = [(x, 100.0, 20.0, 15.0) for x in (-300.0, -200.0, -100.0, 100.0, 200.0, 300.0)]
    write_orthophoto(before, 1, roofs[:2])
    write_orthophoto(after, 2, roofs)
    return before, after


@dataclass
class District:
    engine: Engine
    run_id: int
    detection_ids: list[int]
    case_ids: dict[str, int]
    users: dict[str, accounts.User] = field(default_factory=dict)


def seed_district(engine: Engine, orthophotos: tuple[Path, Path]) -> District:
    """ST01 west of the origin, ST02 east; cases in both; a run whose six roofs appeared."""
    rf.add_street_town(engine, "ST01", "测试一镇", rf.rect(-1000, -1000, 1000, 2000))
    rf.add_street_town(engine, "ST02", "测试二镇", rf.rect(0, -1000, 1000, 2000))
    cases = {
        "west-known": rf.add_case(engine, "BS-W-1", rf.rect(-300, 100, 20, 15), "open", "ST01"),
        "east-open": rf.add_case(engine, "BS-E-1", rf.rect(500, 500, 20, 20), "open", "ST02"),
        "west-open": rf.add_case(engine, "BS-W-2", rf.rect(-500, -500, 20, 20), "open", "ST01"),
    }
    before, after = rf.add_scenes(
        engine, tag="web", paths=(str(orthophotos[0]), str(orthophotos[1]))
    )
    run_id = runs.create_run(
        engine,
        before_scene_id=before,
        after_scene_id=after,
        network="tinysiam",
        weights_checksum="w0",
        params={},
    )
    geoms = [rf.rect(x, 100, 20, 15) for x in (-300.0, -200.0, -100.0, 100.0, 200.0, 300.0)]
    frame = rf.frame(geoms, scores=[0.95, 0.9, 0.85, 0.8, 0.75, 0.7])
    runs.load_detections(engine, run_id, frame)
    matching.match_run(engine, run_id)
    return District(engine, run_id, rf.detection_ids(engine, run_id), cases)


ROLE_USERS = {
    "reviewer": ("reviewer", None),
    "approver": ("approver", None),
    "approver2": ("approver", None),
    "west": ("street_town", "ST01"),
    "east": ("street_town", "ST02"),
    "analyst": ("analyst", None),
    "admin": ("admin", None),
}


@pytest.fixture(scope="session")
def district_template(
    pg_server_url: str, template_db: str, orthophotos: tuple[Path, Path]
) -> Iterator[tuple[str, District]]:
    """A database holding the seeded district and one account per role, cloned by each test.

    (Seeding and hashing seven passwords once instead of in every test).
    """
    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url

    from tests.conftest import _scratch_database

    gen = _scratch_database(pg_server_url, template=template_db)
    url = next(gen)
    engine = create_engine(url)
    d = seed_district(engine, orthophotos)
    for name, (role, town) in ROLE_USERS.items():
        d.users[name] = accounts.add_user(engine, name, PASSWORD, role, street_town=town)
    engine.dispose()
    yield str(make_url(url).database), d
    gen.close()


@pytest.fixture()
def district(pg_server_url: str, district_template: tuple[str, District]) -> Iterator[District]:
    """A fresh copy of the seeded district (its own database) for one test."""
    from sqlalchemy import create_engine

    from tests.conftest import _scratch_database

    name, seeded = district_template
    for url in _scratch_database(pg_server_url, template=name):
        engine = create_engine(url)
        yield District(engine, seeded.run_id, seeded.detection_ids, seeded.case_ids, seeded.users)
        engine.dispose()


@pytest.fixture()
def web_config(tmp_path: Path) -> WebConfig:
    return WebConfig(secret_key=SECRET, evidence_dir=tmp_path / "evidence", login_max_failures=3)


@pytest.fixture()
def app_client(district: District, web_config: WebConfig) -> Iterator[TestClient]:
    with TestClient(create_app(district.engine, web_config)) as client:
        yield client


def login(client: TestClient, username: str, password: str = PASSWORD) -> str:
    """Log ``client`` in as ``username``; returns the session's CSRF token."""
    client.cookies.clear()
    page = client.get("/login")
    token = page.text.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
    resp = client.post(
        "/login",
        data={"username": username, "password": password, "csrf_token": token, "next": "/"},
        follow_redirects=False,
    )
    assert resp.status_code == 303, resp.text
    me = client.get("/api/me")
    assert me.status_code == 200
    return str(me.json()["csrf_token"])
