"""The imagery catalogue and detection runs: registering scenes, creating runs, loading detections.

Geometry is given in the database's working CRS (metres; EPSG:4549 by default); a frame or
footprint in another CRS is refused, never silently reprojected. Loading is idempotent:

- a scene is identified by its file checksum (SHA-256): registering it again returns the same id;
- a run is identified by its key, the hash of (before checksum, after checksum, network, weights
  checksum, parameters): creating it again returns the same id;
- loading the same detections into a run again changes nothing; loading different ones (the same
  flight re-vectorised) replaces that run's detections in one transaction, without touching any
  case, and is refused once a detection of the run has been reviewed or linked to a case,
  because those decisions are evidence.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import shapely
from pyproj import CRS
from shapely.geometry.base import BaseGeometry
from sqlalchemy import Connection, Engine, text

from gis_db.domain import SHANGHAI, ChangeKind, ScenePlatform
from gis_db.engine import psycopg_connection, transaction
from gis_db.errors import ConflictError, InvalidInputError, NotFoundError
from gis_db.schema import require_working_crs

if TYPE_CHECKING:
    import geopandas as gpd
    import pandas as pd


@dataclass(frozen=True)
class LoadResult:
    """What :func:`load_detections` did: ``unchanged`` when the same detections were there."""

    run_id: int
    n_detections: int
    replaced: int
    unchanged: bool


def _working_crs(conn: Connection) -> tuple[CRS, int]:
    working, srid = require_working_crs(conn)
    return CRS.from_user_input(working), srid


def _check_crs(conn: Connection, crs: Any, what: str) -> int:
    """The working SRID, after checking that ``crs`` (None: assumed) is the working CRS."""
    working, srid = _working_crs(conn)
    if crs is not None and not CRS.from_user_input(crs).equals(working):
        raise InvalidInputError(
            f"{what} is in {CRS.from_user_input(crs).to_string()} but the database stores "
            f"{working.to_string()}: reproject it first (e.g. "
            f"frame.to_crs({working.to_string()!r}))"
        )
    return srid


def _multipolygon(geom: BaseGeometry | None, what: str) -> BaseGeometry:
    """``geom`` as a valid, non-empty MultiPolygon (invalid rings repaired with make_valid)."""
    if geom is None or geom.is_empty:
        raise InvalidInputError(f"{what} is empty")
    geom = shapely.force_2d(geom)
    if not geom.is_valid:
        geom = shapely.make_valid(geom)
    parts = [p for p in shapely.get_parts(geom) if p.geom_type in ("Polygon", "MultiPolygon")]
    polys = [q for p in parts for q in shapely.get_parts(p)]
    if not polys:
        raise InvalidInputError(f"{what} is a {geom.geom_type}, not a polygon")
    return shapely.MultiPolygon(polys)


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=SHANGHAI)


def register_scene(
    bind: Engine | Connection,
    *,
    checksum: str,
    footprint: BaseGeometry,
    acquired_at: datetime,
    platform: ScenePlatform | str = ScenePlatform.OTHER,
    gsd_m: float | None = None,
    path: str | Path | None = None,
    stac_item: Mapping[str, Any] | Any | None = None,
    crs: Any = None,
) -> int:
    """Catalogue one image; returns its id (the same id when the checksum is already known).

    ``footprint``: imaged area in the working CRS (``crs``, when given, is checked against it).
    ``acquired_at``: naive values are Shanghai time. ``gsd_m``: ground sample distance, m.
    ``stac_item``: a STAC Item as a dict or a ``pystac.Item``.
    """
    if not checksum or not checksum.strip():
        raise InvalidInputError("scene checksum is empty: give the SHA-256 of the file")
    platform = ScenePlatform.parse(str(platform))
    if gsd_m is not None and gsd_m <= 0:
        raise InvalidInputError(f"gsd_m must be positive, got {gsd_m}")
    to_dict = getattr(stac_item, "to_dict", None)
    item = to_dict() if callable(to_dict) else stac_item
    with transaction(bind) as conn:
        srid = _check_crs(conn, crs, "the scene footprint")
        geom = _multipolygon(footprint, "the scene footprint")
        return int(
            conn.execute(
                text(
                    "INSERT INTO scene (checksum, path, platform, acquired_at, gsd_m, stac_item, "
                    "footprint) VALUES (:c, :p, :pl, :t, :g, CAST(:s AS jsonb), "
                    "ST_GeomFromWKB(:f, :srid)) ON CONFLICT (checksum) DO UPDATE SET "
                    "path = COALESCE(EXCLUDED.path, scene.path), "
                    "stac_item = COALESCE(EXCLUDED.stac_item, scene.stac_item) RETURNING id"
                ),
                {
                    "c": checksum.strip(),
                    "p": str(path) if path else None,
                    "pl": platform.value,
                    "t": _aware(acquired_at),
                    "g": gsd_m,
                    "s": json.dumps(item, default=str) if item is not None else None,
                    "f": shapely.to_wkb(geom),
                    "srid": srid,
                },
            ).scalar_one()
        )


def run_key(
    before_checksum: str,
    after_checksum: str,
    network: str,
    weights_checksum: str,
    params: Mapping[str, Any],
) -> str:
    """The identity of a run: SHA-256 of its images, network, weights and parameters."""
    blob = json.dumps(
        {
            "before": before_checksum,
            "after": after_checksum,
            "network": network,
            "weights": weights_checksum,
            "params": params,
        },
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(blob.encode()).hexdigest()


def create_run(
    bind: Engine | Connection,
    *,
    before_scene_id: int,
    after_scene_id: int,
    network: str,
    weights_checksum: str,
    params: Mapping[str, Any] | None = None,
) -> int:
    """The id of the run comparing these two scenes with this network, weights and parameters.

    Created on first call (status ``created``); later calls return the same id. The compared
    footprint is the intersection of the two scenes' footprints.
    """
    params = dict(params or {})
    with transaction(bind) as conn:
        scenes = {
            r.id: r
            for r in conn.execute(
                text("SELECT id, checksum, acquired_at FROM scene WHERE id = ANY(:ids)"),
                {"ids": [before_scene_id, after_scene_id]},
            )
        }
        for sid in (before_scene_id, after_scene_id):
            if sid not in scenes:
                raise NotFoundError(f"scene {sid} is not registered: call register_scene first")
        before, after = scenes[before_scene_id], scenes[after_scene_id]
        if before_scene_id == after_scene_id or before.acquired_at >= after.acquired_at:
            raise InvalidInputError(
                f"the before scene ({before.acquired_at:%Y-%m-%d %H:%M}) must be older than the "
                f"after scene ({after.acquired_at:%Y-%m-%d %H:%M}): swap them"
            )
        key = run_key(before.checksum, after.checksum, network, weights_checksum, params)
        found = conn.execute(
            text("SELECT id FROM detection_run WHERE run_key = :k"), {"k": key}
        ).scalar()
        if found is not None:
            return int(found)
        return int(
            conn.execute(
                text(
                    "INSERT INTO detection_run (run_key, before_scene_id, after_scene_id, network, "
                    "weights_checksum, params, compared_footprint) "
                    "SELECT :k, b.id, a.id, :n, :w, CAST(:p AS jsonb), "
                    "ST_Intersection(b.footprint, a.footprint) FROM scene b, scene a "
                    "WHERE b.id = :b AND a.id = :a "
                    "ON CONFLICT (run_key) DO UPDATE SET run_key = EXCLUDED.run_key RETURNING id"
                ),
                {
                    "k": key,
                    "b": before_scene_id,
                    "a": after_scene_id,
                    "n": network,
                    "w": weights_checksum,
                    "p": json.dumps(params, sort_keys=True, default=str),
                },
            ).scalar_one()
        )


def _prepare(frame: gpd.GeoDataFrame) -> tuple[list[tuple[Any, ...]], str]:
    """Rows (seq, change_kind, score, area m², geometry WKB) and their content hash."""
    n = len(frame)
    seqs = (
        frame["seq"].to_numpy(dtype=np.int64)
        if "seq" in frame.columns
        else np.arange(n, dtype=np.int64)
    )
    if len(set(seqs.tolist())) != n:
        raise InvalidInputError("column 'seq' has repeated values: it numbers detections in a run")
    scores = (
        frame["score"].to_numpy(dtype=float) if "score" in frame.columns else np.full(n, np.nan)
    )
    bad = ~np.isnan(scores) & ((scores < 0) | (scores > 1))
    if bad.any():
        raise InvalidInputError(f"row {int(np.argmax(bad))}: score must lie in [0, 1]")
    kinds = (
        [ChangeKind.parse(str(k)).value for k in frame["change_kind"]]
        if "change_kind" in frame.columns
        else [ChangeKind.CHANGED.value] * n
    )
    geoms = frame.geometry.to_numpy()
    types = shapely.get_type_id(geoms)
    clean = (
        shapely.is_valid(geoms)
        & ~shapely.is_empty(geoms)
        & ~shapely.has_z(geoms)
        & np.isin(types, (3, 6))
    )  # valid 2-D Polygon / MultiPolygon
    out_geoms = geoms.copy()
    polygons = clean & (types == 3)
    out_geoms[polygons] = shapely.multipolygons(
        geoms[polygons], indices=np.arange(int(polygons.sum()))
    )
    for i in np.flatnonzero(~clean):
        out_geoms[i] = _multipolygon(geoms[i], f"row {i} geometry")
    areas = shapely.area(out_geoms)
    if n and (areas <= 0).any():
        raise InvalidInputError(f"row {int(np.argmin(areas))}: geometry has no area")
    wkbs = shapely.to_wkb(out_geoms)
    score_list = [None if np.isnan(v) else float(v) for v in scores]
    rows = list(zip(seqs.tolist(), kinds, score_list, areas.tolist(), wkbs, strict=True))
    digest = hashlib.sha256()
    digest.update(
        seqs.tobytes() + "|".join(kinds).encode() + np.nan_to_num(scores, nan=-1).tobytes()
    )
    for wkb in wkbs:
        digest.update(wkb)
    return rows, digest.hexdigest()


def load_detections(
    bind: Engine | Connection,
    run_id: int,
    frame: gpd.GeoDataFrame,
    *,
    timings: Mapping[str, float] | None = None,
) -> LoadResult:
    """Load a run's detected changes (one polygon per row, in the working CRS).

    Columns: ``geometry`` (Polygon/MultiPolygon); optional ``score`` (0-1), ``change_kind``
    (appeared / disappeared / changed, or the Chinese label; default changed) and ``seq`` (the
    detection's number in the run; default the row position). ``timings``: seconds per stage,
    stored on the run. Bulk-inserted with COPY; the run's status becomes ``loaded``.
    """
    with transaction(bind) as conn:
        if frame.crs is None:
            raise InvalidInputError("the detections frame has no CRS: set it (frame.set_crs(...))")
        srid = _check_crs(conn, frame.crs, "the detections frame")
        run = conn.execute(
            text("SELECT content_hash FROM detection_run WHERE id = :r FOR UPDATE"), {"r": run_id}
        ).first()
        if run is None:
            raise NotFoundError(f"detection run {run_id} does not exist")
        rows, content_hash = _prepare(frame)
        if run.content_hash == content_hash:
            return LoadResult(run_id, len(rows), 0, unchanged=True)
        reviewed = conn.execute(
            text(
                "SELECT count(*) FROM detection d WHERE d.run_id = :r AND (d.state <> 'new' "
                "OR EXISTS (SELECT 1 FROM case_detection l WHERE l.detection_id = d.id))"
            ),
            {"r": run_id},
        ).scalar_one()
        if reviewed:
            raise ConflictError(
                f"run {run_id} already has {reviewed} reviewed or case-linked detections: their "
                "decisions are evidence and cannot be replaced; load the new results as a new "
                "run (different parameters or weights)"
            )
        replaced = conn.execute(
            text("DELETE FROM detection WHERE run_id = :r"), {"r": run_id}
        ).rowcount
        raw = psycopg_connection(conn)
        with (
            raw.cursor() as cur,
            cur.copy(
                "COPY detection (run_id, seq, change_kind, score, area_m2, geom) FROM STDIN"
            ) as copy,
        ):
            for seq, kind, score, area, wkb in rows:
                copy.write_row((run_id, seq, kind, score, area, _ewkb_hex(wkb, srid)))
        conn.execute(
            text(
                "UPDATE detection_run SET status = 'loaded', content_hash = :h, "
                "n_detections = :n, loaded_at = now(), matched_at = NULL, "
                "timings = timings || CAST(:t AS jsonb) WHERE id = :r"
            ),
            {"h": content_hash, "n": len(rows), "r": run_id, "t": json.dumps(dict(timings or {}))},
        )
    return LoadResult(run_id, len(rows), replaced, unchanged=False)


def _ewkb_hex(wkb: bytes, srid: int) -> str:
    """Hex EWKB of a little/big-endian 2-D WKB with ``srid`` set (PostGIS text input)."""
    order: Literal["little", "big"] = "little" if wkb[0] == 1 else "big"
    gtype = int.from_bytes(wkb[1:5], order) | 0x20000000
    return (wkb[:1] + gtype.to_bytes(4, order) + srid.to_bytes(4, order) + wkb[5:]).hex()


def get_run(bind: Engine | Connection, run_id: int) -> dict[str, Any]:
    """One run's record, with its two scenes' acquisition times and paths."""
    with transaction(bind) as conn:
        row = (
            conn.execute(
                text(
                    "SELECT r.id, r.status, r.network, r.weights_checksum, r.params, r.timings, "
                    "r.n_detections, r.created_at, r.loaded_at, r.matched_at, "
                    "b.id AS before_scene_id, b.acquired_at AS before_acquired_at, "
                    "b.path AS before_path, a.id AS after_scene_id, "
                    "a.acquired_at AS after_acquired_at, a.path AS after_path "
                    "FROM detection_run r JOIN scene b ON b.id = r.before_scene_id "
                    "JOIN scene a ON a.id = r.after_scene_id WHERE r.id = :r"
                ),
                {"r": run_id},
            )
            .mappings()
            .first()
        )
    if row is None:
        raise NotFoundError(
            f"detection run {run_id} does not exist: 'weijian runs list' lists them"
        )
    return dict(row)


def list_runs(bind: Engine | Connection) -> pd.DataFrame:
    """All runs, newest first, with their detection counts per review state."""
    import pandas as pd

    with transaction(bind) as conn:
        return pd.read_sql_query(
            text(
                "SELECT r.id, r.status, r.network, r.n_detections, "
                "b.acquired_at AS before_acquired_at, a.acquired_at AS after_acquired_at, "
                "count(*) FILTER (WHERE d.state = 'new') AS pending, "
                "count(*) FILTER (WHERE d.state = 'confirmed') AS confirmed, "
                "count(*) FILTER (WHERE d.state = 'false_positive') AS false_positive, "
                "r.matched_at FROM detection_run r "
                "JOIN scene b ON b.id = r.before_scene_id JOIN scene a ON a.id = r.after_scene_id "
                "LEFT JOIN detection d ON d.run_id = r.id GROUP BY r.id, b.acquired_at, "
                "a.acquired_at "
                "ORDER BY r.id DESC"
            ),
            conn,
        )
