"""Pull over real HTTP: partial replication, paging, scope changes, forged and stale cursors."""

from __future__ import annotations

import base64
import copy
from typing import Any

import orjson
from sqlalchemy import text
from sync_support import (
    Clinic,
    SyncClient,
    encounter_at,
    signed_in,
    upsert,
    write_as_system,
)

from shared_models.sync_messages import conflict_digest


def expected_scope(clinic: Clinic, patients: set[str]) -> set[tuple[str, str]]:
    """Seeded resources a workstation for `patients` holds (plus shared ones)."""
    out = set()
    for (resource_type, resource_id), resource in clinic.resources.items():
        owner = resource.get("subject") or resource.get("patient")
        if resource_type == "Patient":
            owner = {"reference": f"Patient/{resource_id}"}
        if owner is None or owner["reference"].removeprefix("Patient/") in patients:
            out.add((resource_type, resource_id))
    return out


def held(changes: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    """What a workstation applying `changes` in order ends up holding."""
    state: dict[tuple[str, str], dict[str, Any]] = {}
    for change in changes:
        key = (change["resourceType"], change["id"])
        if change.get("out_of_scope"):
            state = {k: v for k, v in state.items() if _owner(k, v) != change["id"]}
        elif change["deleted"]:
            state.pop(key, None)
        else:
            state[key] = change["resource"]
    return state


def _owner(key: tuple[str, str], resource: dict[str, Any]) -> str | None:
    if key[0] == "Patient":
        return key[1]
    ref = (resource.get("subject") or resource.get("patient") or {}).get("reference", "")
    return ref.removeprefix("Patient/") or None


def test_first_pull_pages_through_exactly_the_callers_scope(
    server: Any,
    clinic: Clinic,
    nurse: SyncClient,
) -> None:
    changes, _ = nurse.pull_all(limit=7)
    state = held(changes)
    assert set(state) == expected_scope(clinic, set(clinic.patients[:2]))
    assert len(changes) == len(state)  # current versions only, each once
    for key, resource in state.items():
        original = clinic.resources[key]
        assert {k: v for k, v in resource.items() if k != "meta"} == {
            k: v for k, v in original.items() if k != "meta"
        }
        assert resource["meta"]["versionId"] == str(next(
            c["versionId"] for c in changes if (c["resourceType"], c["id"]) == key
        ))  # fmt: skip


def test_front_desk_receives_no_clinical_types(
    server: Any,
    clinic: Clinic,
) -> None:
    desk = signed_in(server, "front_desk", ["loc-main"])
    try:
        changes, _ = desk.pull_all()
    finally:
        desk.close()
    types = {c["resourceType"] for c in changes}
    assert "Patient" in types and "Location" in types
    assert not types & {"Condition", "AllergyIntolerance", "MedicationRequest", "Encounter"}


def test_later_pulls_bring_new_versions_once_and_then_nothing(
    server: Any,
    clinic: Clinic,
    nurse: SyncClient,
) -> None:
    _, cursor = nurse.pull_all()
    patient = copy.deepcopy(clinic.resources[("Patient", clinic.patients[0])])
    patient["gender"] = "unknown"
    version = write_as_system(server.engine, patient)
    elsewhere = copy.deepcopy(clinic.resources[("Patient", clinic.patients[2])])
    elsewhere["gender"] = "unknown"
    write_as_system(server.engine, elsewhere)  # not in the nurse's scope
    changes, cursor = nurse.pull_all(cursor)
    assert [(c["resourceType"], c["id"], c["versionId"]) for c in changes] == [
        ("Patient", patient["id"], version)
    ]
    assert changes[0]["resource"]["gender"] == "unknown"
    assert nurse.pull_all(cursor)[0] == []


def test_scope_changes_send_out_of_scope_and_backfill(
    server: Any,
    clinic: Clinic,
) -> None:
    nurse = signed_in(server, "nurse", ["loc-main"])
    try:
        changes, cursor = nurse.pull_all()
        assert ("Patient", clinic.patients[3]) not in held(changes)
        # patient 3 is seen at the main clinic: their chart comes down
        encounter_template = next(r for (t, _), r in clinic.resources.items() if t == "Encounter")
        write_as_system(
            server.engine, encounter_at(encounter_template, clinic.patients[3], "loc-main")
        )
        # patient 1's only main-clinic encounter moves to the satellite: their chart leaves
        [moved] = [
            r for (t, _), r in clinic.resources.items()
            if t == "Encounter" and r["subject"]["reference"] == f"Patient/{clinic.patients[1]}"
        ]  # fmt: skip
        with server.engine.connect() as conn:
            moved = conn.execute(
                text(
                    "SELECT resource FROM resources WHERE resource_type = 'Encounter' AND id = :i"
                ),
                {"i": moved["id"]},
            ).scalar_one()
        moved["location"] = [{"location": {"reference": "Location/loc-sat"}}]
        write_as_system(server.engine, moved)
        more, cursor = nurse.pull_all(cursor, limit=3)
        gone = [c for c in more if c.get("out_of_scope")]
        assert [(c["resourceType"], c["id"]) for c in gone] == [("Patient", clinic.patients[1])]
        assert all(c["resource"] is None if "resource" in c else True for c in gone)
        state = held(changes + more)
        now_in_scope = {clinic.patients[0], clinic.patients[3]}
        expected = expected_scope(clinic, now_in_scope)
        assert expected <= set(state)
        assert {_owner(k, v) for k, v in state.items()} <= now_in_scope | {None}
        assert nurse.pull_all(cursor)[0] == []
    finally:
        nurse.close()


def test_forged_foreign_and_stale_cursors_are_refused(
    server: Any,
    clinic: Clinic,
    nurse: SyncClient,
) -> None:
    _, cursor = nurse.pull_all()
    body, _, mac = cursor.partition(".")
    data = orjson.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    data["t"] = 1  # rewind the position to read history again
    forged = base64.urlsafe_b64encode(orjson.dumps(data)).rstrip(b"=").decode() + "." + mac
    other = signed_in(server, "nurse", ["loc-main"])
    try:
        for bad, client in ((forged, nurse), ("garbage", nurse), (cursor, other)):
            response = client.pull(bad)
            assert response.status_code == 400, response.text
            outcome = response.json()
            assert outcome["resourceType"] == "OperationOutcome"
            assert outcome["issue"][0]["expression"] == ["cursor"]
    finally:
        other.close()
    with server.engine.begin() as conn:  # the scope snapshot it names expired
        conn.execute(text("DELETE FROM sync_scope_snapshots WHERE digest = :d"), {"d": data["sc"]})
    stale = nurse.pull(cursor)
    assert stale.status_code == 400
    assert "start again" in stale.json()["issue"][0]["diagnostics"]
    assert nurse.pull("0").status_code == 200  # starting over always works


def test_a_scope_change_during_the_first_download_is_caught_up_after_it(
    server: Any,
    clinic: Clinic,
) -> None:
    desk = signed_in(server, "front_desk", ["loc-sat"])
    try:
        first = desk.pull(limit=2).json()
        assert first["has_more"]
        template = next(r for (t, _), r in clinic.resources.items() if t == "Encounter")
        newcomer = clinic.patients[3]  # seen at the satellite while the download runs
        write_as_system(server.engine, encounter_at(template, newcomer, "loc-sat"))
        rest, cursor = desk.pull_all(first["cursor"], limit=2)
        state = held(first["changes"] + rest)
        assert ("Patient", newcomer) in state
        assert ("Patient", clinic.patients[2]) in state  # the satellite's own patient
        assert ("Patient", clinic.patients[0]) not in state
        keys = [(c["resourceType"], c["id"], c["versionId"]) for c in first["changes"] + rest]
        assert len(keys) == len(set(keys))  # nothing sent twice
        assert desk.pull_all(cursor)[0] == []
    finally:
        desk.close()


def test_estimate_says_about_how_much_is_left(server: Any, clinic: Clinic) -> None:
    """`estimate=true` (asked once per sync, for the time left of a download) never undercounts.

    It may overcount by the resources of the patient a page stopped in the middle of.
    """
    nurse = signed_in(server, "nurse", ["loc-main"])
    try:
        pages, cursor = [], "0"
        while True:
            page = nurse.pull(cursor, limit=5, estimate=True).json()
            pages.append(page)
            cursor = page["cursor"]
            if not page["has_more"]:
                break
        changes = [c for p in pages for c in p["changes"]]
        per_owner: dict[str | None, int] = {}
        for change in changes:
            owner = _owner((change["resourceType"], change["id"]), change["resource"])
            per_owner[owner] = per_owner.get(owner, 0) + 1
        delivered = 0
        for page in pages:
            delivered += len(page["changes"])
            left = len(changes) - delivered
            assert left <= page["remaining"] <= left + max(per_owner.values())
        assert pages[-1]["remaining"] == 0
        assert "remaining" not in nurse.pull(cursor).json()  # only when asked

        patient_id = next(c["id"] for c in changes if c["resourceType"] == "Patient")
        patient = copy.deepcopy(clinic.resources[("Patient", patient_id)])
        for gender in ("unknown", "other", "female"):
            patient["gender"] = gender
            write_as_system(server.engine, patient)
        first = nurse.pull(cursor, limit=1, estimate=True).json()
        assert (len(first["changes"]), first["remaining"]) == (1, 2)
    finally:
        nurse.close()


def _last_page(client: SyncClient, limit: int = 500) -> dict[str, Any]:
    cursor = "0"
    while True:
        page = client.pull(cursor, limit).json()
        if not page["has_more"]:
            return page
        assert "open_conflicts" not in page  # only the last page fingerprints the queue
        cursor = page["cursor"]


def _listed_ids(client: SyncClient) -> list[str]:
    listing = client.http.get("/sync/conflicts", headers=client.headers).json()
    return [c["id"] for c in listing["conflicts"]]


def test_last_page_fingerprints_the_review_queue_the_caller_may_see(
    server: Any, clinic: Clinic, physician: SyncClient
) -> None:
    before = _last_page(physician, limit=5)["open_conflicts"]
    assert before == conflict_digest(_listed_ids(physician))
    elsewhere = signed_in(server, "physician", ["loc-sat"])
    try:
        satellite = {c["id"] for c in elsewhere.pull_all()[0] if c["resourceType"] == "Patient"}
        condition = next(
            c["resource"] for c in physician.pull_all()[0] if c["resourceType"] == "Condition"
            and c["resource"]["subject"]["reference"].removeprefix("Patient/") not in satellite
        )  # fmt: skip
        stored = {k: v for k, v in condition.items() if k != "meta"}
        version = int(condition["meta"]["versionId"])
        write_as_system(server.engine, {**stored, "onsetDateTime": "2001-01-01"})
        pushed = physician.push([upsert({**stored, "onsetDateTime": "2002-02-02"}, version)])
        [result] = pushed.json()["results"]
        assert result["status"] == "conflict"

        after = _last_page(physician)["open_conflicts"]
        listed = _listed_ids(physician)
        assert result["conflict_id"] in listed
        assert after == conflict_digest(listed) != before
        # A chart the satellite does not hold: its queue, and fingerprint, leave it out.
        assert result["conflict_id"] not in _listed_ids(elsewhere)
        assert _last_page(elsewhere)["open_conflicts"] == conflict_digest(_listed_ids(elsewhere))
    finally:
        elsewhere.close()
