"""Alembic migrations of the server schema (run with `ehr-server migrate`)."""
