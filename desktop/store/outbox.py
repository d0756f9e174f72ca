"""Local changes waiting for the server, written in the same transaction as the resource.

A row leaves the outbox only once the server's answer for it is stored (the
sync engine calls `remove` inside that transaction).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from desktop.store.database import Connection


@dataclass(frozen=True)
class OutboxEntry:
    seq: int
    change_id: str
    resource_type: str
    id: str
    op: str  # "upsert" | "delete"
    base_version: int | None
    patient_id: str | None
    json: bytes | None
    created_at: datetime
    attempts: int
    #: Why the last push of this change did not go through (no PHI), or None.
    last_error: str | None


_COLUMNS = (
    "seq, change_id, resource_type, id, op, base_version, patient_id, json, created_at,"
    " attempts, last_error"
)


def _entry(row: Sequence[Any]) -> OutboxEntry:
    return OutboxEntry(
        seq=row[0],
        change_id=row[1],
        resource_type=row[2],
        id=row[3],
        op=row[4],
        base_version=row[5],
        patient_id=row[6],
        json=bytes(row[7]) if row[7] is not None else None,
        created_at=datetime.fromisoformat(row[8]),
        attempts=row[9],
        last_error=row[10],
    )


def enqueue(
    conn: Connection,
    *,
    resource_type: str,
    resource_id: str,
    op: str,
    base_version: int | None,
    patient_id: str | None,
    raw_json: bytes | None,
) -> str:
    """Queue one change; returns its change id (the server's idempotency key)."""
    change_id = str(uuid.uuid4())
    conn.execute(
        "INSERT INTO outbox (change_id, resource_type, id, op, base_version, patient_id, json,"
        " created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (change_id, resource_type, resource_id, op, base_version, patient_id, raw_json,
         datetime.now(UTC).isoformat()),
    )  # fmt: skip
    return change_id


def pending(conn: Connection, limit: int | None = None) -> list[OutboxEntry]:
    """Queued changes, oldest first."""
    sql = f"SELECT {_COLUMNS} FROM outbox ORDER BY seq"  # noqa: S608 - constant column list, values bound
    rows = conn.execute(sql + " LIMIT ?", (limit,)) if limit else conn.execute(sql)
    return [_entry(r) for r in rows.fetchall()]


def count(conn: Connection) -> int:
    return int(conn.execute("SELECT count(*) FROM outbox").fetchone()[0])


def pending_for_patient(conn: Connection, patient_id: str) -> list[OutboxEntry]:
    rows = conn.execute(
        f"SELECT {_COLUMNS} FROM outbox WHERE patient_id = ? ORDER BY seq",  # noqa: S608 - constant column list, values bound
        (patient_id,),
    ).fetchall()
    return [_entry(r) for r in rows]


def has_pending(conn: Connection, resource_type: str, resource_id: str) -> bool:
    row = conn.execute(
        "SELECT 1 FROM outbox WHERE resource_type = ? AND id = ? LIMIT 1",
        (resource_type, resource_id),
    ).fetchone()
    return row is not None


def pending_keys(conn: Connection) -> set[tuple[str, str]]:
    """(type, id) of every resource with a change still queued: one scan for a whole batch,
    where `has_pending` per resource scans the (unindexed) outbox each time."""
    return {(r[0], r[1]) for r in conn.execute("SELECT resource_type, id FROM outbox").fetchall()}


def record_failure(conn: Connection, change_id: str, reason: str) -> None:
    conn.execute(
        "UPDATE outbox SET attempts = attempts + 1, last_error = ? WHERE change_id = ?",
        (reason, change_id),
    )


def remove(conn: Connection, change_id: str) -> None:
    conn.execute("DELETE FROM outbox WHERE change_id = ?", (change_id,))
