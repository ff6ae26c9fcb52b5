"""``weijian db``: the embedded PostgreSQL + PostGIS cluster, or the configured server."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer
from rich.console import Console

from weijian.cli.options import database

if TYPE_CHECKING:
    from gis_db.embedded import EmbeddedCluster

app = typer.Typer(
    help="数据库: 内置 PostGIS 集群的状态、启动、停止与连接串。", no_args_is_help=True
)
out = Console()


def _cluster() -> EmbeddedCluster:
    from gis_db.embedded import EmbeddedCluster
    from weijian.settings import get_settings

    return EmbeddedCluster(get_settings().data_dir / "pg")


def _configured_url() -> str | None:
    from weijian.settings import get_settings

    return get_settings().database_url


@app.command()
def status() -> None:
    """显示数据库状态 (内置集群或已配置的服务器)。"""
    from sqlalchemy.engine import make_url

    url = _configured_url()
    if url:
        out.print(f"configured server: {make_url(url).render_as_string(hide_password=True)}")
        from weijian.database import connect

        connect(migrate=False).dispose()
        out.print("reachable: yes")
        return
    st = _cluster().status()
    out.print(f"embedded cluster: {st.root}")
    out.print(f"initialised: {'yes' if st.initialised else 'no'}")
    out.print(f"running: {'yes' if st.running else 'no'}")
    out.print(f"port: {st.port if st.port else '-'}")


@app.command()
def start() -> None:
    """初始化 (首次) 并启动内置集群, 升级数据库结构。"""
    from weijian.database import connect

    connect().dispose()
    out.print("database ready")


@app.command()
def stop() -> None:
    """停止内置集群。"""
    if _configured_url():
        out.print("WEIJIAN_DATABASE_URL is set: the configured server is not ours to stop")
        raise typer.Exit(1)
    out.print("stopped" if _cluster().stop() else "not running")


@app.command()
def url(
    show_password: bool = typer.Option(False, "--show-password", help="print the password too"),
) -> None:
    """打印连接串 (默认隐藏密码)。"""
    from sqlalchemy.engine import make_url

    from weijian.database import database_url

    value = database_url()
    print(value if show_password else make_url(value).render_as_string(hide_password=True))


@app.command()
def upgrade(revision: str = typer.Argument("head")) -> None:
    """将数据库结构升级到指定版本 (默认最新)。"""
    from gis_db import schema
    from weijian.settings import get_settings

    with database(migrate=False) as engine:
        schema.upgrade(engine, get_settings().working_crs, revision)
        out.print(f"schema at {schema.current_revision(engine)}")


@app.command()
def downgrade(
    revision: str = typer.Argument(..., help="target revision, or 'base' to drop all"),
) -> None:
    """将数据库结构降级到指定版本。"""
    from gis_db import schema

    with database(migrate=False) as engine:
        schema.downgrade(engine, revision)
        out.print(f"schema at {schema.current_revision(engine)}")
