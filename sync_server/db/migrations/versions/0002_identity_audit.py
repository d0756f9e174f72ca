"""Identity, tokens, SMART apps, break-the-glass grants and the append-only audit trail.

Also creates the application's database role `ehr_app` (no login; the server
`SET ROLE`s to it on every connection, see `sync_server.db.app_role`). It may read
and write every table but only INSERT into `audit_events` and `audit_chain`;
triggers refuse UPDATE, DELETE and TRUNCATE there even for the owner.

Revision ID: 0002_identity_audit
Revises: 0001_fhir_store
"""

from __future__ import annotations

from alembic import op

revision = "0002_identity_audit"
down_revision = "0001_fhir_store"
branch_labels = None
depends_on = None

APP_ROLE = "ehr_app"

_TABLES = (
    """CREATE TABLE users (
        id text PRIMARY KEY,
        username text NOT NULL UNIQUE,
        password_hash text NOT NULL,
        roles text[] NOT NULL,
        location_ids text[] NOT NULL,
        practitioner_id text,
        totp_secret_enc bytea,
        totp_last_step bigint NOT NULL DEFAULT 0,
        failed_attempts integer NOT NULL DEFAULT 0,
        failed_window_start timestamptz,
        locked_until timestamptz,
        disabled boolean NOT NULL DEFAULT false,
        created_at timestamptz NOT NULL,
        updated_at timestamptz NOT NULL
    )""",
    """CREATE TABLE workstations (
        id text PRIMARY KEY,
        revoked_at timestamptz,
        last_seen_at timestamptz NOT NULL
    )""",
    """CREATE TABLE refresh_tokens (
        token_hash text PRIMARY KEY,
        family_id text NOT NULL,
        user_id text NOT NULL,
        workstation_id text,
        client_id text,
        scopes text,
        launch_patient text,
        issued_at timestamptz NOT NULL,
        expires_at timestamptz NOT NULL,
        used_at timestamptz,
        revoked_at timestamptz
    )""",
    "CREATE INDEX ix_refresh_tokens_family ON refresh_tokens (family_id)",
    """CREATE TABLE signing_keys (
        kid text PRIMARY KEY,
        algorithm text NOT NULL,
        private_jwk_enc bytea NOT NULL,
        public_jwk jsonb NOT NULL,
        active boolean NOT NULL DEFAULT false,
        created_at timestamptz NOT NULL,
        retired_at timestamptz
    )""",
    """CREATE TABLE smart_clients (
        client_id text PRIMARY KEY,
        name text NOT NULL,
        redirect_uris text[] NOT NULL,
        allowed_scopes text NOT NULL,
        created_at timestamptz NOT NULL
    )""",
    """CREATE TABLE authorization_codes (
        code_hash text PRIMARY KEY,
        client_id text NOT NULL,
        user_id text NOT NULL,
        redirect_uri text NOT NULL,
        scopes text NOT NULL,
        code_challenge text NOT NULL,
        launch_patient text,
        family_id text NOT NULL,
        expires_at timestamptz NOT NULL,
        used_at timestamptz
    )""",
    """CREATE TABLE break_glass_grants (
        id text PRIMARY KEY,
        user_id text NOT NULL,
        username text NOT NULL,
        patient_id text NOT NULL,
        reason text NOT NULL,
        workstation_id text,
        created_at timestamptz NOT NULL,
        expires_at timestamptz NOT NULL
    )""",
    "CREATE INDEX ix_break_glass_user ON break_glass_grants (user_id, expires_at)",
    "CREATE SEQUENCE audit_events_pos_seq",
    """CREATE TABLE audit_events (
        pos bigint PRIMARY KEY DEFAULT nextval('audit_events_pos_seq'),
        txid xid8 NOT NULL DEFAULT pg_current_xact_id(),
        id text NOT NULL UNIQUE,
        recorded timestamptz NOT NULL,
        username text NOT NULL,
        user_id text,
        roles text[] NOT NULL,
        workstation_id text,
        source_ip text,
        client_id text,
        action text NOT NULL,
        outcome text NOT NULL,
        resource_type text,
        resource_id text,
        patient_ids text[] NOT NULL,
        detail jsonb NOT NULL
    )""",
    "ALTER SEQUENCE audit_events_pos_seq OWNED BY audit_events.pos",
    "CREATE INDEX ix_audit_events_txid ON audit_events (txid)",
    "CREATE INDEX ix_audit_events_recorded ON audit_events (recorded)",
    "CREATE INDEX ix_audit_events_username ON audit_events (username, recorded)",
    "CREATE INDEX ix_audit_events_patients ON audit_events USING gin (patient_ids)",
    """CREATE TABLE audit_chain (
        seq bigint PRIMARY KEY,
        event_pos bigint NOT NULL UNIQUE,
        prev_hash text NOT NULL,
        hash text NOT NULL
    )""",
    """CREATE TABLE audit_chain_head (
        id integer PRIMARY KEY CHECK (id = 1),
        seq bigint NOT NULL,
        hash text NOT NULL,
        mac text NOT NULL,
        horizon xid8 NOT NULL
    )""",
    "INSERT INTO audit_chain_head (id, seq, hash, mac, horizon)"
    " VALUES (1, 0, repeat('0', 64), '', '0'::xid8)",
)

_APPEND_ONLY = (
    """CREATE FUNCTION audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION '% is append-only', TG_TABLE_NAME USING ERRCODE = 'insufficient_privilege';
    END $$""",
    *(
        statement
        for table in ("audit_events", "audit_chain")
        for statement in (
            f"""CREATE TRIGGER {table}_no_change BEFORE UPDATE OR DELETE ON {table}
                FOR EACH ROW EXECUTE FUNCTION audit_append_only()""",
            f"""CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table}
                FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only()""",
        )
    ),
)

_APP_ROLE = (
    # Roles are cluster-wide: another database on the cluster may have made it already.
    f"""DO $$ BEGIN
        IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{APP_ROLE}') THEN
            BEGIN
                CREATE ROLE {APP_ROLE} NOLOGIN;
            EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
            END;
        END IF;
    END $$""",
    f"""DO $$ BEGIN
        IF NOT pg_has_role(current_user, '{APP_ROLE}', 'MEMBER') THEN
            EXECUTE format('GRANT {APP_ROLE} TO %I', current_user);
        END IF;
    END $$""",
    f"GRANT USAGE ON SCHEMA public TO {APP_ROLE}",
    f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {APP_ROLE}",
    f"GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA public TO {APP_ROLE}",
    # Tables of later migrations (sync, ...) get the same rights.
    f"ALTER DEFAULT PRIVILEGES IN SCHEMA public"
    f" GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {APP_ROLE}",
    f"ALTER DEFAULT PRIVILEGES IN SCHEMA public"
    f" GRANT USAGE, SELECT, UPDATE ON SEQUENCES TO {APP_ROLE}",
    f"REVOKE UPDATE, DELETE, TRUNCATE ON audit_events, audit_chain FROM {APP_ROLE}",
)


def upgrade() -> None:
    for statement in (*_TABLES, *_APPEND_ONLY, *_APP_ROLE):
        op.execute(statement)


def downgrade() -> None:
    # The role stays: it is cluster-wide and other databases may use it.
    op.execute(f"ALTER DEFAULT PRIVILEGES IN SCHEMA public REVOKE ALL ON TABLES FROM {APP_ROLE}")
    op.execute(f"ALTER DEFAULT PRIVILEGES IN SCHEMA public REVOKE ALL ON SEQUENCES FROM {APP_ROLE}")
    for table in (
        "audit_chain_head",
        "audit_chain",
        "audit_events",
        "break_glass_grants",
        "authorization_codes",
        "smart_clients",
        "signing_keys",
        "refresh_tokens",
        "workstations",
        "users",
    ):
        op.execute(f"DROP TABLE IF EXISTS {table}")
    op.execute("DROP FUNCTION IF EXISTS audit_append_only()")
    op.execute(f"REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {APP_ROLE}")
    op.execute(f"REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM {APP_ROLE}")
    op.execute(f"REVOKE USAGE ON SCHEMA public FROM {APP_ROLE}")
