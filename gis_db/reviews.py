"""The office's decisions as labels: reviewed detections and decided cases of detection runs.

Read by the training pipeline (``weijian train --from-reviews``): a detection the office
confirmed is a change (its polygon is the mask), one it marked a false positive is a hard
negative; a case confirmed on site (verified and later states) that was discovered between a
run's two acquisitions is a building that appeared, and a case written off between them is
one that disappeared. Geometry is in the working CRS; scene paths are the registered COGs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from sqlalchemy import Connection, Engine, text

from gis_db.domain import CaseState, DetectionState
from gis_db.errors import InvalidInputError, NotFoundError
from gis_db.schema import stored_crs

if TYPE_CHECKING:
    import geopandas as gpd

#: Case states in which the office has confirmed on site that the structure exists(ed).
CONFIRMED_CASE_STATES = (
    CaseState.VERIFIED,
    CaseState.DISPOSED,
    CaseState.WRITE_OFF_REQUESTED,
    CaseState.REBOUND,
)
#: Case states after a write-off (the structure was removed).
WRITTEN_OFF_CASE_STATES = (CaseState.WRITTEN_OFF, CaseState.REINSPECTED_CLEAN)

_RUNS = """
SELECT r.id AS run_id, r.network, r.weights_checksum,
       b.path AS before_path, a.path AS after_path,
       b.acquired_at AS before_at, a.acquired_at AS after_at,
       b.gsd_m AS before_gsd_m, a.gsd_m AS after_gsd_m
FROM detection_run r JOIN scene b ON b.id = r.before_scene_id
JOIN scene a ON a.id = r.after_scene_id
"""


def _check_runs(conn: Connection, run_ids: Sequence[int] | None) -> list[int]:
    known = list(conn.execute(text("SELECT id FROM detection_run ORDER BY id")).scalars())
    if run_ids is None:
        return [int(r) for r in known]
    missing = sorted(set(run_ids) - set(known))
    if missing:
        raise NotFoundError(
            f"detection run(s) {', '.join(map(str, missing))} do not exist: see `weijian runs list`"
        )
    return sorted(set(run_ids))


def reviewed_detections(
    bind: Engine | Connection, run_ids: Sequence[int] | None = None
) -> gpd.GeoDataFrame:
    """Confirmed and false-positive detections of ``run_ids`` (default: all runs).

    One row per detection: ``detection_id``, ``run_id``, ``state`` (``confirmed`` or
    ``false_positive``), ``reviewed_by`` and ``reviewed_at`` (the last review), the run's scene
    paths and acquisition times and GSDs, and ``geom`` in the working CRS. Raises
    :class:`InvalidInputError` when the runs hold no such decision.
    """
    import geopandas as gpd

    with bind.connect() if isinstance(bind, Engine) else _same(bind) as conn:
        runs = _check_runs(conn, run_ids)
        stored = stored_crs(conn)
        crs = stored[0] if stored else None
        frame = gpd.read_postgis(
            text(
                "WITH runs AS (" + _RUNS + " WHERE r.id = ANY(:runs)) "
                "SELECT d.id AS detection_id, d.run_id, d.state, d.area_m2, d.score, "
                "h.actor AS reviewed_by, h.at AS reviewed_at, runs.before_path, runs.after_path, "
                "runs.before_at, runs.after_at, runs.before_gsd_m, runs.after_gsd_m, "
                "runs.network, runs.weights_checksum, d.geom "
                "FROM detection d JOIN runs ON runs.run_id = d.run_id "
                "LEFT JOIN LATERAL (SELECT actor, at FROM detection_history "
                "  WHERE detection_id = d.id ORDER BY at DESC, id DESC LIMIT 1) h ON true "
                "WHERE d.state IN (:confirmed, :fp) ORDER BY d.run_id, d.seq"
            ),
            conn,
            geom_col="geom",
            params={
                "runs": runs,
                "confirmed": DetectionState.CONFIRMED.value,
                "fp": DetectionState.FALSE_POSITIVE.value,
            },
            crs=crs,
        )
    if frame.empty:
        which = f"run(s) {', '.join(map(str, runs))}" if run_ids is not None else "any run"
        raise InvalidInputError(
            f"no reviewed detections in {which}: confirm or mark detections as false positives "
            "(`weijian runs review`) before training from reviews"
        )
    return frame


def decided_cases(
    bind: Engine | Connection, run_ids: Sequence[int] | None = None
) -> gpd.GeoDataFrame:
    """Cases that changed between a run's two acquisitions (default: every run), as decided.

    ``kind`` ``appeared``: a case in a confirmed state (verified, disposed, write-off
    requested, rebound) discovered after the run's before image and no later than its after
    image; ``disappeared``: a case written off in that interval. Only cases inside the run's
    compared footprint. Columns: ``case_id``, ``case_number``, ``run_id``, ``kind``, ``state``,
    the run's scene paths and ``geom`` (working CRS). May be empty.
    """
    import geopandas as gpd

    confirmed = [s.value for s in CONFIRMED_CASE_STATES]
    written_off = [s.value for s in WRITTEN_OFF_CASE_STATES]
    with bind.connect() if isinstance(bind, Engine) else _same(bind) as conn:
        runs = _check_runs(conn, run_ids)
        stored = stored_crs(conn)
        crs = stored[0] if stored else None
        return gpd.read_postgis(
            text(
                "WITH runs AS ("
                + _RUNS.replace(
                    "FROM detection_run r", ", r.compared_footprint FROM detection_run r"
                )
                + " WHERE r.id = ANY(:runs)) "
                "SELECT c.id AS case_id, c.case_number, runs.run_id, c.state, "
                "CASE WHEN c.state = ANY(:off) THEN 'disappeared' ELSE 'appeared' END AS kind, "
                "runs.before_path, runs.after_path, runs.before_gsd_m, runs.after_gsd_m, c.geom "
                "FROM inventory_case c JOIN runs ON ST_Within(c.geom, runs.compared_footprint) "
                "WHERE (c.state = ANY(:confirmed) AND c.discovered_on > runs.before_at::date "
                "       AND c.discovered_on <= runs.after_at::date) "
                "   OR (c.state = ANY(:off) AND c.written_off_at > runs.before_at "
                "       AND c.written_off_at <= runs.after_at) "
                "ORDER BY runs.run_id, c.id"
            ),
            conn,
            geom_col="geom",
            params={"runs": runs, "confirmed": confirmed, "off": written_off},
            crs=crs,
        )


class _same:
    """Context manager yielding an existing connection unchanged."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def __enter__(self) -> Connection:
        return self.conn

    def __exit__(self, *exc: object) -> None:
        return None
