"""Engine, sessions and migrations for the server database."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from psycopg import Connection
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.orm import Session, sessionmaker

from sync_server.config import Settings
from sync_server.db.app_role import use_app_role
from sync_server.db.embedded import database_url_for, sqlalchemy_url

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


def make_engine(database_url: str, *, pool_size: int = 10) -> Engine:
    """A pooled engine for the psycopg 3 driver, sessions in UTC.

    No pre-ping: it costs a round trip on every checkout (a quarter of a read's
    time). After a database restart SQLAlchemy sees the first disconnect error
    and invalidates the whole pool, so one request fails rather than every one.
    """
    engine = create_engine(
        sqlalchemy_url(database_url),
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=False,
        pool_recycle=1800,
        connect_args={"options": "-c timezone=UTC"},
    )
    use_app_role(engine)  # restricted role: audit_events is append-only for it
    return engine


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    """Sessions never expire objects on commit: the store hands out plain data, not ORM state."""
    return sessionmaker(engine, expire_on_commit=False)


def driver_connection(session: Session) -> Connection[Any]:
    """The psycopg connection under `session`, in the session's transaction.

    For the statements every request runs (context, access check, audit row): SQLAlchemy's
    statement and result machinery costs more CPU than the query itself there.
    """
    conn: Connection[Any] = session.connection().connection.driver_connection  # type: ignore[assignment]
    return conn


def alembic_config(engine: Engine | None = None) -> Config:
    """Alembic configuration built in code (no alembic.ini), valid from an installed package."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("path_separator", "os")
    if engine is not None:
        config.set_main_option(
            "sqlalchemy.url", engine.url.render_as_string(hide_password=False).replace("%", "%%")
        )
    return config


def migrate(engine: Engine, target: str = "heads") -> None:
    """Upgrade the schema to `target` (every migration head by default)."""
    config = alembic_config(engine)
    with engine.begin() as connection:
        connection.exec_driver_sql("RESET ROLE")  # migrations need the owner's rights
        config.attributes["connection"] = connection
        command.upgrade(config, target)
    engine.dispose()  # pooled connections reopen as the restricted app role


def current_revisions(engine: Engine) -> set[str]:
    """Revisions the database is at (empty for a database never migrated)."""
    with engine.connect() as conn:
        exists = conn.execute(text("SELECT to_regclass('alembic_version') IS NOT NULL")).scalar()
        if not exists:
            return set()
        return {row[0] for row in conn.execute(text("SELECT version_num FROM alembic_version"))}


@contextmanager
def engine_for(settings: Settings, *, pool_size: int = 5) -> Iterator[Engine]:
    """The engine of `DATABASE_URL`, or of the embedded cluster under the data dir.

    The embedded PostgreSQL (if started here) stops when the block exits. Every
    `ehr-server` subcommand gets its database this way.
    """
    with database_url_for(settings.database_url, settings.data_dir) as url:
        engine = make_engine(url, pool_size=pool_size)
        try:
            yield engine
        finally:
            engine.dispose()
