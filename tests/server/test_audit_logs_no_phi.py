"""Server logs carry no PHI: names, birth dates and identifiers of the test patients never appear.

Every log record of every logger (DEBUG and up) is captured while real Synthea
patients are signed in to, read, searched by name, refused, broken-glass
opened, exported and sent back invalid, and the text is searched for their data.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import httpx
import pytest
from identity_support import (
    BULK_DATA,
    bearer,
    login,
    make_user,
    read_ndjson,
    seed_two_sites,
)


def _phi(patient: dict[str, Any]) -> set[str]:
    values = {patient.get("birthDate", "")}
    for name in patient.get("name", []):
        values.add(name.get("family", ""))
        values.update(name.get("given", []))
    values.update(i.get("value", "") for i in patient.get("identifier", []))
    values.update(t.get("value", "") for t in patient.get("telecom", []))
    return {v for v in values if len(v) >= 4}


def test_no_patient_data_in_logs(
    server: Any, shared_data: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    sites = seed_two_sites(server, shared_data)
    patients = read_ndjson(shared_data / BULK_DATA / "Patient.000.ndjson")[:3]
    doctor = make_user(server, "dr.logs", ["physician"], [sites.location_mine])
    admin = make_user(server, "admin.logs", ["admin"])
    with httpx.Client(base_url=server.url, timeout=30) as client:
        family = patients[0]["name"][0]["family"]
        client.post("/auth/login", json={"username": family, "password": family, "otp": "1"})
        token = login(client, doctor)["access_token"]
        fhir = httpx.Client(base_url=server.fhir_url, headers=bearer(token), timeout=30)
        fhir.get(f"/Patient/{sites.mine[0]}")
        fhir.get("/Patient", params={"name": family, "birthdate": patients[0]["birthDate"]})
        fhir.get("/Patient", params={"identifier": patients[0]["identifier"][0]["value"]})
        fhir.get(f"/Patient/{sites.other[0]}")  # refused
        bad = dict(patients[0]) | {"birthDate": f"not-a-date {patients[0]['birthDate']}"}
        fhir.put(f"/Patient/{sites.mine[0]}", json=bad)  # invalid
        fhir.post("/Patient", content=b'{"resourceType": "Patient", "name": [{"family": "')
        client.post(
            "/auth/break-glass",
            headers=bearer(token),
            json={"patient": f"Patient/{sites.other[0]}", "reason": f"Family {family} asked"},
        )
        fhir.get(f"/Encounter?patient={sites.other[0]}")
        admin_token = login(client, admin)["access_token"]
        client.get("/admin/audit/export", headers=bearer(admin_token))
        client.get("/fhir/R4/AuditEvent", headers=bearer(admin_token), params={"agent": family})
    # The test's own HTTP client logs its URLs; everything else is the server's.
    assert caplog.records, "nothing was captured: the capture is not working"
    server_records = [r for r in caplog.records if not r.name.startswith(("httpx", "httpcore"))]
    logged = "\n".join(f"{r.name} {r.getMessage()} {r.exc_text or ''}" for r in server_records)
    leaked = sorted(value for patient in patients for value in _phi(patient) if value in logged)
    assert leaked == []
