"""`POST /sync/push`: apply a workstation's batch of offline changes.

Each change is decided by the shared merge rules (`shared_models.merge_policy`)
against the current version and the base version the client edited (read from
`resource_versions`), then written through the one `FhirRepository`, so
versions, search index, care sites, access checks and audit happen there.

Throughput: the writes of a batch go to the repository together (one
SAVEPOINT, one COPY, each resource validated once). When anything in that
batch fails, the batch is replayed one change per SAVEPOINT, so only the bad
change is rejected and the others still apply.

Idempotency (`push_log`): the batch's change ids are claimed first; a change
already answered is answered the same way again, the same `change_id` with
another payload is rejected.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy.orm import Session

from shared_models.errors import ClinicError, ValidationFailed, VersionConflict
from shared_models.fhir_validation import validate_resource
from shared_models.merge_policy import (
    CONCURRENT_EDIT,
    SLOT_DOUBLE_BOOKING,
    ChangeDecision,
    decide_change,
)
from shared_models.outcomes import from_error, issue
from shared_models.sync_messages import PushChange, PushRequest, PushResult, PushStatus
from sync_server.services import push_log, scheduling
from sync_server.services.conflicts import open_conflict
from sync_server.services.context import AccessGuard, RequestContext
from sync_server.services.fhir_repository import FhirRepository, ResourceWrite, StoredResource
from sync_server.services.slot_bookings import SlotBookings

#: Attempts at a change whose resource another writer changed under it.
_RETRIES = 3


@dataclass
class _Current:
    version: int | None
    resource: dict[str, Any] | None
    patient_id: str | None


@dataclass
class _Pending:
    index: int
    change: PushChange
    decision: ChangeDecision
    write: ResourceWrite


class _GuardOncePerPush:
    """The caller's `AccessGuard`, asked once per (action, type, patient) in one push.

    A batch of 500 changes usually touches a few patients: asking the guard (a
    query each) for every write would cost more than the writes. Only grants
    are remembered; a denial is asked again, so it is refused every time.
    """

    def __init__(self, guard: AccessGuard) -> None:
        self._guard = guard
        self._granted: set[tuple[str, str, str | None]] = set()

    def authorize(
        self,
        session: Session,
        ctx: RequestContext,
        action: str,
        resource_type: str,
        patient_id: str | None,
    ) -> None:
        key = (action, resource_type, patient_id)
        if key not in self._granted:
            self._guard.authorize(session, ctx, action, resource_type, patient_id)
            self._granted.add(key)

    def visible_location_ids(self, ctx: RequestContext) -> frozenset[str] | None:
        return self._guard.visible_location_ids(ctx)


def push(*, repo: FhirRepository, request: PushRequest) -> list[PushResult]:
    """Results in the order of `request.changes`."""
    repo = FhirRepository(repo.session, repo.ctx, _GuardOncePerPush(repo.guard), repo.audit)
    results: list[PushResult | None] = [None] * len(request.changes)
    hashes = [push_log.change_hash(c) for c in request.changes]
    claimed = push_log.claim(repo, request, hashes)
    answered = push_log.replay(repo, request.changes, hashes, claimed)
    first: dict[str, int] = {}
    todo: list[int] = []
    for index, change in enumerate(request.changes):
        if change.change_id not in claimed:
            results[index] = answered[change.change_id]
        elif change.change_id not in first:
            first[change.change_id] = index
            todo.append(index)
    slots = SlotBookings(repo)
    while todo:  # rounds: a resource changed twice in one batch is changed in order
        this_round: list[int] = []
        later: list[int] = []
        seen: set[tuple[str, str]] = set()
        for index in todo:
            change = request.changes[index]
            target = (change.resourceType, change.id)
            (later if target in seen else this_round).append(index)
            seen.add(target)
        _apply_round(repo, request, this_round, results, slots)
        todo = later
    for index, change in enumerate(request.changes):  # the same change twice in one batch
        if results[index] is None:
            earlier = first[change.change_id]
            same = hashes[earlier] == hashes[index]
            results[index] = results[earlier] if same else push_log.reused_id(change)
    final = [r for r in results if r is not None]
    scheduling.align_pushed_slots(repo, request.changes, final)
    push_log.record(repo, request, final, claimed)
    return final


def _apply_round(
    repo: FhirRepository,
    request: PushRequest,
    indexes: list[int],
    results: list[PushResult | None],
    slots: SlotBookings,
) -> None:
    changes = [request.changes[i] for i in indexes]
    currents = _load_current(repo, changes)
    pending: list[_Pending] = []
    for index, change in zip(indexes, changes, strict=True):
        outcome = _decide(repo, request, change, currents[(change.resourceType, change.id)], slots)
        if isinstance(outcome, PushResult):
            results[index] = outcome
        else:
            pending.append(_Pending(index, change, outcome[0], outcome[1]))
    if not pending:
        return
    try:
        written = repo.write_many([p.write for p in pending])
    except ClinicError:
        for item in pending:  # one SAVEPOINT per change: only the bad one fails
            results[item.index] = _write_one(repo, request, item, slots)
        return
    for item, result in zip(pending, written, strict=True):
        results[item.index] = _answer(item.change, item.decision.status, result.stored)


def _write_one(
    repo: FhirRepository, request: PushRequest, item: _Pending, slots: SlotBookings
) -> PushResult:
    change, decision, write = item.change, item.decision, item.write
    for _ in range(_RETRIES):
        try:
            stored = repo.write_many([write])[0].stored
            return _answer(change, decision.status, stored)
        except VersionConflict:  # written by someone else meanwhile: decide again
            current = _load_current(repo, [change])[(change.resourceType, change.id)]
            outcome = _decide(repo, request, change, current, slots)
            if isinstance(outcome, PushResult):
                return outcome
            decision, write = outcome
        except ValidationFailed as exc:
            if decision.status == "merged":  # the merge is not a valid resource: a person decides
                current = _load_current(repo, [change])[(change.resourceType, change.id)]
                return _conflict(repo, request, change, current, _merge_failed(decision, exc))
            return _rejected(repo, change, exc)
        except ClinicError as exc:
            return _rejected(repo, change, exc)
    return _rejected(repo, change, VersionConflict("The record kept changing; sync again"))


def _decide(
    repo: FhirRepository,
    request: PushRequest,
    change: PushChange,
    current: _Current,
    slots: SlotBookings,
) -> PushResult | tuple[ChangeDecision, ResourceWrite]:
    """The answer when nothing is written, else the decision and the write to make."""
    try:
        client = _client_resource(change)
        if current.version is not None:  # the caller must see what it would merge with
            repo.guard.authorize(
                repo.session, repo.ctx, "read", change.resourceType, current.patient_id
            )
        base = _base_resource(repo, change, current)
    except ClinicError as exc:
        return _rejected(repo, change, exc)
    decision = decide_change(
        change.resourceType,
        client=client,
        base_version=change.base_version,
        current_version=current.version,
        current=current.resource,
        base=base,
    )
    if decision.status == "conflict":
        return _conflict(repo, request, change, current, decision)
    if decision.status == "rejected":
        return _policy_rejected(repo, change, decision)
    if not decision.write:
        return _answer_current(repo, change, current)
    if slots.double_booked(change.resourceType, change.id, decision.resource):
        return _policy_rejected(repo, change, ChangeDecision("rejected", rule=SLOT_DOUBLE_BOOKING))
    write = ResourceWrite(
        change.resourceType,
        change.id,
        None if decision.delete else decision.resource,
        expected_version=current.version or 0,
    )
    return decision, write


def _client_resource(change: PushChange) -> dict[str, Any] | None:
    if change.op == "delete":
        return None
    resource = change.resource or {}
    if resource.get("resourceType") != change.resourceType or resource.get("id", change.id) != (
        change.id
    ):
        raise ValidationFailed(
            "resource does not match the change",
            issues=[(change.resourceType, "resourceType and id must match the change")],
        )
    return {**resource, "id": change.id}


def _base_resource(
    repo: FhirRepository, change: PushChange, current: _Current
) -> dict[str, Any] | None:
    if change.base_version is None or change.base_version == current.version:
        return None
    if current.version is not None and change.base_version > current.version:
        raise ValidationFailed(
            "base version ahead of the server",
            issues=[(change.resourceType, "base_version is newer than the server's version")],
        )
    row = repo._conn.execute(
        "SELECT resource::text FROM resource_versions"
        " WHERE resource_type = %s AND id = %s AND version_id = %s",
        (change.resourceType, change.id, change.base_version),
    ).fetchone()
    return orjson.loads(row[0]) if row is not None and row[0] is not None else None


def _load_current(
    repo: FhirRepository, changes: Sequence[PushChange]
) -> dict[tuple[str, str], _Current]:
    keys = sorted({(c.resourceType, c.id) for c in changes})
    found = {
        (t, i): _Current(v, None if d or j is None else orjson.loads(j), p)
        for t, i, v, d, p, j in repo._conn.execute(
            "SELECT resource_type, id, version_id, deleted, patient_id, resource::text"
            " FROM resources WHERE (resource_type, id) IN"
            " (SELECT * FROM unnest(%s::text[], %s::text[]))",
            ([k[0] for k in keys], [k[1] for k in keys]),
        )
    }
    return {k: found.get(k, _Current(None, None, None)) for k in keys}


def _answer(change: PushChange, status: PushStatus, stored: StoredResource) -> PushResult:
    resource = None if stored.deleted or stored.json is None else orjson.loads(stored.json)
    return PushResult(
        change_id=change.change_id, status=status, versionId=stored.version_id, resource=resource
    )


def _answer_current(repo: FhirRepository, change: PushChange, current: _Current) -> PushResult:
    """A change the server already holds: applied, nothing written."""
    return PushResult(
        change_id=change.change_id,
        status="applied",
        versionId=current.version,
        resource=current.resource,
    )


def _conflict(
    repo: FhirRepository,
    request: PushRequest,
    change: PushChange,
    current: _Current,
    decision: ChangeDecision,
) -> PushResult:
    client = change.resource if change.op == "upsert" else None
    if client is not None:
        try:  # a conflict keeps the client's version whole, so it must be a valid one
            validate_resource(client, expected_type=change.resourceType)
        except ValidationFailed as exc:
            return _rejected(repo, change, exc)
    conflict_id = open_conflict(
        repo,
        request_client=request.client_id,
        change=change,
        decision=decision,
        server_version=current.version,
        server_resource=current.resource,
        patient_id=current.patient_id,
    )
    return PushResult(
        change_id=change.change_id,
        status="conflict",
        versionId=current.version,
        resource=current.resource,
        conflict_id=conflict_id,
        issues=[issue("warning", "conflict", decision.reason or "", p) for p in decision.paths],
    )


def _merge_failed(decision: ChangeDecision, exc: ValidationFailed) -> ChangeDecision:
    paths = tuple(expr for expr, _ in exc.issues if expr) or decision.paths
    return ChangeDecision("conflict", rule=CONCURRENT_EDIT, paths=paths, route=decision.route)


def _policy_rejected(
    repo: FhirRepository, change: PushChange, decision: ChangeDecision
) -> PushResult:
    repo.audit.record(
        repo.session, repo.ctx, action="sync-push", outcome="failure",
        resource_type=change.resourceType, resource_id=change.id, detail={"rule": decision.rule},
    )  # fmt: skip
    return PushResult(
        change_id=change.change_id,
        status="rejected",
        issues=[issue("error", "business-rule", decision.reason or "", change.resourceType)],
    )


def _rejected(repo: FhirRepository, change: PushChange, error: ClinicError) -> PushResult:
    repo.audit.record(
        repo.session, repo.ctx, action="sync-push", outcome="failure",
        resource_type=change.resourceType, resource_id=change.id,
        detail={"error": type(error).__name__},
    )  # fmt: skip
    _, outcome = from_error(error)
    return PushResult(change_id=change.change_id, status="rejected", issues=outcome["issue"])
