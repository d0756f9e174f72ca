"""`POST /sync/push`: apply a workstation's batch of offline changes.

Each change is decided by the shared merge rules (`shared_models.merge_policy`)
against the current version and the base version the client edited (read from
`resource_versions`), then written through the one `FhirRepository`, so
versions, search index, care sites and access checks happen there.

Throughput: a batch is handled set-wise. The current rows and the base
versions of all its changes are read with one query each; the writes go to
the repository together (one SAVEPOINT, one COPY per table, each resource
validated once); the conflicts are stored with one COPY. When anything in the
bulk write fails, the writes are replayed one change per SAVEPOINT, so only
the bad change is rejected and the others still apply. The access guard is
asked once per patient, action and type (`access_memo.GrantMemo`).

Audit: one event per patient, action and outcome of a batch, naming its
changes (`push_audit.PushAudit`), with who, when and from which workstation as every
event has; conflicts are audited where they are stored.

Idempotency (`push_log`): the batch's change ids are claimed first; a change
already answered is answered the same way again, the same `change_id` with
another payload is rejected.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from shared_models.errors import ClinicError, Forbidden, ValidationFailed, VersionConflict
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
from sync_server.services.access_memo import GrantMemo
from sync_server.services.conflicts import NewConflict, open_conflicts
from sync_server.services.fhir_repository import FhirRepository, ResourceWrite, WriteResult
from sync_server.services.push_audit import PushAudit
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
    current: _Current
    base_json: str | None
    decision: ChangeDecision
    write: ResourceWrite


@dataclass
class _Push:
    """The state of one push: the caller's repository, its audit and the slots it books."""

    repo: FhirRepository
    request: PushRequest
    audit: PushAudit
    slots: SlotBookings


def push(*, repo: FhirRepository, request: PushRequest) -> list[PushResult]:
    """Results in the order of `request.changes`."""
    repo = FhirRepository(repo.session, repo.ctx, GrantMemo(repo.guard), repo.audit)
    state = _Push(repo, request, PushAudit(request.client_id), SlotBookings(repo))
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
    while todo:  # rounds: a resource changed twice in one batch is changed in order
        this_round: list[int] = []
        later: list[int] = []
        seen: set[tuple[str, str]] = set()
        for index in todo:
            change = request.changes[index]
            target = (change.resourceType, change.id)
            (later if target in seen else this_round).append(index)
            seen.add(target)
        _apply_round(state, this_round, results)
        todo = later
    for index, change in enumerate(request.changes):  # the same change twice in one batch
        if results[index] is None:
            earlier = first[change.change_id]
            same = hashes[earlier] == hashes[index]
            results[index] = results[earlier] if same else push_log.reused_id(change)
    final = [r for r in results if r is not None]
    scheduling.align_pushed_slots(repo, request.changes, final)
    push_log.record(repo, request, final, claimed)
    state.audit.record(repo)
    return final


def _apply_round(state: _Push, indexes: list[int], results: list[PushResult | None]) -> None:
    changes = [state.request.changes[i] for i in indexes]
    currents = _load_current(state.repo, changes)
    bases = _load_bases(state.repo, changes, currents)
    pending: list[_Pending] = []
    conflicting: dict[int, NewConflict] = {}
    for index, change in zip(indexes, changes, strict=True):
        key = (change.resourceType, change.id)
        current, base_json = currents[key], bases.get(key)
        outcome = _decide(state, change, current, base_json)
        if isinstance(outcome, PushResult):
            results[index] = outcome
        elif isinstance(outcome, NewConflict):
            conflicting[index] = outcome
        else:
            pending.append(_Pending(index, change, current, base_json, *outcome))
    stored = _store_conflicts(state, list(conflicting.values()))
    for index, answer in zip(conflicting, stored, strict=True):
        results[index] = answer
    if not pending:
        return
    try:
        written = state.repo.write_many([p.write for p in pending], audited=False)
    except ClinicError:
        for item in pending:  # one SAVEPOINT per change: only the bad one fails
            results[item.index] = _write_one(state, item)
        return
    for item, result in zip(pending, written, strict=True):
        state.audit.written(item.change, result.stored, result.created)
        results[item.index] = _answer(item.change, item.decision.status, result)


def _store_conflicts(state: _Push, conflicts: list[NewConflict]) -> list[PushResult]:
    """Store the conflicts together; the answers in their order."""
    if not conflicts:
        return []
    ids = open_conflicts(state.repo, request_client=state.request.client_id, conflicts=conflicts)
    return [
        PushResult(
            change_id=conflict.change.change_id,
            status="conflict",
            versionId=conflict.server_version,
            resource=conflict.server_resource,
            conflict_id=conflict_id,
            issues=[
                issue("warning", "conflict", conflict.decision.reason or "", p)
                for p in conflict.decision.paths
            ],
            base_resource=None if conflict.base_json is None else orjson.loads(conflict.base_json),
        )
        for conflict, conflict_id in zip(conflicts, ids, strict=True)
    ]


def _write_one(state: _Push, item: _Pending) -> PushResult:
    """One change in its own SAVEPOINT; decided again when another writer got there first."""
    repo, change, decision, write = state.repo, item.change, item.decision, item.write
    current, base_json = item.current, item.base_json
    key = (change.resourceType, change.id)
    for _ in range(_RETRIES):
        try:
            written = repo.write_many([write], audited=False)[0]
            state.audit.written(change, written.stored, written.created)
            return _answer(change, decision.status, written)
        except VersionConflict:  # written by someone else meanwhile: decide again
            current = _load_current(repo, [change])[key]
            base_json = _load_bases(repo, [change], {key: current}).get(key)
            outcome = _decide(state, change, current, base_json)
            if isinstance(outcome, PushResult):
                return outcome
            if isinstance(outcome, NewConflict):
                return _store_conflicts(state, [outcome])[0]
            decision, write = outcome
        except ValidationFailed as exc:
            if decision.status == "merged":  # the merge is not a valid resource: a person decides
                failed = _new_conflict(change, current, _merge_failed(decision, exc), base_json)
                return _store_conflicts(state, [failed])[0]
            return _rejected(state, change, current.patient_id, exc)
        except ClinicError as exc:
            return _rejected(state, change, current.patient_id, exc)
    return _rejected(
        state, change, current.patient_id, VersionConflict("The record kept changing; sync again")
    )


def _decide(
    state: _Push, change: PushChange, current: _Current, base_json: str | None
) -> PushResult | NewConflict | tuple[ChangeDecision, ResourceWrite]:
    """The answer when nothing is written, the conflict to store, or the decision and write."""
    repo = state.repo
    try:
        client = _client_resource(change)
        if current.version is not None:  # the caller must see what it would merge with
            repo.guard.authorize(
                repo.session, repo.ctx, "read", change.resourceType, current.patient_id
            )
        base = _base_resource(change, current, base_json)
    except ClinicError as exc:
        return _rejected(state, change, current.patient_id, exc)
    decision = decide_change(
        change.resourceType,
        client=client,
        base_version=change.base_version,
        current_version=current.version,
        current=current.resource,
        base=base,
    )
    if decision.status == "conflict":
        if change.op == "upsert":
            try:  # a conflict keeps the client's version whole, so it must be a valid one
                validate_resource(change.resource or {}, expected_type=change.resourceType)
            except ValidationFailed as exc:
                return _rejected(state, change, current.patient_id, exc)
        return _new_conflict(change, current, decision, base_json)
    if decision.status == "rejected":
        return _policy_rejected(state, change, current.patient_id, decision)
    if not decision.write:
        return _answer_current(change, current)
    if state.slots.double_booked(change.resourceType, change.id, decision.resource):
        return _policy_rejected(
            state, change, current.patient_id, ChangeDecision("rejected", rule=SLOT_DOUBLE_BOOKING)
        )
    write = ResourceWrite(
        change.resourceType,
        change.id,
        None if decision.delete else decision.resource,
        expected_version=current.version or 0,
    )
    return decision, write


def _new_conflict(
    change: PushChange, current: _Current, decision: ChangeDecision, base_json: str | None
) -> NewConflict:
    if change.base_version is None:
        base_json = None
    elif change.base_version == current.version and current.resource is not None:
        base_json = orjson.dumps(current.resource).decode()  # the base is the current version
    return NewConflict(
        change=change,
        decision=decision,
        server_version=current.version,
        server_resource=current.resource,
        patient_id=current.patient_id,
        base_json=base_json,
    )


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
    change: PushChange, current: _Current, base_json: str | None
) -> dict[str, Any] | None:
    """The version the client edited, when the merge needs it (it differs from current)."""
    if change.base_version is None or change.base_version == current.version:
        return None
    if current.version is not None and change.base_version > current.version:
        raise ValidationFailed(
            "base version ahead of the server",
            issues=[(change.resourceType, "base_version is newer than the server's version")],
        )
    return orjson.loads(base_json) if base_json is not None else None


def _load_current(
    repo: FhirRepository, changes: Sequence[PushChange]
) -> dict[tuple[str, str], _Current]:
    keys = sorted({(c.resourceType, c.id) for c in changes})
    found = {
        (t, i): _Current(v, None if d or j is None else orjson.loads(j), p)
        for t, i, v, d, p, j in repo._conn.execute(
            "SELECT resource_type, id, version_id, deleted, patient_id, resource::text"
            " FROM resources WHERE (resource_type, id) IN"
            " (SELECT * FROM unnest(%b::text[], %b::text[]))",
            ([k[0] for k in keys], [k[1] for k in keys]),
        )
    }
    return {k: found.get(k, _Current(None, None, None)) for k in keys}


def _load_bases(
    repo: FhirRepository,
    changes: Sequence[PushChange],
    currents: dict[tuple[str, str], _Current],
) -> dict[tuple[str, str], str]:
    """The stored JSON of each change's base version, where it is not the current one.

    One query for the batch (each resource appears once per round). A base that
    is the current version needs no read; a base ahead of the server is refused
    in `_base_resource`.
    """
    wanted = [
        (c.resourceType, c.id, c.base_version)
        for c in changes
        if c.base_version is not None and c.base_version != currents[(c.resourceType, c.id)].version
    ]
    if not wanted:
        return {}
    rows = repo._conn.execute(
        "SELECT v.resource_type, v.id, v.resource::text FROM resource_versions v"
        " JOIN unnest(%b::text[], %b::text[], %b::int[]) AS k(t, i, n)"
        " ON v.resource_type = k.t AND v.id = k.i AND v.version_id = k.n"
        " WHERE v.resource IS NOT NULL",
        ([w[0] for w in wanted], [w[1] for w in wanted], [w[2] for w in wanted]),
    ).fetchall()
    return {(t, i): j for t, i, j in rows}


def _answer(change: PushChange, status: PushStatus, written: WriteResult) -> PushResult:
    """The version written (the dict the repository stored: no parse of its JSON)."""
    stored, resource = written.stored, written.resource
    if resource is None and not stored.deleted and stored.json is not None:
        resource = orjson.loads(stored.json)
    return PushResult(
        change_id=change.change_id, status=status, versionId=stored.version_id, resource=resource
    )


def _answer_current(change: PushChange, current: _Current) -> PushResult:
    """A change the server already holds: applied, nothing written."""
    return PushResult(
        change_id=change.change_id,
        status="applied",
        versionId=current.version,
        resource=current.resource,
    )


def _merge_failed(decision: ChangeDecision, exc: ValidationFailed) -> ChangeDecision:
    paths = tuple(expr for expr, _ in exc.issues if expr) or decision.paths
    return ChangeDecision("conflict", rule=CONCURRENT_EDIT, paths=paths, route=decision.route)


def _policy_rejected(
    state: _Push, change: PushChange, patient_id: str | None, decision: ChangeDecision
) -> PushResult:
    state.audit.refused(change, patient_id, f"rule:{decision.rule}", denied=False)
    return PushResult(
        change_id=change.change_id,
        status="rejected",
        issues=[issue("error", "business-rule", decision.reason or "", change.resourceType)],
    )


def _rejected(
    state: _Push, change: PushChange, patient_id: str | None, error: ClinicError
) -> PushResult:
    denied = isinstance(error, Forbidden)
    state.audit.refused(change, patient_id, f"error:{type(error).__name__}", denied=denied)
    _, outcome = from_error(error)
    return PushResult(change_id=change.change_id, status="rejected", issues=outcome["issue"])
