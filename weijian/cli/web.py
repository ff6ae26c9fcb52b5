"""``weijian serve``, ``weijian users`` and ``weijian map export``: the review application.

weijian serve [--host 127.0.0.1] [--port 8000]
weijian users add li --role reviewer            # asks for the password twice
weijian users add yp01 --role street_town --street-town 月浦镇
weijian users list | disable li | enable li | passwd li | demo
weijian map export --run 7 --out run7.html [--street-town 月浦镇]
"""

from __future__ import annotations

import os
import secrets
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from weijian.cli.options import database

if TYPE_CHECKING:
    from web_map import WebConfig
    from weijian.settings import Settings

users_app = typer.Typer(
    help="用户: 新增、列表、停用、改密码 (角色: reviewer 审核员, approver 审批人, "
    "street_town 街镇用户, analyst 分析员, admin 管理员)。",
    no_args_is_help=True,
)
map_app = typer.Typer(help="地图: 导出离线可用的单文件地图。", no_args_is_help=True)
out = Console()
err = Console(stderr=True)


def _secret_key(settings: Settings) -> str:
    """The configured secret key, or one generated once and kept in DATA_DIR/web/secret_key."""
    if settings.web.secret_key is not None:
        return settings.web.secret_key.get_secret_value()
    path = settings.data_dir / "web" / "secret_key"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_urlsafe(48))
    return path.read_text().strip()


def web_config(settings: Settings) -> WebConfig:
    """The review application's configuration from the settings."""
    from web_map import WebConfig

    return WebConfig(
        secret_key=_secret_key(settings),
        evidence_dir=settings.web.evidence_dir or settings.data_dir / "evidence",
        tianditu_key=settings.web.tk,
        language=settings.web.language,
        max_upload_bytes=int(settings.web.max_upload_mb * 1024 * 1024),
        session_hours=settings.web.session_hours,
        login_max_failures=settings.web.login_max_failures,
        reinspection_days=settings.matching.reinspection_days,
        secure_cookies=settings.web.secure_cookies,
    )


def serve(
    host: Annotated[str | None, typer.Option(help="address to listen on")] = None,
    port: Annotated[int | None, typer.Option(help="port to listen on")] = None,
) -> None:
    """启动核查系统网页 (默认 http://127.0.0.1:8000)。Start the review application."""
    import uvicorn

    from web_map import create_app
    from weijian.settings import get_settings

    settings = get_settings()
    host = host or settings.web.host
    port = port or settings.web.port
    _check_port_free(host, port)
    with database() as engine:
        app = create_app(engine, web_config(settings))
        out.print(f"核查系统 review application: http://{host}:{port}/  (Ctrl+C 停止 to stop)")
        uvicorn.run(app, host=host, port=port, log_level="info")


def _check_port_free(host: str, port: int) -> None:
    """One clear line (exit 1) when ``host:port`` cannot be listened on, before anything starts.

    uvicorn only says so in English after the application has started, with exit code 3.
    """
    import socket

    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            err.print(
                f"[bold red]错误 error:[/] 端口 {port} 无法使用 cannot listen on {host}:{port} "
                f"({exc.strerror}): is the review application already running there "
                f"(http://{host}:{port}/)? Otherwise give another port: --port {port + 1} "
                "(or WEIJIAN_WEB__PORT)",
                highlight=False,
                soft_wrap=True,
            )
            raise typer.Exit(1) from None


def _password(prompt: bool, from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\n")
    return str(typer.prompt("密码 password", hide_input=True, confirmation_prompt=prompt))


@users_app.command("add")
def users_add(
    username: Annotated[str, typer.Argument(help="user name (2-64 characters, no spaces)")],
    role: Annotated[str, typer.Option(help="reviewer, approver, street_town, analyst or admin")],
    street_town: Annotated[
        str | None, typer.Option("--street-town", help="code or name of the 街镇 of a 街镇 user")
    ] = None,
    name: Annotated[str | None, typer.Option(help="name shown in pages")] = None,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="read the password from standard input")
    ] = False,
) -> None:
    """新增用户 (密码只以加盐 argon2 哈希保存)。Add a user."""
    from web_map import accounts

    with database() as engine:
        accounts.check_new_user(engine, username, role, street_town=street_town)
        password = _password(True, password_stdin)
        user = accounts.add_user(
            engine, username, password, role, street_town=street_town, display_name=name
        )
    out.print(f"已新增用户 added {user.username} ({user.role.zh} {user.role.value})")


@users_app.command("list")
def users_list() -> None:
    """列出全部用户。List the users."""
    from web_map import accounts

    with database() as engine:
        users = accounts.list_users(engine)
    table = Table(title="用户 users")
    for header in ("用户名", "姓名", "角色", "街镇", "状态"):
        table.add_column(header)
    for u in users:
        table.add_row(
            u.username,
            u.display_name or "",
            f"{u.role.zh} ({u.role.value})",
            u.street_town or "",
            "已停用 disabled" if u.disabled else "正常 active",
        )
    out.print(table)


@users_app.command("disable")
def users_disable(username: str) -> None:
    """停用用户 (立即结束其登录)。Disable a user."""
    from web_map import accounts

    with database() as engine:
        accounts.set_disabled(engine, username, True)
    out.print(f"已停用 disabled {username}")


@users_app.command("enable")
def users_enable(username: str) -> None:
    """重新启用用户。Enable a user again."""
    from web_map import accounts

    with database() as engine:
        accounts.set_disabled(engine, username, False)
    out.print(f"已启用 enabled {username}")


@users_app.command("passwd")
def users_passwd(
    username: str,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="read the password from standard input")
    ] = False,
) -> None:
    """修改密码 (结束该用户已有的登录)。Change a password."""
    from web_map import accounts

    password = _password(True, password_stdin)
    with database() as engine:
        accounts.set_password(engine, username, password)
    out.print(f"已修改密码 password changed for {username}")


@users_app.command("demo")
def users_demo() -> None:
    """建立示范账号 (每个角色一个, 密码见 README; 仅用于示范区)。Create the demo log-ins."""
    from web_map import ensure_demo_users

    with database() as engine:
        demo = ensure_demo_users(engine)
    table = Table(title="示范账号 demo log-ins")
    for header in ("用户名", "密码", "角色", "街镇"):
        table.add_column(header)
    for d in demo:
        table.add_row(d.username, d.password, d.role, d.street_town or "")
    out.print(table)


@map_app.command("export")
def map_export(
    run: Annotated[int, typer.Option("--run", help="run id (see 'weijian runs list')")],
    out_path: Annotated[Path, typer.Option("--out", help="HTML file to write")],
    street_town: Annotated[
        str | None, typer.Option("--street-town", help="only this 街镇 (code or name)")
    ] = None,
    max_features: Annotated[
        int, typer.Option(min=1, help="most features per layer embedded in the file")
    ] = 5000,
) -> None:
    """导出比对批次的单文件地图 (离线可用, 可发给街镇)。Export a run as one HTML map."""
    from web_map import export_map
    from weijian.settings import get_settings

    with database() as engine:
        with out.status("导出地图 exporting the map ..."):
            path = export_map(
                engine,
                run,
                out_path,
                street_town=street_town,
                max_features=max_features,
                lang=get_settings().web.language,
            )
    out.print(f"已导出 written {path} ({path.stat().st_size / 1e6:.1f} MB)")
