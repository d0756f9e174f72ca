"""Upgrade a chart database to the latest schema, one version per transaction.

The version lives in `PRAGMA user_version`. A database newer than this build
is refused rather than guessed at.
"""

from __future__ import annotations

import sqlite3

from desktop.store.schema import LATEST_VERSION, MIGRATIONS
from shared_models.errors import StoreError


def schema_version(conn: sqlite3.Connection) -> int:
    row = conn.execute("PRAGMA user_version").fetchone()
    return int(row[0])


def migrate(conn: sqlite3.Connection, target: int = LATEST_VERSION) -> int:
    """Run the missing migrations up to `target`; returns the version reached."""
    current = schema_version(conn)
    if current > LATEST_VERSION:
        raise StoreError(
            f"chart database schema {current} is newer than this program ({LATEST_VERSION})",
            user_message="This chart store was made by a newer version of the program. "
            "Update the program or call IT support.",
        )
    for version in range(current + 1, target + 1):
        script = MIGRATIONS[version - 1]
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in _statements(script):
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {version}")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
    return max(current, target)


def _statements(script: str) -> list[str]:
    """Split a migration script (our scripts hold no ';' inside literals)."""
    return [s.strip() for s in script.split(";") if s.strip()]
