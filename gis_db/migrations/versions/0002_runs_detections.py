"""Detection runs: scenes, runs, detections, their append-only review history, case links,
and the workflow columns of inventory_case.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

from alembic import op

from gis_db.domain import (
    ChangeKind,
    DetectionState,
    MatchClass,
    RunStatus,
    ScenePlatform,
    check_constraint,
)
from gis_db.schema import migration_attributes

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    srid = int(migration_attributes()["srid"])
    geom = f"geometry(MultiPolygon, {srid})"
    # detection: the match columns (matched_case_id ... village_code) are written by one UPDATE
    # per run from rows joined in that statement, so they carry no foreign keys and no indexes,
    # and pages are half empty: the update is then HOT (no index entries rewritten). Per-row FK
    # triggers and index inserts cost about a third of matching 100,000 detections otherwise.
    op.execute(f"""
    ALTER TABLE inventory_case
        ADD COLUMN dispatched_at timestamptz,
        ADD COLUMN verified_at timestamptz,
        ADD COLUMN write_off_requested_by text,
        ADD COLUMN write_off_requested_at timestamptz,
        ADD COLUMN written_off_by text,
        ADD COLUMN written_off_at timestamptz,
        ADD COLUMN reinspection_due_on date,
        ADD COLUMN reinspected_at timestamptz;
    CREATE INDEX inventory_case_reinspection_idx ON inventory_case (reinspection_due_on)
        WHERE state = 'written_off';
    CREATE SEQUENCE suspect_case_number_seq;

    CREATE TABLE scene (
        id bigserial PRIMARY KEY,
        checksum text NOT NULL UNIQUE,
        path text,
        platform text NOT NULL DEFAULT 'other'
            CHECK ({check_constraint("platform", ScenePlatform)}),
        acquired_at timestamptz NOT NULL,
        gsd_m double precision CHECK (gsd_m > 0),
        stac_item jsonb,
        registered_at timestamptz NOT NULL DEFAULT now(),
        footprint {geom} NOT NULL CHECK (ST_IsValid(footprint))
    );
    CREATE INDEX scene_footprint_idx ON scene USING gist (footprint);

    CREATE TABLE detection_run (
        id bigserial PRIMARY KEY,
        run_key text NOT NULL UNIQUE,
        before_scene_id bigint NOT NULL REFERENCES scene(id),
        after_scene_id bigint NOT NULL REFERENCES scene(id),
        network text NOT NULL,
        weights_checksum text NOT NULL,
        params jsonb NOT NULL DEFAULT '{{}}'::jsonb,
        status text NOT NULL DEFAULT 'created' CHECK ({check_constraint("status", RunStatus)}),
        content_hash text,
        n_detections integer,
        timings jsonb NOT NULL DEFAULT '{{}}'::jsonb,
        created_at timestamptz NOT NULL DEFAULT now(),
        loaded_at timestamptz,
        matched_at timestamptz,
        compared_footprint geometry(Geometry, {srid}),
        CHECK (before_scene_id <> after_scene_id)
    );

    CREATE TABLE detection (
        id bigserial PRIMARY KEY,
        run_id bigint NOT NULL REFERENCES detection_run(id),
        seq integer NOT NULL,
        change_kind text NOT NULL DEFAULT 'changed'
            CHECK ({check_constraint("change_kind", ChangeKind)}),
        score double precision CHECK (score IS NULL OR (score >= 0 AND score <= 1)),
        area_m2 double precision NOT NULL CHECK (area_m2 > 0),
        match_class text CHECK ({check_constraint("match_class", MatchClass, nullable=True)}),
        match_overlap double precision,
        matched_case_id bigint,
        matched_permit_id bigint,
        street_town_code text,
        village_code text,
        state text NOT NULL DEFAULT 'new' CHECK ({check_constraint("state", DetectionState)}),
        version integer NOT NULL DEFAULT 1,
        created_at timestamptz NOT NULL DEFAULT now(),
        updated_at timestamptz NOT NULL DEFAULT now(),
        geom {geom} NOT NULL CHECK (ST_IsValid(geom)),
        UNIQUE (run_id, seq)
    ) WITH (fillfactor = 50);
    CREATE INDEX detection_geom_idx ON detection USING gist (geom);

    CREATE TABLE detection_history (
        id bigserial PRIMARY KEY,
        detection_id bigint NOT NULL REFERENCES detection(id),
        at timestamptz NOT NULL DEFAULT clock_timestamp(),
        actor text NOT NULL,
        role text NOT NULL,
        action text NOT NULL,
        from_state text,
        to_state text,
        changes jsonb NOT NULL DEFAULT '{{}}'::jsonb,
        comment text,
        evidence jsonb NOT NULL DEFAULT '[]'::jsonb
    );
    CREATE INDEX detection_history_detection_idx ON detection_history (detection_id, at);

    CREATE TABLE case_detection (
        case_id bigint NOT NULL REFERENCES inventory_case(id),
        detection_id bigint NOT NULL REFERENCES detection(id),
        relation text NOT NULL CHECK (relation IN ('origin', 'evidence', 'rebound', 'demolition')),
        linked_by text NOT NULL,
        linked_at timestamptz NOT NULL DEFAULT clock_timestamp(),
        PRIMARY KEY (case_id, detection_id)
    );
    CREATE INDEX case_detection_detection_idx ON case_detection (detection_id);

    CREATE TRIGGER detection_history_append_only
        BEFORE UPDATE OR DELETE ON detection_history
        FOR EACH ROW EXECUTE FUNCTION refuse_history_change();
    CREATE TRIGGER detection_history_no_truncate
        BEFORE TRUNCATE ON detection_history
        FOR EACH STATEMENT EXECUTE FUNCTION refuse_history_change();
    CREATE TRIGGER case_detection_append_only
        BEFORE UPDATE OR DELETE ON case_detection
        FOR EACH ROW EXECUTE FUNCTION refuse_history_change();
    CREATE TRIGGER case_detection_no_truncate
        BEFORE TRUNCATE ON case_detection
        FOR EACH STATEMENT EXECUTE FUNCTION refuse_history_change();
    """)


def downgrade() -> None:
    op.execute("""
    DROP TABLE IF EXISTS case_detection;
    DROP TABLE IF EXISTS detection_history;
    DROP TABLE IF EXISTS detection;
    DROP TABLE IF EXISTS detection_run;
    DROP TABLE IF EXISTS scene;
    DROP SEQUENCE IF EXISTS suspect_case_number_seq;
    DROP INDEX IF EXISTS inventory_case_reinspection_idx;
    ALTER TABLE inventory_case
        DROP COLUMN IF EXISTS dispatched_at,
        DROP COLUMN IF EXISTS verified_at,
        DROP COLUMN IF EXISTS write_off_requested_by,
        DROP COLUMN IF EXISTS write_off_requested_at,
        DROP COLUMN IF EXISTS written_off_by,
        DROP COLUMN IF EXISTS written_off_at,
        DROP COLUMN IF EXISTS reinspection_due_on,
        DROP COLUMN IF EXISTS reinspected_at;
    """)
