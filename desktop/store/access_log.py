"""Chart reads made on this workstation, kept for the server's audit trail.

The sync engine sends these rows at the next sync (`desktop.sync.access_log_upload`)
and deletes them only once the server has acknowledged them (DESIGN.md:
offline reads reach the audit trail). Each row's record id is derived from the
workstation id, its row number and its time, so a row sent twice (a sync cut
off after the server stored it) is recognised by the server and stored once.
"""

from __future__ import annotations

from collections.abc import Collection
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


def unsent(conn: Connection, username: str, limit: int = 500) -> list[AccessRecord]:
    """The oldest reads of `username` not yet acknowledged by the server.

    Only the signed-in user's rows: the server accepts reads from the user who
    made them, so another user's rows wait for that user's next sync.
    """
    rows = conn.execute(
        "SELECT seq, username, patient_id, action, at FROM access_log"
        " WHERE username = ? ORDER BY seq LIMIT ?",
        (username, limit),
    ).fetchall()
    return [AccessRecord(r[0], r[1], r[2], r[3], datetime.fromisoformat(r[4])) for r in rows]


def count(conn: Connection) -> int:
    return int(conn.execute("SELECT count(*) FROM access_log").fetchone()[0])


def mark_sent(conn: Connection, seqs: Collection[int]) -> None:
    """Delete the rows the server has acknowledged."""
    conn.executemany("DELETE FROM access_log WHERE seq = ?", [(s,) for s in seqs])
