"""Loading inventory cases and administrative units into PostGIS, in one transaction each.

``upsert_cases`` and ``upsert_units`` take GeoDataFrames that are already clean: in the working
CRS (metres), with canonical column names and domain codes (gis_db.domain). Reading, mapping
and validating user files is gis_db.inventory_io's job.

How a load works (one transaction, all rows or none):

1. the rows are streamed with ``COPY`` into a temporary staging table (geometry as hex WKB);
2. area (m², ``ST_Area`` in the working CRS) and the 街镇 / 居村 of each case are computed in
   SQL; a case straddling a boundary belongs to the unit it overlaps most;
3. existing cases with the same case number are locked and compared field by field: only
   changed ones are updated (``version`` + 1, ``updated_at``), new ones inserted;
4. every insert and update appends a ``case_history`` row (``import_create`` /
   ``import_update``) with ``changes = {field: [old, new]}``, the actor and the source file.

PostgreSQL 15 cannot return a row's old values from ``INSERT ... ON CONFLICT DO UPDATE``, so
the old values are snapshotted (under ``FOR UPDATE`` row locks) before one UPDATE and one
INSERT; the effect is the same upsert by case number (docs/decisions/0009-inventory-import.md).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

import geopandas as gpd
import pandas as pd
from pyproj import CRS
from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import IntegrityError

from gis_db.errors import ConflictError, InvalidInputError
from gis_db.schema import require_working_crs
from gis_db.sql import (
    changes_json_sql,
    copy_frame,
    differs_sql,
    largest_overlap_sql,
)

if TYPE_CHECKING:
    # The one progress callback type of every stage: (step name, rows done, rows in total).
    from ingest.align import Progress

log = logging.getLogger(__name__)

UnitLevel = Literal["street_town", "village"]

#: Case attributes a file may carry, with the default that a blank value gets (SQL literal).
CASE_FIELDS: dict[str, str | None] = {
    "in_database": "true",
    "priority_type": "'non_priority'",
    "construction_status": "'existing'",
    "exemption": "'none'",
    "disposal": None,
    "source": "'other'",
    "discovered_on": None,
    "address": None,
    "owner": None,
    "remark": None,
}
_SQL_TYPES = {"in_database": "boolean", "discovered_on": "date"}
#: Units a case is assigned to in SQL (largest overlap); compared and recorded like fields.
UNIT_FIELDS = ("street_town_code", "village_code")


@dataclass
class RowProblem:
    """One rejected or repaired row: where it is in the user's file and what is wrong.

    ``row`` is the row as the user sees it: for a spreadsheet or CSV the sheet row / line
    (the header is row 1), for a GIS file the 1-based feature number. ``field`` is the column
    header as written in the file (``None`` for the whole row).
    """

    row: int | None
    field: str | None
    reason: str
    value: str | None = None
    case_number: str | None = None

    def message(self, source: str) -> str:
        """The one-line message naming file, row and field."""
        where = [source]
        where.append(f"row {self.row}" if self.row is not None else "header row")
        if self.field:
            where.append(f"field {self.field}")
        shown = self.value in (None, "") or repr(self.value) in self.reason
        value = "" if shown else f" (value {self.value!r})"
        return ", ".join(where) + f": {self.reason}{value}"


@dataclass
class ImportReport:
    """What an import did. ``seconds`` is the wall time of the whole call."""

    created: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: list[RowProblem] = field(default_factory=list)
    repaired: list[RowProblem] = field(default_factory=list)
    #: rows left out on purpose, not errors: total (合计) and blank rows of a spreadsheet
    skipped: list[RowProblem] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0
    #: wall seconds per step, e.g. {"read": .., "validate": .., "load": ..}
    timings: dict[str, float] = field(default_factory=dict)
    #: the CRS the input was in (reported, never silently assumed)
    source_crs: str | None = None

    @property
    def loaded(self) -> int:
        """Rows that reached the database (created + updated + unchanged)."""
        return self.created + self.updated + self.unchanged


# --------------------------------------------------------------------------------------------
# helpers


def _srid_and_check_crs(conn: Connection, frame: gpd.GeoDataFrame) -> int:
    working, srid = require_working_crs(conn)
    if frame.crs is not None and not CRS.from_user_input(frame.crs).equals(
        CRS.from_user_input(working)
    ):
        raise InvalidInputError(
            f"the frame is in {frame.crs.to_string()} but the database stores {working}: "
            f"reproject it first with frame.to_crs({working!r})"
        )
    return srid


def _require(frame: gpd.GeoDataFrame, columns: Sequence[str], what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise InvalidInputError(
            f"{what}: the frame lacks column(s) {', '.join(missing)} (has: "
            f"{', '.join(map(str, frame.columns))}); rename them to the canonical names"
        )


def _no_duplicates(values: pd.Series, what: str) -> None:
    dup = values[values.duplicated(keep=False)]
    if not dup.empty:
        first = str(dup.iloc[0])
        rows = [int(i) + 1 for i in dup.index[dup == first]][:5]
        raise InvalidInputError(
            f"{what}: {first!r} occurs more than once (frame rows {rows}); "
            "each must be unique in one load"
        )


def _integrity(exc: IntegrityError, what: str) -> Exception:
    if "case_number" in str(exc.orig) or "unique" in str(exc.orig).lower():
        return ConflictError(
            f"{what}: another import created the same case numbers at the same moment; "
            "run the import again (it updates in place)"
        )
    return InvalidInputError(f"{what}: the database refused the rows: {exc.orig}")


# --------------------------------------------------------------------------------------------
# cases


def upsert_cases(
    engine: Engine,
    frame: gpd.GeoDataFrame,
    *,
    actor: str,
    reason: str = "import",
    source_file: str | None = None,
    row_numbers: Sequence[int] | None = None,
    progress: Progress | None = None,
) -> ImportReport:
    """Insert new cases and update changed ones by case number, in one transaction.

    ``frame``: working CRS (metres), one polygonal footprint per row, columns ``case_number``,
    ``geometry`` and any of :data:`CASE_FIELDS` (codes as in gis_db.domain; a blank value gets
    the column default). Columns absent from the frame are left as they are on existing cases.
    ``row_numbers`` (the rows as the user sees them in the source file) go into the history
    comment. Unchanged rows are neither updated nor recorded. Returns counts and timings; the
    rejected/repaired lists are filled by the file readers, not here.
    """
    started = time.perf_counter()
    what = source_file or "upsert_cases"
    _require(frame, ["case_number", frame.geometry.name], what)
    numbers = frame["case_number"].astype("string").str.strip()
    if numbers.isna().any() or (numbers == "").any():
        raise InvalidInputError(f"{what}: some rows have no case_number; every case needs one")
    _no_duplicates(numbers, f"{what}: case_number")
    present = [f for f in CASE_FIELDS if f in frame.columns]
    report = ImportReport()
    if frame.empty:
        report.seconds = time.perf_counter() - started
        return report

    rows = list(row_numbers) if row_numbers is not None else list(range(1, len(frame) + 1))
    data = pd.DataFrame({"row_no": rows, "case_number": numbers.to_numpy()})
    for f in present:
        col = frame[f]
        if f == "in_database":
            col = col.map(lambda v: None if pd.isna(v) else bool(v))
        data[f] = col.to_numpy()
    comment = f"{reason}: {source_file}" if source_file else reason

    try:
        with engine.begin() as conn:
            srid = _srid_and_check_crs(conn, frame)
            stage_cols = ", ".join(f"{f} {_SQL_TYPES.get(f, 'text')}" for f in present)
            conn.execute(
                text(
                    "CREATE TEMP TABLE _case_stage (row_no integer, case_number text, "
                    + (stage_cols + ", " if present else "")
                    + "geom geometry) ON COMMIT DROP"
                )
            )
            copy_frame(conn, "_case_stage", data, frame.geometry, progress)

            t_load = time.perf_counter()
            if progress:
                progress("assign", 0, len(frame))
            new_cols = ", ".join(
                f"COALESCE(s.{f}, {CASE_FIELDS[f]}) AS {f}" if CASE_FIELDS[f] else f"s.{f}"
                for f in present
            )
            conn.execute(
                text(f"""
                CREATE TEMP TABLE _case_new ON COMMIT DROP AS
                SELECT s.row_no, s.case_number, {new_cols + "," if present else ""}
                       ST_Area(g.geom) AS area_m2, st.code AS street_town_code,
                       v.code AS village_code, g.geom
                FROM _case_stage s
                CROSS JOIN LATERAL (SELECT ST_Multi(ST_SetSRID(s.geom, {srid})) AS geom) g
                {largest_overlap_sql("street_town", "g.geom", "st")}
                {largest_overlap_sql("village", "g.geom", "v")}
            """)
            )
            conn.execute(text("CREATE UNIQUE INDEX ON _case_new (case_number)"))
            conn.execute(text("ANALYZE _case_new"))
            if progress:
                progress("assign", len(frame), len(frame))

            compared = [*present, *UNIT_FIELDS]
            # lock the existing cases, then snapshot their old values
            conn.execute(
                text(
                    "SELECT 1 FROM inventory_case c JOIN _case_new n USING (case_number) "
                    "FOR UPDATE OF c"
                )
            )
            conn.execute(
                text(f"""
                CREATE TEMP TABLE _case_changed ON COMMIT DROP AS
                SELECT o.id, n.row_no, {changes_json_sql(compared, "o", "n", geom=True)} AS changes
                FROM inventory_case o JOIN _case_new n USING (case_number)
                WHERE {differs_sql(compared, "o", "n")}
            """)
            )
            existing = conn.execute(
                text("SELECT count(*) FROM inventory_case JOIN _case_new USING (case_number)")
            ).scalar_one()
            sets = ", ".join(f"{f} = n.{f}" for f in [*compared, "area_m2"])
            report.updated = conn.execute(
                text(f"""
                UPDATE inventory_case c SET {sets}, geom = n.geom,
                       version = c.version + 1, updated_at = now()
                FROM _case_changed ch JOIN _case_new n USING (row_no)
                WHERE c.id = ch.id
            """)
            ).rowcount
            conn.execute(
                text("""
                INSERT INTO case_history (case_id, actor, action, changes, comment)
                SELECT ch.id, :actor, 'import_update', ch.changes,
                       :comment || ' row ' || ch.row_no
                FROM _case_changed ch
            """),
                {"actor": actor, "comment": comment},
            )

            cols = ", ".join(["case_number", *compared, "area_m2", "geom"])
            created_json = (
                "jsonb_strip_nulls(jsonb_build_object("
                + ", ".join(
                    f"'{f}', CASE WHEN n.{f} IS NOT NULL THEN jsonb_build_array(NULL, n.{f}) END"
                    for f in [*compared, "area_m2"]
                )
                + "))"
            )
            report.created = conn.execute(
                text(f"""
                WITH ins AS (
                    INSERT INTO inventory_case ({cols})
                    SELECT {cols} FROM _case_new n
                    WHERE NOT EXISTS (SELECT 1 FROM inventory_case c
                                      WHERE c.case_number = n.case_number)
                    RETURNING id, case_number
                )
                INSERT INTO case_history (case_id, actor, action, to_state, changes, comment)
                SELECT ins.id, :actor, 'import_create', 'open', {created_json},
                       :comment || ' row ' || n.row_no
                FROM ins JOIN _case_new n USING (case_number)
            """),
                {"actor": actor, "comment": comment},
            ).rowcount
            report.unchanged = int(existing) - report.updated
            report.timings["load"] = time.perf_counter() - t_load
    except IntegrityError as exc:
        raise _integrity(exc, what) from exc
    report.seconds = time.perf_counter() - started
    log.info(
        "upsert_cases %s: %d created, %d updated, %d unchanged in %.1f s",
        what,
        report.created,
        report.updated,
        report.unchanged,
        report.seconds,
    )
    return report


# --------------------------------------------------------------------------------------------
# administrative units


def upsert_units(
    engine: Engine,
    level: UnitLevel,
    frame: gpd.GeoDataFrame,
    *,
    actor: str,
    district: str | None = None,
    progress: Progress | None = None,
) -> ImportReport:
    """Insert or update 街镇 (``level="street_town"``) or 居村 (``"village"``) boundaries by code.

    ``frame``: working CRS, columns ``code``, ``name``, ``geometry`` (polygonal); villages may
    carry ``street_town_code`` (a code or a 街镇 name; blank: the 街镇 it overlaps most).
    ``district`` (a name, used as its code too) creates or updates the district row whose
    outline is the union of its 街镇. Units absent from the frame are kept. Afterwards the
    街镇 / 居村 of every case is recomputed; a case whose unit changes gets a ``unit_reassign``
    history row. ``actor`` is recorded in those history rows and the log.
    """
    if level not in ("street_town", "village"):
        raise InvalidInputError(f"level must be 'street_town' or 'village', not {level!r}")
    started = time.perf_counter()
    what = f"upsert_units({level})"
    _require(frame, ["code", "name", frame.geometry.name], what)
    codes = frame["code"].astype("string").str.strip()
    if codes.isna().any() or (codes == "").any():
        raise InvalidInputError(f"{what}: some rows have no code; every unit needs one")
    _no_duplicates(codes, f"{what}: code")
    data = pd.DataFrame(
        {"code": codes.to_numpy(), "name": frame["name"].astype("string").str.strip().to_numpy()}
    )
    extra = "street_town_code" if level == "village" else "district_code"
    if level == "village":
        given = frame["street_town_code"] if "street_town_code" in frame.columns else None
        data[extra] = None if given is None else given.astype("string").str.strip().to_numpy()
    else:
        data[extra] = district
    report = ImportReport()
    try:
        with engine.begin() as conn:
            srid = _srid_and_check_crs(conn, frame)
            if district is not None:
                conn.execute(
                    text(
                        "INSERT INTO district (code, name) VALUES (:d, :d) ON CONFLICT DO NOTHING"
                    ),
                    {"d": district},
                )
            conn.execute(
                text(
                    f"CREATE TEMP TABLE _unit_stage (code text, name text, {extra} text, "
                    "geom geometry) ON COMMIT DROP"
                )
            )
            copy_frame(conn, "_unit_stage", data, frame.geometry, progress)
            if level == "village":
                parent = """COALESCE(
                    (SELECT t.code FROM street_town t WHERE t.code = s.street_town_code
                        OR t.name = s.street_town_code ORDER BY t.code = s.street_town_code DESC
                        LIMIT 1),
                    CASE WHEN s.street_town_code IS NULL THEN st.code END)"""
                overlap = largest_overlap_sql("street_town", "g.geom", "st")
            else:
                parent, overlap = f"s.{extra}", ""
            conn.execute(
                text(f"""
                CREATE TEMP TABLE _unit_new ON COMMIT DROP AS
                SELECT s.code, s.name, {parent} AS {extra}, s.{extra} AS given, g.geom
                FROM _unit_stage s
                CROSS JOIN LATERAL (SELECT ST_Multi(ST_SetSRID(s.geom, {srid})) AS geom) g
                {overlap}
            """)
            )
            if level == "village":
                orphan = conn.execute(
                    text("SELECT code, given FROM _unit_new WHERE street_town_code IS NULL LIMIT 1")
                ).first()
                if orphan is not None:
                    raise InvalidInputError(
                        f"{what}: village {orphan[0]!r}: "
                        + (
                            f"street_town_code {orphan[1]!r} is no 街镇 in the database"
                            if orphan[1]
                            else "it overlaps no 街镇"
                        )
                        + "; import the 街镇 first (weijian admin import --level street_town)"
                    )
            fields = ["name", extra]
            existing = conn.execute(
                text(f"SELECT count(*) FROM {level} JOIN _unit_new USING (code)")
            ).scalar_one()
            sets = ", ".join(f"{f} = n.{f}" for f in fields)
            report.updated = conn.execute(
                text(f"""
                UPDATE {level} o SET {sets}, geom = n.geom FROM _unit_new n
                WHERE o.code = n.code AND {differs_sql(fields, "o", "n")}
            """)
            ).rowcount
            report.created = conn.execute(
                text(f"""
                INSERT INTO {level} (code, {", ".join(fields)}, geom)
                SELECT code, {", ".join(fields)}, geom FROM _unit_new n
                WHERE NOT EXISTS (SELECT 1 FROM {level} o WHERE o.code = n.code)
            """)
            ).rowcount
            report.unchanged = int(existing) - report.updated
            if district is not None:
                conn.execute(
                    text("""
                    UPDATE district SET geom = (SELECT ST_Multi(ST_Union(geom))
                        FROM street_town WHERE district_code = :d) WHERE code = :d
                """),
                    {"d": district},
                )
            if report.created or report.updated:
                moved = reassign_cases(conn, actor=actor, comment=f"{level} boundaries imported")
                if moved:
                    report.warnings.append(f"{moved} case(s) moved to another 街镇/居村")
    except IntegrityError as exc:
        raise InvalidInputError(f"{what}: the database refused the rows: {exc.orig}") from exc
    report.seconds = time.perf_counter() - started
    return report


def reassign_cases(conn: Connection, *, actor: str, comment: str) -> int:
    """Recompute every case's 街镇 / 居村 by largest overlap; record changes as ``unit_reassign``.

    Runs inside the caller's transaction; returns the number of cases whose unit changed.
    """
    old_new = ("street_town_code", "village_code")
    changes = (
        "jsonb_strip_nulls(jsonb_build_object("
        + ", ".join(
            f"'{f}', CASE WHEN calc.old_{f} IS DISTINCT FROM calc.{f} "
            f"THEN jsonb_build_array(calc.old_{f}, calc.{f}) END"
            for f in old_new
        )
        + "))"
    )
    return conn.execute(
        text(f"""
        WITH calc AS (
            SELECT c.id, c.street_town_code AS old_street_town_code,
                   c.village_code AS old_village_code,
                   st.code AS street_town_code, v.code AS village_code
            FROM inventory_case c
            CROSS JOIN LATERAL (SELECT c.geom) g(geom)
            {largest_overlap_sql("street_town", "g.geom", "st")}
            {largest_overlap_sql("village", "g.geom", "v")}
        ), upd AS (
            UPDATE inventory_case c
            SET street_town_code = calc.street_town_code, village_code = calc.village_code,
                version = c.version + 1, updated_at = now()
            FROM calc
            WHERE c.id = calc.id AND ROW(calc.old_street_town_code, calc.old_village_code)
                  IS DISTINCT FROM ROW(calc.street_town_code, calc.village_code)
            RETURNING c.id, {changes} AS changes
        )
        INSERT INTO case_history (case_id, actor, action, changes, comment)
        SELECT id, :actor, 'unit_reassign', changes, :comment FROM upd
    """),
        {"actor": actor, "comment": comment},
    ).rowcount
