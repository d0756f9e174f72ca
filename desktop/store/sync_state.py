"""Small key/value facts about the sync: pull cursor, last sync time, workstation id."""

from __future__ import annotations

from datetime import datetime

from desktop.store.database import Connection

CURSOR = "pull_cursor"
LAST_SYNC = "last_sync"


def get(conn: Connection, key: str) -> str | None:
    row = conn.execute("SELECT value FROM sync_state WHERE key = ?", (key,)).fetchone()
    return str(row[0]) if row else None


def put(conn: Connection, key: str, value: str) -> None:
    conn.execute(
        "INSERT INTO sync_state (key, value) VALUES (?, ?)"
        " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        (key, value),
    )


def cursor(conn: Connection) -> str:
    """The pull cursor; "0" before the first pull (DESIGN.md)."""
    return get(conn, CURSOR) or "0"


def last_sync(conn: Connection) -> datetime | None:
    value = get(conn, LAST_SYNC)
    return datetime.fromisoformat(value) if value else None


def set_last_sync(conn: Connection, when: datetime) -> None:
    put(conn, LAST_SYNC, when.isoformat())
