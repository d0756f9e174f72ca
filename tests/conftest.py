"""Fixtures every test layer shares: a real PostgreSQL cluster and the test data.

One throwaway embedded cluster (pgserver) per test session, or the server named
by `DATABASE_URL`. Each test that needs a database gets a fresh one created on
that cluster, so tests never see each other's rows.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest

from sync_server.db.embedded import sqlalchemy_url

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """`../shared/data`: public test data nobody on the team wrote (see its SOURCES.md)."""
    if not SHARED_DATA.is_dir():
        pytest.fail(f"shared test data not found beside the repository: {SHARED_DATA.name}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def pg_cluster_uri(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """libpq URI of a superuser connection to a real PostgreSQL cluster."""
    external = os.environ.get("DATABASE_URL")
    if external:
        yield external.replace("postgresql+psycopg://", "postgresql://")
        return
    import pgserver

    # Short path: the Unix socket path must stay under ~100 bytes.
    server = pgserver.get_server(tmp_path_factory.mktemp("pg"), cleanup_mode="delete")
    try:
        yield server.get_uri()
    finally:
        server.cleanup()


def _with_dbname(uri: str, name: str) -> str:
    base, sep, query = uri.partition("?")
    head, _, _ = base.rpartition("/")
    return f"{head}/{name}{sep}{query}"


@pytest.fixture(scope="session")
def create_database(pg_cluster_uri: str) -> Iterator[Callable[[], str]]:
    """Factory: a new empty database on the cluster; returns its SQLAlchemy URL."""
    created: list[str] = []

    def make() -> str:
        name = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(pg_cluster_uri, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        created.append(name)
        return sqlalchemy_url(_with_dbname(pg_cluster_uri, name))

    yield make
    with psycopg.connect(pg_cluster_uri, autocommit=True) as conn:
        for name in created:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
