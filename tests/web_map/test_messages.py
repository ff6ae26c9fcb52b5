"""What staff read when the review application refuses something: Chinese, and what to do.

Each refusal is triggered as staff trigger it (a page's form, a stale page, an address outside
their 街镇, a photo too large) against the real application and database; the page shows the
sentence in Chinese (decision 0033), with the domain's own labels, never the English message of
the domain error, while the JSON API keeps its machine-readable ``error`` and ``code`` and the
English ``detail`` beside a ``message`` for the pages' scripts.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from PIL import Image
from sqlalchemy import create_engine, text

from gis_db import workflow
from gis_db.domain import CaseState, Disposal, Role
from gis_db.errors import InvalidInputError, NotFoundError
from gis_db.workflow import CaseAction
from tests.web_map.conftest import PASSWORD, SECRET, District, login
from web_map import WebConfig, create_app, messages
from web_map.accounts import WebRole
from web_map.errors import WebMapError

#: English words of the domain messages that must not reach a Chinese page.
ENGLISH = re.compile(r"does not exist|is not allowed|Allowed now|reload|someone else|needs ")


def jpeg(size: int = 32) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (size, size), (200, 100, 50)).save(buf, "JPEG")
    return buf.getvalue()


def red_note(page: str) -> str:
    """The text of the case page's red note (``未办理 · ...``)."""
    found = re.search(r'<p class="wj-error" role="alert">(.*?)</p>', page, re.S)
    assert found, page
    return found.group(1)


def act(client: TestClient, case_id: int, token: str, **form: object) -> str:
    """Post the case page's form; follow the redirect back to the case; the page's HTML."""
    files = form.pop("files", None)
    answer = client.post(
        f"/cases/{case_id}/act",
        data={**{k: str(v) for k, v in form.items()}, "csrf_token": token},
        files=files,  # type: ignore[arg-type]
        follow_redirects=False,
    )
    assert answer.status_code == 303, answer.text
    assert answer.headers["location"].startswith(f"/cases/{case_id}?err=")
    page = client.get(answer.headers["location"])
    assert page.status_code == 200
    return page.text


def version(district: District, case_id: int) -> int:
    with district.engine.connect() as conn:
        return int(
            conn.execute(
                text("SELECT version FROM inventory_case WHERE id = :i"), {"i": case_id}
            ).scalar_one()
        )


def move(district: District, case_id: int, *actions: CaseAction, actor: str = "reviewer") -> None:
    """Take ``actions`` on a case through the workflow (the office), to set a test up."""
    for action in actions:
        workflow.transition_case(
            district.engine,
            case_id,
            action,
            actor=actor,
            role=Role.OFFICE,
            disposal=Disposal.DEMOLISH.value if action == CaseAction.DISPOSE else None,
            evidence=["卷宗 2026-001"] if action == CaseAction.REQUEST_WRITE_OFF else (),
        )


def test_an_action_the_state_does_not_allow_says_the_state_and_what_can_be_done(
    app_client: TestClient, district: District
) -> None:
    case = district.case_ids["west-open"]  # 待派单 (open): only 派单 (dispatch)
    token = login(app_client, "reviewer")
    page = act(app_client, case, token, action="verify", version=version(district, case))
    note = red_note(page)
    assert (
        f"案件 BS-W-2 当前状态为「{CaseState.OPEN.zh}」, 不能办理「{CaseAction.VERIFY.zh}」。"
        f"当前可办理: 「{CaseAction.DISPATCH.zh}」。请刷新页面查看最新状态。"
    ) in note
    assert "「待派单」" in note and "「查实」" in note and "「派单」" in note  # the page's labels
    assert not ENGLISH.search(note), note
    # the API: the same refusal, machine-readable, with the English detail and the sentence
    api = app_client.post(
        f"/api/cases/{case}/actions",
        json={"action": "verify", "version": version(district, case)},
        headers={"X-CSRF-Token": token},
    )
    body = api.json()
    assert api.status_code == 409
    assert (body["error"], body["code"]) == ("IllegalTransitionError", "illegal_transition")
    assert "Allowed now" in body["detail"] and "当前可办理: 「派单」" in body["message"]


def test_a_stale_page_a_missing_disposal_and_missing_evidence_say_what_to_do(
    app_client: TestClient, district: District
) -> None:
    case = district.case_ids["west-open"]
    token = login(app_client, "reviewer")
    stale = red_note(act(app_client, case, token, action="dispatch", version=999))
    assert "记录已被他人修改" in stale  # the heading (decision 0031), then the reason
    assert "案件 BS-W-2 在您打开页面之后已被他人办理或修改, 本次操作未保存" in stale
    assert not ENGLISH.search(stale), stale

    move(district, case, CaseAction.DISPATCH, CaseAction.VERIFY)
    no_disposal = red_note(act(app_client, case, token, action="dispose", version=3))
    assert "办理「处置」须选择处置方式 (" in no_disposal
    assert all(d.zh in no_disposal for d in Disposal)  # the choices, as the form labels them
    burn = red_note(act(app_client, case, token, action="dispose", version=3, disposal="burn"))
    assert "「burn」不是有效的处置方式, 可选: " + "、".join(d.zh for d in Disposal) in burn

    move(district, case, CaseAction.DISPOSE)
    no_evidence = red_note(act(app_client, case, token, action="request_write_off", version=4))
    assert "办理「申请销项」须提供佐证: 请上传现场照片" in no_evidence
    assert not ENGLISH.search(no_evidence), no_evidence

    unknown = red_note(act(app_client, case, token, action="frobnicate", version=4))
    assert "没有「frobnicate」这项操作" in unknown and "allowed:" not in unknown


def test_photos_too_large_or_not_photos_are_said_in_chinese(
    district: District, tmp_path: Path
) -> None:
    config = WebConfig(
        secret_key=SECRET, evidence_dir=tmp_path / "evidence", max_upload_bytes=1 << 20
    )
    case = district.case_ids["west-open"]
    move(district, case, CaseAction.DISPATCH, CaseAction.VERIFY, CaseAction.DISPOSE)
    big = b"\xff\xd8\xff" + b"0" * (3 << 19)  # 1.5 MB
    with TestClient(create_app(district.engine, config)) as client:
        token = login(client, "reviewer")
        form = {"action": "request_write_off", "version": 4}
        too_large = red_note(
            act(client, case, token, **form, files={"photos": ("大.jpg", big, "image/jpeg")})
        )
        assert "文件太大" in too_large  # the heading
        assert "照片「大.jpg」超过上限 1.0 MB: 请压缩照片" in too_large
        not_photo = red_note(
            act(
                client,
                case,
                token,
                **form,
                files={"photos": ("x.jpg", b"<html>not a photo</html>", "image/jpeg")},
            )
        )
        assert "「x.jpg」不是 JPEG、PNG 或 WebP 格式的照片, 不能上传" in not_photo
        assert "only these" not in not_photo

        # a whole form far beyond the limit is refused before it is read: a Chinese page
        # that leads back to the case, not the JSON it was
        huge = b"\xff\xd8\xff" + b"0" * (7 << 20)  # beyond 5 photos at the limit
        answer = client.post(
            f"/cases/{case}/act",
            data={**{k: str(v) for k, v in form.items()}, "csrf_token": token},
            files={"photos": ("huge.jpg", huge, "image/jpeg")},
        )
        assert answer.status_code == 413
        assert answer.headers["content-type"].startswith("text/html")
        assert "<h1>文件太大</h1>" in answer.text
        assert "本次提交共 7.0 MB, 超过上限 6.0 MB: 请减少照片数量或压缩照片" in answer.text
        assert f'href="/cases/{case}"' in answer.text and "fewer or smaller" not in answer.text
        api = client.post(
            f"/api/cases/{case}/evidence",
            headers={"X-CSRF-Token": token},
            files={"file": ("huge.jpg", huge, "image/jpeg")},
        )
        body = api.json()
        assert api.status_code == 413 and body["code"] == "request_too_large"
        assert body["error"] == "UploadTooLargeError" and "fewer or smaller" in body["detail"]
        assert "the request has 7.0 MB; at most 6.0 MB are accepted" in body["detail"]
        assert body["message"].startswith("本次提交共 7.0 MB")
        api = client.post(
            f"/api/cases/{case}/evidence",
            headers={"X-CSRF-Token": token},
            files={"file": ("大.jpg", big, "image/jpeg")},
        )
        assert (api.status_code, api.json()["code"]) == (413, "upload_too_large")
        # the English detail counts megabytes as the setting does (max_upload_mb, 2^20 bytes)
        assert "larger than the limit of 1.0 MB (max_upload_mb)" in api.json()["detail"]


def test_a_case_outside_the_street_town_and_a_role_that_may_not_act(
    app_client: TestClient, district: District
) -> None:
    east = district.case_ids["east-open"]
    login(app_client, "west")
    page = app_client.get(f"/cases/{east}")
    assert page.status_code == 404 and "<h1>找不到该页面或记录</h1>" in page.text
    assert f"案件 (序号 {east}) 不存在, 或不在您所在街镇的范围内。请从列表或地图重新进入" in (
        page.text
    )
    assert not ENGLISH.search(page.text)
    api = app_client.get(f"/api/cases/{east}")
    body = api.json()
    assert (api.status_code, body["error"], body["code"]) == (
        404,
        "NotFoundError",
        "case_not_found",
    )
    assert "does not exist" in body["detail"] and "不在您所在街镇" in body["message"]
    detection = app_client.get(f"/api/detections/{district.detection_ids[-1]}").json()  # east
    assert detection["code"] == "detection_not_found" and "图斑" in detection["message"]
    assert "不存在" in app_client.get("/runs/999999/map").text

    token = login(app_client, "analyst")
    case = district.case_ids["west-open"]
    answer = app_client.post(
        f"/cases/{case}/act", data={"action": "dispatch", "version": "1", "csrf_token": token}
    )
    assert answer.status_code == 403 and "<h1>无权进行此操作</h1>" in answer.text
    assert f"您的角色「{WebRole.ANALYST.zh}」无权办理「{CaseAction.DISPATCH.zh}」" in answer.text
    assert f'href="/cases/{case}"' in answer.text  # back to the case, not only the start
    assert "may not" not in answer.text


def test_the_requester_cannot_sign_off_the_write_off(
    app_client: TestClient, district: District
) -> None:
    case = district.case_ids["west-open"]
    move(
        district,
        case,
        CaseAction.DISPATCH,
        CaseAction.VERIFY,
        CaseAction.DISPOSE,
        CaseAction.REQUEST_WRITE_OFF,
        actor="approver",
    )
    token = login(app_client, "approver")
    # said in red on the case's own page, where the approver sees who else can act
    note = red_note(act(app_client, case, token, action="write_off", version=5))
    assert note.startswith("未办理 · 无权进行此操作。")
    assert (
        "销项须由申请人以外的人员办理: approver 申请了案件 BS-W-2 的销项, "
        "请由拆违办的其他审批人员销项。"
    ) in note
    assert "requested the write-off" not in note
    assert version(district, case) == 5  # nothing happened


def test_log_in_failures_csrf_and_the_rate_limit_are_said_on_the_form(
    app_client: TestClient,
) -> None:
    page = app_client.get("/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
    for _ in range(3):
        bad = app_client.post(
            "/login", data={"username": "reviewer", "password": "nope-nope", "csrf_token": token}
        )
        assert bad.status_code == 401
        assert "用户名或密码错误" in bad.text
        assert "连续失败 3 次后须等待几分钟才能再试。忘记密码或账号被停用, 请联系系统管理员" in (
            bad.text
        )
    limited = app_client.post(
        "/login", data={"username": "reviewer", "password": PASSWORD, "csrf_token": token}
    )
    assert limited.status_code == 429
    assert re.search(r"用户名 reviewer 登录失败次数过多, 已暂停登录: 请 \d+ 秒后再试", limited.text)
    assert 'name="password"' in limited.text  # the form again, not a dead end
    assert "too many" not in limited.text

    # a form whose page has expired (no or an old token): reload and send again
    login(app_client, "approver")  # (reviewer is paused now)
    case_form = app_client.post("/cases/1/act", data={"action": "dispatch", "version": "1"})
    assert case_form.status_code == 403
    assert "页面已过期 (安全校验未通过), 本次提交未办理: 请刷新页面后重新提交" in case_form.text
    assert "CSRF token" not in case_form.text
    api = app_client.post("/api/cases/1/actions", json={"action": "dispatch", "version": 1})
    assert (api.status_code, api.json()["code"], api.json()["error"]) == (403, "csrf", "CsrfError")
    assert "X-CSRF-Token" in api.json()["detail"] and "页面已过期" in api.json()["message"]


def test_the_map_api_refusals_carry_a_code_and_a_sentence(
    app_client: TestClient, district: District
) -> None:
    login(app_client, "reviewer")
    bad = app_client.get(f"/api/runs/{district.run_id}/detections?bbox=1,2,3")
    body = bad.json()
    assert (bad.status_code, body["error"], body["code"]) == (400, "InvalidInputError", "bad_bbox")
    assert "west,south,east,north" in body["detail"] and "地图范围参数有误" in body["message"]
    # an error with no sentence of its own: a generic Chinese one, then the English detail
    sort = app_client.get(f"/api/runs/{district.run_id}/queue?sort=colour").json()
    assert sort["code"] == "invalid_input"
    assert (
        sort["message"] == (f"{messages.GENERIC_ZH}。{messages.DETAIL_ZH}{sort['detail']}")
        and "sort must be one of" in sort["message"]
    )
    # in English (the switch) the message is the English one
    app_client.get("/lang?to=en")
    english = app_client.get(f"/api/runs/{district.run_id}/detections?bbox=1,2,3").json()
    assert english["message"] == english["detail"]
    page = app_client.get("/cases/999999")
    assert "does not exist" in page.text and "不存在" not in page.text


def test_unknown_and_malformed_addresses_say_what_to_do(app_client: TestClient) -> None:
    login(app_client, "reviewer")
    for url, status, said in (
        ("/nosuch", 404, "该网址不存在: 请从首页或菜单进入。"),
        ("/cases/abc", 422, "网址或表单中的参数有误 (「case_id」): 请从页面上的链接或按钮进入"),
        ("/due?within=-3", 422, "网址或表单中的参数有误 (「within」)"),
        ("/cases/1/act", 405, "该网址不支持此操作"),
    ):
        page = app_client.get(url)
        assert page.status_code == status and said in page.text, (url, page.text)
        assert "Input should be" not in page.text and "Not Found" not in page.text


def test_a_page_asked_for_without_a_session_and_a_missing_photo(
    app_client: TestClient, district: District
) -> None:
    page = app_client.get("/cases")  # not logged in (or the session ended): the log-in form
    assert page.url.path == "/login"
    assert "请先登录 (未登录, 或登录已过期、账号已停用): 登录后将回到您要打开的页面" in page.text
    assert "请先登录" not in app_client.get("/login").text  # opened directly: nothing to say
    login(app_client, "reviewer")
    # a photo link opened in a browser tab whose photo is not there: a page, not JSON
    photo = app_client.get("/evidence/99999", headers={"Accept": "text/html,*/*"})
    assert photo.status_code == 404 and photo.headers["content-type"].startswith("text/html")
    assert "现场照片 (序号 99999) 不存在" in photo.text
    api = app_client.get("/evidence/99999")
    assert api.json()["code"] == "evidence_not_found"


@pytest.fixture()
def logged_in_cookies(app_client: TestClient) -> Iterator[dict[str, str]]:
    login(app_client, "reviewer")
    yield dict(app_client.cookies)


def test_the_database_out_of_reach_is_said_on_pages_and_in_the_api(
    web_config: WebConfig, logged_in_cookies: dict[str, str]
) -> None:
    engine = create_engine("postgresql+psycopg://nobody@127.0.0.1:1/weijian")  # nothing there
    with TestClient(create_app(engine, web_config), raise_server_exceptions=False) as client:
        client.cookies.update(logged_in_cookies)  # a session from before the outage
        page = client.get("/cases")
        assert page.status_code == 503 and "<h1>数据库暂时不可用" in page.text
        assert "暂时无法连接数据库, 本次操作没有保存: 请稍后再试" in page.text
        assert "127.0.0.1:1" not in page.text and "Traceback" not in page.text
        api = client.get("/api/runs")
        body = api.json()
        assert (api.status_code, body["code"]) == (503, "database_unavailable")
        assert body["error"] == "InternalError" and "暂时无法连接数据库" in body["message"]
        assert "127.0.0.1:1" not in api.text
    engine.dispose()


def test_every_template_gets_the_values_its_raise_sites_give() -> None:
    """Each template works with the values its raise sites give (built here the same way).

    A template naming a value that is not there would fall back to the generic sentence.
    """
    cases = [
        NotFoundError("x", code="case_not_found", record_id=7, scoped=True),
        NotFoundError("x", code="run_not_found", record_id=7),
        InvalidInputError("x", code="unknown_action", value="foo"),
        WebMapError("x", code="rate_limited", username="li", wait_s=30),
        WebMapError("x", code="read_only", role="analyst"),
        WebMapError("x", code="upload_empty", name="a.jpg"),
        WebMapError("x", code="imagery_unavailable"),
    ]
    for exc in cases:
        said = messages.explain(exc, "zh")
        assert messages.GENERIC_ZH not in said and "x" not in said, (exc.code, said)
    assert messages.explain(NotFoundError("no such thing"), "zh") == (
        f"{messages.GENERIC_ZH}。{messages.DETAIL_ZH}no such thing"
    )
    assert messages.explain(RuntimeError("boom"), "zh").startswith("系统内部出错")
