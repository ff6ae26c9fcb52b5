"""``weijian inventory`` and ``weijian admin``: import and export of cases and unit boundaries."""

from __future__ import annotations

import typer

app = typer.Typer(help="违建库: 导入、导出违建点位。", no_args_is_help=True)
admin_app = typer.Typer(help="行政区划: 导入街镇与居村边界。", no_args_is_help=True)
