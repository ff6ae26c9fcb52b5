"""What staff read on the pages: the office's calendar, Chinese labels and names, error pages.

Found in a newcomer's walk through the demo (decision 0031): dates one day early, a 街镇 code
where its name belongs, raw JSON or English-only text where staff expected a page in Chinese.
"""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text

from tests.web_map.conftest import District, login
from web_map import WebConfig, create_app


def _at_shanghai_midnight(district: District) -> None:
    """Both scenes of the run taken at 00:00 in Shanghai (16:00 UTC the day before)."""
    with district.engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE scene SET acquired_at = CASE WHEN s.id = r.before_scene_id "
                "THEN timestamptz '2026-03-01 00:00+08' ELSE timestamptz '2026-06-01 00:00+08' END "
                "FROM detection_run r, scene s WHERE r.id = :r AND scene.id = s.id "
                "AND s.id IN (r.before_scene_id, r.after_scene_id)"
            ),
            {"r": district.run_id},
        )


def test_run_dates_are_the_office_calendar_and_the_status_is_in_chinese(
    app_client: TestClient, district: District
) -> None:
    _at_shanghai_midnight(district)
    login(app_client, "reviewer")
    home = app_client.get("/")
    assert home.status_code == 200
    assert "2026-03-01" in home.text and "2026-06-01" in home.text
    assert "2026-02-28" not in home.text and "2026-05-31" not in home.text
    assert "已比对" in home.text and ">matched<" not in home.text
    review = app_client.get(f"/runs/{district.run_id}/review")
    assert "前时相 2026-03-01" in review.text and "后时相 2026-06-01" in review.text


def test_a_street_town_user_sees_the_name_of_the_street_town(
    app_client: TestClient, district: District
) -> None:
    login(app_client, "west")
    home = app_client.get("/").text
    assert "测试一镇" in home  # the nav and the note, not only the code ST01
    assert "仅显示本街镇的图斑: 测试一镇" in home
    detection = app_client.get(f"/api/detections/{district.detection_ids[0]}").json()
    assert (detection["street_town_code"], detection["street_town_name"]) == ("ST01", "测试一镇")


def test_unknown_and_malformed_addresses_get_the_error_page_not_json(
    app_client: TestClient, district: District
) -> None:
    login(app_client, "reviewer")
    for url, status, heading in (
        ("/nosuch", 404, "找不到该页面或记录"),
        ("/cases/abc", 422, "网址或参数有误"),
        ("/runs/999999/map", 404, "找不到该页面或记录"),
        ("/due?within=-3", 422, "网址或参数有误"),
    ):
        page = app_client.get(url)
        assert page.status_code == status, url
        assert page.headers["content-type"].startswith("text/html"), url
        assert f"<h1>{heading}</h1>" in page.text and '{"detail"' not in page.text, url
        assert "退出" in page.text  # still the logged-in page, with the menu
    # the API keeps answering in JSON
    api = app_client.get("/api/cases/abc")
    assert api.status_code == 422 and api.headers["content-type"] == "application/json"
    assert app_client.get("/api/nosuch").json() == {"detail": "Not Found"}


def test_the_database_out_of_reach_is_a_page_that_says_so(
    web_config: WebConfig, tmp_path: Path
) -> None:
    engine = create_engine("postgresql+psycopg://nobody@127.0.0.1:1/weijian")  # nothing there
    app = create_app(engine, web_config)
    with TestClient(app, raise_server_exceptions=False) as client:
        page = client.get("/login")
        token = page.text.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
        answer = client.post(
            "/login", data={"username": "reviewer", "password": "x", "csrf_token": token}
        )
        assert answer.status_code == 503
        assert "数据库暂时不可用" in answer.text and "Traceback" not in answer.text
        assert "OperationalError" not in answer.text and "127.0.0.1:1" not in answer.text
    engine.dispose()


def test_a_case_action_that_cannot_be_done_goes_back_to_the_case_saying_why(
    app_client: TestClient, district: District
) -> None:
    """Was the error page, whose only link led to the start: the case and its form were lost."""
    token = login(app_client, "reviewer")
    case_id = district.case_ids["west-open"]
    for form, heading in (
        ({"action": "dispatch", "version": "999"}, "记录已被他人修改"),  # changed meanwhile
        ({"action": "frobnicate", "version": "1"}, "请求有误"),
    ):
        answer = app_client.post(
            f"/cases/{case_id}/act",
            data={**form, "csrf_token": token},
            follow_redirects=False,
        )
        assert answer.status_code == 303, answer.text
        assert answer.headers["location"].startswith(f"/cases/{case_id}?err=")
        page = app_client.get(answer.headers["location"])
        assert page.status_code == 200
        assert "未办理 · " + heading in page.text and 'data-action="dispatch"' in page.text
    # a case outside the user's reach is still the error page
    east = district.case_ids["east-open"]
    token = login(app_client, "west")
    answer = app_client.post(
        f"/cases/{east}/act", data={"action": "verify", "version": "1", "csrf_token": token}
    )
    assert answer.status_code == 404 and "找不到该页面或记录" in answer.text
