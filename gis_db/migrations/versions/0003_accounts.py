"""Accounts of the review application, and evidence files uploaded with a write-off request.

``app_user``: one row per person who logs in to the review application (web_map); the password
is stored only as a salted argon2 hash. ``session_epoch`` is raised when a password changes or an
account is disabled, which ends that user's open sessions. A 街镇 user is bound to one 街镇.

``evidence_file``: site photos stored on disk under the evidence folder by SHA-256; the row is
the record that the file was received (who, when, checksum, size) and is append-only, like the
history that links to it.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

ROLES = ("reviewer", "approver", "street_town", "analyst", "admin")


def upgrade() -> None:
    roles = ", ".join(f"'{r}'" for r in ROLES)
    op.execute(f"""
    CREATE TABLE app_user (
        id bigserial PRIMARY KEY,
        username text NOT NULL UNIQUE CHECK (username ~ '^[^[:space:]]{{2,64}}$'),
        display_name text,
        password_hash text NOT NULL,
        role text NOT NULL CHECK (role IN ({roles})),
        street_town_code text REFERENCES street_town(code),
        disabled boolean NOT NULL DEFAULT false,
        session_epoch integer NOT NULL DEFAULT 1,
        created_at timestamptz NOT NULL DEFAULT now(),
        updated_at timestamptz NOT NULL DEFAULT now(),
        last_login_at timestamptz,
        CHECK ((role = 'street_town') = (street_town_code IS NOT NULL))
    );

    CREATE TABLE evidence_file (
        id bigserial PRIMARY KEY,
        case_id bigint NOT NULL REFERENCES inventory_case(id),
        sha256 text NOT NULL CHECK (sha256 ~ '^[0-9a-f]{{64}}$'),
        stored_name text NOT NULL,
        original_name text,
        content_type text NOT NULL,
        size_bytes bigint NOT NULL CHECK (size_bytes > 0),
        uploaded_by text NOT NULL,
        uploaded_at timestamptz NOT NULL DEFAULT clock_timestamp()
    );
    CREATE INDEX evidence_file_case_idx ON evidence_file (case_id);
    CREATE TRIGGER evidence_file_append_only
        BEFORE UPDATE OR DELETE ON evidence_file
        FOR EACH ROW EXECUTE FUNCTION refuse_history_change();
    CREATE TRIGGER evidence_file_no_truncate
        BEFORE TRUNCATE ON evidence_file
        FOR EACH STATEMENT EXECUTE FUNCTION refuse_history_change();
    """)


def downgrade() -> None:
    op.execute("""
    DROP TABLE IF EXISTS evidence_file;
    DROP TABLE IF EXISTS app_user;
    """)
