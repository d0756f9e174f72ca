"""Storing resource versions: the SQL behind `FhirRepository` writes.

One call writes a batch of new versions: the upsert of `resources` (guarded by
the previous version, so a concurrent writer is detected), exactly one
`resource_versions` row per version, the search-index rows (replaced) and the
care-site links. The upsert is one statement over binary array parameters
(`%b`: JSON text needs no escaping); small batches send every statement in one
pipelined round trip, big ones use COPY for the history and index rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from psycopg import Connection

from shared_models.errors import NotFound, VersionConflict
from sync_server.db.models import INDEX_TABLES
from sync_server.services.compartment import refresh_care_sites
from sync_server.services.search_params import index_rows

#: Batches at least this big are written with COPY; smaller ones with pipelined INSERTs.
_COPY_THRESHOLD = 50
_VERSION_COLUMNS = (
    "resource_type", "id", "version_id", "last_updated", "deleted", "patient_id", "resource",
)  # fmt: skip
#: The key and value columns of each `search_<kind>` table (also written by `bulk_load`).
INDEX_KEY = ("resource_type", "resource_id", "param", "ordinal")
INDEX_COLUMNS: dict[str, tuple[str, ...]] = {
    "token": ("system", "code"),
    "string": ("value",),
    "date": ("low", "high"),
    "reference": ("target_type", "target_id"),
    "quantity": ("value", "system", "code"),
}


class ResourceGone(NotFound):
    """The resource existed and was deleted (HTTP 410)."""

    user_message = "The record was deleted."


@dataclass(frozen=True)
class StoredResource:
    resource_type: str
    id: str
    version_id: int
    last_updated: datetime
    deleted: bool
    patient_id: str | None
    #: The stored JSON (None for a tombstone): served as is.
    json: bytes | None

    @property
    def etag(self) -> str:
        return f'W/"{self.version_id}"'

    @property
    def location(self) -> str:
        return f"{self.resource_type}/{self.id}/_history/{self.version_id}"

    def resource(self) -> dict[str, Any]:
        if self.json is None:
            raise ResourceGone(f"{self.resource_type} was deleted")
        value: dict[str, Any] = orjson.loads(self.json)
        return value


@dataclass
class PreparedWrite:
    """A validated write: the resource (None deletes) with its id and compartment owner."""

    type: str
    id: str
    resource: dict[str, Any] | None
    expected_version: int | None
    patient_id: str | None


def store_versions(
    conn: Connection[Any], rows: Sequence[tuple[PreparedWrite, StoredResource, bool]]
) -> None:
    """Write new versions: current rows, history rows, search index, care sites.

    `rows` are (prepared write, the version to store, whether the resource existed).
    The caller holds the row locks and the SAVEPOINT.
    """
    version_rows = [
        (s.resource_type, s.id, s.version_id, s.last_updated, s.deleted, s.patient_id,
         s.json.decode() if s.json is not None else None)
        for _, s, _ in rows
    ]  # fmt: skip
    bulk = len(rows) >= _COPY_THRESHOLD
    upsert = conn.cursor()
    # COPY cannot run in a pipeline; small writes send every statement in one round trip.
    with nullcontext() if bulk else conn.pipeline(), conn.cursor() as cur:
        upsert.execute(  # one statement for the batch: no per-row round trip or parse
            "INSERT INTO resources AS cur (resource_type, id, version_id, last_updated,"
            " deleted, patient_id, resource) SELECT t, i, v, lu, d, p, j::jsonb FROM"
            " unnest(%b::text[], %b::text[], %b::int[], %b::timestamptz[], %b::bool[],"
            " %b::text[], %b::text[]) AS u(t, i, v, lu, d, p, j)"
            " ON CONFLICT (resource_type, id) DO UPDATE SET version_id = EXCLUDED.version_id,"
            " last_updated = EXCLUDED.last_updated, deleted = EXCLUDED.deleted,"
            " patient_id = EXCLUDED.patient_id, resource = EXCLUDED.resource"
            " WHERE cur.version_id = EXCLUDED.version_id - 1",
            # binary parameters (%b): arrays of JSON text need no escaping of every quote
            [list(column) for column in zip(*version_rows, strict=True)],
        )
        _insert(cur, "resource_versions", _VERSION_COLUMNS, version_rows, bulk)
        replaced = [(s.resource_type, s.id) for _, s, existed in rows if existed]
        if replaced:
            for table in INDEX_TABLES.values():
                cur.execute(
                    f"DELETE FROM {table} WHERE (resource_type, resource_id) IN"  # noqa: S608
                    " (SELECT * FROM unnest(%b::text[], %b::text[]))",
                    ([k[0] for k in replaced], [k[1] for k in replaced]),
                )
        index: dict[str, list[tuple[Any, ...]]] = {kind: [] for kind in INDEX_TABLES}
        for item, _stored, _ in rows:
            if item.resource is not None:
                for kind, values in index_rows(item.type, item.id, item.resource).items():
                    index[kind].extend(values)
        for kind, values in index.items():
            if values:
                columns = (*INDEX_KEY, *INDEX_COLUMNS[kind])
                _insert(cur, INDEX_TABLES[kind], columns, values, bulk)
        refresh_care_sites(
            conn, [(s.resource_type, s.id, s.patient_id, item.resource) for item, s, _ in rows]
        )
    if upsert.rowcount != len(version_rows):
        raise VersionConflict("The resource was written concurrently; try again")


def _insert(
    cur: Any, table: str, columns: Sequence[str], rows: Sequence[tuple[Any, ...]], bulk: bool
) -> None:
    """COPY for bulk batches; pipelined INSERTs (no extra round trips) for small writes."""
    if bulk:
        with cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        return
    placeholders = ", ".join(["%s"] * len(columns))
    cur.executemany(
        f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({placeholders})",  # noqa: S608
        rows,
    )
