"""Push over real HTTP: applied, idempotent replays, invalid changes in a batch, merges, policy."""

from __future__ import annotations

import uuid
from typing import Any

import orjson
from sqlalchemy import text
from sync_support import (
    Clinic,
    SyncClient,
    conditions_of,
    current,
    delete,
    signed_in,
    upsert,
    write_as_system,
)


def version_count(server: Any, resource_type: str, resource_id: str) -> int:
    with server.engine.connect() as conn:
        return int(
            conn.execute(
                text("SELECT count(*) FROM resource_versions WHERE resource_type = :t AND id = :i"),
                {"t": resource_type, "i": resource_id},
            ).scalar_one()
        )


def test_same_push_twice_is_applied_once_and_answered_the_same(
    server: Any,
    clinic: Clinic,
    physician: SyncClient,
) -> None:
    condition = conditions_of(clinic, 0)[0]
    version, _ = current(server, "Condition", condition["id"])
    condition["note"] = [{"text": "Reviewed at the satellite visit"}]
    change = upsert(condition, version)
    first = physician.push([change])
    assert first.status_code == 200, first.text
    [result] = first.json()["results"]
    assert result["status"] == "applied"
    assert result["versionId"] == version + 1
    assert result["resource"]["note"] == condition["note"]
    second = physician.push([change])
    assert second.json() == first.json()
    assert version_count(server, "Condition", condition["id"]) == version + 1
    # the same change id with another payload is refused, and changes nothing
    changed = {**change, "resource": {**condition, "note": [{"text": "something else"}]}}
    [reused] = physician.push([changed]).json()["results"]
    assert reused["status"] == "rejected"
    assert reused["issues"][0]["expression"] == ["change_id"]
    assert current(server, "Condition", condition["id"])[1]["note"] == condition["note"]


def test_one_invalid_change_among_valid_ones_fails_alone(
    server: Any,
    clinic: Clinic,
    physician: SyncClient,
) -> None:
    good: list[dict[str, Any]] = [
        {"resourceType": "Observation", "id": str(uuid.uuid4()), "status": "final",
         "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
         "subject": {"reference": f"Patient/{clinic.patients[0]}"},
         "valueQuantity": {"value": 72 + i, "unit": "/min", "system": "http://unitsofmeasure.org",
                           "code": "/min"}}
        for i in range(2)
    ]  # fmt: skip
    bad = {**good[0], "id": str(uuid.uuid4()), "effectiveDateTime": "yesterday"}
    response = physician.push([upsert(good[0], None), upsert(bad, None), upsert(good[1], None)])
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [r["status"] for r in results] == ["applied", "rejected", "applied"]
    assert any("effectiveDateTime" in i.get("expression", [""])[0] for i in results[1]["issues"])
    assert version_count(server, "Observation", bad["id"]) == 0
    for obs in good:
        assert current(server, "Observation", obs["id"])[0] == 1
    # the refused version can still be read back (nothing lost)
    with server.engine.connect() as conn:
        kept = conn.execute(
            text("SELECT rejected_change FROM sync_push_log WHERE change_id = :c"),
            {"c": results[1]["change_id"]},
        ).scalar_one()
    assert kept["resource"] == bad


def test_disjoint_edits_merge_and_same_element_edits_conflict(
    server: Any,
    clinic: Clinic,
    physician: SyncClient,
) -> None:
    patient_id = clinic.patients[1]
    base_version, base = current(server, "Patient", patient_id)
    server_edit = {**base, "gender": "other" if base["gender"] != "other" else "unknown"}
    write_as_system(server.engine, server_edit)
    mine = {**base, "birthDate": "1980-02-03"}
    [merged] = physician.push([upsert(mine, base_version)]).json()["results"]
    assert merged["status"] == "merged", merged
    assert merged["versionId"] == base_version + 2
    assert (merged["resource"]["gender"], merged["resource"]["birthDate"]) == (
        server_edit["gender"],
        "1980-02-03",
    )

    condition = conditions_of(clinic, 1)[0]
    version, stored = current(server, "Condition", condition["id"])
    write_as_system(server.engine, {**stored, "onsetDateTime": "2001-01-01"})
    mine = {**stored, "onsetDateTime": "2002-02-02"}
    [conflict] = physician.push([upsert(mine, version)]).json()["results"]
    assert conflict["status"] == "conflict"
    assert conflict["conflict_id"]
    assert conflict["versionId"] == version + 1  # the server version stays current
    assert conflict["resource"]["onsetDateTime"] == "2001-01-01"
    assert conflict["issues"][0]["expression"] == ["Condition.onsetDateTime"]
    assert current(server, "Condition", condition["id"])[1]["onsetDateTime"] == "2001-01-01"


def test_conflict_review_queue_lists_and_resolves_with_provenance(
    server: Any,
    clinic: Clinic,
    physician: SyncClient,
) -> None:
    allergy = next(r for (t, _), r in clinic.resources.items() if t == "AllergyIntolerance"
                   and r["patient"]["reference"] == f"Patient/{clinic.patients[0]}")  # fmt: skip
    version, stored = current(server, "AllergyIntolerance", allergy["id"])
    assert stored.get("criticality") not in ("high", "unable-to-assess")
    write_as_system(server.engine, {**stored, "criticality": "high"})
    mine = {**stored, "criticality": "unable-to-assess"}
    [result] = physician.push([upsert(mine, version)]).json()["results"]
    assert result["status"] == "conflict"

    nurse = signed_in(server, "nurse", ["loc-main"])
    elsewhere = signed_in(server, "physician", ["loc-sat"])
    try:
        listed = physician.http.get("/sync/conflicts", headers=physician.headers).json()
        [entry] = [c for c in listed["conflicts"] if c["id"] == result["conflict_id"]]
        assert entry["route"] == "prescriber"
        assert entry["base_resource"]["criticality"] == stored.get("criticality")
        assert entry["server_resource"]["criticality"] == "high"
        assert entry["client_resource"]["criticality"] == "unable-to-assess"
        assert entry["created_by"] == physician.user.username
        assert entry["workstation_id"] == physician.workstation
        # a physician at another site does not see this patient's conflicts
        other = elsewhere.http.get("/sync/conflicts", headers=elsewhere.headers).json()
        assert result["conflict_id"] not in {c["id"] for c in other["conflicts"]}
        # an allergy conflict needs a prescriber: the nurse may see it, not resolve it
        url = f"/sync/conflicts/{result['conflict_id']}/resolve"
        denied = nurse.http.post(url, json={"resolution": "keep_mine"}, headers=nurse.headers)
        assert denied.status_code == 403
        assert denied.json()["resourceType"] == "OperationOutcome"

        resolved = physician.http.post(
            url, json={"resolution": "keep_mine"}, headers=physician.headers
        )
        assert resolved.status_code == 200, resolved.text
        record = resolved.json()
        assert (record["status"], record["resolution"]) == ("resolved", "keep_mine")
        assert record["resolved_by"] == physician.user.username
        new_version, now = current(server, "AllergyIntolerance", allergy["id"])
        assert (new_version, now["criticality"]) == (version + 2, "unable-to-assess")
        target = f"AllergyIntolerance/{allergy['id']}"
        with server.engine.connect() as conn:
            provenance = conn.execute(
                text("SELECT resource FROM resources WHERE resource_type = 'Provenance'"
                     " AND resource->'target' @> CAST(:t AS jsonb)"),
                {"t": orjson.dumps([{"reference": f"{target}/_history/{new_version}"}]).decode()},
            ).scalar_one()  # fmt: skip
        assert provenance["agent"][0]["who"] == {"display": physician.user.username}
        again = physician.http.post(
            url, json={"resolution": "keep_server"}, headers=physician.headers
        )
        assert again.status_code == 412
    finally:
        nurse.close()
        elsewhere.close()


def test_per_type_policy_signed_notes_observations_delete_vs_update(
    server: Any,
    clinic: Clinic,
    physician: SyncClient,
) -> None:
    patient = f"Patient/{clinic.patients[0]}"
    note: dict[str, Any]
    note = {"resourceType": "DocumentReference", "id": str(uuid.uuid4()), "status": "current",
            "docStatus": "final", "subject": {"reference": patient},
            "content": [{"attachment": {"contentType": "text/plain", "data": "U2lnbmVk"}}],
    }  # fmt: skip
    obs: dict[str, Any]
    obs = {"resourceType": "Observation", "id": str(uuid.uuid4()), "status": "final",
           "code": {"text": "Heart rate"}, "subject": {"reference": patient}}  # fmt: skip
    created = physician.push([upsert(note, None), upsert(obs, None)]).json()["results"]
    assert [r["status"] for r in created] == ["applied", "applied"]
    changes = [
        upsert({**note, "description": "edited after signing"}, 1),
        upsert({**obs, "status": "amended"}, 1),
        delete("Observation", obs["id"], 1),
    ]
    results = physician.push(changes).json()["results"]
    assert [r["status"] for r in results] == ["rejected"] * 3
    assert "addendum" in results[0]["issues"][0]["diagnostics"]
    assert current(server, "DocumentReference", note["id"])[0] == 1

    condition = conditions_of(clinic, 0)[0]
    version, stored = current(server, "Condition", condition["id"])
    write_as_system(server.engine, {**stored, "recordedDate": "2020-01-01"})
    [result] = physician.push([delete("Condition", condition["id"], version)]).json()["results"]
    assert result["status"] == "conflict"
    assert current(server, "Condition", condition["id"])[1] is not None


def test_a_slot_is_never_double_booked(
    server: Any,
    clinic: Clinic,
) -> None:
    desk = signed_in(server, "front_desk", ["loc-main"])
    try:
        slot = {"resourceType": "Slot", "id": str(uuid.uuid4()), "status": "free",
                "schedule": {"reference": "Schedule/s1"},
                "start": "2030-01-01T09:00:00Z", "end": "2030-01-01T09:15:00Z"}  # fmt: skip
        write_as_system(server.engine, slot)

        def booking(patient: str) -> dict[str, Any]:
            return {"resourceType": "Appointment", "id": str(uuid.uuid4()), "status": "booked",
                    "slot": [{"reference": f"Slot/{slot['id']}"}],
                    "participant": [{"actor": {"reference": f"Patient/{patient}"},
                                     "status": "accepted"},
                                    {"actor": {"reference": "Location/loc-main"},
                                     "status": "accepted"}]}  # fmt: skip

        first, second = booking(clinic.patients[0]), booking(clinic.patients[1])
        results = desk.push([upsert(first, None), upsert(second, None)]).json()["results"]
        assert [r["status"] for r in results] == ["applied", "rejected"]
        assert "already booked" in results[1]["issues"][0]["diagnostics"]
        [later] = desk.push([upsert(booking(clinic.patients[1]), None)]).json()["results"]
        assert later["status"] == "rejected"
        # once the first booking is cancelled the slot can be booked again
        cancel = upsert({**first, "status": "cancelled"}, 1)
        [freed, rebooked] = desk.push([cancel, upsert(second, None)]).json()["results"]
        assert (freed["status"], rebooked["status"]) == ("applied", "applied")
    finally:
        desk.close()


def test_push_needs_a_token_and_bounds_the_batch(server: Any) -> None:
    import httpx

    with httpx.Client(base_url=server.url) as anonymous:
        response = anonymous.post("/sync/push", json={"client_id": "x", "changes": []})
        assert response.status_code == 401
        assert response.json()["resourceType"] == "OperationOutcome"
    desk = signed_in(server, "front_desk", ["loc-main"])
    try:
        patient = {"resourceType": "Patient", "id": "p"}
        too_many = [upsert({**patient, "id": str(uuid.uuid4())}, None) for _ in range(501)]
        response = desk.push(too_many)
        assert response.status_code == 400
        assert response.json()["resourceType"] == "OperationOutcome"
        for broken in (b'{"client_id": "x", "changes": [', b'{"client_id": NaN}'):
            response = desk.http.post(
                "/sync/push",
                content=broken,
                headers={**desk.headers, "Content-Type": "application/json"},
            )
            assert response.status_code == 400, response.text
            assert response.json()["resourceType"] == "OperationOutcome"
    finally:
        desk.close()


def test_the_same_batch_pushed_twice_at_once_is_applied_once(
    server: Any,
    clinic: Clinic,
    physician: SyncClient,
) -> None:
    import threading

    condition = conditions_of(clinic, 1)[0]
    version, stored = current(server, "Condition", condition["id"])
    changes = [upsert({**stored, "note": [{"text": "sent from two threads"}]}, version)]
    changes += [
        upsert({**stored, "id": str(uuid.uuid4()), "recordedDate": f"2019-0{n + 1}-01"}, None)
        for n in range(5)
    ]
    answers: list[Any] = [None, None]

    def send(slot: int) -> None:
        answers[slot] = physician.push(changes)

    threads = [threading.Thread(target=send, args=(n,)) for n in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [a.status_code for a in answers] == [200, 200]
    assert answers[0].json() == answers[1].json()
    assert {r["status"] for r in answers[0].json()["results"]} == {"applied"}
    assert version_count(server, "Condition", condition["id"]) == version + 1
    for change in changes[1:]:
        assert version_count(server, "Condition", change["id"]) == 1


def test_a_merged_resolution_writes_the_resolvers_version(
    server: Any,
    clinic: Clinic,
    physician: SyncClient,
) -> None:
    condition = conditions_of(clinic, 0)[0]
    version, stored = current(server, "Condition", condition["id"])
    write_as_system(server.engine, {**stored, "abatementDateTime": "2021-05-05"})
    mine = {**stored, "abatementDateTime": "2021-06-06"}
    [result] = physician.push([upsert(mine, version)]).json()["results"]
    assert result["status"] == "conflict"
    merged = {**stored, "abatementDateTime": "2021-05-20", "note": [{"text": "both dates checked"}]}
    url = f"/sync/conflicts/{result['conflict_id']}/resolve"
    bad = physician.http.post(url, json={"resolution": "merged"}, headers=physician.headers)
    assert bad.status_code == 400  # a merged resolution must carry the resource
    resolved = physician.http.post(
        url, json={"resolution": "merged", "resource": merged}, headers=physician.headers
    )
    assert resolved.status_code == 200, resolved.text
    new_version, now = current(server, "Condition", condition["id"])
    assert resolved.json()["resolved_version"] == new_version == version + 2
    assert (now["abatementDateTime"], now["note"]) == ("2021-05-20", merged["note"])


def test_changes_to_patients_outside_the_users_sites_are_refused_one_by_one(
    server: Any,
    clinic: Clinic,
) -> None:
    satellite = signed_in(server, "physician", ["loc-sat"])
    try:
        here = conditions_of(clinic, 2)[0]  # the satellite's patient
        there = conditions_of(clinic, 0)[0]  # a main-clinic patient
        changes = []
        for condition in (here, there, here):
            version, stored = current(server, "Condition", condition["id"])
            note = [{"text": f"checked {uuid.uuid4().hex[:6]}"}]
            changes.append(upsert({**stored, "note": note}, version))
        changes[2]["base_version"] = changes[0]["base_version"]
        results = satellite.push(changes).json()["results"]
        assert [r["status"] for r in results] == ["applied", "rejected", "merged"]
        assert results[1]["issues"][0]["code"] == "forbidden"
        assert results[1]["resource"] is None  # nothing of the other site's chart leaks
        assert current(server, "Condition", there["id"])[0] == changes[1]["base_version"]
    finally:
        satellite.close()
