"""Apply a page of server changes (the sync pull) in ONE transaction with its cursor.

Two steps, so the sync can overlap them across pages: `prepare_page` /
`prepare_wire` (pure Python, any thread) decode nothing twice and extract the
resource and index rows; `apply_remote_page` stores them and the cursor in one
transaction. The page is parsed once with `orjson`; each resource is stored as
`orjson` encodes that parse (the same JSON, compact), never through a model
round trip.

A resource with a pending local edit keeps the edit on screen; the newer
server version number is noted so the chart can say so, and the push's
three-way merge on the server reconciles the two.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple, TypeVar

import orjson

from desktop.store import conflicts, outbox, resources, sync_state
from desktop.store.database import ChartDatabase, Connection


class RemoteChange(NamedTuple):
    """One change of a pull page (`/sync/pull` `changes[]`).

    A NamedTuple rather than a frozen dataclass: a page builds thousands, and a
    frozen dataclass's `__init__` costs several times more per field.
    """

    resource_type: str
    id: str
    version_id: int | None
    deleted: bool = False
    out_of_scope: bool = False
    #: The resource JSON as received (bytes), or None for deletes/out of scope.
    resource_json: bytes | None = None
    #: The same resource already decoded (from the pull page), so it is not parsed twice.
    parsed: Mapping[str, Any] | None = None

    @classmethod
    def from_wire(cls, change: Mapping[str, Any]) -> RemoteChange:
        """From a decoded pull change; the resource dict is serialised once with orjson."""
        resource = change.get("resource")
        return cls(
            str(change["resourceType"]),
            str(change["id"]),
            change.get("versionId"),
            bool(change.get("deleted", False)),
            bool(change.get("out_of_scope", False)),
            orjson.dumps(resource) if resource is not None else None,
            resource if isinstance(resource, dict) else None,
        )


@dataclass(frozen=True)
class PreparedPage:
    """A page made ready to store without the database (`prepare_page`, `prepare_wire`).

    Each resource appears once (the page's last change of it; a page can carry
    several versions of one resource and is stored atomically). The decoded
    resources are not kept: dropping them on the preparing thread frees them
    there, not on the one storing the page.
    """

    #: Deletes and scope exits, in the page's order.
    removals: list[RemoteChange]
    #: The resource and index rows of every upsert.
    upserts: resources.PreparedBatch


@dataclass(frozen=True)
class PageResult:
    applied: int
    removed: int
    #: Resources kept because a local change of them is still pending.
    kept_local: int
    #: Patients whose charts left scope but hold unsynced changes (sent to review).
    held_for_review: tuple[str, ...]


def prepare_page(changes: Iterable[RemoteChange]) -> PreparedPage:
    """Parse and extract the index rows of a page: pure, so it may run on any thread."""
    latest = _last_of_each(((c.resource_type, c.id, c.out_of_scope), c) for c in changes)
    removals: list[RemoteChange] = []
    items: list[tuple[dict[str, Any], bytes, int | None]] = []
    for change in latest:
        if change.out_of_scope or change.deleted or change.resource_json is None:
            removals.append(change)
        else:
            known = change.parsed
            parsed = known if isinstance(known, dict) else orjson.loads(change.resource_json)
            items.append((parsed, change.resource_json, change.version_id))
    return PreparedPage(removals, resources.prepare(items, dirty=False))


def prepare_wire(changes: Iterable[Mapping[str, Any]]) -> PreparedPage:
    """`prepare_page` of a decoded pull page's `changes[]` (the initial sync's hot path).

    The same result without a `RemoteChange` per resource: each resource is
    encoded once with orjson (compact) from the page's single parse.
    """
    latest = _last_of_each(
        ((c["resourceType"], c["id"], bool(c.get("out_of_scope"))), c) for c in changes
    )
    removals: list[RemoteChange] = []
    items: list[tuple[dict[str, Any], bytes, int | None]] = []
    for change in latest:
        resource = change.get("resource")
        if resource is None or change.get("deleted") or change.get("out_of_scope"):
            removals.append(RemoteChange.from_wire(change))
        else:
            items.append((resource, orjson.dumps(resource), change.get("versionId")))
    return PreparedPage(removals, resources.prepare(items, dirty=False))


_Change = TypeVar("_Change")


def _last_of_each(keyed: Iterable[tuple[tuple[str, str, bool], _Change]]) -> list[_Change]:
    """The last change of each (type, id, out of scope), in the order of those last ones."""
    latest: dict[tuple[str, str, bool], _Change] = {}
    for key, change in keyed:
        latest.pop(key, None)
        latest[key] = change
    return list(latest.values())


def apply_remote_page(
    db: ChartDatabase, changes: PreparedPage | Iterable[RemoteChange], new_cursor: str
) -> PageResult:
    """Store every change of one pull page and the new cursor atomically."""
    page = changes if isinstance(changes, PreparedPage) else prepare_page(changes)
    removed = kept = 0
    held: list[str] = []
    with db.transaction() as conn:
        pending = _pending_keys(conn)
        for change in page.removals:
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
                _note_remote_version(conn, [(change.version_id, *key)])
                kept += 1
            else:
                resources.remove(conn, *key)
                removed += 1
        upserts = page.upserts
        local = [row for row in upserts.rows if (row[0], row[1]) in pending] if pending else []
        if local:  # rare: these keep the local edit; the others are extracted again
            _note_remote_version(conn, [(row[2], row[0], row[1]) for row in local])
            kept += len(local)
            upserts = resources.prepare(
                [(orjson.loads(row[4]), row[4], row[2]) for row in upserts.rows
                 if (row[0], row[1]) not in pending],
                dirty=False,
            )  # fmt: skip
        resources.write(conn, upserts)
        sync_state.put(conn, sync_state.CURSOR, new_cursor)
    return PageResult(len(upserts.rows), removed, kept, tuple(held))


def _note_remote_version(conn: Connection, rows: list[tuple[int | None, str, str]]) -> None:
    """A newer server version of resources whose local edit is still pending."""
    conn.executemany(
        "UPDATE resources SET remote_version_id = ? WHERE resource_type = ? AND id = ?", rows
    )


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
