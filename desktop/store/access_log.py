"""Chart reads made on this workstation, kept for the server's audit trail.

The sync engine sends these rows at the next sync and deletes them once the
server has stored them (DESIGN.md: offline reads reach the audit trail).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from desktop.store.database import Connection


@dataclass(frozen=True)
class AccessRecord:
    seq: int
    username: str
    patient_id: str
    action: str
    at: datetime


def record(conn: Connection, username: str, patient_id: str, action: str) -> None:
    conn.execute(
        "INSERT INTO access_log (username, patient_id, action, at) VALUES (?, ?, ?, ?)",
        (username, patient_id, action, datetime.now(UTC).isoformat()),
    )


def unsent(conn: Connection, limit: int = 500) -> list[AccessRecord]:
    rows = conn.execute(
        "SELECT seq, username, patient_id, action, at FROM access_log ORDER BY seq LIMIT ?",
        (limit,),
    ).fetchall()
    return [AccessRecord(r[0], r[1], r[2], r[3], datetime.fromisoformat(r[4])) for r in rows]


def mark_sent(conn: Connection, up_to_seq: int) -> None:
    conn.execute("DELETE FROM access_log WHERE seq <= ?", (up_to_seq,))
