"""`GET /sync/pull`: a gap-free, scope-aware feed of resource versions.

Why it never skips a late commit: every `resource_versions` row carries the
id of the transaction that wrote it (`txid`). The feed is ordered by
`(txid, seq)` and only reaches rows whose `txid` is below the oldest
transaction still running (`pg_snapshot_xmin(pg_current_snapshot())`): all of
those transactions have ended, so every such row is visible, and any row that
appears later belongs to a transaction at or above that bound, which sorts
after everything delivered. A sequence number taken early and committed late
therefore waits for its turn instead of being jumped over.

Partial replication: a workstation receives the resources of the patients
cared for at its user's locations (`patient_locations`, through the
`AccessGuard`) plus every resource outside a patient compartment
(Practitioner, Location, Organization, Schedule, Slot ...), limited to the
types the user's role may read. Break-the-glass grants are not replicated: they
are short-lived and must not leave a copy on a workstation.

The scope is recomputed on every pull and compared with the one the cursor
covers. A patient who left it comes as an `out_of_scope` change. A patient who
entered it is backfilled (the latest version of each of their resources up to
the cursor's position; later versions come through the feed), and so is
everything on the first pull, which therefore sends current versions, not the
whole history. A scope change during a backfill is handled once it ends.

The last page of a pull also carries `open_conflicts`, a fingerprint of the
review queue the caller may see (`shared_models.sync_messages.conflict_digest`),
so a workstation lists the queue only when its own open list differs.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

import orjson
from psycopg import Connection
from sqlalchemy.orm import Session

from shared_models.errors import Forbidden
from shared_models.fhir_validation import SUPPORTED_TYPES
from shared_models.sync_messages import DEFAULT_PULL_LIMIT, MAX_PULL_LIMIT
from sync_server.services import conflicts
from sync_server.services.context import AccessGuard, AuditSink, RequestContext
from sync_server.services.sync_cursor import (
    EMPTY_SCOPE,
    CursorInvalid,
    CursorState,
    cursor_key,
    decode_cursor,
    encode_cursor,
)

_SHARED = ""  # scope member standing for resources outside any patient compartment
#: The feed in (txid, seq) order, walking `ix_resource_versions_feed`.
_FEED_SQL = (
    "SELECT v.txid::text::bigint, v.seq, v.resource_type, v.id, v.version_id, v.deleted,"
    " v.resource::text, v.patient_id FROM resource_versions v"
    " WHERE (v.txid, v.seq) > (%s::text::xid8, %s) AND v.txid < %s::text::xid8"
    " AND coalesce(v.patient_id, '') = ANY(%s) ORDER BY v.txid, v.seq LIMIT %s"
)
#: One patient's current resources in key order, byte order (COLLATE "C", as Python
#: sorts), walking the `ix_resources_scope` index: each page costs what it returns.
_BACKFILL_SQL = (
    "SELECT v.txid::text::bigint, v.seq, r.resource_type, r.id, r.version_id, r.deleted,"
    " r.resource::text, r.patient_id"
    " FROM resources r JOIN resource_versions v ON v.resource_type = r.resource_type"
    " AND v.id = r.id AND v.version_id = r.version_id"
    " WHERE NOT r.deleted AND coalesce(r.patient_id, '') COLLATE \"C\" = %s"
    ' AND (r.resource_type COLLATE "C", r.id COLLATE "C") > (%s, %s)'
    ' ORDER BY r.resource_type COLLATE "C", r.id COLLATE "C" LIMIT %s'
)
#: Estimates of what is left after a page (`estimate=true`): the backfill's patients'
#: current resources (walking `ix_resources_scope`), and the feed's versions below the bound.
_LEFT_IN_BACKFILL_SQL = (
    "SELECT count(*) FROM resources r WHERE NOT r.deleted"
    " AND coalesce(r.patient_id, '') COLLATE \"C\" = ANY(%s) AND r.resource_type = ANY(%s)"
)
_LEFT_IN_FEED_SQL = (
    "SELECT count(*) FROM resource_versions v"
    " WHERE (v.txid, v.seq) > (%s::text::xid8, %s) AND v.txid < %s::text::xid8"
    " AND coalesce(v.patient_id, '') = ANY(%s) AND v.resource_type = ANY(%s)"
)


@dataclass(frozen=True)
class PullPage:
    """One page, with each resource kept as the stored JSON text (sent as is)."""

    changes: list[tuple[dict[str, Any], str | None]]
    cursor: str
    has_more: bool
    #: About how many changes are left after this page (only when asked for).
    remaining: int | None = None
    #: On the last page: `conflict_digest` of the open conflicts the caller may see.
    open_conflicts: str | None = None

    def render(self) -> bytes:
        """The contract's JSON, splicing stored resources in without re-parsing them."""
        parts = []
        for change, resource_json in self.changes:
            head = orjson.dumps(change)
            if resource_json is None:
                parts.append(head)
            else:
                parts.append(head[:-1] + b',"resource":' + resource_json.encode() + b"}")
        end: dict[str, Any] = {"cursor": self.cursor, "has_more": self.has_more}
        if self.remaining is not None:
            end["remaining"] = self.remaining
        if self.open_conflicts is not None:
            end["open_conflicts"] = self.open_conflicts
        tail = orjson.dumps(end)
        return b'{"changes":[' + b",".join(parts) + b"]," + tail[1:]


def pull(
    *,
    session: Session,
    ctx: RequestContext,
    guard: AccessGuard,
    audit: AuditSink,
    cursor: str,
    limit: int = DEFAULT_PULL_LIMIT,
    estimate: bool = False,
) -> PullPage:
    """One page of changes after `cursor` for the caller's scope.

    With `estimate`, the page also says about how many changes are left after
    it (two counts over indexes), so a workstation can show the time left of
    an initial download; it asks once per sync, on its first page.
    """
    limit = max(1, min(limit, MAX_PULL_LIMIT))
    conn = _conn(session)
    key = cursor_key(conn)
    state = decode_cursor(key, ctx.username, cursor)
    types = readable_types(session, ctx, guard)
    bound = _xmin(conn)
    if state.txid > bound:
        raise CursorInvalid("The cursor is ahead of this server's feed")
    now = visible_scope(conn, ctx, guard)
    old = _load_scope(conn, state.scope)
    removed: frozenset[str] = frozenset()
    if state.target is None and now != old:
        removed = old - now
        if now - old:
            if state.initial:  # first pull: current versions up to now, then the feed
                state = state.at(bound, 0)
            state = replace(state, target=_store_scope(conn, now), after=None)
        else:
            state = replace(state, scope=_store_scope(conn, now))
    changes: list[tuple[dict[str, Any], str | None]] = [
        ({"seq": None, "resourceType": "Patient", "id": pid, "versionId": None,
          "deleted": False, "out_of_scope": True}, None)
        for pid in sorted(removed - {_SHARED})
    ]  # fmt: skip
    added: list[str] = []
    if state.target is not None:
        # A backfill runs to its end even if the scope moves meanwhile (no restart, so
        # it always finishes); patients who left are skipped now and told afterwards.
        added = sorted((_load_scope(conn, state.target) - old) & now)
        rows, state = _backfill(conn, state, added, types, limit)
        has_more = True
    else:
        rows, state, has_more = _feed(conn, state, sorted(now), types, bound, limit)
    changes += [_change(row) for row in rows]
    patients = sorted({row[7] for row in rows if row[7]} | (removed - {_SHARED}))
    audit.record(
        session, ctx, action="sync-pull", outcome="success", patient_ids=patients,
        detail={"count": len(changes)},
    )  # fmt: skip
    remaining = _remaining(conn, state, added, sorted(now), types, bound) if estimate else None
    # The review queue's fingerprint, so a workstation lists it only when it differs.
    digest = None if has_more else conflicts.open_conflicts_digest(session, ctx, guard)
    return PullPage(changes, encode_cursor(key, ctx.username, state), has_more, remaining, digest)


def readable_types(session: Session, ctx: RequestContext, guard: AccessGuard) -> list[str]:
    """Resource types the caller's role may read (the guard decides)."""
    out = []
    for resource_type in sorted(SUPPORTED_TYPES):
        try:
            guard.authorize(session, ctx, "read", resource_type, None)
        except Forbidden:
            continue
        out.append(resource_type)
    return out


def visible_scope(conn: Connection[Any], ctx: RequestContext, guard: AccessGuard) -> frozenset[str]:
    """Patients whose charts the caller's workstation holds, plus the shared marker."""
    locations = guard.visible_location_ids(ctx)
    if locations is None:
        rows = conn.execute(
            "SELECT id FROM resources WHERE resource_type = 'Patient' AND NOT deleted"
        ).fetchall()
    else:
        rows = conn.execute(
            "SELECT DISTINCT patient_id FROM patient_locations WHERE location_id = ANY(%s)",
            (sorted(locations),),
        ).fetchall()
    return frozenset(row[0] for row in rows) | {_SHARED}


def _feed(
    conn: Connection[Any],
    state: CursorState,
    scope: list[str],
    types: list[str],
    bound: int,
    limit: int,
) -> tuple[list[tuple[Any, ...]], CursorState, bool]:
    """Up to `limit` versions after the cursor, and the cursor after the rows scanned.

    Types are filtered here rather than in SQL so the query stays a plain walk of
    the feed index (a type filter tempts the planner into sorting the whole range).
    """
    rows = conn.execute(_FEED_SQL, (state.txid, state.seq, bound, scope, limit + 1)).fetchall()
    has_more = len(rows) > limit
    rows = rows[:limit]
    if rows:
        state = state.at(rows[-1][0], rows[-1][1])
    elif state.position < (bound, 0):
        state = state.at(bound, 0)  # nothing in scope below the bound: skip the scan next time
    readable = frozenset(types)
    return [row for row in rows if row[2] in readable], state, has_more


def _backfill(
    conn: Connection[Any],
    state: CursorState,
    added: list[str],
    types: list[str],
    limit: int,
) -> tuple[list[tuple[Any, ...]], CursorState]:
    """Current versions of the added patients' resources, at or below the cursor's position.

    Walks the added patients in byte order, one index range per patient,
    scanning at most `limit` resources per page. A resource whose current
    version is above the position is skipped here: the feed delivers that
    version, and every later one, next.
    """
    after = state.after or ("", "", "")
    pending = [p for p in added if p >= after[0]]
    readable = frozenset(types)
    rows: list[tuple[Any, ...]] = []
    room = limit
    while pending and room > 0:
        owner = pending[0]
        start = after[1:] if after[0] == owner else ("", "")
        batch = conn.execute(_BACKFILL_SQL, (owner, *start, room + 1)).fetchall()
        full = len(batch) > room
        batch = batch[:room]
        room -= len(batch)
        rows += [row for row in batch if row[2] in readable and (row[0], row[1]) <= state.position]
        if full:
            after = (owner, batch[-1][2], batch[-1][3])
        else:  # this patient is done: the next one starts from its first key
            pending.pop(0)
            after = (pending[0] if pending else owner, "", "")
    if pending:
        return rows, replace(state, after=after)
    assert state.target is not None
    return rows, replace(state, scope=state.target, target=None, after=None)


def _remaining(
    conn: Connection[Any],
    state: CursorState,
    added: list[str],
    scope: list[str],
    types: list[str],
    bound: int,
) -> int:
    """About how many changes follow the page that left the cursor at `state`.

    An estimate: the patient a backfill is in the middle of counts whole, and
    versions committed after this request are not counted.
    """
    left = 0
    if state.after is not None:  # still backfilling: the added patients from the current one
        pending = [p for p in added if p >= state.after[0]]
        row = conn.execute(_LEFT_IN_BACKFILL_SQL, (pending, types)).fetchone()
        left += int(row[0]) if row else 0
    row = conn.execute(_LEFT_IN_FEED_SQL, (state.txid, state.seq, bound, scope, types)).fetchone()
    return left + (int(row[0]) if row else 0)


def _change(row: tuple[Any, ...]) -> tuple[dict[str, Any], str | None]:
    _, seq, resource_type, resource_id, version_id, deleted, resource, _ = row
    head = {
        "seq": seq,
        "resourceType": resource_type,
        "id": resource_id,
        "versionId": version_id,
        "deleted": deleted,
    }
    return head, None if deleted else resource


def _xmin(conn: Connection[Any]) -> int:
    row = conn.execute("SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint").fetchone()
    assert row is not None
    return int(row[0])


def _digest(patients: Iterable[str]) -> str:
    return hashlib.sha256("\n".join(sorted(patients)).encode()).hexdigest()[:40]


def _store_scope(conn: Connection[Any], patients: frozenset[str]) -> str:
    if not patients:
        return EMPTY_SCOPE
    digest = _digest(patients)
    conn.execute(
        "INSERT INTO sync_scope_snapshots (digest, patient_ids) VALUES (%s, %s)"
        " ON CONFLICT (digest) DO NOTHING",
        (digest, sorted(patients)),
    )
    return digest


def _load_scope(conn: Connection[Any], digest: str) -> frozenset[str]:
    if digest == EMPTY_SCOPE:
        return frozenset()
    row = conn.execute(
        "SELECT patient_ids FROM sync_scope_snapshots WHERE digest = %s", (digest,)
    ).fetchone()
    if row is None:
        raise CursorInvalid("The cursor's scope has expired; start again from cursor 0")
    return frozenset(row[0])


def _conn(session: Session) -> Connection[Any]:
    conn: Connection[Any] = session.connection().connection.driver_connection  # type: ignore[assignment]
    return conn
