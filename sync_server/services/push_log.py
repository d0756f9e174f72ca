"""The push idempotency log: each `change_id` answered once, and the same way ever after.

Each push first claims its change ids (an INSERT that skips the ids already
present). A concurrent push of the same id waits on the row until the first
one commits, then finds it and replays its answer: a change is never applied
twice, even by two requests at once. The claim is filled with the answer
before the transaction commits.

A row keeps the SHA-256 of the change as sent and the answer's status,
version, conflict id and issues. A replay rebuilds the answer's resource from
`resource_versions` (the version the answer named) and a conflict's base from
`sync_conflicts`, so the log never holds a second copy of either. A rejected
change keeps its payload here: every client version the server did not accept
can be read back. A batch's rows go in one statement, its columns as binary
array parameters (`%b`: no text escaping of every value).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import orjson

from shared_models.merge import canonical
from shared_models.outcomes import issue
from shared_models.sync_messages import PushChange, PushRequest, PushResult
from sync_server.services.fhir_repository import FhirRepository

#: The wire fields of a change, in declaration order (what `model_dump` would give).
_CHANGE_FIELDS = tuple(PushChange.model_fields)


def as_sent(change: PushChange) -> dict[str, Any]:
    """The change as a JSON object. Its values came from the request's JSON, so they
    are JSON values already: no `model_dump(mode="json")` walk through the resource
    (that walk was a tenth of a push's CPU)."""
    return {name: getattr(change, name) for name in _CHANGE_FIELDS}


def change_hash(change: PushChange) -> bytes:
    return hashlib.sha256(canonical(as_sent(change))).digest()


def reused_id(change: PushChange) -> PushResult:
    """The answer to a `change_id` sent again with another payload: never applied."""
    return PushResult(
        change_id=change.change_id,
        status="rejected",
        issues=[
            issue(
                "error",
                "duplicate",
                "This change id was already used for a different change",
                "change_id",
            )
        ],
    )


def replay(
    repo: FhirRepository,
    changes: Sequence[PushChange],
    hashes: Sequence[bytes],
    claimed: set[str],
) -> dict[str, PushResult]:
    """Stored answers for the changes already answered, keyed by `change_id`."""
    by_id: dict[str, tuple[PushChange, bytes]] = {}
    for change, digest in zip(changes, hashes, strict=True):
        if change.change_id not in claimed:
            by_id.setdefault(change.change_id, (change, digest))
    if not by_id:
        return {}
    rows = repo._conn.execute(
        "SELECT change_id, username, request_hash, status, resource_type, resource_id,"
        " version_id, conflict_id, issues::text FROM sync_push_log WHERE change_id = ANY(%s)",
        (list(by_id),),
    ).fetchall()
    wanted = [(r[4], r[5], r[6]) for r in rows if r[6] is not None and r[3] != "rejected"]
    versions = _versions(repo, wanted)
    bases = _conflict_bases(repo, [r[7] for r in rows if r[3] == "conflict" and r[7]])
    answers: dict[str, PushResult] = {}
    for change_id, user, digest, status, rtype, rid, version, conflict_id, issues in rows:
        change, sent = by_id[change_id]
        if user != repo.ctx.username or bytes(digest) != sent:
            answers[change_id] = reused_id(change)
            continue
        answers[change_id] = PushResult(
            change_id=change_id,
            status=status,
            versionId=version,
            resource=versions.get((rtype, rid, version)) if status != "rejected" else None,
            conflict_id=conflict_id,
            issues=orjson.loads(issues),
            base_resource=bases.get(conflict_id) if conflict_id else None,
        )
    return answers


def claim(repo: FhirRepository, request: PushRequest, hashes: Sequence[bytes]) -> set[str]:
    """Claim the change ids this push answers first; returns them (others were answered)."""
    rows: dict[str, tuple[str, bytes, str, str]] = {}
    for change, digest in zip(request.changes, hashes, strict=True):
        rows.setdefault(
            change.change_id, (change.change_id, digest, change.resourceType, change.id)
        )
    if not rows:
        return set()
    columns = [list(c) for c in zip(*sorted(rows.values()), strict=True)]
    claimed = repo._conn.execute(
        "INSERT INTO sync_push_log (change_id, client_id, username, request_hash, status,"
        " resource_type, resource_id, issues) SELECT c, %s, %s, h, 'pending', t, i, '[]'"
        " FROM unnest(%b::text[], %b::bytea[], %b::text[], %b::text[]) AS u(c, h, t, i)"
        " ON CONFLICT (change_id) DO NOTHING RETURNING change_id",
        (request.client_id, repo.ctx.username, *columns),
    ).fetchall()
    return {row[0] for row in claimed}


def record(
    repo: FhirRepository,
    request: PushRequest,
    results: Sequence[PushResult],
    claimed: set[str],
) -> None:
    """Fill the claimed rows with the answers given (first occurrence of each id)."""
    rows: dict[str, tuple[Any, ...]] = {}
    for change, result in zip(request.changes, results, strict=True):
        if change.change_id not in claimed or change.change_id in rows:
            continue
        rejected = result.status == "rejected"
        rows[change.change_id] = (
            change.change_id, result.status, result.versionId, result.conflict_id,
            orjson.dumps(result.issues).decode(),
            orjson.dumps(as_sent(change)).decode() if rejected else None,
        )  # fmt: skip
    if not rows:
        return
    columns = [list(c) for c in zip(*rows.values(), strict=True)]
    repo._conn.execute(
        "UPDATE sync_push_log l SET status = u.s, version_id = u.v, conflict_id = u.k,"
        " issues = u.iss::jsonb, rejected_change = u.rej::jsonb FROM unnest(%b::text[],"
        " %b::text[], %b::int[], %b::text[], %b::text[], %b::text[]) AS u(c, s, v, k, iss, rej)"
        " WHERE l.change_id = u.c",
        columns,
    )


def _conflict_bases(repo: FhirRepository, conflict_ids: Sequence[str]) -> dict[str, Any]:
    """The base version each conflict stored (the push answered with it)."""
    if not conflict_ids:
        return {}
    rows = repo._conn.execute(
        "SELECT id, base_resource::text FROM sync_conflicts WHERE id = ANY(%s)",
        (list(conflict_ids),),
    ).fetchall()
    return {i: orjson.loads(j) for i, j in rows if j is not None}


def _versions(
    repo: FhirRepository, keys: Sequence[tuple[str, str, int]]
) -> dict[tuple[str, str, int], dict[str, Any]]:
    if not keys:
        return {}
    rows = repo._conn.execute(
        "SELECT resource_type, id, version_id, resource::text FROM resource_versions"
        " WHERE (resource_type, id, version_id) IN"
        " (SELECT * FROM unnest(%b::text[], %b::text[], %b::int[]))",
        ([k[0] for k in keys], [k[1] for k in keys], [k[2] for k in keys]),
    ).fetchall()
    return {(t, i, v): orjson.loads(j) for t, i, v, j in rows if j is not None}
