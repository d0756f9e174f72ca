"""Conflicts and refused changes received from the server, kept until a person decides.

Nothing is dropped after a retry limit: a change the server refused stays here
with the reason until someone resolves or discards it (DESIGN.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from desktop.store.database import Connection

#: Status values: "conflict" (server kept its version; ours is stored whole),
#: "rejected" (server refused the change, e.g. forbidden or invalid),
#: "out_of_scope" (the patient left our locations while a change was pending).
STATUSES = ("conflict", "rejected", "out_of_scope")


@dataclass(frozen=True)
class ConflictRecord:
    conflict_id: str
    resource_type: str
    id: str
    patient_id: str | None
    status: str
    #: Plain-words reason from the server (no PHI).
    reason: str
    change_id: str | None
    server_version: int | None
    server_json: bytes | None
    local_json: bytes | None
    base_json: bytes | None
    created_at: datetime
    resolved_at: datetime | None


_COLUMNS = (
    "conflict_id, resource_type, id, patient_id, status, reason, change_id, server_version,"
    " server_json, local_json, base_json, created_at, resolved_at"
)


def _blob(value: Any) -> bytes | None:
    return bytes(value) if value is not None else None


def _record(row: Sequence[Any]) -> ConflictRecord:
    return ConflictRecord(
        conflict_id=row[0],
        resource_type=row[1],
        id=row[2],
        patient_id=row[3],
        status=row[4],
        reason=row[5],
        change_id=row[6],
        server_version=row[7],
        server_json=_blob(row[8]),
        local_json=_blob(row[9]),
        base_json=_blob(row[10]),
        created_at=datetime.fromisoformat(row[11]),
        resolved_at=datetime.fromisoformat(row[12]) if row[12] else None,
    )


def record(
    conn: Connection,
    *,
    conflict_id: str,
    resource_type: str,
    resource_id: str,
    patient_id: str | None,
    status: str,
    reason: str,
    change_id: str | None = None,
    server_version: int | None = None,
    server_json: bytes | None = None,
    local_json: bytes | None = None,
    base_json: bytes | None = None,
) -> None:
    """Store (or refresh) one conflict; the same id received again replaces it."""
    if status not in STATUSES:
        raise ValueError(f"unknown conflict status {status!r}")
    conn.execute(
        f"INSERT OR REPLACE INTO conflicts ({_COLUMNS}) VALUES"  # noqa: S608 - constant column list, values bound
        " (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL)",
        (conflict_id, resource_type, resource_id, patient_id, status, reason, change_id,
         server_version, server_json, local_json, base_json, datetime.now(UTC).isoformat()),
    )  # fmt: skip


def open_conflicts(conn: Connection) -> list[ConflictRecord]:
    rows = conn.execute(
        f"SELECT {_COLUMNS} FROM conflicts WHERE resolved_at IS NULL ORDER BY created_at"  # noqa: S608 - constant column list, values bound
    ).fetchall()
    return [_record(r) for r in rows]


def count_open(conn: Connection) -> int:
    return int(
        conn.execute("SELECT count(*) FROM conflicts WHERE resolved_at IS NULL").fetchone()[0]
    )


def open_ids_for_patient(conn: Connection, patient_id: str) -> set[str]:
    rows = conn.execute(
        "SELECT id FROM conflicts WHERE patient_id = ? AND resolved_at IS NULL", (patient_id,)
    ).fetchall()
    return {r[0] for r in rows}


def mark_resolved(conn: Connection, conflict_id: str) -> None:
    conn.execute(
        "UPDATE conflicts SET resolved_at = ? WHERE conflict_id = ?",
        (datetime.now(UTC).isoformat(), conflict_id),
    )


def set_base(conn: Connection, conflict_id: str, base_json: bytes) -> None:
    """Add the base version (fetched from the server's review queue) to a stored conflict."""
    conn.execute(
        "UPDATE conflicts SET base_json = ? WHERE conflict_id = ?", (base_json, conflict_id)
    )


def get(conn: Connection, conflict_id: str) -> ConflictRecord | None:
    row = conn.execute(
        f"SELECT {_COLUMNS} FROM conflicts WHERE conflict_id = ?",  # noqa: S608 - constant column list, values bound
        (conflict_id,),
    ).fetchone()
    return _record(row) if row else None


def known_ids(conn: Connection) -> set[str]:
    """Every conflict id this workstation holds, open or resolved."""
    return {r[0] for r in conn.execute("SELECT conflict_id FROM conflicts").fetchall()}


def set_reason(conn: Connection, conflict_id: str, reason: str) -> None:
    conn.execute("UPDATE conflicts SET reason = ? WHERE conflict_id = ?", (reason, conflict_id))


def on_server(record: ConflictRecord) -> bool:
    """True for a conflict in the server's review queue (resolved there, not only here).

    Refusals (`rejected`), charts that left scope and conflicts the server
    answered without an id (`conflict:<change id>`) exist on this workstation only.
    """
    return record.status == "conflict" and not record.conflict_id.startswith("conflict:")
