"""Judging a run's detected changes against the inventory, in one SQL statement over GiST indexes.

Overlap of a detection D with a case or permit X is measured as

    area(buffer(D, tolerance_m) ∩ X) / min(area(buffer(D, tolerance_m)), area(X))

(intersection over the smaller area, the detection widened by a tolerance for misregistration
between the two images; all in the working CRS, metres). X counts when overlap ≥ threshold.

Class of each detection (first that applies; see docs/decisions/0010-matching.md):

- change_kind ``disappeared`` (the structure is gone in the after image):
  **demolition_evidence** when it overlaps an active case (best overlap), else **unrelated**;
- otherwise (``appeared`` or ``changed``):
  **permitted** — overlaps a permit valid on the after image's date;
  **rebound** — overlaps a written-off case (``written_off`` or ``reinspected_clean``);
  **known_case** — overlaps an active case;
  **new_suspect** — none of these.

Each detection also gets the 街镇 and 居村 it overlaps most. A rebound transitions its case to
``rebound`` at once (actor ``system``), with the detection as evidence; nothing else changes
case state: demolition evidence awaits a person's decision.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field

from sqlalchemy import Connection, Engine, text

from gis_db.domain import OFFICE_TZ, MatchClass, Role
from gis_db.errors import InvalidInputError, NotFoundError
from gis_db.sql import largest_overlap_sql
from gis_db.workflow import (
    ACTIVE_CASE_STATES,
    CLOSED_CASE_STATES,
    CaseAction,
    transaction,
    transition_cases,
)

SYSTEM_ACTOR = "system"


@dataclass(frozen=True)
class MatchSummary:
    """Outcome of matching one run: detections per class, cases reopened as rebounds."""

    run_id: int
    counts: dict[str, int]
    rebound_case_ids: list[int] = field(default_factory=list)
    seconds: float = 0.0
    already_matched: bool = False


# The one matching statement. :run, :tol (m), :thr (0-1), :on (date), :active, :closed.
MATCH_SQL = f"""
WITH d AS MATERIALIZED (
    SELECT id, geom, area_m2, change_kind, b.bg, ST_Area(b.bg) AS bg_area
    FROM detection,
         LATERAL (SELECT ST_Buffer(geom, :tol, 'join=mitre') AS bg OFFSET 0) b
    WHERE run_id = :run AND state = 'new'
),
cand AS MATERIALIZED (
    SELECT d.id AS det_id, 1 AS prio, 'permitted' AS cls, NULL::bigint AS case_id,
           p.id AS permit_id,
           ST_Area(ST_Intersection(d.bg, p.geom)) / LEAST(d.bg_area, ST_Area(p.geom)) AS overlap
    FROM d JOIN permit p ON ST_Intersects(p.geom, d.bg)
    WHERE d.change_kind <> 'disappeared'
      AND p.valid_from <= :on AND (p.valid_to IS NULL OR p.valid_to >= :on)
    UNION ALL
    SELECT d.id,
           CASE WHEN d.change_kind = 'disappeared' THEN 1
                WHEN c.state = ANY(:closed) THEN 2 ELSE 3 END,
           CASE WHEN d.change_kind = 'disappeared' THEN 'demolition_evidence'
                WHEN c.state = ANY(:closed) THEN 'rebound' ELSE 'known_case' END,
           c.id, NULL::bigint,
           ST_Area(ST_Intersection(d.bg, c.geom)) / LEAST(d.bg_area, ST_Area(c.geom))
    FROM d JOIN inventory_case c ON ST_Intersects(c.geom, d.bg)
    WHERE d.change_kind <> 'disappeared' OR c.state = ANY(:active)
),
best AS (
    SELECT DISTINCT ON (det_id) det_id, cls, case_id, permit_id, overlap
    FROM cand WHERE overlap >= :thr
    ORDER BY det_id, prio, overlap DESC, case_id, permit_id
)
UPDATE detection t SET
    match_class = COALESCE(b.cls, CASE WHEN d.change_kind = 'disappeared'
                                       THEN 'unrelated' ELSE 'new_suspect' END),
    match_overlap = LEAST(b.overlap, 1.0),
    matched_case_id = b.case_id,
    matched_permit_id = b.permit_id,
    street_town_code = st.code,
    village_code = vi.code,
    updated_at = now()
FROM d
LEFT JOIN best b ON b.det_id = d.id
{largest_overlap_sql("street_town", "d.geom", "st", area="d.area_m2")}
{largest_overlap_sql("village", "d.geom", "vi", area="d.area_m2")}
WHERE t.id = d.id
"""


def match_run(
    bind: Engine | Connection,
    run_id: int,
    *,
    overlap_threshold: float = 0.3,
    tolerance_m: float = 2.0,
) -> MatchSummary:
    """Classify every unreviewed detection of ``run_id`` and raise rebounds, in one transaction.

    ``overlap_threshold``: minimum intersection over the smaller area (0-1]; ``tolerance_m``:
    buffer applied to each detection for misregistration, metres. Matching a run that is
    already matched changes nothing (loading new detections into it resets it).
    """
    if not 0 < overlap_threshold <= 1:
        raise InvalidInputError(f"overlap_threshold must lie in (0, 1], got {overlap_threshold}")
    if tolerance_m < 0:
        raise InvalidInputError(f"tolerance_m must be ≥ 0 m, got {tolerance_m}")
    started = time.perf_counter()
    with transaction(bind) as conn:
        run = conn.execute(
            text(
                f"SELECT r.status, (s.acquired_at AT TIME ZONE '{OFFICE_TZ}')::date AS after_date, "
                "r.after_scene_id FROM detection_run r JOIN scene s ON s.id = r.after_scene_id "
                "WHERE r.id = :r FOR UPDATE OF r"
            ),
            {"r": run_id},
        ).first()
        if run is None:
            raise NotFoundError(f"detection run {run_id} does not exist")
        if run.status == "created":
            raise InvalidInputError(f"run {run_id} has no detections loaded yet: load them first")
        if run.status == "matched":
            return MatchSummary(run_id, _counts(conn, run_id), already_matched=True)
        conn.execute(text("SET LOCAL jit = off"))  # compiling costs more than it saves here
        conn.execute(
            text(MATCH_SQL),
            {
                "run": run_id,
                "tol": float(tolerance_m),
                "thr": float(overlap_threshold),
                "on": run.after_date,
                "active": [s.value for s in ACTIVE_CASE_STATES],
                "closed": [s.value for s in CLOSED_CASE_STATES],
            },
        )
        rebounds = _raise_rebounds(conn, run_id, run.after_scene_id)
        seconds = time.perf_counter() - started
        conn.execute(
            text(
                "UPDATE detection_run SET status = 'matched', matched_at = now(), "
                "timings = timings || jsonb_build_object('match_s', CAST(:s AS float8)) "
                "WHERE id = :r"
            ),
            {"r": run_id, "s": seconds},
        )
        counts = _counts(conn, run_id)
    return MatchSummary(run_id, counts, rebounds, seconds)


def _counts(conn: Connection, run_id: int) -> dict[str, int]:
    rows = conn.execute(
        text("SELECT match_class, count(*) FROM detection WHERE run_id = :r GROUP BY match_class"),
        {"r": run_id},
    ).all()
    counts = Counter({m.value: 0 for m in MatchClass})
    counts.update({str(k): int(n) for k, n in rows if k is not None})
    return dict(counts)


def _raise_rebounds(conn: Connection, run_id: int, after_scene_id: int) -> list[int]:
    """Reopen each written-off case a detection of this run rebuilt on (反弹回潮), set-based."""
    rows = conn.execute(
        text(
            "SELECT matched_case_id, array_agg(id ORDER BY id) FROM detection "
            "WHERE run_id = :r AND match_class = 'rebound' GROUP BY matched_case_id"
        ),
        {"r": run_id},
    ).all()
    moved = transition_cases(
        conn,
        {
            case_id: [
                {"detection_id": d, "run_id": run_id, "scene_id": after_scene_id}
                for d in detection_ids
            ]
            for case_id, detection_ids in rows
        },
        CaseAction.REPORT_REBOUND,
        actor=SYSTEM_ACTOR,
        role=Role.SYSTEM,
        comment=f"比对批次 {run_id} 在已销项点位发现建筑 (反弹回潮)",
    )
    conn.execute(
        text(
            "INSERT INTO case_detection (case_id, detection_id, relation, linked_by) "
            "SELECT matched_case_id, id, 'rebound', :a FROM detection "
            "WHERE run_id = :r AND match_class = 'rebound' AND matched_case_id = ANY(:moved) "
            "ON CONFLICT (case_id, detection_id) DO NOTHING"
        ),
        {"r": run_id, "a": SYSTEM_ACTOR, "moved": moved},
    )
    return moved
