"""A pull page stored with one statement per table keeps every value exactly.

`resources.write` hands SQLite each table's rows as one JSON array (and the
resources' JSON end to end in one blob) instead of binding row by row; these
tests read the store back and compare it, value and SQL type, with what the
extraction produced, including text JSON escapes and unusual numbers.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from desktop_store_helpers import synthea_resources

from desktop.store import resources
from desktop.store.database import ChartDatabase, Connection
from desktop.store.keyslots import new_key
from desktop.store.remote_changes import apply_remote_page, prepare_wire

TRICKY = 'O\'Brien "Bee" \\ back/slash \u00e9\u00e8 \u4e2d\u6587 \U0001f600 tab\there'


@pytest.fixture
def db(tmp_path: Path) -> Iterator[ChartDatabase]:
    database = ChartDatabase(tmp_path / "chart.db", new_key())
    yield database
    database.close()


def wire(resource: dict[str, Any], version: int | None) -> dict[str, Any]:
    return {"resourceType": resource["resourceType"], "id": resource["id"],
            "versionId": version, "deleted": False, "resource": resource}  # fmt: skip


def patient(pid: str, family: str) -> dict[str, Any]:
    return {"resourceType": "Patient", "id": pid, "gender": "female", "birthDate": "1970-01-02",
            "name": [{"use": "official", "family": family, "given": [TRICKY, "Ana"]}],
            "identifier": [{"type": {"coding": [{"code": "MR"}]},
                            "value": f"MRN-{pid}"}]}  # fmt: skip


def blood_pressure(oid: str, pid: str, systolic: Any, diastolic: Any) -> dict[str, Any]:
    def part(code: str, value: Any) -> dict[str, Any]:
        return {"code": {"coding": [{"system": "http://loinc.org", "code": code}]},
                "valueQuantity": {"value": value, "unit": "mm[Hg]"}}  # fmt: skip

    return {"resourceType": "Observation", "id": oid, "status": "final",
            "category": [{"coding": [{"code": "vital-signs"}]}],
            "code": {"coding": [{"system": "http://loinc.org", "code": "85354-9"}],
                     "text": TRICKY},
            "subject": {"reference": f"Patient/{pid}"},
            "effectiveDateTime": "2020-03-04T05:06:07+02:00",
            "component": [part("8480-6", systolic), part("8462-4", diastolic)]}  # fmt: skip


def condition(cid: str, pid: str) -> dict[str, Any]:
    return {"resourceType": "Condition", "id": cid, "subject": {"reference": f"Patient/{pid}"},
            "code": {"text": TRICKY}}  # fmt: skip


def table(conn: Connection, sql: str) -> list[tuple[Any, ...]]:
    return [tuple(row) for row in conn.execute(sql).fetchall()]


def test_every_value_and_type_is_stored_as_extracted(db: ChartDatabase) -> None:
    charts = [
        patient("12345", TRICKY),  # an id that looks like a number stays text
        blood_pressure("o1", "12345", 120, 80.5),  # an int and a float value
        blood_pressure("o2", "12345", None, 1e-7),  # no value, a tiny one
        condition("c1", "12345"),
    ]
    page = prepare_wire([wire(r, None if r["id"] == "c1" else 7) for r in charts])
    assert apply_remote_page(db, page, "c1").applied == len(charts)
    conn = db.connection()

    stored = table(conn, "SELECT resource_type, id, version_id, patient_id, json, dirty,"
                         " typeof(id), typeof(json) FROM resources ORDER BY rowid")  # fmt: skip
    assert stored == [(*row, "text", "blob") for row in page.upserts.rows]
    assert [orjson.loads(row[4]) for row in stored] == charts

    observations = table(conn, "SELECT *, typeof(value) FROM observation_index ORDER BY rowid")
    extracted = page.upserts.index.observations
    assert [row[:-1] for row in observations] == [
        (*row[:7], None if row[7] is None else float(row[7]), row[8]) for row in extracted
    ]
    assert [row[-1] for row in observations] == ["null", "real", "real", "null", "null", "real"]
    assert observations[0][4] == TRICKY and observations[0][6] == "2020-03-04T03:06:07Z"

    patients = table(conn, "SELECT patient_id, display_name, family, given, mrn, birth_date, sex"
                           " FROM patient_index")  # fmt: skip
    assert patients == page.upserts.index.patients
    found = resources.patients_by_name_prefixes(conn, ["bee", "ana"], 5)
    assert [p.patient_id for p in found] == ["12345"]


def test_a_later_page_replaces_the_index_rows_of_what_it_updates(db: ChartDatabase) -> None:
    first = [wire(patient("p1", "Okafor"), 1), wire(blood_pressure("o1", "p1", 120, 80), 1)]
    apply_remote_page(db, prepare_wire(first), "a")
    changed = blood_pressure("o1", "p1", 130, 85)
    changed["component"] = changed["component"][:1]
    apply_remote_page(db, prepare_wire([wire(patient("p1", "Mensah"), 2), wire(changed, 2)]), "b")
    conn = db.connection()
    rows = table(conn, "SELECT code, value FROM observation_index ORDER BY rowid")
    assert rows == [("85354-9", None), ("8480-6", 130.0)]
    assert not resources.patients_by_name_prefixes(conn, ["okafor"], 5)
    assert [p.patient_id for p in resources.patients_by_name_prefixes(conn, ["mensah"], 5)] == [
        "p1"
    ]
    assert table(conn, "SELECT count(*) FROM patient_index") == [(1,)]


def test_a_synthea_page_in_one_statement_matches_resource_by_resource_saves(
    shared_data: Path, tmp_path: Path
) -> None:
    """The bulk path against single `resources.put` calls in their own transactions."""
    charts, _ = synthea_resources(shared_data, 3)
    bulk = ChartDatabase(tmp_path / "bulk.db", new_key())
    single = ChartDatabase(tmp_path / "single.db", new_key())
    try:
        apply_remote_page(bulk, prepare_wire([wire(r, 1) for r in charts]), "c")
        for resource in charts:
            with single.transaction() as conn:
                resources.put(conn, resource, orjson.dumps(resource), version_id=1, dirty=False)
        for sql in (
            "SELECT resource_type, id, version_id, patient_id, json FROM resources ORDER BY 1, 2",
            "SELECT * FROM observation_index ORDER BY observation_id, code, effective, label",
            "SELECT patient_id, display_name, mrn, birth_date FROM patient_index ORDER BY 1",
            "SELECT * FROM appointment_index ORDER BY 1",
        ):
            assert table(bulk.connection(), sql) == table(single.connection(), sql)
        assert table(bulk.connection(), "SELECT count(*) FROM observation_index")[0][0] > 100
    finally:
        bulk.close()
        single.close()
