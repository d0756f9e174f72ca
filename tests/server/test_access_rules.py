"""Access rules beyond the matrix: break the glass, note signing, admins and clinical data."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from identity_support import (
    TwoSites,
    audit_rows,
    bearer,
    login,
    make_user,
)
from sqlalchemy import text


def _fhir(server: Any, user: Any) -> httpx.Client:
    with httpx.Client(base_url=server.url) as plain:
        token = login(plain, user)["access_token"]
    return httpx.Client(base_url=server.url, headers=bearer(token), timeout=30)


def test_break_the_glass_opens_a_patient_for_a_while_and_is_reported(
    server: Any, sites: TwoSites
) -> None:
    nurse = make_user(server, "nurse.btg", ["nurse"], [sites.location_mine])
    other = sites.other[0]
    with _fhir(server, nurse) as client:
        assert client.get(f"/fhir/R4/Patient/{other}").status_code == 403
        short = client.post(
            "/auth/break-glass", json={"patient": f"Patient/{other}", "reason": "x"}
        )
        assert short.status_code == 400
        reason = "Unconscious patient in the emergency room"
        grant = client.post(
            "/auth/break-glass", json={"patient": f"Patient/{other}", "reason": reason}
        )
        assert grant.status_code == 201, grant.text
        assert client.get(f"/fhir/R4/Patient/{other}").status_code == 200
        encounters = client.get("/fhir/R4/Encounter", params={"patient": other}).json()
        assert encounters.get("entry")
        reads = audit_rows(server, username="nurse.btg", action="read", outcome="success")
        assert reads[-1]["detail"]["break_glass_reasons"] == {other: reason}

        with server.engine.begin() as conn:  # the grant runs out
            conn.execute(
                text("UPDATE break_glass_grants SET expires_at = :t WHERE id = :id"),
                {"t": datetime.now(UTC) - timedelta(seconds=1), "id": grant.json()["id"]},
            )
        assert client.get(f"/fhir/R4/Patient/{other}").status_code == 403

    front_desk = make_user(server, "fd.btg", ["front_desk"], [sites.location_mine])
    with _fhir(server, front_desk) as client:
        refused = client.post(
            "/auth/break-glass", json={"patient": f"Patient/{other}", "reason": reason}
        )
        assert refused.status_code == 403
    assert audit_rows(server, username="fd.btg", action="break-glass", outcome="denied")

    admin = make_user(server, "admin.btg", ["admin"])
    with _fhir(server, admin) as client:
        report = client.get("/admin/break-glass").json()
    mine = [r for r in report if r["username"] == "nurse.btg"]
    assert mine and mine[0]["reason"] == reason and mine[0]["accesses"] >= 2


def _note(shared_data: Path, patient: str, status: str, loinc: str) -> dict[str, Any]:
    path = shared_data / "fhir-examples/r4-examples/DocumentReference-example.json"
    note: dict[str, Any] = json.loads(path.read_text())
    for key in ("id", "meta", "text", "contained", "context", "relatesTo", "authenticator"):
        note.pop(key, None)
    note["subject"] = {"reference": f"Patient/{patient}"}
    note["docStatus"] = status
    note["type"] = {"coding": [{"system": "http://loinc.org", "code": loinc}]}
    note.pop("author", None)
    return note


def test_nurse_signs_nursing_notes_but_not_physician_notes(
    server: Any, sites: TwoSites, shared_data: Path
) -> None:
    patient = sites.mine[0]
    nurse = make_user(server, "nurse.notes", ["nurse"], [sites.location_mine])
    doctor = make_user(server, "dr.notes", ["physician"], [sites.location_mine])
    progress_note, nurse_note = "11506-3", "34746-8"
    url = "/fhir/R4/DocumentReference"
    with _fhir(server, nurse) as client:
        draft = client.post(url, json=_note(shared_data, patient, "preliminary", progress_note))
        assert draft.status_code == 201, draft.text
        signed = client.post(url, json=_note(shared_data, patient, "final", progress_note))
        assert signed.status_code == 403
        nursing = client.post(url, json=_note(shared_data, patient, "final", nurse_note))
        assert nursing.status_code == 201
        finalise = draft.json() | {"docStatus": "final"}
        assert client.put(f"{url}/{finalise['id']}", json=finalise).status_code == 403
    with _fhir(server, doctor) as client:
        response = client.put(f"{url}/{finalise['id']}", json=finalise)
        assert response.status_code == 200, response.text


def test_admin_without_clinical_role_sees_no_patient_data(server: Any, sites: TwoSites) -> None:
    admin = make_user(server, "admin.noclinical", ["admin"], [sites.location_mine])
    with _fhir(server, admin) as client:
        assert client.get(f"/fhir/R4/Patient/{sites.mine[0]}").status_code == 403
        assert client.get("/fhir/R4/Encounter").status_code == 403
        assert client.get(f"/fhir/R4/Location/{sites.location_mine}").status_code == 200
    both = make_user(server, "admin.doctor", ["admin", "physician"], [sites.location_mine])
    with _fhir(server, both) as client:
        assert client.get(f"/fhir/R4/Patient/{sites.mine[0]}").status_code == 200
    nurse = make_user(server, "nurse.noadmin", ["nurse"], [sites.location_mine])
    with _fhir(server, nurse) as client:
        assert client.get("/admin/users").status_code == 403
        assert client.get("/fhir/R4/AuditEvent").status_code == 403
    assert audit_rows(server, username="nurse.noadmin", action="admin", outcome="denied")
