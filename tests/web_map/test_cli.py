"""``weijian users`` and ``weijian map export`` on a real database."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.web_map.conftest import District
from web_map import accounts
from web_map.errors import AccountError
from weijian.cli import app
from weijian.settings import get_settings

runner = CliRunner()


@pytest.fixture()
def cli_env(district: District, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    monkeypatch.setenv("WEIJIAN_DATABASE_URL", district.engine.url.render_as_string(False))
    monkeypatch.setenv("WEIJIAN_DATA_DIR", str(tmp_path / "data"))
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def invoke(*args: str, input: str | None = None, code: int = 0) -> str:
    result = runner.invoke(app, list(args), input=input)
    assert result.exit_code == code, result.output
    return result.output


def test_users_commands(cli_env: None, district: District) -> None:
    assert "已新增" in invoke(
        "users", "add", "zhao", "--role", "审批人", input="pw-zhao-123\npw-zhao-123\n"
    )
    out = invoke(
        "users",
        "add",
        "yp",
        "--role",
        "street_town",
        "--street-town",
        "测试一镇",
        "--password-stdin",
        input="pw-yp-12345\n",
    )
    assert "街镇用户" in out
    listed = invoke("users", "list")
    assert "zhao" in listed and "ST01" in listed
    bad = runner.invoke(
        app,
        ["users", "add", "qian", "--role", "street_town", "--password-stdin"],
        input="pw-qian-1234\n",
    )
    assert isinstance(bad.exception, AccountError) and "--street-town" in str(bad.exception)
    # a wrong role, an unknown 街镇 or a taken name is said before the password is asked for
    for args in (
        ["li", "--role", "boss"],
        ["li", "--role", "street_town", "--street-town", "不存在镇"],
        ["zhao", "--role", "approver"],
    ):
        early = runner.invoke(app, ["users", "add", *args])
        assert isinstance(early.exception, AccountError), early.output
        assert "password" not in early.output, early.output
    invoke("users", "disable", "zhao")
    assert accounts.authenticate(district.engine, "zhao", "pw-zhao-123") is None
    invoke("users", "enable", "zhao")
    invoke("users", "passwd", "zhao", "--password-stdin", input="pw-zhao-456\n")
    assert accounts.authenticate(district.engine, "zhao", "pw-zhao-456") is not None
    demo = invoke("users", "demo")
    assert "demo-approver-2026" in demo


def test_map_export_is_self_contained_and_capped(
    cli_env: None, district: District, tmp_path: Path
) -> None:
    out = tmp_path / "run.html"
    invoke("map", "export", "--run", str(district.run_id), "--out", str(out))
    page = out.read_text(encoding="utf-8")
    assert not re.search(r'<(script|link)[^>]+(src|href)="https?://', page)
    assert "L.map(" in page and "sideBySide" in page  # Leaflet and plugins inlined
    assert page.count('"type": "Feature"') + page.count('"type":"Feature"') >= 6
    assert "data:image/png;base64," in page  # orthophoto overviews embedded
    assert "仅显示" not in page
    capped = tmp_path / "capped.html"
    invoke(
        "map",
        "export",
        "--run",
        str(district.run_id),
        "--out",
        str(capped),
        "--street-town",
        "ST02",
        "--max-features",
        "2",
    )
    text_ = capped.read_text(encoding="utf-8")
    assert "仅显示置信度最高的 2 个 (共 3 个)" in text_
    missing = tmp_path / "none.html"
    weijian = str(Path(sys.executable).with_name("weijian"))
    result = subprocess.run(
        [weijian, "map", "export", "--run", "999", "--out", str(missing)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 1, result.stderr
    assert "does not exist" in result.stderr and "Traceback" not in result.stderr
    assert not missing.exists() and not missing.with_name("none.html.part").exists()


def test_an_output_path_of_the_wrong_kind_is_one_line_and_leaves_nothing(
    cli_env: None, district: District, tmp_path: Path
) -> None:
    """A folder given for the map's file, a file given for the dispatch folder: one line each.

    Both were tracebacks, and the map export left a 15 MB ``NAME.part`` beside the folder.
    """
    weijian = str(Path(sys.executable).with_name("weijian"))
    folder = tmp_path / "maps"
    folder.mkdir()
    a_file = tmp_path / "notes.txt"
    a_file.write_text("not a folder", encoding="utf-8")
    run = str(district.run_id)
    for args, expected in (
        (["map", "export", "--run", run, "--out", str(folder)], "is a folder: give the HTML"),
        (["dispatch", "--run", run, "--out", str(a_file)], "Not a directory; check the path"),
    ):
        done = subprocess.run(
            [weijian, *args],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            env={**os.environ, "COLUMNS": "300"},
        )
        assert done.returncode == 1, done.stderr
        assert "Traceback" not in done.stderr and expected in done.stderr, done.stderr
        assert len([line for line in done.stderr.splitlines() if line.strip()]) == 1, done.stderr
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "data") == ["maps", "notes.txt"]
    assert list(folder.iterdir()) == [] and a_file.read_text(encoding="utf-8") == "not a folder"


def test_serve_on_a_port_in_use_says_so_before_starting(cli_env: None) -> None:
    """Was uvicorn's English "address already in use" after start-up, with exit code 3."""
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = runner.invoke(app, ["serve", "--port", str(port)])
    assert result.exit_code == 1, result.output
    assert f"端口 {port} 无法使用" in result.output and f"--port {port + 1}" in result.output
    assert "Uvicorn running" not in result.output
