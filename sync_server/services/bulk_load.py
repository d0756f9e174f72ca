"""Bulk loading for `ehr-server import`: many resources per statement, one commit per chunk.

The per-resource path (`FhirRepository.write_many`) stores a version with an
upsert per row; an import of thousands of resources spends most of its time
there. This module stores exactly the same rows (`resources`, one
`resource_versions` row per version, search-index rows, care-site links, the
same `meta.versionId`/`meta.lastUpdated`, the same guard checks and audit
calls) with set-based SQL: the new versions are COPYed once into a temporary
staging table and go to `resources` and `resource_versions` with one
`INSERT ... SELECT` each; index rows and care-site links are COPYed.

Work is split so the expensive part runs where the caller likes (in a worker
process with `--workers N`): `prepare()` validates one resource and extracts
its patient, index rows and care sites, touching no database; `load()` writes
a list of prepared resources in the caller's transaction. Anything `load()`
cannot do set-based (a resource twice in one chunk, a concurrent writer, a
slot booked twice) raises, and the importer redoes that chunk through the
repository, resource by resource.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from psycopg import Connection
from sqlalchemy.orm import Session

from shared_models.errors import ValidationFailed, VersionConflict
from sync_server.db.models import INDEX_TABLES
from sync_server.services.compartment import CARE_SITE_PARAMS, care_site_location_ids
from sync_server.services.context import AccessGuard, AuditSink, RequestContext
from sync_server.services.fhir_repository import ResourceWrite, fhir_instant, prepare_write
from sync_server.services.permissions import signs_physician_note
from sync_server.services.search_params import IndexRows, index_rows
from sync_server.services.version_store import INDEX_COLUMNS, INDEX_KEY

_STAGE = "bulk_stage"
_STAGE_COLUMNS = ("ord", "resource_type", "id", "version_id", "last_updated", "patient_id",
                  "resource")  # fmt: skip


@dataclass(frozen=True)
class BulkItem:
    """One validated resource, ready to store: everything but its version number."""

    type: str
    id: str
    resource: dict[str, Any]
    patient_id: str | None
    index: IndexRows
    #: Locations an Encounter or Appointment names (care-site links), sorted.
    care_sites: tuple[str, ...]


def prepare(write: ResourceWrite) -> BulkItem:
    """Validate one write (as the repository does) and extract what gets indexed.

    Raises `ValidationFailed` naming the element, like the per-resource path.
    """
    if write.resource is None:
        raise ValidationFailed("an import cannot delete", issues=[("", "A resource is required")])
    prepared = prepare_write(write)
    assert prepared.resource is not None
    sites: tuple[str, ...] = ()
    if prepared.patient_id is not None and write.resource_type in CARE_SITE_PARAMS:
        sites = tuple(sorted(care_site_location_ids(write.resource_type, prepared.resource)))
    return BulkItem(
        prepared.type,
        prepared.id,
        prepared.resource,
        prepared.patient_id,
        index_rows(prepared.type, prepared.id, prepared.resource),
        sites,
    )


def load(
    session: Session,
    ctx: RequestContext,
    guard: AccessGuard,
    audit: AuditSink,
    items: Sequence[BulkItem],
) -> None:
    """Store one new version of each item in the session's transaction (caller commits).

    Raises `ValidationFailed` for a resource twice in `items` and `VersionConflict`
    when a concurrent writer got there first; the caller then takes the slow path.
    """
    if not items:
        return
    keys = [(i.type, i.id) for i in items]
    if len(set(keys)) != len(keys):
        raise ValidationFailed(
            "the same resource is written twice in one batch",
            issues=[("", "Each resource may appear only once")],
        )
    conn: Connection[Any] = session.connection().connection.driver_connection  # type: ignore[assignment]
    now, current = _lock(conn, sorted(keys))
    stamp = fhir_instant(now)
    staged: list[tuple[Any, ...]] = []
    replaced: list[tuple[str, str]] = []
    actions: list[str] = []
    for ordinal, item in enumerate(items):
        old_version, old_deleted, old_patient = current.get((item.type, item.id), (0, True, None))
        actions.append("create" if old_deleted else "update")  # over a tombstone: create
        guard.authorize(session, ctx, actions[-1], item.type, item.patient_id)
        if old_patient is not None and old_patient != item.patient_id:
            guard.authorize(session, ctx, "update", item.type, old_patient)
        if signs_physician_note(item.type, item.resource):
            guard.authorize(session, ctx, "sign", item.type, item.patient_id)
        meta = dict(item.resource.get("meta") or {})
        meta["versionId"] = str(old_version + 1)
        meta["lastUpdated"] = stamp
        item.resource["meta"] = meta
        body = orjson.dumps(item.resource).decode()
        staged.append((ordinal, item.type, item.id, old_version + 1, now, item.patient_id, body))
        if old_version:
            replaced.append((item.type, item.id))
    _store(conn, staged, replaced, items)
    for item, action in zip(items, actions, strict=True):
        audit.record(
            session, ctx, action=action, outcome="success", resource_type=item.type,
            resource_id=item.id, patient_ids=[item.patient_id] if item.patient_id else [],
        )  # fmt: skip


def _lock(
    conn: Connection[Any], keys: list[tuple[str, str]]
) -> tuple[datetime, dict[tuple[str, str], tuple[int, bool, str | None]]]:
    """Lock the existing rows in key order; the stamp is read after the locks are held."""
    rows = conn.execute(
        "WITH locked AS (SELECT resource_type, id, version_id, deleted, patient_id"
        " FROM resources WHERE (resource_type, id) IN"
        " (SELECT * FROM unnest(%b::text[], %b::text[]))"
        " ORDER BY resource_type, id FOR UPDATE)"
        " SELECT clock_timestamp(), locked.* FROM (SELECT 1) AS one LEFT JOIN locked ON TRUE",
        ([k[0] for k in keys], [k[1] for k in keys]),
    ).fetchall()
    now: datetime = max(row[0] for row in rows)
    return now, {(t, i): (v, d, p) for _, t, i, v, d, p in rows if t is not None}


def _store(
    conn: Connection[Any],
    staged: list[tuple[Any, ...]],
    replaced: list[tuple[str, str]],
    items: Sequence[BulkItem],
) -> None:
    with conn.cursor() as cur:
        cur.execute(
            f"CREATE TEMP TABLE IF NOT EXISTS {_STAGE} (ord integer, resource_type text,"
            " id text, version_id integer, last_updated timestamptz, patient_id text,"
            " resource jsonb) ON COMMIT DELETE ROWS"
        )
        _copy(cur, _STAGE, _STAGE_COLUMNS, staged)
        cur.execute(
            "INSERT INTO resources AS cur (resource_type, id, version_id, last_updated,"  # noqa: S608
            " deleted, patient_id, resource) SELECT resource_type, id, version_id,"
            f" last_updated, FALSE, patient_id, resource FROM {_STAGE}"
            " ON CONFLICT (resource_type, id) DO UPDATE SET version_id = EXCLUDED.version_id,"
            " last_updated = EXCLUDED.last_updated, deleted = EXCLUDED.deleted,"
            " patient_id = EXCLUDED.patient_id, resource = EXCLUDED.resource"
            " WHERE cur.version_id = EXCLUDED.version_id - 1"
        )
        if cur.rowcount != len(staged):
            raise VersionConflict("The resource was written concurrently; try again")
        cur.execute(
            "INSERT INTO resource_versions (resource_type, id, version_id, last_updated,"  # noqa: S608
            " deleted, patient_id, resource) SELECT resource_type, id, version_id,"
            f" last_updated, FALSE, patient_id, resource FROM {_STAGE} ORDER BY ord"
        )
        if replaced:
            types, ids = [k[0] for k in replaced], [k[1] for k in replaced]
            for table in INDEX_TABLES.values():
                cur.execute(
                    f"DELETE FROM {table} WHERE (resource_type, resource_id) IN"  # noqa: S608
                    " (SELECT * FROM unnest(%b::text[], %b::text[]))",
                    (types, ids),
                )
        for kind, table in INDEX_TABLES.items():
            rows = [row for item in items for row in item.index[kind]]
            if rows:
                _copy(cur, table, (*INDEX_KEY, *INDEX_COLUMNS[kind]), rows)
        _care_sites(cur, items)


def _care_sites(cur: Any, items: Sequence[BulkItem]) -> None:
    """Replace the care-site links of the Encounters and Appointments written."""
    sources = [(i.type, i.id) for i in items if i.type in CARE_SITE_PARAMS]
    if not sources:
        return
    cur.execute(
        "DELETE FROM patient_locations WHERE (source_type, source_id) IN"
        " (SELECT * FROM unnest(%b::text[], %b::text[]))",
        ([s[0] for s in sources], [s[1] for s in sources]),
    )
    links = [(i.type, i.id, site, i.patient_id) for i in items for site in i.care_sites]
    if links:
        _copy(cur, "patient_locations", ("source_type", "source_id", "location_id", "patient_id"),
              links)  # fmt: skip


def _copy(cur: Any, table: str, columns: Sequence[str], rows: Sequence[tuple[Any, ...]]) -> None:
    with cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)
