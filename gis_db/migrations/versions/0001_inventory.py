"""Inventory: administrative units, inventory cases, permits, append-only case history.

Revision ID: 0001
Revises:
Create Date: 2026-11-21
"""

from alembic import op

from gis_db.domain import (
    CaseState,
    ConstructionStatus,
    DiscoverySource,
    Disposal,
    Exemption,
    PermitIssuer,
    PriorityType,
    check_constraint,
)
from gis_db.schema import migration_attributes

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    attrs = migration_attributes()
    srid = int(attrs["srid"])
    crs = str(attrs["working_crs"]).replace("'", "''")
    geom = f"geometry(MultiPolygon, {srid})"
    op.execute(f"""
    CREATE TABLE db_meta (key text PRIMARY KEY, value text NOT NULL);
    INSERT INTO db_meta VALUES ('working_crs', '{crs}'), ('srid', '{srid}');

    CREATE TABLE district (
        code text PRIMARY KEY,
        name text NOT NULL,
        geom {geom}
    );
    CREATE TABLE street_town (
        code text PRIMARY KEY,
        name text NOT NULL,
        district_code text REFERENCES district(code),
        geom {geom} NOT NULL
    );
    CREATE INDEX street_town_geom_idx ON street_town USING gist (geom);
    CREATE TABLE village (
        code text PRIMARY KEY,
        name text NOT NULL,
        street_town_code text NOT NULL REFERENCES street_town(code),
        geom {geom} NOT NULL
    );
    CREATE INDEX village_geom_idx ON village USING gist (geom);
    CREATE INDEX village_street_town_idx ON village (street_town_code);

    CREATE TABLE inventory_case (
        id bigserial PRIMARY KEY,
        case_number text NOT NULL UNIQUE,
        in_database boolean NOT NULL DEFAULT true,
        priority_type text NOT NULL DEFAULT 'non_priority'
            CHECK ({check_constraint("priority_type", PriorityType)}),
        construction_status text NOT NULL DEFAULT 'existing'
            CHECK ({check_constraint("construction_status", ConstructionStatus)}),
        exemption text NOT NULL DEFAULT 'none'
            CHECK ({check_constraint("exemption", Exemption)}),
        disposal text CHECK ({check_constraint("disposal", Disposal, nullable=True)}),
        source text NOT NULL DEFAULT 'other'
            CHECK ({check_constraint("source", DiscoverySource)}),
        discovered_on date,
        address text,
        owner text,
        remark text,
        area_m2 double precision NOT NULL CHECK (area_m2 > 0),
        street_town_code text REFERENCES street_town(code),
        village_code text REFERENCES village(code),
        state text NOT NULL DEFAULT 'open' CHECK ({check_constraint("state", CaseState)}),
        version integer NOT NULL DEFAULT 1,
        created_at timestamptz NOT NULL DEFAULT now(),
        updated_at timestamptz NOT NULL DEFAULT now(),
        geom {geom} NOT NULL CHECK (ST_IsValid(geom))
    );
    CREATE INDEX inventory_case_geom_idx ON inventory_case USING gist (geom);
    CREATE INDEX inventory_case_street_town_idx ON inventory_case (street_town_code);
    CREATE INDEX inventory_case_state_idx ON inventory_case (state);

    CREATE TABLE permit (
        id bigserial PRIMARY KEY,
        permit_number text NOT NULL UNIQUE,
        issuer text NOT NULL DEFAULT 'planning' CHECK ({check_constraint("issuer", PermitIssuer)}),
        description text,
        valid_from date NOT NULL,
        valid_to date,
        CHECK (valid_to IS NULL OR valid_to >= valid_from),
        geom {geom} NOT NULL CHECK (ST_IsValid(geom))
    );
    CREATE INDEX permit_geom_idx ON permit USING gist (geom);

    CREATE TABLE case_history (
        id bigserial PRIMARY KEY,
        case_id bigint NOT NULL REFERENCES inventory_case(id),
        at timestamptz NOT NULL DEFAULT clock_timestamp(),
        actor text NOT NULL,
        role text NOT NULL DEFAULT 'staff',
        action text NOT NULL,
        from_state text,
        to_state text,
        changes jsonb NOT NULL DEFAULT '{{}}'::jsonb,
        comment text,
        evidence jsonb NOT NULL DEFAULT '[]'::jsonb
    );
    CREATE INDEX case_history_case_idx ON case_history (case_id, at);

    CREATE FUNCTION refuse_history_change() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION 'history is append-only: % on % is refused (records are evidence)',
            TG_OP, TG_TABLE_NAME USING ERRCODE = 'insufficient_privilege';
    END $$;
    CREATE TRIGGER case_history_append_only
        BEFORE UPDATE OR DELETE ON case_history
        FOR EACH ROW EXECUTE FUNCTION refuse_history_change();
    CREATE TRIGGER case_history_no_truncate
        BEFORE TRUNCATE ON case_history
        FOR EACH STATEMENT EXECUTE FUNCTION refuse_history_change();
    """)


def downgrade() -> None:
    op.execute("""
    DROP TABLE IF EXISTS case_history;
    DROP FUNCTION IF EXISTS refuse_history_change();
    DROP TABLE IF EXISTS permit;
    DROP TABLE IF EXISTS inventory_case;
    DROP TABLE IF EXISTS village;
    DROP TABLE IF EXISTS street_town;
    DROP TABLE IF EXISTS district;
    DROP TABLE IF EXISTS db_meta;
    """)
