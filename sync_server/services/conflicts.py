"""The conflict review queue: stored whole, listed to those who may see the patient, resolved.

A conflict keeps the server version current and stores the base, server and
client versions whole, with who pushed it, from which workstation and when; a
push stores its conflicts together (one COPY, one audit event per patient).
Resolving it (keep the server's version, keep the workstation's, or a merged
resource) writes a new version through the repository and a `Provenance`
naming the resolver; only a role on the conflict's risk route may resolve it
(`shared_models.risk`: a medication or allergy conflict needs a prescriber).
The Provenance is written by the server itself (a system context): recording
who resolved what is the server's duty, whatever the resolver's own rights
on Provenance resources.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy.orm import Session

from shared_models.errors import Forbidden, NotFound, ValidationFailed, VersionConflict
from shared_models.merge_policy import ChangeDecision
from shared_models.risk import ReviewRoute, may_resolve
from shared_models.sync_messages import (
    ConflictRecord,
    PushChange,
    ResolveRequest,
    conflict_digest,
)
from sync_server.db.engine import driver_connection
from sync_server.services.access_memo import GrantMemo
from sync_server.services.compartment import patient_of
from sync_server.services.context import AccessGuard, RequestContext
from sync_server.services.fhir_repository import FhirRepository, fhir_instant

_COLUMNS = (
    "id, resource_type, resource_id, patient_id, status, route, rule, paths, base_version,"
    " server_version, base_resource::text, server_resource::text, client_resource::text,"
    " client_deleted, created_by, workstation_id, client_id, created_at, resolution,"
    " resolved_by, resolved_at, resolved_version"
)
_FIELDS = (
    "id", "resourceType", "resource_id", "patient_id", "status", "route", "rule", "paths",
    "base_version", "server_version", "base_resource", "server_resource", "client_resource",
    "client_deleted", "created_by", "workstation_id", "client_id", "created_at", "resolution",
    "resolved_by", "resolved_at", "resolved_version",
)  # fmt: skip
_NEW_COLUMNS = (
    "id, resource_type, resource_id, patient_id, status, route, rule, paths, base_version,"
    " server_version, base_resource, server_resource, client_resource, client_deleted,"
    " created_by, workstation_id, client_id, change_id"
)
_PARTICIPANT = "http://terminology.hl7.org/CodeSystem/provenance-participant-type"
_DATA_OPERATION = "http://terminology.hl7.org/CodeSystem/v3-DataOperation"


class AlreadyResolved(VersionConflict):
    user_message = "This conflict was already resolved by someone else."
    help_topic = "conflicts"


@dataclass(frozen=True)
class NewConflict:
    """A conflict a push found: the change, the merge decision and the server's side of it."""

    change: PushChange
    decision: ChangeDecision
    server_version: int | None
    server_resource: dict[str, Any] | None
    patient_id: str | None
    #: The base version as stored in `resource_versions` (JSON text), when there is one.
    base_json: str | None


def open_conflicts(
    repo: FhirRepository, *, request_client: str, conflicts: Sequence[NewConflict]
) -> list[str]:
    """Store conflicts in the caller's transaction (one COPY); returns their ids in order.

    Audited as one `sync-conflict` event per patient naming the conflicts stored.
    """
    ids = [str(uuid.uuid4()) for _ in conflicts]
    by_patient: dict[str | None, list[str]] = {}
    ctx = repo.ctx
    with (
        repo._conn.cursor() as cur,
        cur.copy(f"COPY sync_conflicts ({_NEW_COLUMNS}) FROM STDIN") as copy,
    ):
        for conflict_id, item in zip(ids, conflicts, strict=True):
            change, decision = item.change, item.decision
            client = change.resource if change.op == "upsert" else None
            patient_id = item.patient_id
            if patient_id is None and client is not None:
                patient_id = patient_of(change.resourceType, change.id, client)
            by_patient.setdefault(patient_id, []).append(conflict_id)
            copy.write_row((
                conflict_id, change.resourceType, change.id, patient_id, "open",
                str(decision.route or ReviewRoute.CLINICIAN), decision.rule or "",
                list(decision.paths), change.base_version, item.server_version,
                item.base_json, _json(item.server_resource), _json(client), client is None,
                ctx.username, ctx.workstation_id, request_client, change.change_id,
            ))  # fmt: skip
    for patient_id, stored in by_patient.items():
        one = conflicts[ids.index(stored[0])].change if len(stored) == 1 else None
        repo.audit.record(
            repo.session, ctx, action="sync-conflict", outcome="success",
            resource_type=one.resourceType if one else None, resource_id=one.id if one else None,
            patient_ids=[patient_id] if patient_id else None,
            detail={"conflicts": stored, "client_id": request_client},
        )  # fmt: skip
    return ids


def list_conflicts(
    *, repo: FhirRepository, status: str = "open", limit: int = 200
) -> list[ConflictRecord]:
    """Conflicts on resources the caller may read, oldest first."""
    rows = _visible(repo.session, repo.ctx, repo.guard, _COLUMNS, status, max(1, min(limit, 1000)))
    records = [_record(row) for row in rows]
    repo.audit.record(
        repo.session, repo.ctx, action="sync-conflicts", outcome="success",
        patient_ids=sorted({r.patient_id for r in records if r.patient_id}),
        detail={"count": len(records)},
    )  # fmt: skip
    return records


def open_conflicts_digest(session: Session, ctx: RequestContext, guard: AccessGuard) -> str:
    """`conflict_digest` of every open conflict the caller may see (for the pull's last page)."""
    rows = _visible(session, ctx, guard, "id, resource_type, resource_id, patient_id", "open", None)
    return conflict_digest(row[0] for row in rows)


def _visible(
    session: Session,
    ctx: RequestContext,
    guard: AccessGuard,
    columns: str,
    status: str,
    limit: int | None,
) -> list[tuple[Any, ...]]:
    """Rows (`columns` starting with id, resource_type, resource_id, patient_id) of the
    conflicts in `status` on resources the caller may read, oldest first; all when no limit."""
    locations = guard.visible_location_ids(ctx)
    rows = (
        driver_connection(session)
        .execute(
            f"SELECT {columns} FROM sync_conflicts WHERE status = %s AND ("  # noqa: S608
            " patient_id IS NULL OR %s::text[] IS NULL OR patient_id = ANY(%s)"
            " OR patient_id IN"
            " (SELECT patient_id FROM patient_locations WHERE location_id = ANY(%s)))"
            " ORDER BY created_at, id LIMIT %s",
            (
                status,
                None if locations is None else sorted(locations),
                sorted(ctx.break_glass),
                sorted(locations or ()),
                limit,
            ),
        )
        .fetchall()
    )
    memo = GrantMemo(guard)  # a queue of 1,000 conflicts is a few patients
    visible = []
    for row in rows:
        try:
            memo.authorize(session, ctx, "read", row[1], row[3])
        except Forbidden:
            continue
        visible.append(row)
    return visible


def resolve_conflict(
    *, repo: FhirRepository, conflict_id: str, request: ResolveRequest
) -> ConflictRecord:
    """Write the chosen version and a Provenance; the conflict becomes resolved."""
    row = repo._conn.execute(
        f"SELECT {_COLUMNS} FROM sync_conflicts WHERE id = %s FOR UPDATE",  # noqa: S608
        (conflict_id,),
    ).fetchone()
    if row is None:
        raise NotFound("conflict not found")
    conflict = _record(row)
    repo.guard.authorize(repo.session, repo.ctx, "read", conflict.resourceType, conflict.patient_id)
    if conflict.status != "open":
        raise AlreadyResolved(f"conflict {conflict_id} is {conflict.status}")
    if not may_resolve(ReviewRoute(conflict.route), repo.ctx.roles):
        raise Forbidden(
            "role may not resolve this conflict",
            user_message=f"This conflict must be reviewed by the {conflict.route} queue.",
        )
    current = repo._conn.execute(
        "SELECT version_id, deleted, resource::text FROM resources"
        " WHERE resource_type = %s AND id = %s",
        (conflict.resourceType, conflict.resource_id),
    ).fetchone()
    version, deleted, current_json = current if current else (0, True, None)
    chosen, delete = _chosen(conflict, request, None if deleted else current_json)
    if delete and deleted:
        resolved_version = version
    else:
        stored = repo.write_version(
            conflict.resourceType, conflict.resource_id, None if delete else chosen,
            expected_version=version,
        ).stored  # fmt: skip
        resolved_version = stored.version_id
    _provenance(repo, conflict, request, resolved_version)
    repo._conn.execute(
        "UPDATE sync_conflicts SET status = 'resolved', resolution = %s, resolved_by = %s,"
        " resolved_at = clock_timestamp(), resolved_version = %s WHERE id = %s",
        (request.resolution, repo.ctx.username, resolved_version, conflict_id),
    )
    resolved = repo._conn.execute(
        f"SELECT {_COLUMNS} FROM sync_conflicts WHERE id = %s",  # noqa: S608
        (conflict_id,),
    ).fetchone()
    assert resolved is not None
    return _record(resolved)


def _chosen(
    conflict: ConflictRecord, request: ResolveRequest, current_json: str | None
) -> tuple[dict[str, Any] | None, bool]:
    """The resource to keep, and whether keeping it means a deletion."""
    if request.resolution == "keep_server":
        return (None, True) if current_json is None else (orjson.loads(current_json), False)
    if request.resolution == "keep_mine":
        return conflict.client_resource, conflict.client_deleted
    resource = request.resource or {}
    if resource.get("resourceType") != conflict.resourceType or resource.get(
        "id", conflict.resource_id
    ) != (conflict.resource_id):
        raise ValidationFailed(
            "merged resource is another resource",
            issues=[("resource", "The merged resource must keep the conflict's type and id")],
        )
    return resource, False


def _provenance(
    repo: FhirRepository, conflict: ConflictRecord, request: ResolveRequest, version: int
) -> None:
    ctx = repo.ctx
    who = {"reference": ctx.practitioner} if ctx.practitioner else {"display": ctx.username}
    provenance = {
        "resourceType": "Provenance",
        "target": [
            {"reference": f"{conflict.resourceType}/{conflict.resource_id}/_history/{version}"}
        ],
        "recorded": fhir_instant(datetime.now(UTC)),
        "activity": {"coding": [{"system": _DATA_OPERATION, "code": "UPDATE"}]},
        "reason": [{"text": f"Sync conflict {conflict.id} resolved: {request.resolution}"}],
        "agent": [{"type": {"coding": [{"system": _PARTICIPANT, "code": "verifier"}]}, "who": who}],
    }
    server = FhirRepository(
        repo.session, RequestContext.for_system("conflict-resolution"), repo.guard, repo.audit
    )
    server.create(provenance)


def _record(row: tuple[Any, ...]) -> ConflictRecord:
    """A stored row as a record. Built without validation (`model_construct`): the
    columns are the record's fields with their types already (a queue of 1,000
    conflicts spent a third of its time validating what the database had checked)."""
    fields = dict(zip(_FIELDS, row, strict=True))
    for name in ("base_resource", "server_resource", "client_resource"):
        fields[name] = _parse(fields[name])
    fields["paths"] = list(fields["paths"])
    fields["reason"] = ChangeDecision("conflict", rule=fields["rule"]).reason or ""
    return ConflictRecord.model_construct(**fields)


def _json(value: dict[str, Any] | None) -> str | None:
    return None if value is None else orjson.dumps(value).decode()


def _parse(text: str | None) -> dict[str, Any] | None:
    return None if text is None else dict(orjson.loads(text))
