"""`apply_remote_page`: a pull page and its cursor in one transaction, local edits kept."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from desktop_store_helpers import synthea_resources

from desktop.store import conflicts, indexing, outbox, resources, sync_state
from desktop.store.database import ChartDatabase
from desktop.store.keyslots import new_key
from desktop.store.remote_changes import RemoteChange, apply_remote_page, prepare_page


@pytest.fixture
def db(tmp_path: Path) -> Iterator[ChartDatabase]:
    database = ChartDatabase(tmp_path / "chart.db", new_key())
    yield database
    database.close()


def patient(pid: str, family: str) -> dict[str, Any]:
    return {"resourceType": "Patient", "id": pid, "name": [{"family": family, "given": ["Ana"]}],
            "identifier": [{"value": f"MRN-{pid}"}], "birthDate": "1980-02-03"}  # fmt: skip


def condition(cid: str, pid: str, text: str) -> dict[str, Any]:
    return {"resourceType": "Condition", "id": cid, "subject": {"reference": f"Patient/{pid}"},
            "code": {"text": text}}  # fmt: skip


def wire(res: dict[str, Any], version: int, **extra: Any) -> dict[str, Any]:
    return {"resourceType": res["resourceType"], "id": res["id"], "versionId": version,
            "deleted": False, "resource": res, **extra}  # fmt: skip


def test_page_and_cursor_commit_together(db: ChartDatabase) -> None:
    page = [RemoteChange.from_wire(wire(patient("p1", "Okafor"), 1)),
            RemoteChange.from_wire(wire(condition("c1", "p1", "Asthma"), 3))]  # fmt: skip
    result = apply_remote_page(db, page, "cursor-2")
    conn = db.connection()
    assert result.applied == 2 and sync_state.cursor(conn) == "cursor-2"
    stored = resources.get(conn, "Condition", "c1")
    assert stored is not None and stored.version_id == 3 and stored.patient_id == "p1"
    assert orjson.loads(stored.json) == condition("c1", "p1", "Asthma")
    assert [p.patient_id for p in resources.patients_by_name_prefixes(conn, ["oka"], 5)] == ["p1"]


def test_two_versions_of_one_resource_in_a_page_keep_the_later(db: ChartDatabase) -> None:
    page = [RemoteChange.from_wire(wire(patient("p1", "Okafor"), 1)),
            RemoteChange.from_wire(wire(patient("p1", "Okafor-Lind"), 2))]  # fmt: skip
    apply_remote_page(db, page, "cursor-3")
    conn = db.connection()
    stored = resources.get(conn, "Patient", "p1")
    assert stored is not None and stored.version_id == 2
    assert orjson.loads(stored.json)["name"][0]["family"] == "Okafor-Lind"
    found = resources.patients_by_name_prefixes(conn, ["oka"], 5)
    assert [p.patient_id for p in found] == ["p1"]


def test_a_failing_page_changes_nothing(db: ChartDatabase) -> None:
    apply_remote_page(db, [RemoteChange.from_wire(wire(patient("p1", "Okafor"), 1))], "c1")
    broken = RemoteChange("Patient", "p2", 1, resource_json=b"{not json")
    good = RemoteChange.from_wire(wire(patient("p3", "Lind"), 1))
    with pytest.raises(orjson.JSONDecodeError):
        apply_remote_page(db, [good, broken], "c2")
    conn = db.connection()
    assert sync_state.cursor(conn) == "c1"
    assert resources.get(conn, "Patient", "p3") is None


def test_newer_version_replaces_index_rows(db: ChartDatabase) -> None:
    apply_remote_page(db, [RemoteChange.from_wire(wire(patient("p1", "Okafor"), 1))], "c1")
    apply_remote_page(db, [RemoteChange.from_wire(wire(patient("p1", "Mensah"), 2))], "c2")
    conn = db.connection()
    assert resources.patients_by_name_prefixes(conn, ["oka"], 5) == []
    assert resources.patients_by_name_prefixes(conn, ["men"], 5)[0].patient_id == "p1"
    assert conn.execute("SELECT count(*) FROM patient_index").fetchone() == (1,)


def test_pending_local_edit_is_kept_and_newer_version_noted(db: ChartDatabase) -> None:
    apply_remote_page(db, [RemoteChange.from_wire(wire(condition("c1", "p1", "Asthma"), 1))], "a")
    local = condition("c1", "p1", "Asthma, severe")
    with db.transaction() as conn:
        resources.put(conn, local, orjson.dumps(local), version_id=1, dirty=True)
        outbox.enqueue(conn, resource_type="Condition", resource_id="c1", op="upsert",
                       base_version=1, patient_id="p1", raw_json=orjson.dumps(local))  # fmt: skip
    server = condition("c1", "p1", "Asthma (reviewed)")
    result = apply_remote_page(db, [RemoteChange.from_wire(wire(server, 2))], "b")
    stored = resources.get(db.connection(), "Condition", "c1")
    assert result.kept_local == 1
    assert stored is not None and orjson.loads(stored.json)["code"]["text"] == "Asthma, severe"
    assert stored.version_id == 1 and stored.remote_version_id == 2


def test_out_of_scope_purges_a_clean_chart_and_holds_one_with_changes(db: ChartDatabase) -> None:
    page = [RemoteChange.from_wire(wire(r, 1)) for r in (
        patient("p1", "Okafor"), condition("c1", "p1", "Asthma"),
        patient("p2", "Lind"), condition("c2", "p2", "Gout"))]  # fmt: skip
    apply_remote_page(db, page, "a")
    edit = condition("c2", "p2", "Gout, left foot")
    with db.transaction() as conn:
        resources.put(conn, edit, orjson.dumps(edit), version_id=1, dirty=True)
        outbox.enqueue(conn, resource_type="Condition", resource_id="c2", op="upsert",
                       base_version=1, patient_id="p2", raw_json=orjson.dumps(edit))  # fmt: skip
    leaving = [RemoteChange("Patient", pid, None, out_of_scope=True) for pid in ("p1", "p2")]
    result = apply_remote_page(db, leaving, "b")
    conn = db.connection()
    assert result.removed == 1 and result.held_for_review == ("p2",)
    assert resources.get(conn, "Condition", "c1") is None
    assert resources.get(conn, "Patient", "p1") is None
    assert resources.patients_by_mrn(conn, "MRN-p1", 5) == []
    assert resources.get(conn, "Condition", "c2") is not None
    review = conflicts.open_conflicts(conn)
    assert [(c.status, c.patient_id) for c in review] == [("out_of_scope", "p2")]


def test_server_delete_removes_the_copy(db: ChartDatabase) -> None:
    apply_remote_page(db, [RemoteChange.from_wire(wire(condition("c1", "p1", "Asthma"), 1))], "a")
    gone = RemoteChange.from_wire({"resourceType": "Condition", "id": "c1", "versionId": 2,
                                   "deleted": True, "resource": None})  # fmt: skip
    assert apply_remote_page(db, [gone], "b").removed == 1
    assert resources.get(db.connection(), "Condition", "c1") is None


def test_a_delete_after_an_update_in_one_page_deletes(db: ChartDatabase) -> None:
    apply_remote_page(db, [RemoteChange.from_wire(wire(condition("c1", "p1", "Asthma"), 1))], "a")
    page = [RemoteChange.from_wire(wire(condition("c1", "p1", "Asthma, mild"), 2)),
            RemoteChange("Condition", "c1", 3, deleted=True)]  # fmt: skip
    result = apply_remote_page(db, page, "b")
    assert (result.applied, result.removed) == (0, 1)
    assert resources.get(db.connection(), "Condition", "c1") is None


_INDEX_TABLES = {
    "observation_index": "observation_id, patient_id, code, obs_code, label, vital, effective,"
    " value, unit",
    "patient_index": "patient_id, display_name, family, given, mrn, birth_date, sex",
    "appointment_index": "appointment_id, day, start, location_id, practitioner_id, patient_id",
    "resources": "resource_type, id, version_id, patient_id, json, dirty",
}


def _index_rows(db: ChartDatabase) -> dict[str, list[tuple[object, ...]]]:
    conn = db.connection()
    return {
        table: sorted(conn.execute(f"SELECT {columns} FROM {table}").fetchall())
        for table, columns in _INDEX_TABLES.items()
    }


def test_a_prepared_synthea_page_stores_what_single_saves_store(
    shared_data: Path, tmp_path: Path
) -> None:
    """The batched pull path (prepared off the writer's thread) and `resources.put` one
    resource at a time give the same rows, index rows included."""
    charts, _ = synthea_resources(shared_data, 2)
    changes = [RemoteChange.from_wire(wire(r, 1)) for r in charts]
    page = prepare_page(changes)
    assert not page.removals and len(page.upserts.rows) == len(charts)  # no dicts kept
    batched = ChartDatabase(tmp_path / "batched.db", new_key())
    single = ChartDatabase(tmp_path / "single.db", new_key())
    try:
        assert apply_remote_page(batched, page, "c1").applied == len(charts)
        with single.transaction() as conn:
            for change in changes:
                assert change.resource_json is not None
                resources.put(conn, orjson.loads(change.resource_json), change.resource_json,
                              version_id=1, dirty=False)  # fmt: skip
        rows = _index_rows(batched)
        assert len(rows["observation_index"]) > len(charts) // 4 and rows["patient_index"]
        assert rows == _index_rows(single)
    finally:
        batched.close()
        single.close()


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2011-06-12T17:22:56-04:00", "2011-06-12T21:22:56Z"),
        ("2011-06-12T23:59:59.250-05:00", "2011-06-13T04:59:59Z"),
        ("2011-06-12T17:22:56Z", "2011-06-12T17:22:56Z"),
        ("2011-06-12T17:22:56", "2011-06-12T17:22:56Z"),
        ("2011-06-12", "2011-06-12T00:00:00Z"),
        ("2011-06", "2011-06-01T00:00:00Z"),
        ("2011", "2011-01-01T00:00:00Z"),
        ("2011-13-01", None),
        ("soon", None),
        (None, None),
    ],
)
def test_instants_are_sortable_utc(value: object, expected: str | None) -> None:
    assert indexing.instant(value) == expected
