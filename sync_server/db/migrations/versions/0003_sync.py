"""Sync: push idempotency log, conflict queue, pull scope snapshots, cursor key.

Also indexes `resource_versions` by (txid, seq), the order of the gap-free pull
feed, and `resources` by compartment owner and key, the order of a scope backfill.

Revision ID: 0003_sync
Revises: 0002_identity_audit
"""

from __future__ import annotations

from alembic import op

revision = "0003_sync"
down_revision = "0002_identity_audit"
branch_labels = None
depends_on = None

_STATEMENTS = (
    """
    CREATE TABLE sync_push_log (
        change_id text PRIMARY KEY,
        client_id text NOT NULL,
        username text NOT NULL,
        request_hash bytea NOT NULL,
        status text NOT NULL,
        resource_type text NOT NULL,
        resource_id text NOT NULL,
        version_id integer,
        conflict_id text,
        issues jsonb NOT NULL,
        rejected_change jsonb,
        created_at timestamptz NOT NULL DEFAULT clock_timestamp()
    )""",
    """
    CREATE TABLE sync_conflicts (
        id text PRIMARY KEY,
        resource_type text NOT NULL,
        resource_id text NOT NULL,
        patient_id text,
        status text NOT NULL CHECK (status IN ('open', 'resolved')),
        route text NOT NULL,
        rule text NOT NULL,
        paths text[] NOT NULL,
        base_version integer,
        server_version integer,
        base_resource jsonb,
        server_resource jsonb,
        client_resource jsonb,
        client_deleted boolean NOT NULL,
        created_by text NOT NULL,
        workstation_id text,
        client_id text NOT NULL,
        change_id text NOT NULL,
        created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
        resolution text CHECK (resolution IN ('keep_server', 'keep_mine', 'merged')),
        resolved_by text,
        resolved_at timestamptz,
        resolved_version integer
    )""",
    "CREATE INDEX ix_sync_conflicts_open ON sync_conflicts (status, patient_id)",
    "CREATE INDEX ix_sync_conflicts_resource ON sync_conflicts (resource_type, resource_id)",
    """
    CREATE TABLE sync_scope_snapshots (
        digest text PRIMARY KEY,
        patient_ids text[] NOT NULL,
        created_at timestamptz NOT NULL DEFAULT clock_timestamp()
    )""",
    """
    CREATE TABLE sync_cursor_keys (
        id smallint PRIMARY KEY,
        secret bytea NOT NULL
    )""",
    # 244 random bits from the server's strong random source (gen_random_uuid).
    """
    INSERT INTO sync_cursor_keys (id, secret) VALUES (1, decode(replace(
        gen_random_uuid()::text || gen_random_uuid()::text, '-', ''), 'hex'))""",
    "CREATE INDEX ix_resource_versions_feed ON resource_versions (txid, seq)",
    """
    CREATE INDEX ix_resources_scope ON resources ((coalesce(patient_id, '') COLLATE "C"),
        resource_type COLLATE "C", id COLLATE "C") WHERE NOT deleted""",
)


def upgrade() -> None:
    for statement in _STATEMENTS:
        op.execute(statement)


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS ix_resources_scope")
    op.execute("DROP INDEX IF EXISTS ix_resource_versions_feed")
    for table in ("sync_cursor_keys", "sync_scope_snapshots", "sync_conflicts", "sync_push_log"):
        op.execute(f"DROP TABLE IF EXISTS {table}")
