"""The review application in the system Chromium (Playwright, never a downloaded browser).

One server over a fresh copy of the seeded district; screenshots of the main pages are written
to ``test-artifacts/browser/`` at the repository root.
"""

from __future__ import annotations

import io
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from PIL import Image
from sqlalchemy import text

from tests.conftest import skip_or_fail
from tests.web_map.conftest import PASSWORD, District
from web_map import WebConfig, create_app

pytestmark = pytest.mark.slow

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "browser"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture()
def server(district: District, web_config: WebConfig) -> Iterator[str]:
    port = free_port()
    config = uvicorn.Config(
        create_app(district.engine, web_config), host="127.0.0.1", port=port, log_level="warning"
    )
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not srv.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert srv.started, "uvicorn did not start"
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(timeout=10)


@pytest.fixture()
def browser() -> Iterator[object]:
    if not Path(CHROMIUM).is_file() or shutil.which("chromium") is None:
        skip_or_fail("the system Chromium (/usr/bin/chromium) is not installed")
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


def log_in(page, base: str, username: str) -> None:  # type: ignore[no-untyped-def]
    page.context.clear_cookies()
    page.goto(f"{base}/login")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/")


def shot(page, name: str) -> None:  # type: ignore[no-untyped-def]
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"))


def jpeg() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (64, 48), (90, 140, 60)).save(buf, "JPEG")
    return buf.getvalue()


def test_review_to_write_off_in_the_browser(
    server: str,
    browser,
    district: District,
    tmp_path: Path,  # type: ignore[no-untyped-def]
) -> None:
    context = browser.new_context(viewport={"width": 1280, "height": 800}, locale="zh-CN")
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on(
        "console",
        lambda m: (
            errors.append(m.text)
            if m.type == "error" and "status of 401" not in m.text  # the wrong password
            else None
        ),
    )
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))

    # log in: a wrong password is refused, the right one opens the runs page
    page.goto(f"{server}/login")
    page.fill("input[name=username]", "reviewer")
    page.fill("input[name=password]", "wrong-password")
    page.click("button[type=submit]")
    assert page.locator(".wj-error").inner_text() == "用户名或密码错误"
    shot(page, "01-login")
    log_in(page, server, "reviewer")
    assert page.locator("#runs tbody tr").count() == 1
    shot(page, "02-runs")

    # the map: bbox layers loaded, swipe bar, legend, search
    page.goto(f"{server}/runs/{district.run_id}/map")
    try:
        page.wait_for_function("document.body.getAttribute('data-loaded') !== null", timeout=15000)
    except Exception:
        shot(page, "debug")
        raise AssertionError(errors) from None
    assert "图斑 6" in page.locator("#map-status").inner_text()
    assert page.locator(".leaflet-sbs-range").count() == 1
    assert page.locator("#legend").inner_text().count("新增疑似") == 1
    page.wait_for_load_state("networkidle")
    shot(page, "03-map-swipe")
    clip_before = page.evaluate(
        "() => { const c = document.querySelectorAll('.leaflet-tile-pane .leaflet-layer');"
        " return Array.from(c).map(e => e.style.clip).join('|'); }"
    )
    box = page.locator(".leaflet-sbs-range").bounding_box()  # drag the swipe bar's handle
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.25, box["y"] + box["height"] / 2, steps=8)
    page.mouse.up()
    clip_after = page.evaluate(
        "() => { const c = document.querySelectorAll('.leaflet-tile-pane .leaflet-layer');"
        " return Array.from(c).map(e => e.style.clip).join('|'); }"
    )
    assert clip_before != clip_after and "rect" in clip_after  # the swipe moved the clip
    shot(page, "04-map-swiped")
    page.fill("#search", "BS-W-1")
    page.press("#search", "Enter")
    page.wait_for_selector("#search-results li")
    assert "BS-W-1" in page.locator("#search-results").inner_text()
    page.wait_for_function("document.body.getAttribute('data-loaded') !== '1'")
    page.wait_for_load_state("networkidle")
    shot(page, "04b-map-search-zoomed")
    page.goto(f"{server}/runs/{district.run_id}/map?view=dual")
    page.wait_for_function("document.body.getAttribute('data-loaded') !== null", timeout=15000)
    assert page.locator(".folium-map").count() == 2
    page.wait_for_load_state("networkidle")
    shot(page, "05-map-dual")

    # triage three detections with the keyboard
    page.goto(f"{server}/runs/{district.run_id}/review")
    page.wait_for_function("document.body.getAttribute('data-current') !== null")
    first = int(page.evaluate("document.body.getAttribute('data-current')"))
    page.wait_for_load_state("networkidle")
    shot(page, "06-review")
    decided = []
    for n, key in enumerate(("1", "2", "3"), start=1):
        current = page.evaluate("document.body.getAttribute('data-current')")
        decided.append(int(current))
        page.keyboard.press(key)
        page.wait_for_function(f"document.body.getAttribute('data-decided') === '{n}'")
        page.wait_for_function(f"document.body.getAttribute('data-current') !== '{current}'")
    assert decided[0] == first and len(set(decided)) == 3
    with district.engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT detection_id, actor, role, to_state FROM detection_history "
                "WHERE detection_id = ANY(:ids) ORDER BY id"
            ),
            {"ids": decided},
        ).all()
    assert [(r.detection_id, r.actor, r.role, r.to_state) for r in rows] == [
        (decided[0], "reviewer", "office", "confirmed"),
        (decided[1], "reviewer", "office", "false_positive"),
        (decided[2], "reviewer", "office", "bad_imagery"),
    ]

    # the case workflow: dispatch (office), 查实/处置/申请销项 with a photo (街镇), 销项 (approver)
    case = district.case_ids["west-open"]
    evil = "<script>alert('x')</script>"
    page.goto(f"{server}/cases/{case}")
    page.fill("form[data-action=dispatch] input[name=comment]", evil)
    page.click("form[data-action=dispatch] button")
    page.wait_for_selector(".wj-ok")
    assert evil in page.locator("#history").inner_text()  # shown as text, never run
    log_in(page, server, "west")
    page.goto(f"{server}/cases/{case}")
    page.click("form[data-action=verify] button")
    page.wait_for_selector("form[data-action=dispose]")
    page.select_option("form[data-action=dispose] select[name=disposal]", "demolish")
    page.click("form[data-action=dispose] button")
    page.wait_for_selector("form[data-action=request_write_off]")
    photo = tmp_path / "现场照片.jpg"
    photo.write_bytes(jpeg())
    page.set_input_files("form[data-action=request_write_off] input[name=photos]", str(photo))
    page.fill("form[data-action=request_write_off] input[name=comment]", "已拆除, 现场照片")
    page.click("form[data-action=request_write_off] button")
    page.wait_for_selector("#case-state:has-text('申请销项')")
    assert page.locator("form[data-action=write_off]").count() == 0  # a 街镇 cannot sign off
    shot(page, "07-case-requested")
    log_in(page, server, "approver")
    page.goto(f"{server}/cases/{case}")
    page.click("form[data-action=write_off] button")
    page.wait_for_selector("#case-state:has-text('已销项')")
    shot(page, "08-case-written-off")
    with district.engine.connect() as conn:
        hist = conn.execute(
            text(
                "SELECT actor, role, action, evidence FROM case_history "
                "WHERE case_id = :c ORDER BY id"
            ),
            {"c": case},
        ).all()
    assert [(h.actor, h.role, h.action) for h in hist] == [
        ("reviewer", "office", "dispatch"),
        ("west", "street_town", "verify"),
        ("west", "street_town", "dispose"),
        ("west", "street_town", "request_write_off"),
        ("approver", "office", "write_off"),
    ]
    assert (
        hist[3].evidence[0]["name"] == "现场照片.jpg" and len(hist[3].evidence[0]["sha256"]) == 64
    )

    # re-inspection list and the English switch
    page.goto(f"{server}/due?within=60")
    assert page.locator("#due tbody tr").first.inner_text().count("BS-W-2") == 1
    shot(page, "09-due")
    page.click("a.wj-lang")
    page.wait_for_selector("text=Re-inspections due")
    assert not errors, errors
    assert not dialogs, dialogs
    context.close()


def test_refusals_are_said_in_chinese_in_the_browser(
    server: str,
    browser,  # type: ignore[no-untyped-def]
    district: District,
) -> None:
    """Refusals in Chromium: the review queue and the case page say why in Chinese (0033).

    The queue's script shows the API's ``message``; the case form returns to the case page.
    """
    from gis_db import workflow

    context = browser.new_context(viewport={"width": 1280, "height": 800}, locale="zh-CN")
    page = context.new_page()
    log_in(page, server, "reviewer")
    page.goto(f"{server}/runs/{district.run_id}/review")
    page.wait_for_function("document.body.getAttribute('data-current') !== null")
    current = int(page.evaluate("document.body.getAttribute('data-current')"))
    # someone else decides the same detection while the page is open
    workflow.review_detection(
        district.engine, current, "false_positive", actor="approver", role="office"
    )
    page.keyboard.press("1")
    page.wait_for_selector("#review-msg.wj-error")
    said = page.locator("#review-msg").inner_text()
    assert f"图斑 {current} 在您打开页面之后已被他人办理或修改, 本次操作未保存" in said, said
    assert "someone else" not in said
    shot(page, "10-review-refused")

    # a case page left open while the case moved on: the form answers in Chinese
    case = district.case_ids["west-open"]
    page.goto(f"{server}/cases/{case}")
    workflow.transition_case(district.engine, case, "dispatch", actor="approver", role="office")
    page.click("form[data-action=dispatch] button")
    page.wait_for_selector("p.wj-error")
    note = page.locator("p.wj-error").inner_text()
    assert note.startswith("未办理 · ") and "案件 BS-W-2 在您打开页面之后已被他人办理或修改" in note
    assert "reload" not in note
    assert page.locator("#case-state").inner_text() == "已派街镇"  # the page shows where it is
    shot(page, "11-case-refused")
    context.close()
