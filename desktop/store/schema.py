"""The local cache's tables, one SQL script per schema version.

Version 1: resources (current FHIR JSON as received, server version, dirty
flag), outbox, sync state, conflicts, and the search indexes (FTS5 over patient
names; patient MRN/birth date; observations by patient/code/date;
appointments by day/location/practitioner).
Version 2: `access_log`, chart reads made offline, which reach the server's
audit trail at the next sync; and `resources.remote_version_id`, the newer
server version received while a local edit of that resource was pending.
Version 3: `slot_index`, Slots by schedule and start (the scheduling day and
week views).

Never edit a released script: add a new version in `MIGRATIONS`.
"""

from __future__ import annotations

V1 = """
CREATE TABLE resources (
    resource_type TEXT NOT NULL,
    id            TEXT NOT NULL,
    version_id    INTEGER,            -- server version the local copy is based on
    patient_id    TEXT,               -- owner in the Patient compartment
    json          BLOB NOT NULL,      -- FHIR JSON exactly as received or saved
    dirty         INTEGER NOT NULL DEFAULT 0,
    deleted       INTEGER NOT NULL DEFAULT 0,
    UNIQUE (resource_type, id)
);
CREATE INDEX resources_by_patient ON resources (patient_id, resource_type);
CREATE INDEX resources_dirty ON resources (dirty) WHERE dirty = 1;

CREATE TABLE patient_index (
    rowid        INTEGER PRIMARY KEY,  -- also the rowid of the patient's patient_fts row
    patient_id   TEXT NOT NULL UNIQUE,
    display_name TEXT NOT NULL,
    family       TEXT NOT NULL,
    given        TEXT NOT NULL,
    mrn          TEXT,
    birth_date   TEXT,
    sex          TEXT
);
CREATE INDEX patient_by_mrn ON patient_index (mrn);
CREATE INDEX patient_by_birth_date ON patient_index (birth_date);
CREATE VIRTUAL TABLE patient_fts USING fts5 (
    names, tokenize = 'unicode61 remove_diacritics 2', prefix = '1 2 3'
);

CREATE TABLE observation_index (
    observation_id TEXT NOT NULL,
    patient_id     TEXT NOT NULL,
    code           TEXT NOT NULL,     -- LOINC code of the observation or component
    obs_code       TEXT NOT NULL,     -- LOINC code of the observation itself
    label          TEXT NOT NULL,
    vital          INTEGER NOT NULL,  -- category vital-signs
    effective      TEXT NOT NULL,     -- ISO 8601 instant, UTC
    value          REAL,
    unit           TEXT
);
CREATE INDEX observation_by_patient_code_date
    ON observation_index (patient_id, code, effective);
CREATE INDEX observation_by_patient_vital_date
    ON observation_index (patient_id, vital, effective);
CREATE INDEX observation_by_id ON observation_index (observation_id);

CREATE TABLE appointment_index (
    appointment_id  TEXT PRIMARY KEY,
    day             TEXT,             -- YYYY-MM-DD of the start
    start           TEXT,
    location_id     TEXT,
    practitioner_id TEXT,
    patient_id      TEXT
) WITHOUT ROWID;
CREATE INDEX appointment_by_day_location ON appointment_index (day, location_id);
CREATE INDEX appointment_by_day_practitioner ON appointment_index (day, practitioner_id);
CREATE INDEX appointment_by_patient ON appointment_index (patient_id, start);

CREATE TABLE outbox (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    change_id     TEXT NOT NULL UNIQUE,
    resource_type TEXT NOT NULL,
    id            TEXT NOT NULL,
    op            TEXT NOT NULL CHECK (op IN ('upsert', 'delete')),
    base_version  INTEGER,
    patient_id    TEXT,
    json          BLOB,
    created_at    TEXT NOT NULL,
    attempts      INTEGER NOT NULL DEFAULT 0,
    last_error    TEXT
);

CREATE TABLE sync_state (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;

CREATE TABLE conflicts (
    conflict_id    TEXT PRIMARY KEY,
    resource_type  TEXT NOT NULL,
    id             TEXT NOT NULL,
    patient_id     TEXT,
    status         TEXT NOT NULL,     -- conflict | rejected | out_of_scope
    reason         TEXT NOT NULL,
    change_id      TEXT,
    server_version INTEGER,
    server_json    BLOB,
    local_json     BLOB,
    base_json      BLOB,
    created_at     TEXT NOT NULL,
    resolved_at    TEXT
) WITHOUT ROWID;
CREATE INDEX conflicts_open ON conflicts (resolved_at, created_at);
"""

V2 = """
CREATE TABLE access_log (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    username   TEXT NOT NULL,
    patient_id TEXT NOT NULL,
    action     TEXT NOT NULL,
    at         TEXT NOT NULL
);
ALTER TABLE resources ADD COLUMN remote_version_id INTEGER;
"""

V3 = """
CREATE TABLE slot_index (
    slot_id     TEXT PRIMARY KEY,
    schedule_id TEXT NOT NULL,
    start       TEXT NOT NULL,        -- ISO 8601 instant, UTC
    status      TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX slot_by_schedule_start ON slot_index (schedule_id, start);
INSERT INTO slot_index
    SELECT id, substr(json_extract(CAST(json AS TEXT), '$.schedule.reference'), 10),
           strftime('%Y-%m-%dT%H:%M:%SZ', json_extract(CAST(json AS TEXT), '$.start')),
           coalesce(json_extract(CAST(json AS TEXT), '$.status'), '')
    FROM resources WHERE resource_type = 'Slot' AND deleted = 0
    AND json_extract(CAST(json AS TEXT), '$.schedule.reference') LIKE 'Schedule/%'
    AND json_extract(CAST(json AS TEXT), '$.start') IS NOT NULL
"""

#: Schema version N is reached by running MIGRATIONS[N - 1] on version N - 1.
MIGRATIONS: tuple[str, ...] = (V1, V2, V3)
LATEST_VERSION = len(MIGRATIONS)
