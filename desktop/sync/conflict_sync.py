"""Conflict decisions sent to the server, and the local review list kept equal to the server's.

- A decision (`desktop.store.conflict_decisions`) on a conflict of the server's
  review queue goes to `POST /sync/conflicts/{id}/resolve`. Once the server has
  answered, the resource's current server version is read
  (`GET /fhir/R4/{type}/{id}`) and stored, the local conflict closes and the
  decision is forgotten: one local transaction, so a crash before it only
  means the decision is sent again.
- Sent again, a decision the server already applied answers "already
  resolved" (412). So does one someone else beat us to: then, if the person
  here chose their own or a merged version and the server's current copy
  differs from it, that version is queued as a new edit on the version the
  conflict showed, so the server's merge rules decide as for any edit
  (nothing lost). A 412 while the conflict is still open (the resource moved
  under the resolve) leaves the decision stored for the next sync.
- "Discard" of a change the server refused reads the server's current copy
  (or removes the local copy when the server has none) and closes the refusal.
- After a pull, `reconcile` lists the server's open conflicts for this user:
  local ones the server no longer has open (resolved elsewhere) close, and the
  server's conflicts this workstation has not seen are added, so the list a
  person sees matches the server's queue; a conflict stored without its base
  version (what both sides edited) gets it here. The pull's last page carries
  a fingerprint of that queue: when the local open list has the same one, the
  lists already match and nothing is listed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeVar

import orjson

from desktop.store import conflict_decisions, conflicts, outbox, resources
from desktop.store.conflict_decisions import Decision
from desktop.store.conflicts import ConflictRecord
from desktop.store.database import ChartDatabase, Connection
from desktop.sync.server_api import ServerApi
from shared_models.errors import (
    ClinicError,
    Forbidden,
    NetworkUnavailable,
    NotFound,
    ValidationFailed,
    VersionConflict,
)
from shared_models.sync_messages import conflict_digest

log = logging.getLogger(__name__)

T = TypeVar("T")
Call = Callable[[Callable[[], Any]], Any]

#: Conflicts asked for per listing (the server's maximum).
LIST_LIMIT = 1000
#: In the reason of a conflict another workstation sent (its "mine" is not ours).
FROM_ELSEWHERE = "from another workstation"


class DecisionRefused(ClinicError):
    user_message = "The server did not accept this decision. The conflict stays open."
    help_topic = "conflicts"


def direct(fn: Callable[[], T]) -> T:
    """A `call` without retries, for a decision sent while the person waits."""
    return fn()


def send_decisions(db: ChartDatabase, api: ServerApi, call: Call) -> int:
    """Send every stored decision (a sync step); returns how many the server settled."""
    settled = 0
    for decision in conflict_decisions.pending(db.connection()):
        try:
            apply_decision(db, api, call, decision)
        except DecisionRefused as exc:
            log.warning("conflict decision refused: %s", exc.detail)
            continue
        settled += 1
    return settled


def apply_decision(db: ChartDatabase, api: ServerApi, call: Call, decision: Decision) -> None:
    """Send one decision; when settled, store the server's copy and close the conflict.

    Raises `NetworkUnavailable` (the decision stays stored) or `DecisionRefused`
    (the server refused it: the decision is forgotten, the conflict stays open
    and its reason says why).
    """
    record = conflicts.get(db.connection(), decision.conflict_id)
    if record is None or record.resolved_at is not None:
        with db.transaction() as conn:
            conflict_decisions.forget(conn, decision.conflict_id)
        return
    requeue: dict[str, Any] | None = None
    if decision.resolution != "discard":
        body: dict[str, Any] = {"resolution": decision.resolution}
        if decision.resolution == "merged":
            body["resource"] = decision.resource
        try:
            call(lambda: api.sync_resolve(record.conflict_id, body))
        except VersionConflict:
            if _still_open(api, call, record.conflict_id):
                return  # the resource moved meanwhile: the decision is sent again next sync
            # already resolved: by our own earlier attempt, or by someone else first
            requeue = decision.resource if decision.resolution != "keep_server" else None
        except (Forbidden, ValidationFailed, NotFound) as exc:
            with db.transaction() as conn:
                conflicts.set_reason(
                    conn, record.conflict_id,
                    f"{decision.reason} Your decision was not accepted: {exc.user_message}".strip(),
                )  # fmt: skip
                conflict_decisions.forget(conn, record.conflict_id)
            raise DecisionRefused(exc.detail) from exc
    current = server_copy(api, call, record.resource_type, record.id)
    with db.transaction() as conn:
        store_server_copy(conn, record.resource_type, record.id, current)
        if requeue is not None and not _same_content(current, requeue):
            _requeue(conn, record, requeue)
        conflicts.mark_resolved(conn, record.conflict_id)
        conflict_decisions.forget(conn, record.conflict_id)


def _still_open(api: ServerApi, call: Call, conflict_id: str) -> bool:
    listing = call(lambda: api.sync_conflicts("open", LIST_LIMIT))
    return any(str(c.get("id")) == conflict_id for c in listing.get("conflicts", []))


def server_copy(api: ServerApi, call: Call, resource_type: str, resource_id: str) -> bytes | None:
    """The server's current version as received, or None when it has none for us."""
    try:
        raw: bytes = call(lambda: api.read_resource(resource_type, resource_id))
    except (NotFound, Forbidden):
        return None
    return raw


def store_server_copy(
    conn: Connection, resource_type: str, resource_id: str, raw: bytes | None
) -> None:
    """The server's copy becomes the local one, unless a later local edit still waits."""
    if outbox.has_pending(conn, resource_type, resource_id):
        return
    if raw is None:
        resources.remove(conn, resource_type, resource_id)
        return
    resource = orjson.loads(raw)
    version = (resource.get("meta") or {}).get("versionId")
    resources.put(conn, resource, raw, version_id=int(version) if version else None, dirty=False)


def _same_content(current: bytes | None, chosen: dict[str, Any]) -> bool:
    if current is None:
        return False
    server = {k: v for k, v in orjson.loads(current).items() if k != "meta"}
    return server == {k: v for k, v in chosen.items() if k != "meta"}


def _requeue(conn: Connection, record: ConflictRecord, chosen: dict[str, Any]) -> None:
    """The person's version as a new local edit on the version the conflict showed."""
    resource = {k: v for k, v in chosen.items() if k != "meta"}
    raw = orjson.dumps(resource)
    patient_id = resources.put(conn, resource, raw, version_id=record.server_version, dirty=True)
    outbox.enqueue(
        conn, resource_type=record.resource_type, resource_id=record.id, op="upsert",
        base_version=record.server_version, patient_id=patient_id, raw_json=raw,
    )  # fmt: skip


def reconcile(
    db: ChartDatabase, api: ServerApi, call: Call, *, server_digest: str | None = None
) -> None:
    """Make the open local conflicts match the server's open queue for this user.

    `server_digest` is the queue's fingerprint from the pull's last page: when
    the local open list has the same one, the lists already match and the queue
    is not listed.

    Best effort (a sync step): a failure other than the network is logged, and
    the next sync tries again.
    """
    if server_digest is not None and _in_step(db.connection(), server_digest):
        return
    try:
        listing = call(lambda: api.sync_conflicts("open", LIST_LIMIT))
    except NetworkUnavailable:
        raise
    except ClinicError as exc:
        log.warning("could not list the server's conflicts: %s", exc.detail)
        return
    items = [c for c in listing.get("conflicts", []) if isinstance(c, dict) and "id" in c]
    open_ids = {str(c["id"]) for c in items}
    with db.transaction() as conn:
        local = {r.conflict_id: r for r in conflicts.open_conflicts(conn)}
        if len(items) < LIST_LIMIT:  # the whole queue: what is missing was closed elsewhere
            waiting = {d.conflict_id for d in conflict_decisions.pending(conn)}
            for record in local.values():
                if (
                    conflicts.on_server(record)
                    and record.conflict_id not in open_ids
                    and record.conflict_id not in waiting
                ):
                    conflicts.mark_resolved(conn, record.conflict_id)
        known = conflicts.known_ids(conn)
        for item in items:
            conflict_id = str(item["id"])
            if conflict_id not in known:
                _add(conn, item)
            elif (
                conflict_id in local
                and local[conflict_id].base_json is None
                and item.get("base_resource") is not None
            ):
                conflicts.set_base(conn, conflict_id, orjson.dumps(item["base_resource"]))


def _in_step(conn: Connection, server_digest: str) -> bool:
    """The local open list has the server's queue's fingerprint.

    A conflict this workstation's push opened came with its base version in
    the push answer, so one stored without a base has none on the server either.
    """
    mine = (r.conflict_id for r in conflicts.open_conflicts(conn) if conflicts.on_server(r))
    return conflict_digest(mine) == server_digest


def _add(conn: Connection, item: dict[str, Any]) -> None:
    """A conflict another workstation sent, in this workstation's review list."""
    who = item.get("created_by") or "someone"
    reason = f"Sent by {who} {FROM_ELSEWHERE}. {item.get('reason') or ''}".strip()

    def raw(name: str) -> bytes | None:
        value = item.get(name)
        return orjson.dumps(value) if value is not None else None

    conflicts.record(
        conn, conflict_id=str(item["id"]), resource_type=str(item["resourceType"]),
        resource_id=str(item["resource_id"]), patient_id=item.get("patient_id"),
        status="conflict", reason=reason, server_version=item.get("server_version"),
        server_json=raw("server_resource"), local_json=raw("client_resource"),
        base_json=raw("base_resource"),
    )  # fmt: skip
