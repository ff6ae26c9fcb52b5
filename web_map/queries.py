"""Read queries of the review application, each scoped to a 街镇 when the user is a 街镇 user.

``street_town``: the 街镇 code the user is bound to (None: the whole district). A record of
another 街镇 is reported as not found (404): a 街镇 does not learn that its neighbour's records
exist. All parameters are bound.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, text

from gis_db.errors import InvalidInputError, NotFoundError

QUEUE_SORTS = {"score": "d.score DESC NULLS LAST, d.id", "area": "d.area_m2 DESC, d.id"}


def runs(conn: Connection, street_town: str | None) -> list[dict[str, Any]]:
    """All runs, newest first, with detection counts per review state (in the user's scope)."""
    rows = conn.execute(
        text(
            "SELECT r.id, r.status, r.network, b.acquired_at AS before_at, "
            "a.acquired_at AS after_at, b.id AS before_scene_id, a.id AS after_scene_id, "
            "count(d.id) AS detections, "
            "count(d.id) FILTER (WHERE d.state = 'new') AS pending, "
            "count(d.id) FILTER (WHERE d.state = 'confirmed') AS confirmed, "
            "count(d.id) FILTER (WHERE d.state IN ('false_positive', 'bad_imagery')) AS rejected "
            "FROM detection_run r JOIN scene b ON b.id = r.before_scene_id "
            "JOIN scene a ON a.id = r.after_scene_id "
            "LEFT JOIN detection d ON d.run_id = r.id "
            "AND (CAST(:st AS text) IS NULL OR d.street_town_code = :st) "
            "GROUP BY r.id, b.id, a.id ORDER BY r.id DESC"
        ),
        {"st": street_town},
    ).mappings()
    return [dict(r) for r in rows]


def run(conn: Connection, run_id: int) -> dict[str, Any]:
    """One run with its scenes and its extent in degrees."""
    row = (
        conn.execute(
            text(
                "SELECT r.id, r.status, r.network, b.id AS before_scene_id, "
                "a.id AS after_scene_id, b.acquired_at AS before_at, a.acquired_at AS after_at, "
                "b.path IS NOT NULL AS before_has_image, a.path IS NOT NULL AS after_has_image, "
                "ST_XMin(e) AS w, ST_YMin(e) AS s, ST_XMax(e) AS e, ST_YMax(e) AS n "
                "FROM detection_run r JOIN scene b ON b.id = r.before_scene_id "
                "JOIN scene a ON a.id = r.after_scene_id, "
                "LATERAL (SELECT ST_Transform(ST_Envelope(COALESCE(r.compared_footprint, "
                "a.footprint)), 4326) AS e) x WHERE r.id = :r"
            ),
            {"r": run_id},
        )
        .mappings()
        .first()
    )
    if row is None:
        raise NotFoundError(
            f"detection run {run_id} does not exist", code="run_not_found", record_id=run_id
        )
    return dict(row)


def check_run(conn: Connection, run_id: int) -> None:
    """NotFoundError unless run ``run_id`` exists (one cheap query)."""
    found = conn.execute(text("SELECT 1 FROM detection_run WHERE id = :r"), {"r": run_id}).first()
    if found is None:
        raise NotFoundError(
            f"detection run {run_id} does not exist", code="run_not_found", record_id=run_id
        )


def _scope_detection(street_town: str | None) -> str:
    return "(CAST(:st AS text) IS NULL OR d.street_town_code = :st)"


def queue(
    conn: Connection,
    run_id: int,
    street_town: str | None,
    *,
    match_class: str | None = None,
    state: str | None = "new",
    unit: str | None = None,
    sort: str = "score",
    limit: int = 200,
    offset: int = 0,
) -> list[dict[str, Any]]:
    """The review queue of a run: detections in the user's scope, filtered and sorted."""
    if sort not in QUEUE_SORTS:
        raise InvalidInputError(f"sort must be one of {', '.join(QUEUE_SORTS)}, not {sort!r}")
    rows = conn.execute(
        text(
            "SELECT d.id, d.seq, d.score, d.area_m2, d.match_class, d.state, d.version, "
            "d.change_kind, d.street_town_code, s.name AS street_town_name, d.matched_case_id, "
            "c.case_number AS matched_case_number "
            "FROM detection d LEFT JOIN street_town s ON s.code = d.street_town_code "
            "LEFT JOIN inventory_case c ON c.id = d.matched_case_id "
            f"WHERE d.run_id = :r AND {_scope_detection(street_town)} "
            "AND (CAST(:cls AS text) IS NULL OR d.match_class = :cls) "
            "AND (CAST(:state AS text) IS NULL OR d.state = :state) "
            "AND (CAST(:unit AS text) IS NULL OR d.street_town_code = :unit) "
            f"ORDER BY {QUEUE_SORTS[sort]} LIMIT :lim OFFSET :off"
        ),
        {
            "r": run_id,
            "st": street_town,
            "cls": match_class or None,
            "state": state or None,
            "unit": unit or None,
            "lim": max(1, min(int(limit), 1000)),
            "off": max(0, int(offset)),
        },
    ).mappings()
    return [dict(r) for r in rows]


def detection(conn: Connection, detection_id: int, street_town: str | None) -> dict[str, Any]:
    """One detection with its run's scenes, its bounds in degrees and its geometry (GeoJSON)."""
    row = (
        conn.execute(
            text(
                "SELECT d.id, d.run_id, d.seq, d.score, d.area_m2, d.match_class, d.state, "
                "d.version, d.change_kind, d.street_town_code, s.name AS street_town_name, "
                "d.village_code, d.matched_case_id, c.case_number AS matched_case_number, "
                "r.before_scene_id, r.after_scene_id, "
                "ST_XMin(b) AS w, ST_YMin(b) AS s, ST_XMax(b) AS e, ST_YMax(b) AS n, "
                "ST_AsGeoJSON(ST_Transform(d.geom, 4326), 6)::json AS geometry, "
                "(SELECT l.case_id FROM case_detection l WHERE l.detection_id = d.id "
                " ORDER BY l.linked_at LIMIT 1) AS case_id "
                "FROM detection d JOIN detection_run r ON r.id = d.run_id "
                "LEFT JOIN inventory_case c ON c.id = d.matched_case_id "
                "LEFT JOIN street_town s ON s.code = d.street_town_code, "
                "LATERAL (SELECT ST_Transform(ST_Envelope(d.geom), 4326) AS b) x "
                f"WHERE d.id = :i AND {_scope_detection(street_town)}"
            ),
            {"i": detection_id, "st": street_town},
        )
        .mappings()
        .first()
    )
    if row is None:
        raise NotFoundError(
            f"detection {detection_id} does not exist (or is not in your 街镇)",
            code="detection_not_found",
            record_id=detection_id,
            scoped=street_town is not None,
        )
    return dict(row)


def detection_box_working(
    conn: Connection, detection_id: int, margin_m: float
) -> tuple[float, float, float, float]:
    """The detection's bounds in the working CRS, grown by ``margin_m`` metres on each side."""
    row = conn.execute(
        text(
            "SELECT ST_XMin(g) - :m, ST_YMin(g) - :m, ST_XMax(g) + :m, ST_YMax(g) + :m "
            "FROM (SELECT ST_Envelope(geom) AS g FROM detection WHERE id = :i) q"
        ),
        {"i": detection_id, "m": margin_m},
    ).one()
    return float(row[0]), float(row[1]), float(row[2]), float(row[3])


def working_crs(conn: Connection) -> str:
    """The working CRS of the database as pyproj input (``EPSG:n`` or WKT)."""
    row = conn.execute(
        text(
            "SELECT r.auth_name, r.auth_srid, r.srtext FROM db_meta m "
            "JOIN spatial_ref_sys r ON r.srid = CAST(m.value AS int) WHERE m.key = 'srid'"
        )
    ).one()
    return f"EPSG:{row.auth_srid}" if row.auth_name == "EPSG" else str(row.srtext)


CASE_COLUMNS = (
    "c.id, c.case_number, c.state, c.version, c.address, c.area_m2, c.priority_type, "
    "c.construction_status, c.disposal, c.source, c.discovered_on, c.in_database, c.owner, "
    "c.remark, c.street_town_code, s.name AS street_town_name, v.name AS village_name, "
    "c.dispatched_at, c.verified_at, c.write_off_requested_by, c.write_off_requested_at, "
    "c.written_off_by, c.written_off_at, c.reinspection_due_on, c.updated_at"
)


def case(conn: Connection, case_id: int, street_town: str | None) -> dict[str, Any]:
    """One case with its 街镇/居村 names, bounds in degrees and geometry (GeoJSON)."""
    row = (
        conn.execute(
            text(
                f"SELECT {CASE_COLUMNS}, "
                "ST_XMin(b) AS w, ST_YMin(b) AS s_, ST_XMax(b) AS e, ST_YMax(b) AS n, "
                "ST_AsGeoJSON(ST_Transform(c.geom, 4326), 6)::json AS geometry "
                "FROM inventory_case c LEFT JOIN street_town s ON s.code = c.street_town_code "
                "LEFT JOIN village v ON v.code = c.village_code, "
                "LATERAL (SELECT ST_Transform(ST_Envelope(c.geom), 4326) AS b) x "
                "WHERE c.id = :i AND (CAST(:st AS text) IS NULL OR c.street_town_code = :st)"
            ),
            {"i": case_id, "st": street_town},
        )
        .mappings()
        .first()
    )
    if row is None:
        raise NotFoundError(
            f"case {case_id} does not exist (or is not in your 街镇)",
            code="case_not_found",
            record_id=case_id,
            scoped=street_town is not None,
        )
    return dict(row)


def cases(
    conn: Connection,
    street_town: str | None,
    *,
    state: str | None = None,
    q: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[dict[str, Any]]:
    """Cases in the user's scope, most recently changed first, filtered by state and text."""
    like = f"%{q.strip()}%" if q and q.strip() else None
    rows = conn.execute(
        text(
            f"SELECT {CASE_COLUMNS} FROM inventory_case c "
            "LEFT JOIN street_town s ON s.code = c.street_town_code "
            "LEFT JOIN village v ON v.code = c.village_code "
            "WHERE (CAST(:st AS text) IS NULL OR c.street_town_code = :st) "
            "AND (CAST(:state AS text) IS NULL OR c.state = :state) "
            "AND (CAST(:q AS text) IS NULL OR c.case_number ILIKE :q OR c.address ILIKE :q) "
            "ORDER BY c.updated_at DESC, c.id DESC LIMIT :lim OFFSET :off"
        ),
        {
            "st": street_town,
            "state": state or None,
            "q": like,
            "lim": max(1, min(int(limit), 500)),
            "off": max(0, int(offset)),
        },
    ).mappings()
    return [dict(r) for r in rows]


def search(
    conn: Connection, q: str, street_town: str | None, limit: int = 10
) -> list[dict[str, Any]]:
    """Cases whose number or address contains ``q``, with their centre in degrees."""
    q = (q or "").strip()
    if not q:
        return []
    rows = conn.execute(
        text(
            "SELECT c.id, c.case_number, c.address, c.state, ST_X(p) AS lon, ST_Y(p) AS lat "
            "FROM inventory_case c, "
            "LATERAL (SELECT ST_Transform(ST_PointOnSurface(c.geom), 4326) AS p) x "
            "WHERE (CAST(:st AS text) IS NULL OR c.street_town_code = :st) "
            "AND (c.case_number ILIKE :q OR c.address ILIKE :q) "
            "ORDER BY (c.case_number = :exact) DESC, c.case_number LIMIT :lim"
        ),
        {"st": street_town, "q": f"%{q}%", "exact": q, "lim": limit},
    ).mappings()
    return [dict(r) for r in rows]


def evidence_files(conn: Connection, case_id: int) -> list[dict[str, Any]]:
    """The photos uploaded for a case, oldest first."""
    rows = conn.execute(
        text(
            "SELECT id, sha256, original_name, content_type, size_bytes, uploaded_by, uploaded_at "
            "FROM evidence_file WHERE case_id = :c ORDER BY id"
        ),
        {"c": case_id},
    ).mappings()
    return [dict(r) for r in rows]


def evidence_file(conn: Connection, file_id: int, street_town: str | None) -> dict[str, Any]:
    """One uploaded photo's record (404 outside the user's 街镇)."""
    row = (
        conn.execute(
            text(
                "SELECT f.id, f.case_id, f.sha256, f.stored_name, f.original_name, "
                "f.content_type, f.size_bytes FROM evidence_file f "
                "JOIN inventory_case c ON c.id = f.case_id WHERE f.id = :i "
                "AND (CAST(:st AS text) IS NULL OR c.street_town_code = :st)"
            ),
            {"i": file_id, "st": street_town},
        )
        .mappings()
        .first()
    )
    if row is None:
        raise NotFoundError(
            f"evidence file {file_id} does not exist (or is not in your 街镇)",
            code="evidence_not_found",
            record_id=file_id,
            scoped=street_town is not None,
        )
    return dict(row)
