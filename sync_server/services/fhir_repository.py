"""The one FHIR repository: every read, search, write and history goes through here.

Versioning, history, search indexing, care-site links, access checks and audit
happen at this chokepoint, for the REST API, the importer, the demo seed and
the sync engine alike. Each public method asks the `AccessGuard` first and
hands the outcome (success, denial or failure) to the `AuditSink` in the
caller's transaction. Writes run inside a SAVEPOINT, so a failed write leaves
nothing behind but its audit record; the caller commits once per unit of work.

Hot paths use Core SQL on the session's psycopg connection and return the
stored JSON bytes as they are (no parse, no re-validation on reads).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar
from urllib.parse import parse_qsl

import orjson
from psycopg import Connection
from psycopg.errors import UniqueViolation
from sqlalchemy.orm import Session

from shared_models.errors import ClinicError, Forbidden, NotFound, ValidationFailed, VersionConflict
from shared_models.fhir_validation import validate_resource
from shared_models.scheduling import SLOT_BOOKING_CONSTRAINT, SlotUnavailable
from sync_server.services import search as search_service
from sync_server.services.compartment import patient_of
from sync_server.services.context import AccessGuard, AuditSink, RequestContext
from sync_server.services.permissions import signs_physician_note
from sync_server.services.version_store import (
    PreparedWrite,
    ResourceGone,
    StoredResource,
    store_versions,
)

__all__ = [
    "FhirRepository",
    "PreconditionFailed",
    "ResourceGone",
    "ResourceWrite",
    "StoredResource",
    "WriteResult",
    "fhir_instant",
    "new_id",
]

T = TypeVar("T")


class PreconditionFailed(VersionConflict):
    """A conditional request matched more than one resource (HTTP 412)."""


@dataclass(frozen=True)
class ResourceWrite:
    """One write of a batch: `resource` None deletes; `expected_version` is If-Match."""

    resource_type: str
    id: str
    resource: dict[str, Any] | None
    expected_version: int | None = None


@dataclass(frozen=True)
class WriteResult:
    stored: StoredResource
    created: bool
    #: The resource this write stored (meta included), when it wrote one: `stored.json` parsed.
    resource: dict[str, Any] | None = None


def new_id() -> str:
    return str(uuid.uuid4())


def fhir_instant(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class FhirRepository:
    """FHIR create/read/update/delete/history/search for one request context."""

    def __init__(
        self, session: Session, ctx: RequestContext, guard: AccessGuard, audit: AuditSink
    ) -> None:
        self.session = session
        self.ctx = ctx
        self.guard = guard
        self.audit = audit

    # --- plumbing ---------------------------------------------------------------------

    @property
    def _conn(self) -> Connection[Any]:
        conn: Connection[Any] = self.session.connection().connection.driver_connection  # type: ignore[assignment]
        return conn

    def _record(
        self,
        action: str,
        outcome: str,
        resource_type: str | None,
        resource_id: str | None = None,
        patient_ids: list[str] | None = None,
        detail: dict[str, Any] | None = None,
    ) -> None:
        self.audit.record(
            self.session,
            self.ctx,
            action=action,
            outcome=outcome,
            resource_type=resource_type,
            resource_id=resource_id,
            patient_ids=patient_ids,
            detail=detail,
        )

    @contextmanager
    def _audited_failure(
        self, action: str, resource_type: str | None, resource_id: str | None = None
    ) -> Iterator[None]:
        """Record a denial or failure of `action`, then let the error propagate."""
        try:
            yield
        except ClinicError as exc:
            outcome = "denied" if isinstance(exc, Forbidden) else "failure"
            self._record(
                action, outcome, resource_type, resource_id, detail={"error": type(exc).__name__}
            )
            raise

    # --- reads ------------------------------------------------------------------------

    def read(self, resource_type: str, resource_id: str) -> StoredResource:
        """Current version; NotFound when absent, ResourceGone when deleted."""
        with self._audited_failure("read", resource_type, resource_id):
            row = self._conn.execute(
                "SELECT version_id, last_updated, deleted, patient_id, resource::text"
                " FROM resources WHERE resource_type = %s AND id = %s",
                (resource_type, resource_id),
            ).fetchone()
            if row is None:
                raise NotFound(f"{resource_type} not found")
            stored = StoredResource(
                resource_type, resource_id, row[0], row[1], row[2], row[3],
                row[4].encode() if row[4] is not None else None,
            )  # fmt: skip
            self.guard.authorize(self.session, self.ctx, "read", resource_type, stored.patient_id)
            if stored.deleted:
                raise ResourceGone(f"{resource_type} was deleted")
        self._record("read", "success", resource_type, resource_id, _ids(stored.patient_id))
        return stored

    def vread(self, resource_type: str, resource_id: str, version_id: int) -> StoredResource:
        """One version from the history; ResourceGone for a tombstone version."""
        with self._audited_failure("read", resource_type, resource_id):
            row = self._conn.execute(
                "SELECT last_updated, deleted, patient_id, resource::text FROM resource_versions"
                " WHERE resource_type = %s AND id = %s AND version_id = %s",
                (resource_type, resource_id, version_id),
            ).fetchone()
            if row is None:
                raise NotFound(f"{resource_type} version not found")
            stored = StoredResource(
                resource_type, resource_id, version_id, row[0], row[1], row[2],
                row[3].encode() if row[3] is not None else None,
            )  # fmt: skip
            self.guard.authorize(self.session, self.ctx, "read", resource_type, stored.patient_id)
            if stored.deleted:
                raise ResourceGone(f"{resource_type} version is a deletion")
        self._record("read", "success", resource_type, resource_id, _ids(stored.patient_id))
        return stored

    def history(
        self,
        resource_type: str | None,
        resource_id: str | None = None,
        *,
        since: datetime | None = None,
        count: int = 50,
        offset: int = 0,
    ) -> tuple[list[StoredResource], bool]:
        """Versions newest first (instance, type or whole-system history) and whether more exist."""
        with self._audited_failure("read", resource_type, resource_id):
            sql = search_service._Sql()
            where = ["TRUE"]
            if resource_type:
                where.append(f"r.resource_type = {sql.bind(resource_type)}")
            if resource_id:
                where.append(f"r.id = {sql.bind(resource_id)}")
            if since is not None:
                where.append(f"r.last_updated >= {sql.bind(since)}")
            visible = self.guard.visible_location_ids(self.ctx)
            where.append(search_service.visibility_sql(sql, visible, list(self.ctx.break_glass)))
            rows = self._conn.execute(
                "SELECT r.resource_type, r.id, r.version_id, r.last_updated, r.deleted,"  # noqa: S608
                " r.patient_id, r.resource::text FROM resource_versions r"
                f" WHERE {' AND '.join(where)} ORDER BY r.seq DESC"
                f" LIMIT {sql.bind(count + 1)} OFFSET {sql.bind(offset)}",
                sql.params,
            ).fetchall()
            versions = [
                StoredResource(t, i, v, lu, d, p, j.encode() if j is not None else None)
                for t, i, v, lu, d, p, j in rows[:count]
            ]
            for patient in {v.patient_id for v in versions}:
                self.guard.authorize(self.session, self.ctx, "read", resource_type or "", patient)
            if resource_id and not versions and offset == 0:
                raise NotFound(f"{resource_type} not found")
        self._record(
            "read", "success", resource_type, resource_id,
            sorted({v.patient_id for v in versions if v.patient_id}),
        )  # fmt: skip
        return versions, len(rows) > count

    def search(
        self,
        resource_type: str,
        items: Sequence[tuple[str, str]],
        *,
        default_count: int = 50,
        max_count: int = 1000,
        strict: bool = False,
    ) -> search_service.SearchResult:
        """One page of a FHIR search, filtered by what the caller may see."""
        with self._audited_failure("search", resource_type):
            query = search_service.parse_search(
                resource_type,
                items,
                default_count=default_count,
                max_count=max_count,
                strict=strict,
            )
            self.guard.authorize(self.session, self.ctx, "search", resource_type, None)
            result = search_service.run_search(
                self._conn,
                query,
                self.guard.visible_location_ids(self.ctx),
                list(self.ctx.break_glass),
            )
        patients = sorted({r.patient_id for r in result.matches + result.included if r.patient_id})
        self._record(
            "search", "success", resource_type, None, patients, {"count": len(result.matches)}
        )
        return result

    def existing_keys(self, keys: Sequence[tuple[str, str]]) -> set[tuple[str, str]]:
        """Which (type, id) pairs name a current, undeleted resource (reference checks)."""
        if not keys:
            return set()
        rows = self._conn.execute(
            "SELECT resource_type, id FROM resources WHERE NOT deleted AND (resource_type, id) IN"
            " (SELECT * FROM unnest(%s::text[], %s::text[]))",
            ([k[0] for k in keys], [k[1] for k in keys]),
        ).fetchall()
        return {(t, i) for t, i in rows}

    # --- writes -----------------------------------------------------------------------

    def create(self, resource: dict[str, Any], *, if_none_exist: str | None = None) -> WriteResult:
        """Create with a server-assigned UUID (a submitted id is replaced, as FHIR says).

        With `if_none_exist` (a search query string) an existing single match is
        returned instead (created False); several matches -> PreconditionFailed.
        """
        resource_type = _type_of(resource)
        if if_none_exist:
            existing = self.conditional_match(resource_type, if_none_exist)
            if existing is not None:
                return WriteResult(existing, created=False)
        return self.write_version(resource_type, new_id(), resource)

    def conditional_match(self, resource_type: str, query: str) -> StoredResource | None:
        """The one resource matching a search query string, None for none, 412 for several."""

        items = parse_qsl(query.lstrip("?"), keep_blank_values=True)
        result = self.search(resource_type, [*items, ("_count", "2")], strict=True)
        if len(result.matches) > 1:
            raise PreconditionFailed("The condition matches more than one resource")
        if not result.matches:
            return None
        return self.read(resource_type, result.matches[0].id)

    def update(
        self,
        resource_type: str,
        resource_id: str,
        resource: dict[str, Any],
        *,
        expected_version: int | None = None,
    ) -> WriteResult:
        """Update (or create with this id); `expected_version` is If-Match -> VersionConflict."""
        body_id = resource.get("id")
        if body_id is not None and body_id != resource_id:
            raise ValidationFailed(
                "id in the body differs from the URL",
                issues=[(f"{resource_type}.id", "The id must match the id in the URL")],
            )
        return self.write_version(
            resource_type, resource_id, resource, expected_version=expected_version
        )

    def delete(
        self, resource_type: str, resource_id: str, *, expected_version: int | None = None
    ) -> WriteResult:
        """Write a tombstone. Deleting an already deleted resource changes nothing."""
        return self.write_version(
            resource_type, resource_id, None, expected_version=expected_version
        )

    def write_version(
        self,
        resource_type: str,
        resource_id: str,
        resource: dict[str, Any] | None,
        *,
        expected_version: int | None = None,
    ) -> WriteResult:
        """Write one new version (None = tombstone): the primitive the sync engine reuses."""
        write = ResourceWrite(resource_type, resource_id, resource, expected_version)
        return self.write_many([write])[0]

    def write_many(
        self, writes: Sequence[ResourceWrite], *, audited: bool = True
    ) -> list[WriteResult]:
        """Write a batch in one SAVEPOINT: all versions or none. Results keep the input order.

        Each resource is validated once; rows are locked in key order (no deadlocks
        between concurrent batches); every write appends exactly one row to
        `resource_versions` and replaces its search-index and care-site rows.
        `audited=False` leaves the audit record of the outcome, success or
        failure, to the caller (the sync push records one per patient per batch).
        """
        if not writes:
            return []
        keys = [(w.resource_type, w.id) for w in writes]
        if len(set(keys)) != len(keys):
            raise ValidationFailed(
                "the same resource is written twice in one batch",
                issues=[("", "Each resource may appear only once")],
            )
        first = writes[0]
        action = "delete" if first.resource is None else "write"
        with (
            self._audited_failure(
                action, first.resource_type, first.id if len(writes) == 1 else None
            )
            if audited
            else nullcontext()
        ):
            prepared = []
            for position, write in enumerate(writes):
                try:
                    prepared.append(prepare_write(write))
                except ValidationFailed as exc:
                    exc.batch_index = position  # type: ignore[attr-defined]
                    raise
            try:
                with self.session.begin_nested():
                    results = self._write_prepared(prepared)
            except UniqueViolation as exc:  # a slot held twice (migration 0004_scheduling)
                if exc.diag.constraint_name != SLOT_BOOKING_CONSTRAINT:
                    raise
                raise SlotUnavailable("slot already booked") from None
        for result in results if audited else ():
            stored = result.stored
            act = "delete" if stored.deleted else ("create" if result.created else "update")
            self._record(act, "success", stored.resource_type, stored.id, _ids(stored.patient_id))
        return results

    def _write_prepared(self, prepared: list[PreparedWrite]) -> list[WriteResult]:
        conn = self._conn
        order = sorted(range(len(prepared)), key=lambda i: (prepared[i].type, prepared[i].id))
        locked = conn.execute(
            "WITH locked AS (SELECT resource_type, id, version_id, deleted, patient_id"
            " FROM resources WHERE (resource_type, id) IN"
            " (SELECT * FROM unnest(%s::text[], %s::text[]))"
            " ORDER BY resource_type, id FOR UPDATE)"
            " SELECT clock_timestamp(), locked.* FROM (SELECT 1) AS one LEFT JOIN locked ON TRUE",
            ([prepared[i].type for i in order], [prepared[i].id for i in order]),
        ).fetchall()
        # The commit-time stamp: read after the row locks are held, so it orders versions.
        now: datetime = max(row[0] for row in locked)
        current = {(t, i): (v, d, p) for _, t, i, v, d, p in locked if t is not None}
        stamp = fhir_instant(now)
        results: list[WriteResult | None] = [None] * len(prepared)
        rows: list[tuple[PreparedWrite, StoredResource, bool]] = []
        for index, item in enumerate(prepared):
            old = current.get((item.type, item.id))
            old_version, old_deleted, old_patient = old if old else (0, True, None)
            if item.expected_version is not None and item.expected_version != old_version:
                raise VersionConflict(f"{item.type} is at another version than the one edited")
            if item.resource is None:
                if old is None:
                    raise NotFound(f"{item.type} not found")
                self.guard.authorize(self.session, self.ctx, "delete", item.type, old_patient)
                if old_deleted:
                    stored = StoredResource(
                        item.type, item.id, old_version, now, True, old_patient, None
                    )
                    results[index] = WriteResult(stored, created=False)
                    continue
                patient, body = old_patient, None
            else:
                patient = item.patient_id
                creating = old is None or old_deleted
                self.guard.authorize(
                    self.session, self.ctx, "create" if creating else "update", item.type, patient
                )
                if old_patient is not None and old_patient != patient:
                    self.guard.authorize(self.session, self.ctx, "update", item.type, old_patient)
                if signs_physician_note(item.type, item.resource):
                    self.guard.authorize(self.session, self.ctx, "sign", item.type, patient)
                meta = dict(item.resource.get("meta") or {})
                meta["versionId"] = str(old_version + 1)
                meta["lastUpdated"] = stamp
                item.resource["meta"] = meta
                body = orjson.dumps(item.resource)
            stored = StoredResource(
                item.type, item.id, old_version + 1, now, item.resource is None, patient, body
            )
            results[index] = WriteResult(
                stored, created=old is None or bool(old_deleted), resource=item.resource
            )
            rows.append((item, stored, old is not None))
        if rows:
            store_versions(conn, rows)
        return [r for r in results if r is not None]

    def run_unit(self, action: str, resource_type: str | None, fn: Callable[[], T]) -> T:
        """Run `fn` all-or-nothing in a SAVEPOINT; a failure is recorded outside it."""
        with self._audited_failure(action, resource_type), self.session.begin_nested():
            return fn()


_ID_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-.")


def prepare_write(write: ResourceWrite) -> PreparedWrite:
    """Check the id, validate the resource and find its patient (also used by `bulk_load`)."""
    if not write.id or len(write.id) > 64 or not set(write.id) <= _ID_CHARS:
        raise ValidationFailed(
            "invalid id", issues=[(f"{write.resource_type}.id", "Not a valid FHIR id")]
        )
    if write.resource is None:
        return PreparedWrite(write.resource_type, write.id, None, write.expected_version, None)
    resource = dict(write.resource)
    resource["id"] = write.id
    validate_resource(resource, expected_type=write.resource_type)
    patient = patient_of(write.resource_type, write.id, resource)
    return PreparedWrite(write.resource_type, write.id, resource, write.expected_version, patient)


def _type_of(resource: Any) -> str:
    if not isinstance(resource, dict) or not isinstance(resource.get("resourceType"), str):
        raise ValidationFailed(
            "resourceType missing", issues=[("resourceType", "resourceType is required")]
        )
    value: str = resource["resourceType"]
    return value


def _ids(patient_id: str | None) -> list[str]:
    return [patient_id] if patient_id else []
