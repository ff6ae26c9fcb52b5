"""What the ``weijian`` commands share, as ``rasterio/rio/options.py`` serves every ``rio`` command.

- :func:`database`: the engine the settings point at, disposed when the command ends, even on
  an error;
- :func:`parse_date` and :func:`action_code`: values typed on the command line, in the form the
  API takes, with one clear line when they are wrong;
- enum options (:class:`Period`, :class:`UnitLevel`): typer offers and checks their values;
- the options of every command that acts on a case or a detection (:data:`CommentOption`, ...).

Command modules import from here, never from each other.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from weijian.settings import Settings


@contextmanager
def database(settings: Settings | None = None, migrate: bool = True) -> Iterator[Engine]:
    """The database in force (configured server or embedded cluster); always disposed.

    ``migrate``: bring the schema to the newest revision first (``weijian db`` passes False).
    """
    from weijian.database import connect

    engine = connect(settings, migrate=migrate)
    try:
        yield engine
    finally:
        engine.dispose()


def parse_date(value: str | None) -> date | None:
    """A ``YYYY-MM-DD`` option as a date (None when not given); a usage error otherwise."""
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not a date: write it as YYYY-MM-DD") from None


def office_time(value: datetime | None, fmt: str = "%Y-%m-%d %H:%M") -> str:
    """A stored moment on the office's (Shanghai) wall clock, as the review pages show it.

    Scenes dated at midnight in Shanghai are stored as 16:00 UTC the day before; printed as
    stored, ``weijian runs list`` showed them a day early. ``-`` for None.
    """
    if value is None or value != value:  # None or NaT
        return "-"
    from gis_db.domain import SHANGHAI

    if value.tzinfo is not None:
        value = value.astimezone(SHANGHAI)
    return value.strftime(fmt)


def action_code(value: str) -> str:
    """An action as typed (``write-off``, ``write_off`` or ``销项``) in the form the API parses."""
    value = value.strip()
    return value.replace("-", "_") if value.isascii() else value


class Period(StrEnum):
    """Statistics period (the values of ``gis_db.stats.Period``)."""

    ALL = "all"
    DAY = "day"
    WEEK = "week"
    MONTH = "month"


class UnitLevel(StrEnum):
    """Administrative level (the values of ``gis_db.inventory.UnitLevel``): 街镇 or 居村."""

    STREET_TOWN = "street_town"
    VILLAGE = "village"


# The options of the commands that move a case or a detection (``cases act``, ``runs review``).
#: A free-text note kept in the history row.
CommentOption = Annotated[
    str | None, typer.Option("--comment", "-m", help="说明 (kept in the record)")
]
#: Evidence references kept in the history row.
EvidenceOption = Annotated[
    list[str] | None,
    typer.Option("--evidence", "-e", help="photo path, scene id, file number (repeatable)"),
]
#: The acting role, as its code or Chinese label (gis_db.domain.Role parses it).
RoleOption = Annotated[str, typer.Option(help="office (拆违办) or street_town (街镇)")]
#: The acting user (default: the settings' ``user``).
UserOption = Annotated[str | None, typer.Option(help="acting user; default: settings' user")]
#: Optimistic locking: the version the user saw.
VersionOption = Annotated[int | None, typer.Option(help="the version you saw; refused if changed")]
