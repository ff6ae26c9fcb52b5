"""The API and pages over a real PostGIS: log-in, CSRF, 街镇 scoping, workflow rules, uploads."""

from __future__ import annotations

import io
import re

import pytest
from fastapi.testclient import TestClient
from PIL import Image
from sqlalchemy import text

from gis_db.errors import ConflictError, IllegalTransitionError, NotFoundError
from tests.web_map.conftest import PASSWORD, SECRET, District, login
from web_map import tiles
from web_map.errors import (
    AuthenticationRequiredError,
    CsrfError,
    RateLimitedError,
    UploadTooLargeError,
    http_status,
)

WHOLE = "121.0,31.0,122.0,32.0"


def jpeg(size: int = 32) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (size, size), (200, 100, 50)).save(buf, "JPEG")
    return buf.getvalue()


def test_error_table() -> None:
    assert http_status(AuthenticationRequiredError("x")) == 401
    assert http_status(CsrfError("x")) == 403
    assert http_status(NotFoundError("x")) == 404
    assert http_status(ConflictError("x")) == 409
    assert http_status(IllegalTransitionError("x")) == 409
    assert http_status(UploadTooLargeError("x")) == 413
    assert http_status(RateLimitedError("x")) == 429
    assert http_status(RuntimeError("x")) == 500


def test_anonymous_gets_401_and_pages_redirect(app_client: TestClient, district: District) -> None:
    for url in (
        "/api/runs",
        f"/api/runs/{district.run_id}/detections?bbox={WHOLE}",
        "/api/cases",
        "/tiles/1/0/0/0.png",
        f"/api/detections/{district.detection_ids[0]}",
    ):
        resp = app_client.get(url)
        assert resp.status_code == 401, url
        assert "log in" in resp.json()["detail"]
    resp = app_client.post(
        f"/api/detections/{district.detection_ids[0]}/review",
        json={"action": "confirm", "version": 1},
    )
    assert resp.status_code == 401
    page = app_client.get("/cases", follow_redirects=False)
    assert page.status_code == 303 and page.headers["location"].startswith("/login?next=/cases")


def test_login_failures_are_rate_limited(app_client: TestClient) -> None:
    page = app_client.get("/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    for _ in range(3):
        bad = app_client.post(
            "/login", data={"username": "reviewer", "password": "nope-nope", "csrf_token": token}
        )
        assert bad.status_code == 401 and "用户名或密码错误" in bad.text
    limited = app_client.post(
        "/login", data={"username": "reviewer", "password": PASSWORD, "csrf_token": token}
    )
    assert limited.status_code == 429
    # a log-in without the page's token is refused even with the right password
    app_client.cookies.clear()
    app_client.get("/login")
    no_token = app_client.post("/login", data={"username": "admin", "password": PASSWORD})
    assert no_token.status_code == 403


def test_csrf_is_required_for_changes(app_client: TestClient, district: District) -> None:
    token = login(app_client, "reviewer")
    det = district.detection_ids[3]
    body = {"action": "confirm", "version": 1}
    assert app_client.post(f"/api/detections/{det}/review", json=body).status_code == 403
    wrong = app_client.post(
        f"/api/detections/{det}/review", json=body, headers={"X-CSRF-Token": "forged"}
    )
    assert wrong.status_code == 403
    ok = app_client.post(
        f"/api/detections/{det}/review", json=body, headers={"X-CSRF-Token": token}
    )
    assert ok.status_code == 200, ok.text
    assert ok.json()["case_created"] is True


def _ids(fc: dict) -> set[int]:
    return {f["id"] for f in fc["features"]}


def test_bbox_layers_and_street_town_scope(app_client: TestClient, district: District) -> None:
    login(app_client, "reviewer")
    fc = app_client.get(f"/api/runs/{district.run_id}/detections?bbox={WHOLE}").json()
    assert fc["type"] == "FeatureCollection" and len(fc["features"]) == 6
    lon, lat = fc["features"][0]["geometry"]["coordinates"][0][0][0]
    assert 121 < lon < 122 and 31 < lat < 32  # WGS84 degrees
    assert fc["features"][0]["properties"]["score"] == 0.95  # highest score first
    # a box around the west half holds only the three western detections
    west = [f for f in fc["features"] if f["properties"]["street_town"] == "ST01"]
    xs = [c[0] for f in west for c in f["geometry"]["coordinates"][0][0]]
    ys = [c[1] for f in west for c in f["geometry"]["coordinates"][0][0]]
    box = f"{min(xs) - 1e-4},{min(ys) - 1e-4},{max(xs) + 1e-4},{max(ys) + 1e-4}"
    assert _ids(
        app_client.get(f"/api/runs/{district.run_id}/detections?bbox={box}").json()
    ) == _ids({"features": west})
    capped = app_client.get(f"/api/runs/{district.run_id}/detections?bbox={WHOLE}&limit=2").json()
    assert len(capped["features"]) == 2 and capped["truncated"] is True
    assert app_client.get(f"/api/runs/{district.run_id}/detections?bbox=1,2,3").status_code == 400
    assert len(app_client.get(f"/api/cases?bbox={WHOLE}").json()["features"]) == 3

    login(app_client, "west")
    fc = app_client.get(f"/api/runs/{district.run_id}/detections?bbox={WHOLE}").json()
    assert len(fc["features"]) == 3
    assert {f["properties"]["street_town"] for f in fc["features"]} == {"ST01"}
    cases = app_client.get(f"/api/cases?bbox={WHOLE}").json()
    assert {f["properties"]["street_town"] for f in cases["features"]} == {"ST01"}
    east_det = next(d for d in district.detection_ids if d not in _ids(fc))
    assert app_client.get(f"/api/detections/{east_det}").status_code == 404
    assert app_client.get(f"/api/cases/{district.case_ids['east-open']}").status_code == 404
    assert app_client.get(f"/api/cases/{district.case_ids['east-open']}/history").status_code == 404
    assert app_client.get(f"/cases/{district.case_ids['east-open']}").status_code == 404
    queue = app_client.get(f"/api/runs/{district.run_id}/queue").json()
    assert {r["street_town_code"] for r in queue} == {"ST01"}
    search = app_client.get("/api/search?q=BS-").json()
    assert {r["case_number"] for r in search} == {"BS-W-1", "BS-W-2"}


def test_street_town_cannot_act_on_a_neighbour(app_client: TestClient, district: District) -> None:
    token = login(app_client, "reviewer")
    east = district.case_ids["east-open"]
    r = app_client.post(
        f"/api/cases/{east}/actions",
        json={"action": "dispatch", "version": 1},
        headers={"X-CSRF-Token": token},
    )
    assert r.status_code == 200
    token = login(app_client, "west")
    r = app_client.post(
        f"/api/cases/{east}/actions",
        json={"action": "verify", "version": 2},
        headers={"X-CSRF-Token": token},
    )
    assert r.status_code == 404
    east_det = [d for d in district.detection_ids][-1]
    r = app_client.post(
        f"/api/detections/{east_det}/review",
        json={"action": "false_positive", "version": 1},
        headers={"X-CSRF-Token": token},
    )
    assert r.status_code == 404
    with district.engine.connect() as conn:
        assert (
            conn.execute(
                text("SELECT state FROM detection WHERE id = :i"), {"i": east_det}
            ).scalar()
            == "new"
        )


def test_roles_and_stale_versions(app_client: TestClient, district: District) -> None:
    token = login(app_client, "analyst")
    det = district.detection_ids[0]
    r = app_client.post(
        f"/api/detections/{det}/review",
        json={"action": "confirm", "version": 1},
        headers={"X-CSRF-Token": token},
    )
    assert r.status_code == 403
    token = login(app_client, "reviewer")
    r = app_client.post(
        f"/api/detections/{det}/review",
        json={"action": "false_positive", "version": 1, "comment": "阴影"},
        headers={"X-CSRF-Token": token},
    )
    assert r.status_code == 200
    stale = app_client.post(
        f"/api/detections/{det}/review",
        json={"action": "reopen", "version": 1},
        headers={"X-CSRF-Token": token},
    )
    assert stale.status_code == 409 and "reload" in stale.json()["detail"]
    illegal = app_client.post(
        f"/api/detections/{det}/review",
        json={"action": "confirm", "version": 2},
        headers={"X-CSRF-Token": token},
    )
    assert illegal.status_code == 409 and "Allowed now" in illegal.json()["detail"]
    case = district.case_ids["west-open"]
    r = app_client.post(
        f"/api/cases/{case}/actions",
        json={"action": "write_off", "version": 1},
        headers={"X-CSRF-Token": token},
    )
    assert r.status_code == 403  # a reviewer never signs off
    hist = app_client.get(f"/api/detections/{det}").json()["history"]
    assert [(h["actor"], h["role"], h["to_state"], h["comment"]) for h in hist] == [
        ("reviewer", "office", "false_positive", "阴影")
    ]


def test_write_off_loop_with_photos_and_second_person(
    app_client: TestClient, district: District
) -> None:
    case = district.case_ids["west-open"]
    token = login(app_client, "reviewer")
    assert (
        app_client.post(
            f"/api/cases/{case}/actions",
            json={"action": "dispatch", "version": 1},
            headers={"X-CSRF-Token": token},
        ).status_code
        == 200
    )
    token = login(app_client, "west")
    for action, version, extra in (("verify", 2, {}), ("dispose", 3, {"disposal": "拆除"})):
        r = app_client.post(
            f"/api/cases/{case}/actions",
            json={"action": action, "version": version, **extra},
            headers={"X-CSRF-Token": token},
        )
        assert r.status_code == 200, r.text
    # uploads: size and type are checked
    big = app_client.post(
        f"/api/cases/{case}/evidence",
        headers={"X-CSRF-Token": token},
        files={"file": ("big.jpg", b"\xff\xd8\xff" + b"0" * (11 << 20), "image/jpeg")},
    )
    assert big.status_code == 413
    huge = app_client.post(
        f"/api/cases/{case}/evidence",
        headers={"X-CSRF-Token": token},
        files={"file": ("huge.jpg", b"\xff\xd8\xff" + b"0" * (60 << 20), "image/jpeg")},
    )
    assert huge.status_code == 413 and "fewer or smaller" in huge.json()["detail"]
    fake = app_client.post(
        f"/api/cases/{case}/evidence",
        headers={"X-CSRF-Token": token},
        files={"file": ("x.jpg", b"<html>not a photo</html>", "image/jpeg")},
    )
    assert fake.status_code == 415
    no_evidence = app_client.post(
        f"/api/cases/{case}/actions",
        json={"action": "request_write_off", "version": 4},
        headers={"X-CSRF-Token": token},
    )
    assert no_evidence.status_code == 400 and "evidence" in no_evidence.json()["detail"]
    photo = jpeg()
    up = app_client.post(
        f"/api/cases/{case}/evidence",
        headers={"X-CSRF-Token": token},
        files={"file": ("现场.jpg", photo, "image/jpeg")},
    )
    assert up.status_code == 201, up.text
    import hashlib

    assert up.json()["sha256"] == hashlib.sha256(photo).hexdigest()
    r = app_client.post(
        f"/api/cases/{case}/actions",
        json={
            "action": "request_write_off",
            "version": 4,
            "evidence_file_ids": [up.json()["evidence_file_id"]],
        },
        headers={"X-CSRF-Token": token},
    )
    assert r.status_code == 200, r.text
    got = app_client.get(f"/evidence/{up.json()['evidence_file_id']}")
    assert got.status_code == 200 and got.content == photo
    # approver writes off; the second approver cannot, since it moved on (409 stale)
    token = login(app_client, "approver")
    r = app_client.post(
        f"/api/cases/{case}/actions",
        json={"action": "write_off", "version": 5},
        headers={"X-CSRF-Token": token},
    )
    assert r.status_code == 200, r.text
    token2 = login(app_client, "approver2")
    r = app_client.post(
        f"/api/cases/{case}/actions",
        json={"action": "write_off", "version": 5},
        headers={"X-CSRF-Token": token2},
    )
    assert r.status_code == 409
    hist = app_client.get(f"/api/cases/{case}/history").json()
    assert [(h["actor"], h["action"]) for h in hist] == [
        ("reviewer", "dispatch"),
        ("west", "verify"),
        ("west", "dispose"),
        ("west", "request_write_off"),
        ("approver", "write_off"),
    ]
    assert hist[3]["evidence"][0]["sha256"] == hashlib.sha256(photo).hexdigest()


def test_requester_cannot_approve_own_write_off(app_client: TestClient, district: District) -> None:
    case = district.case_ids["west-open"]
    token = login(app_client, "approver")
    for action, version, extra in (
        ("dispatch", 1, {}),
        ("verify", 2, {}),
        ("dispose", 3, {"disposal": "demolish"}),
        ("request_write_off", 4, {"evidence_refs": ["卷宗 2026-001"]}),
    ):
        r = app_client.post(
            f"/api/cases/{case}/actions",
            json={"action": action, "version": version, **extra},
            headers={"X-CSRF-Token": token},
        )
        assert r.status_code == 200, r.text
    r = app_client.post(
        f"/api/cases/{case}/actions",
        json={"action": "write_off", "version": 5},
        headers={"X-CSRF-Token": token},
    )
    assert r.status_code == 403 and "申请人以外" in r.json()["detail"]


def test_comments_are_escaped(app_client: TestClient, district: District) -> None:
    case = district.case_ids["west-open"]
    token = login(app_client, "reviewer")
    evil = "<script>alert('x')</script>"
    r = app_client.post(
        f"/api/cases/{case}/actions",
        json={"action": "dispatch", "version": 1, "comment": evil},
        headers={"X-CSRF-Token": token},
    )
    assert r.status_code == 200
    page = app_client.get(f"/cases/{case}").text
    assert evil not in page
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in page


def test_tiles_and_chips(app_client: TestClient, district: District) -> None:
    login(app_client, "west")
    with district.engine.connect() as conn:
        scene = conn.execute(
            text("SELECT after_scene_id FROM detection_run WHERE id = :r"), {"r": district.run_id}
        ).scalar()
    # the tile over the scene's centre at zoom 16
    import morecantile

    fc = app_client.get(f"/api/runs/{district.run_id}/detections?bbox={WHOLE}").json()
    lon, lat = fc["features"][0]["geometry"]["coordinates"][0][0][0]
    t = morecantile.tms.get("WebMercatorQuad").tile(lon, lat, 16)
    tile = app_client.get(f"/tiles/{scene}/{t.z}/{t.x}/{t.y}.png")
    assert tile.status_code == 200 and tile.content.startswith(b"\x89PNG")
    outside = app_client.get(f"/tiles/{scene}/3/0/0.png")  # far outside the scene: transparent
    assert outside.status_code == 200 and outside.content == tiles.empty_tile()
    assert app_client.get(f"/tiles/{scene}/3/9/0.png").status_code == 404  # no such tile
    assert app_client.get("/tiles/9999/16/1/1.png").status_code == 404
    for evil in (
        "/tiles/..%2F..%2Fetc%2Fpasswd/1/1/1.png",
        "/tiles/%2Fetc%2Fpasswd/0/0/0.png",
        f"/tiles/{scene}/../../../etc/passwd",
        "/static/../app.py",
        "/static/..%2F..%2Fapp.py",
        "/evidence/..%2F..%2Fetc%2Fpasswd",
    ):
        resp = app_client.get(evil)
        assert resp.status_code in (404, 422), evil
        assert b"root:" not in resp.content and b"def create_app" not in resp.content
    chip = app_client.get(f"/chips/{fc['features'][0]['id']}/after.png")
    assert chip.status_code == 200 and chip.content.startswith(b"\x89PNG")
    assert app_client.get(f"/chips/{fc['features'][0]['id']}/x.png").status_code == 403


def test_pages_render_without_remote_assets_or_secrets(
    app_client: TestClient, district: District
) -> None:
    login(app_client, "reviewer")
    for url in (
        "/",
        f"/runs/{district.run_id}/map",
        f"/runs/{district.run_id}/map?view=dual",
        f"/runs/{district.run_id}/review",
        "/cases",
        f"/cases/{district.case_ids['west-open']}",
        "/due",
    ):
        page = app_client.get(url)
        assert page.status_code == 200, url
        assert SECRET not in page.text
        assert not re.search(r'<(script|link)[^>]+(src|href)="https?://', page.text), url
    swipe = app_client.get(f"/runs/{district.run_id}/map").text
    assert "L.control.sideBySide" in swipe and "WJ.mapPage" in swipe
    assert "tianditu" not in swipe  # no key configured: no Tianditu layer
    dual = app_client.get(f"/runs/{district.run_id}/map?view=dual").text
    assert ".sync(" in dual
    en = app_client.get("/lang?to=en&next=/cases", follow_redirects=True)
    assert "Cases" in en.text and "Log out" in en.text
    assert (
        app_client.get("/lang?to=en&next=//evil.example", follow_redirects=False).headers[
            "location"
        ]
        == "/"
    )


def test_tianditu_only_with_a_key(district: District, web_config) -> None:  # type: ignore[no-untyped-def]
    from dataclasses import replace

    from web_map import create_app

    with TestClient(create_app(district.engine, replace(web_config, tianditu_key="abc123"))) as c:
        login(c, "reviewer")
        page = c.get(f"/runs/{district.run_id}/map").text
        assert "tianditu.gov.cn" in page and "tk=abc123" in page


@pytest.mark.parametrize("user", ["admin", "analyst"])
def test_disabled_account_loses_its_session(
    app_client: TestClient, district: District, user: str
) -> None:
    from web_map import accounts

    login(app_client, user)
    assert app_client.get("/api/runs").status_code == 200
    accounts.set_disabled(district.engine, user)
    assert app_client.get("/api/runs").status_code == 401


def test_unit_layers_with_colour_warnings(app_client: TestClient, district: District) -> None:
    from weijian_testdata import runs as rf

    rf.add_village(district.engine, "ST01001", "一村", "ST01", rf.rect(-1000, -1000, 500, 500))
    rf.add_village(district.engine, "ST02001", "二村", "ST02", rf.rect(500, 500, 500, 500))
    login(app_client, "reviewer")
    towns = app_client.get("/api/units").json()
    assert {f["properties"]["code"] for f in towns["features"]} == {"ST01", "ST02"}
    assert {f["properties"]["warning"] for f in towns["features"]} <= {"green", "yellow", "red"}
    villages = app_client.get(f"/api/units?level=village&bbox={WHOLE}").json()
    assert {f["properties"]["code"] for f in villages["features"]} == {"ST01001", "ST02001"}
    assert app_client.get("/api/units?level=district").status_code == 400
    login(app_client, "east")
    villages = app_client.get(f"/api/units?level=village&bbox={WHOLE}").json()
    assert {f["properties"]["code"] for f in villages["features"]} == {"ST02001"}
