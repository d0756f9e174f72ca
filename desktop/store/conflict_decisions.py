"""A person's decisions on conflicts, kept until the server has confirmed them.

Resolving a conflict from the server's review queue (keep theirs, keep mine, a
merged version) and discarding a refused change (restore the server's copy)
need the server. The decision is stored first, in the same database as
everything else, so it survives a crash or a day offline; it is sent at once
when the server is reachable, otherwise at the next sync, and forgotten only
when the local conflict closes (`desktop.sync.conflict_sync`).

Kept in the `sync_state` key/value table under a prefix (one row per conflict,
the JSON of the decision), so no schema change is needed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import orjson

from desktop.store import sync_state
from desktop.store.database import Connection

#: The server's resolutions (`POST /sync/conflicts/{id}/resolve`), and "discard":
#: drop a refused change and take the server's current copy.
Resolution = Literal["keep_server", "keep_mine", "merged", "discard"]

_PREFIX = "conflict-decision:"


@dataclass(frozen=True)
class Decision:
    conflict_id: str
    resolution: Resolution
    #: The version to keep (`keep_mine`, `merged`), JSON as saved.
    resource: dict[str, Any] | None
    #: The conflict's reason before the decision (shown again if the server refuses it).
    reason: str
    decided_at: datetime


def put(conn: Connection, decision: Decision) -> None:
    """Store (or replace: the latest decision counts) the decision on one conflict."""
    value = {
        "resolution": decision.resolution,
        "resource": decision.resource,
        "reason": decision.reason,
        "decided_at": decision.decided_at.isoformat(),
    }
    sync_state.put(conn, _PREFIX + decision.conflict_id, orjson.dumps(value).decode())


def get(conn: Connection, conflict_id: str) -> Decision | None:
    raw = sync_state.get(conn, _PREFIX + conflict_id)
    return _decision(conflict_id, raw) if raw is not None else None


def pending(conn: Connection) -> list[Decision]:
    """Every decision not yet confirmed, oldest first."""
    rows = conn.execute(
        "SELECT key, value FROM sync_state WHERE key >= ? AND key < ?",
        (_PREFIX, _PREFIX[:-1] + chr(ord(_PREFIX[-1]) + 1)),
    ).fetchall()
    found = [_decision(str(key)[len(_PREFIX) :], str(value)) for key, value in rows]
    return sorted(found, key=lambda d: d.decided_at)


def forget(conn: Connection, conflict_id: str) -> None:
    conn.execute("DELETE FROM sync_state WHERE key = ?", (_PREFIX + conflict_id,))


def new(
    conflict_id: str, resolution: Resolution, resource: dict[str, Any] | None, reason: str
) -> Decision:
    return Decision(conflict_id, resolution, resource, reason, datetime.now(UTC))


def _decision(conflict_id: str, raw: str) -> Decision:
    value = orjson.loads(raw)
    return Decision(
        conflict_id=conflict_id,
        resolution=value["resolution"],
        resource=value.get("resource"),
        reason=str(value.get("reason", "")),
        decided_at=datetime.fromisoformat(value["decided_at"]),
    )
