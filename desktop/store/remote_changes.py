"""Apply a page of server changes (the sync pull) in ONE transaction with its cursor.

The JSON is stored as received: `orjson` parses it once for the index rows and
nothing is re-serialised. A resource with a pending local edit keeps the edit
on screen; the newer server version number is noted so the chart can say so,
and the push's three-way merge on the server reconciles the two.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from desktop.store import conflicts, outbox, resources, sync_state
from desktop.store.database import ChartDatabase, Connection


@dataclass(frozen=True)
class RemoteChange:
    """One change of a pull page (`/sync/pull` `changes[]`)."""

    resource_type: str
    id: str
    version_id: int | None
    deleted: bool = False
    out_of_scope: bool = False
    #: The resource JSON as received (bytes), or None for deletes/out of scope.
    resource_json: bytes | None = None
    #: The same resource already decoded (from the pull page), so it is not parsed twice.
    parsed: Mapping[str, Any] | None = field(default=None, compare=False, repr=False)

    @classmethod
    def from_wire(cls, change: Mapping[str, Any]) -> RemoteChange:
        """From a decoded pull change; the resource dict is serialised once with orjson."""
        resource = change.get("resource")
        return cls(
            resource_type=str(change["resourceType"]),
            id=str(change["id"]),
            version_id=change.get("versionId"),
            deleted=bool(change.get("deleted", False)),
            out_of_scope=bool(change.get("out_of_scope", False)),
            resource_json=orjson.dumps(resource) if resource is not None else None,
            parsed=resource if isinstance(resource, dict) else None,
        )


@dataclass(frozen=True)
class PageResult:
    applied: int
    removed: int
    #: Resources kept because a local change of them is still pending.
    kept_local: int
    #: Patients whose charts left scope but hold unsynced changes (sent to review).
    held_for_review: tuple[str, ...]


def apply_remote_page(
    db: ChartDatabase, changes: Iterable[RemoteChange], new_cursor: str
) -> PageResult:
    """Store every change of one pull page and the new cursor atomically."""
    applied = removed = kept = 0
    held: list[str] = []
    with db.transaction() as conn:
        pending = _pending_keys(conn)
        upserts: list[tuple[dict[str, Any], bytes, int | None]] = []
        for change in changes:
            key = (change.resource_type, change.id)
            if change.out_of_scope:
                if change.resource_type == "Patient":
                    if _purge_patient(conn, change.id):
                        removed += 1
                    else:
                        held.append(change.id)
                elif key not in pending:
                    resources.remove(conn, *key)
                    removed += 1
            elif key in pending:
                conn.execute(
                    "UPDATE resources SET remote_version_id = ? WHERE resource_type = ? AND id = ?",
                    (change.version_id, *key),
                )
                kept += 1
            elif change.deleted or change.resource_json is None:
                resources.remove(conn, *key)
                removed += 1
            else:
                raw = change.resource_json
                known = change.parsed
                parsed = known if isinstance(known, dict) else orjson.loads(raw)
                upserts.append((parsed, raw, change.version_id))
        resources.put_many(conn, upserts, dirty=False)
        applied = len(upserts)
        sync_state.put(conn, sync_state.CURSOR, new_cursor)
    return PageResult(applied, removed, kept, tuple(held))


def _pending_keys(conn: Connection) -> set[tuple[str, str]]:
    """Resources with a local change not yet on the server (a handful, not the cache)."""
    rows = conn.execute(
        "SELECT resource_type, id FROM resources WHERE dirty = 1"
        " UNION SELECT resource_type, id FROM outbox"
    ).fetchall()
    return {(r[0], r[1]) for r in rows}


def _purge_patient(conn: Connection, patient_id: str) -> bool:
    """Remove a chart that left scope, unless it holds unsynced changes (then review)."""
    if outbox.pending_for_patient(conn, patient_id):
        conflicts.record(
            conn,
            conflict_id=f"out-of-scope:{patient_id}",
            resource_type="Patient",
            resource_id=patient_id,
            patient_id=patient_id,
            status="out_of_scope",
            reason="This patient is no longer cared for at your locations, but this "
            "workstation still holds changes to the chart that are not on the server.",
        )
        return False
    rows = conn.execute(
        "SELECT resource_type, id FROM resources WHERE patient_id = ?", (patient_id,)
    ).fetchall()
    for rtype, rid in rows:
        resources.remove(conn, rtype, rid)
    return True
