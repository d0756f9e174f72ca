"""The resource table and its index rows: write, read and query the local cache.

Functions take a connection inside the caller's transaction, so a resource,
its index rows and its outbox row commit together.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from desktop.store import indexing
from desktop.store.database import Connection


@dataclass(frozen=True)
class PatientSummary:
    """One row of a patient search result."""

    patient_id: str
    display_name: str
    birth_date: str | None
    sex: str | None
    mrn: str | None


@dataclass(frozen=True)
class StoredResource:
    resource_type: str
    id: str
    #: Server version the local copy is based on (None: never on the server).
    version_id: int | None
    patient_id: str | None
    json: bytes
    dirty: bool
    #: A newer server version received while a local edit was pending.
    remote_version_id: int | None = None

    def parsed(self) -> dict[str, Any]:
        value: dict[str, Any] = orjson.loads(self.json)
        return value


_COLUMNS = "resource_type, id, version_id, patient_id, json, dirty, remote_version_id"


def _stored(row: Sequence[Any]) -> StoredResource:
    return StoredResource(
        resource_type=row[0],
        id=row[1],
        version_id=row[2],
        patient_id=row[3],
        json=bytes(row[4]),
        dirty=bool(row[5]),
        remote_version_id=row[6],
    )


def get(conn: Connection, resource_type: str, resource_id: str) -> StoredResource | None:
    row = conn.execute(
        f"SELECT {_COLUMNS} FROM resources WHERE resource_type = ? AND id = ? AND deleted = 0",  # noqa: S608 - constant column list, values bound
        (resource_type, resource_id),
    ).fetchone()
    return _stored(row) if row else None


def for_patient(
    conn: Connection, patient_id: str, resource_types: Iterable[str]
) -> list[StoredResource]:
    types = list(resource_types)
    marks = ",".join("?" * len(types))
    rows = conn.execute(
        f"SELECT {_COLUMNS} FROM resources WHERE patient_id = ? AND resource_type IN ({marks})"  # noqa: S608 - constant column list, values bound
        " AND deleted = 0",
        (patient_id, *types),
    ).fetchall()
    return [_stored(r) for r in rows]


def put(
    conn: Connection,
    resource: dict[str, Any],
    raw_json: bytes,
    *,
    version_id: int | None,
    dirty: bool,
) -> str | None:
    """Insert or replace one resource and its index rows; returns its patient id."""
    return put_many(conn, [(resource, raw_json, version_id)], dirty=dirty)[0]


def put_many(
    conn: Connection,
    items: Sequence[tuple[dict[str, Any], bytes, int | None]],
    *,
    dirty: bool,
) -> list[str | None]:
    """Insert or replace resources (parsed, raw JSON, server version) with their index rows.

    Returns each resource's patient id.
    """
    batch = prepare(items, dirty=dirty)
    write(conn, batch)
    return batch.patient_ids


@dataclass(frozen=True)
class PreparedBatch:
    """The rows of a batch of resources, extracted and encoded without the database.

    Preparing is pure Python (most of a pull page's CPU time), so the sync can
    prepare the next page on another thread while this one is written. The rows
    are also encoded here as the parameters of ONE statement per table (`write`):
    SQLite then stores a whole page with the GIL released, instead of taking the
    GIL back after every row as `executemany` does. With another thread busy in
    Python (the page being prepared), every one of those hand-backs waits for the
    interpreter's switch interval: measured, `executemany` of a 5,000-row page ran
    12x slower beside a busy thread, the one statement 1.6x.
    """

    patient_ids: list[str | None]
    #: `resources` rows of the last item of each key (a batch may carry several versions).
    rows: list[tuple[Any, ...]]
    index: _IndexRows
    #: `rows` as a JSON array of [type, id, version, patient, offset, length] ...
    listing: str
    #: ... where offset/length (1-based, SQL `substr`) place each JSON in this one blob.
    documents: bytes
    dirty: bool


def prepare(
    items: Sequence[tuple[dict[str, Any], bytes, int | None]], *, dirty: bool
) -> PreparedBatch:
    """Resource and index rows of `items` (parsed, raw JSON, server version)."""
    keys = [(r["resourceType"], r["id"]) for r, _, _ in items]
    last = {key: position for position, key in enumerate(keys)}
    rows: list[tuple[Any, ...]] = []
    listing: list[tuple[Any, ...]] = []
    documents: list[bytes] = []
    offset = 1
    index = _IndexRows()
    patient_ids: list[str | None] = []
    flag = int(dirty)
    for position, (resource, raw_json, version_id) in enumerate(items):
        key = keys[position]
        patient_id = indexing.patient_of(resource)
        patient_ids.append(patient_id)
        if last[key] == position:
            rows.append((key[0], key[1], version_id, patient_id, raw_json, flag))
            listing.append((key[0], key[1], version_id, patient_id, offset, len(raw_json)))
            documents.append(raw_json)
            offset += len(raw_json)
            index.add(resource, patient_id)
    return PreparedBatch(patient_ids, rows, index, _json_text(listing), b"".join(documents), dirty)


def write(conn: Connection, batch: PreparedBatch) -> None:
    """Store a prepared batch: one statement per table (the sync pull's hot path)."""
    if not batch.rows:
        return
    existing = conn.execute(
        "SELECT r.resource_type, r.id FROM jsonb_each(?) k CROSS JOIN resources r"
        " ON r.resource_type = k.value ->> 0 AND r.id = k.value ->> 1",
        (batch.listing,),
    ).fetchall()
    for rtype, rid in existing:
        drop_index_rows(conn, rtype, rid)
    conn.execute(
        "INSERT INTO resources (resource_type, id, version_id, patient_id, json, dirty, deleted,"
        " remote_version_id) SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3,"
        " substr(?2, value ->> 4, value ->> 5), ?3, 0, NULL FROM jsonb_each(?1) WHERE true"
        " ON CONFLICT (resource_type, id) DO UPDATE SET version_id = excluded.version_id,"
        " patient_id = excluded.patient_id, json = excluded.json, dirty = excluded.dirty,"
        " deleted = 0, remote_version_id = NULL",
        (batch.listing, batch.documents, int(batch.dirty)),
    )
    batch.index.write(conn)


class _IndexRows:
    """Index rows collected for one batch, written with one statement per table."""

    def __init__(self) -> None:
        self.patients: list[tuple[Any, ...]] = []
        self.names: list[str] = []
        self.observations: list[tuple[Any, ...]] = []
        self.appointments: list[tuple[Any, ...]] = []
        self.slots: list[tuple[Any, ...]] = []

    def add(self, resource: dict[str, Any], patient_id: str | None) -> None:
        rtype = resource["resourceType"]
        if rtype == "Patient":
            row = indexing.patient_row(resource)
            if row is not None:
                self.patients.append(
                    (row.patient_id, row.display_name, row.family, row.given, row.mrn,
                     row.birth_date, row.sex)
                )  # fmt: skip
                self.names.append(indexing.all_names(resource))
        elif rtype == "Observation":
            self.observations += [
                (r.observation_id, r.patient_id, r.code, r.obs_code, r.label, int(r.vital),
                 r.effective, r.value, r.unit)
                for r in indexing.observation_rows(resource, patient_id)
            ]  # fmt: skip
        elif rtype == "Appointment":
            appt = indexing.appointment_row(resource)
            if appt is not None:
                self.appointments.append(
                    (appt.appointment_id, appt.day, appt.start, appt.location_id,
                     appt.practitioner_id, appt.patient_id)
                )  # fmt: skip
        elif rtype == "Slot":
            schedule = indexing.reference_id(resource.get("schedule"), "Schedule")
            start = indexing.instant(resource.get("start"))
            if schedule and start:
                self.slots.append(
                    (resource["id"], schedule, start, str(resource.get("status", "")))
                )

    def write(self, conn: Connection) -> None:
        if self.patients:
            # The FTS row shares the rowid of the patient_index row; both are given here.
            first = conn.execute("SELECT coalesce(max(rowid), 0) + 1 FROM patient_index")
            start = int(first.fetchone()[0])
            _insert_all(
                conn,
                "INSERT INTO patient_index (rowid, patient_id, display_name, family, given, mrn,"
                " birth_date, sex) SELECT ?2 + key, value ->> 0, value ->> 1, value ->> 2,"
                " value ->> 3, value ->> 4, value ->> 5, value ->> 6 FROM jsonb_each(?1)",
                self.patients,
                start,
            )
            _insert_all(
                conn,
                "INSERT INTO patient_fts (rowid, names) SELECT ?2 + key, value FROM jsonb_each(?1)",
                self.names,
                start,
            )
        _insert_all(
            conn,
            "INSERT INTO observation_index SELECT value ->> 0, value ->> 1, value ->> 2,"
            " value ->> 3, value ->> 4, value ->> 5, value ->> 6, value ->> 7, value ->> 8"
            " FROM jsonb_each(?1)",
            self.observations,
        )
        _insert_all(
            conn,
            "INSERT OR REPLACE INTO appointment_index SELECT value ->> 0, value ->> 1,"
            " value ->> 2, value ->> 3, value ->> 4, value ->> 5 FROM jsonb_each(?1)",
            self.appointments,
        )
        _insert_all(
            conn,
            "INSERT OR REPLACE INTO slot_index SELECT value ->> 0, value ->> 1, value ->> 2,"
            " value ->> 3 FROM jsonb_each(?1)",
            self.slots,
        )


def _insert_all(conn: Connection, sql: str, rows: Sequence[Any], *args: Any) -> None:
    """Run `sql` once with `rows` as one JSON array (`?1`): see `PreparedBatch`."""
    if rows:
        conn.execute(sql, (_json_text(rows), *args))


def _json_text(rows: Sequence[Any]) -> str:
    """`rows` as JSON text for `jsonb_each`: a str, since SQLite reads a BLOB as JSONB."""
    return orjson.dumps(rows).decode()


def drop_index_rows(conn: Connection, resource_type: str, resource_id: str) -> None:
    if resource_type == "Patient":
        conn.execute(
            "DELETE FROM patient_fts WHERE rowid IN"
            " (SELECT rowid FROM patient_index WHERE patient_id = ?)",
            (resource_id,),
        )
        conn.execute("DELETE FROM patient_index WHERE patient_id = ?", (resource_id,))
    elif resource_type == "Observation":
        conn.execute("DELETE FROM observation_index WHERE observation_id = ?", (resource_id,))
    elif resource_type == "Appointment":
        conn.execute("DELETE FROM appointment_index WHERE appointment_id = ?", (resource_id,))
    elif resource_type == "Slot":
        conn.execute("DELETE FROM slot_index WHERE slot_id = ?", (resource_id,))


def mark_deleted(conn: Connection, resource_type: str, resource_id: str, *, dirty: bool) -> None:
    """A local delete: the row stays as a tombstone until the server accepts it."""
    conn.execute(
        "UPDATE resources SET deleted = 1, dirty = ? WHERE resource_type = ? AND id = ?",
        (int(dirty), resource_type, resource_id),
    )
    drop_index_rows(conn, resource_type, resource_id)


def remove(conn: Connection, resource_type: str, resource_id: str) -> None:
    conn.execute(
        "DELETE FROM resources WHERE resource_type = ? AND id = ?", (resource_type, resource_id)
    )
    drop_index_rows(conn, resource_type, resource_id)


# -- queries ---------------------------------------------------------------------------------

_SUMMARY = "p.patient_id, p.display_name, p.birth_date, p.sex, p.mrn"


def _summaries(rows: Iterable[Sequence[Any]]) -> list[PatientSummary]:
    return [PatientSummary(*row) for row in rows]


def patients_by_mrn(conn: Connection, mrn: str, limit: int) -> list[PatientSummary]:
    rows = conn.execute(
        f"SELECT {_SUMMARY} FROM patient_index p WHERE p.mrn = ? LIMIT ?",  # noqa: S608 - constant column list, values bound
        (mrn, limit),
    ).fetchall()
    return _summaries(rows)


def patients_by_birth_date(conn: Connection, birth_date: str, limit: int) -> list[PatientSummary]:
    rows = conn.execute(
        f"SELECT {_SUMMARY} FROM patient_index p WHERE p.birth_date = ?"  # noqa: S608 - constant column list, values bound
        " ORDER BY p.display_name LIMIT ?",
        (birth_date, limit),
    ).fetchall()
    return _summaries(rows)


def patients_by_name_prefixes(
    conn: Connection, prefixes: Sequence[str], limit: int
) -> list[PatientSummary]:
    """Patients with a name part starting with every one of `prefixes`."""
    query = " AND ".join('"' + p.replace('"', '""') + '"*' for p in prefixes)
    rows = conn.execute(
        f"SELECT {_SUMMARY} FROM patient_fts f JOIN patient_index p ON p.rowid = f.rowid"  # noqa: S608 - constant column list, values bound
        " WHERE patient_fts MATCH ? ORDER BY p.display_name LIMIT ?",
        (query, limit),
    ).fetchall()
    return _summaries(rows)


def patient_summary(conn: Connection, patient_id: str) -> PatientSummary | None:
    rows = conn.execute(
        f"SELECT {_SUMMARY} FROM patient_index p WHERE p.patient_id = ?",  # noqa: S608 - constant column list, values bound
        (patient_id,),
    ).fetchall()
    found = _summaries(rows)
    return found[0] if found else None


def vital_rows(conn: Connection, patient_id: str, since: str) -> list[indexing.ObservationRow]:
    """Vital-sign index rows of a patient since an instant, newest first."""
    rows = conn.execute(
        "SELECT observation_id, patient_id, code, obs_code, label, vital, effective, value, unit"
        " FROM observation_index WHERE patient_id = ? AND vital = 1 AND effective >= ?"
        " ORDER BY effective DESC, observation_id, rowid",
        (patient_id, since),
    ).fetchall()
    return [indexing.ObservationRow(*r) for r in rows]


def upcoming_appointment_ids(conn: Connection, patient_id: str, since: str) -> list[str]:
    rows = conn.execute(
        "SELECT appointment_id FROM appointment_index WHERE patient_id = ? AND start >= ?"
        " ORDER BY start",
        (patient_id, since),
    ).fetchall()
    return [r[0] for r in rows]


def appointment_ids_on(
    conn: Connection,
    day: str,
    *,
    location_id: str | None = None,
    practitioner_id: str | None = None,
) -> list[str]:
    """Appointments starting on `day` (UTC date), at a location and/or with a practitioner."""
    sql = "SELECT appointment_id FROM appointment_index WHERE day = ?"
    args: list[Any] = [day]
    if location_id is not None:
        sql += " AND location_id = ?"
        args.append(location_id)
    if practitioner_id is not None:
        sql += " AND practitioner_id = ?"
        args.append(practitioner_id)
    return [r[0] for r in conn.execute(sql + " ORDER BY start", args).fetchall()]
