"""The FHIR store: current resources, version history, search index, care-site links.

Revision ID: 0001_fhir_store
Revises:
"""

from __future__ import annotations

from alembic import op

revision = "0001_fhir_store"
down_revision = None
branch_labels = None
depends_on = None

_INDEX_COLUMNS = """
    resource_type text NOT NULL,
    resource_id text NOT NULL,
    param text NOT NULL,
    ordinal integer NOT NULL,
"""
_INDEX_PK = "PRIMARY KEY (resource_type, resource_id, param, ordinal)"


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE resources (
            resource_type text NOT NULL,
            id text NOT NULL,
            version_id integer NOT NULL,
            last_updated timestamptz NOT NULL,
            deleted boolean NOT NULL DEFAULT false,
            patient_id text,
            resource jsonb,
            PRIMARY KEY (resource_type, id)
        )"""
    )
    op.execute("CREATE INDEX ix_resources_patient ON resources (patient_id, resource_type)")
    op.execute("CREATE INDEX ix_resources_type_updated ON resources (resource_type, last_updated)")
    op.execute("CREATE SEQUENCE resource_versions_seq")
    op.execute(
        """
        CREATE TABLE resource_versions (
            seq bigint PRIMARY KEY DEFAULT nextval('resource_versions_seq'),
            txid xid8 NOT NULL DEFAULT pg_current_xact_id(),
            resource_type text NOT NULL,
            id text NOT NULL,
            version_id integer NOT NULL,
            last_updated timestamptz NOT NULL,
            deleted boolean NOT NULL DEFAULT false,
            patient_id text,
            resource jsonb
        )"""
    )
    op.execute("ALTER SEQUENCE resource_versions_seq OWNED BY resource_versions.seq")
    op.execute(
        "CREATE UNIQUE INDEX ux_resource_versions_key"
        " ON resource_versions (resource_type, id, version_id)"
    )
    op.execute("CREATE INDEX ix_resource_versions_patient ON resource_versions (patient_id, seq)")
    op.execute(
        """
        CREATE TABLE patient_locations (
            source_type text NOT NULL,
            source_id text NOT NULL,
            location_id text NOT NULL,
            patient_id text NOT NULL,
            PRIMARY KEY (source_type, source_id, location_id)
        )"""
    )
    op.execute(
        "CREATE INDEX ix_patient_locations_location ON patient_locations (location_id, patient_id)"
    )
    op.execute(
        "CREATE INDEX ix_patient_locations_patient ON patient_locations (patient_id, location_id)"
    )
    op.execute(
        f"CREATE TABLE search_token ({_INDEX_COLUMNS} system text, code text NOT NULL, {_INDEX_PK})"
    )
    op.execute(
        "CREATE INDEX ix_search_token_lookup ON search_token (resource_type, param, code, system)"
    )
    op.execute(f"CREATE TABLE search_string ({_INDEX_COLUMNS} value text NOT NULL, {_INDEX_PK})")
    op.execute(
        "CREATE INDEX ix_search_string_lookup"
        " ON search_string (resource_type, param, value text_pattern_ops)"
    )
    op.execute(
        f"CREATE TABLE search_date ({_INDEX_COLUMNS}"
        f" low timestamptz NOT NULL, high timestamptz NOT NULL, {_INDEX_PK})"
    )
    op.execute(
        "CREATE INDEX ix_search_date_lookup ON search_date (resource_type, param, low, high)"
    )
    op.execute(
        f"CREATE TABLE search_reference ({_INDEX_COLUMNS}"
        f" target_type text, target_id text NOT NULL, {_INDEX_PK})"
    )
    op.execute(
        "CREATE INDEX ix_search_reference_lookup"
        " ON search_reference (resource_type, param, target_id, target_type)"
    )
    op.execute(
        f"CREATE TABLE search_quantity ({_INDEX_COLUMNS}"
        f" value numeric NOT NULL, system text, code text, {_INDEX_PK})"
    )
    op.execute(
        "CREATE INDEX ix_search_quantity_lookup ON search_quantity (resource_type, param, value)"
    )


def downgrade() -> None:
    for table in (
        "search_quantity",
        "search_reference",
        "search_date",
        "search_string",
        "search_token",
        "patient_locations",
        "resource_versions",
        "resources",
    ):
        op.execute(f"DROP TABLE IF EXISTS {table}")
    op.execute("DROP SEQUENCE IF EXISTS resource_versions_seq")
