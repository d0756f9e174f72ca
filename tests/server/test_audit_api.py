"""Admins read the audit trail as FHIR AuditEvents, export it as NDJSON, and verify it."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from identity_support import (
    TwoSites,
    bearer,
    login,
    make_user,
    seed_two_sites,
)

from shared_models.fhir_validation import validate_resource


@pytest.fixture(scope="module")
def trail(server: Any, shared_data: Path) -> tuple[TwoSites, httpx.Client]:
    """A doctor reads and searches; an outsider is refused; an admin client to look."""
    sites = seed_two_sites(server, shared_data)
    doctor = make_user(server, "dr.audited", ["physician"], [sites.location_mine])
    with httpx.Client(base_url=server.url) as plain:
        doctor_token = login(plain, doctor)["access_token"]
        with httpx.Client(base_url=server.fhir_url, headers=bearer(doctor_token)) as fhir:
            assert fhir.get(f"/Patient/{sites.mine[0]}").status_code == 200
            assert fhir.get("/Encounter").status_code == 200
            assert fhir.get(f"/Patient/{sites.other[0]}").status_code == 403
        admin = make_user(server, "admin.audit", ["admin"])
        admin_token = login(plain, admin)["access_token"]
    return sites, httpx.Client(base_url=server.url, headers=bearer(admin_token), timeout=30)


def _events(client: httpx.Client, **params: Any) -> list[dict[str, Any]]:
    response = client.get("/fhir/R4/AuditEvent", params=params)
    assert response.status_code == 200, response.text
    bundle = response.json()
    assert bundle["resourceType"] == "Bundle" and bundle["type"] == "searchset"
    return [entry["resource"] for entry in bundle.get("entry", [])]


def test_search_by_patient_agent_and_date_returns_valid_audit_events(
    trail: tuple[TwoSites, httpx.Client],
) -> None:
    sites, admin = trail
    mine = _events(admin, patient=f"Patient/{sites.mine[0]}")
    actions = {e["subtype"][0]["code"] for e in mine}
    assert {"read", "search-type"} <= actions
    for event in mine:
        validate_resource(event, "AuditEvent")
        assert f"Patient/{sites.mine[0]}" in {x["what"]["reference"] for x in event["entity"]}
    denied = _events(admin, patient=sites.other[0], agent="dr.audited")
    assert [e["outcome"] for e in denied] == ["4"]
    assert denied[0]["agent"][0]["who"]["display"] == "dr.audited"
    assert denied[0]["agent"][0]["network"]["address"] == "127.0.0.1"
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).date().isoformat()
    assert _events(admin, agent="dr.audited", date=f"ge{tomorrow}") == []
    assert _events(admin, agent="dr.audited", date=f"lt{tomorrow}")


def test_ndjson_export_matches_search_and_is_audited(
    trail: tuple[TwoSites, httpx.Client],
) -> None:
    _, admin = trail
    exported = admin.get("/admin/audit/export", params={"agent": "dr.audited"})
    assert exported.status_code == 200
    assert exported.headers["content-type"].startswith("application/fhir+ndjson")
    lines = [json.loads(line) for line in exported.text.splitlines()]
    assert [e["id"] for e in lines] == [e["id"] for e in _events(admin, agent="dr.audited")]
    exports = _events(admin, agent="admin.audit", action="export")
    assert exports


def test_verify_endpoint_and_non_admins(trail: tuple[TwoSites, httpx.Client], server: Any) -> None:
    _, admin = trail
    report = admin.get("/admin/audit/verify").json()
    assert report["ok"] is True and report["rows_checked"] > 5
    nurse = make_user(server, "nurse.curious", ["nurse"])
    with httpx.Client(base_url=server.url) as plain:
        token = login(plain, nurse)["access_token"]
        refused = plain.get("/admin/audit/export", headers=bearer(token))
    assert refused.status_code == 403
    assert refused.json()["resourceType"] == "OperationOutcome"
