"""``weijian db``: the embedded PostgreSQL + PostGIS cluster, or the configured server."""

from __future__ import annotations

import typer

app = typer.Typer(help="数据库: 内置 PostGIS 集群的状态、启动、停止与连接串。", no_args_is_help=True)
