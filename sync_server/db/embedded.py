"""Embedded PostgreSQL (the `pgserver` package) for a one-command start.

Used when no `DATABASE_URL` is given: the cluster lives under the data directory
and is stopped when the process exits.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

log = logging.getLogger(__name__)


def sqlalchemy_url(libpq_uri: str) -> str:
    """Turn a libpq URI into a SQLAlchemy URL for the psycopg 3 driver."""
    if libpq_uri.startswith("postgresql+psycopg://"):
        return libpq_uri
    for prefix in ("postgresql://", "postgres://"):
        if libpq_uri.startswith(prefix):
            return "postgresql+psycopg://" + libpq_uri[len(prefix) :]
    return libpq_uri


@contextmanager
def embedded_postgres(data_dir: Path) -> Iterator[str]:
    """Start (or reuse) a PostgreSQL cluster under `data_dir/pg`; yield its SQLAlchemy URL."""
    from pgserver.postgres_server import get_server

    pg_dir = data_dir / "pg"
    pg_dir.mkdir(parents=True, exist_ok=True)
    server = get_server(pg_dir, cleanup_mode="stop")
    log.info("embedded PostgreSQL started under the data directory")
    try:
        yield sqlalchemy_url(server.get_uri())
    finally:
        server.cleanup()
        log.info("embedded PostgreSQL stopped")


@contextmanager
def database_url_for(database_url: str | None, data_dir: Path) -> Iterator[str]:
    """The external database when configured, else the embedded one."""
    if database_url:
        yield sqlalchemy_url(database_url)
        return
    with embedded_postgres(data_dir) as url:
        yield url
