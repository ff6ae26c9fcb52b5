"""The ``weijian`` command line: one Typer sub-application per module in this package.

Command modules import the stage packages inside their functions, so that ``weijian db status``
does not pay for importing torch or rasterio.
"""

from __future__ import annotations

import logging
import sys

import typer
from rich.console import Console
from rich.markup import escape

from weijian.cli import (
    cases,
    db,
    demo,
    detect,
    evaluate,
    flight,
    inventory,
    model,
    pair,
    runs,
    scene,
    train,
    web,
)

app = typer.Typer(
    name="weijian",
    help="违建监测: 影像入库、变化检测、违建库比对与核查销项。",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(db.app, name="db")
app.add_typer(inventory.app, name="inventory")
app.add_typer(inventory.admin_app, name="admin")
app.add_typer(scene.app, name="scene")
app.add_typer(pair.app, name="pair")
app.command("demo")(demo.demo)
app.command("train")(train.train)
app.command("evaluate")(evaluate.evaluate)
app.command("detect")(detect.detect)
app.add_typer(model.app, name="model")

app.add_typer(runs.app, name="runs")
app.add_typer(cases.app, name="cases")
app.add_typer(flight.app, name="flight")
app.command("dispatch")(runs.dispatch)
app.command("stats")(runs.stats)
app.command("serve")(web.serve)
app.add_typer(web.users_app, name="users")
app.add_typer(web.map_app, name="map")

err = Console(stderr=True)

#: The loggers of our packages, whose level ``--verbose`` and the ``log_level`` setting set.
OUR_LOGGERS = ("weijian", "ingest", "change_detection", "gis_db", "web_map")


@app.callback()
def _options(
    verbose: bool = typer.Option(
        False,
        "--verbose",
        "-v",
        help="也显示运行日志 (INFO: 各步耗时、写入行数); 默认只显示进度与结果 (setting log_level)",
    ),
) -> None:
    """违建监测: 影像入库、变化检测、违建库比对与核查销项。"""
    set_log_level("INFO" if verbose else None)


def set_log_level(level: str | None = None) -> None:
    """Set our packages' loggers to ``level``, or to the ``log_level`` setting when None.

    Settings that cannot be read leave the level as it is (WARNING): the command itself then
    reports them, in one line, when it needs them.
    """
    if level is None:
        from weijian.errors import ConfigurationError
        from weijian.settings import get_settings

        try:
            level = get_settings().log_level
        except ConfigurationError:
            return
    for ours in OUR_LOGGERS:
        logging.getLogger(ours).setLevel(level)


#: (module, class) of each package's root error; a raised subclass is shown as one clear line.
ROOT_ERRORS = (
    ("ingest.errors", "IngestError"),
    ("change_detection.errors", "ChangeDetectionError"),
    ("gis_db.errors", "GisDbError"),
    ("web_map.errors", "WebMapError"),
    ("weijian.errors", "WeijianError"),
)


def _is_domain_error(exc: BaseException) -> bool:
    roots = tuple(
        getattr(sys.modules[mod], name) for mod, name in ROOT_ERRORS if mod in sys.modules
    )
    return bool(roots) and isinstance(exc, roots)


def main() -> None:
    """Entry point: run the app and turn domain errors into one line on stderr and exit code 1.

    The message is printed as it is: a ``[section]`` it names is text, not console markup. A
    file that cannot be read or written (a folder given for a file, no permission, disk full)
    is one line too.
    """
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    try:
        app()
    except Exception as exc:
        if _is_domain_error(exc):
            err.print(
                f"[bold red]错误 error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True
            )
            raise SystemExit(1) from None
        if isinstance(exc, OSError) and exc.filename is not None:
            err.print(
                f"[bold red]错误 error:[/] {escape(_os_error_line(exc))}",
                highlight=False,
                soft_wrap=True,
            )
            raise SystemExit(1) from None
        raise


def _os_error_line(exc: OSError) -> str:
    """A file the command could not read or write, in one line that says what to check."""
    where = f"{exc.filename}" + (f" -> {exc.filename2}" if exc.filename2 else "")
    return (
        f"cannot use {where}: {exc.strerror or exc}; check the path (a file where a folder is "
        "expected, or the reverse), its permissions and the free space"
    )
