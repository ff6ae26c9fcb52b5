"""The whole import: the working CRS and district extent from the database, then upsert.

The only module of this package, with :mod:`gis_db.inventory_io.exporting`, that runs SQL.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Engine, text

from gis_db.inventory import ImportReport, UnitLevel, upsert_cases, upsert_units
from gis_db.inventory_io.geometry import shanghai_extent
from gis_db.inventory_io.validation import read_cases, read_units, write_problem_report
from gis_db.schema import require_working_crs

if TYPE_CHECKING:
    from ingest.align import Progress

#: Tolerance around the loaded 街镇 extent, metres.
DISTRICT_MARGIN_M = 500.0


def district_extent(
    engine: Engine, working_crs: str
) -> tuple[tuple[float, float, float, float], str]:
    """Where footprints must lie: the loaded 街镇' extent (+ margin) or Shanghai; and its name."""
    with engine.connect() as conn:
        row = conn.execute(
            text(
                "SELECT ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e), n "
                "FROM (SELECT ST_Extent(geom) e, count(*) n FROM street_town) s"
            )
        ).one()
    if row[0] is None:
        return shanghai_extent(working_crs), "Shanghai (no 街镇 loaded yet)"
    m = DISTRICT_MARGIN_M
    return (row[0] - m, row[1] - m, row[2] + m, row[3] + m), f"the district (its {row[4]} 街镇)"


def _working_crs(engine: Engine) -> str:
    with engine.connect() as conn:
        return require_working_crs(conn)[0]


def _stored_case_numbers(engine: Engine) -> list[str]:
    """Every case number in the database (for refusing look-alikes of them)."""
    with engine.connect() as conn:
        return list(conn.execute(text("SELECT case_number FROM inventory_case")).scalars())


def import_cases_file(
    engine: Engine,
    path: str | Path,
    *,
    actor: str,
    crs: str | None = None,
    mapping: str | Path | None = None,
    layer: str | None = None,
    skip_invalid: bool = False,
    strict: bool = False,
    report_path: str | Path | None = None,
    progress: Progress | None = None,
) -> ImportReport:
    """``weijian inventory import``: read, validate, and upsert a file's cases in one transaction.

    With ``skip_invalid`` the rejected and repaired rows are written to ``report_path``
    (default ``<file>.report.csv`` next to the input). Timings: read, validate, load (s).
    """
    started = time.perf_counter()
    working = _working_crs(engine)
    extent, where = district_extent(engine, working)
    if progress:
        progress("read", 0, 1)
    result = read_cases(
        path,
        working_crs=working,
        crs=crs,
        mapping=mapping,
        layer=layer,
        strict=strict,
        skip_invalid=skip_invalid,
        extent=extent,
        extent_name=where,
        existing_numbers=_stored_case_numbers(engine),
    )
    if progress:
        progress("read", 1, 1)
    report = upsert_cases(
        engine,
        result.frame,
        actor=actor,
        reason="import",
        source_file=Path(path).name,
        row_numbers=result.rows,
        progress=progress,
    )
    report.rejected, report.repaired = result.rejected, result.repaired
    report.skipped = result.skipped
    report.warnings = result.warnings + report.warnings
    report.source_crs = result.source_crs
    report.timings = {
        "read": result.seconds_read,
        "validate": result.seconds_validate,
        "load": time.perf_counter() - started - result.seconds_read - result.seconds_validate,
    }
    listed = report.rejected or report.repaired or report.skipped
    if (skip_invalid or report_path) and listed:
        target = Path(report_path) if report_path else Path(str(path) + ".report.csv")
        write_problem_report(target, report.rejected, report.repaired, report.skipped)
        report.warnings.append(f"rejected, repaired and skipped rows listed in {target}")
    report.seconds = time.perf_counter() - started
    return report


def import_units_file(
    engine: Engine,
    path: str | Path,
    level: UnitLevel,
    *,
    actor: str,
    crs: str | None = None,
    mapping: str | Path | None = None,
    layer: str | None = None,
    strict: bool = False,
    district: str | None = None,
    progress: Progress | None = None,
) -> ImportReport:
    """``weijian admin import``: read, validate and upsert 街镇 / 居村 boundaries (all or none)."""
    started = time.perf_counter()
    result = read_units(
        path,
        level,
        working_crs=_working_crs(engine),
        crs=crs,
        mapping=mapping,
        layer=layer,
        strict=strict,
    )
    report = upsert_units(
        engine, level, result.frame, actor=actor, district=district, progress=progress
    )
    report.repaired, report.source_crs = result.repaired, result.source_crs
    report.warnings = result.warnings + report.warnings
    report.seconds = time.perf_counter() - started
    return report
