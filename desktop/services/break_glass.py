"""Break the glass: open a chart outside my locations, with a reason, audited by the server.

`POST /auth/break-glass` opens a time-limited grant (the server records the
reason and every access under it); the patient's chart is then read with FHIR
searches and cached like any synced chart, without moving the sync cursor.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from desktop.store import sync_state
from desktop.store.database import ChartDatabase
from desktop.store.remote_changes import RemoteChange, apply_remote_page
from desktop.sync.server_api import ServerApi

#: What a chart shows, fetched per type by `patient=` search.
CHART_TYPES = ("Condition", "AllergyIntolerance", "MedicationRequest", "MedicationStatement",
               "Observation", "DocumentReference", "Appointment", "Encounter")  # fmt: skip
PAGE_SIZE = 1000


@dataclass(frozen=True)
class BreakGlassGrant:
    patient_id: str
    expires_at: str
    resources: int


def _change(resource: dict[str, Any]) -> RemoteChange:
    version = resource.get("meta", {}).get("versionId")
    return RemoteChange(
        resource["resourceType"],
        resource["id"],
        int(version) if str(version or "").isdigit() else None,
        resource_json=orjson.dumps(resource),
    )


def _search(api: ServerApi, resource_type: str, patient_id: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    params = {"patient": patient_id, "_count": str(PAGE_SIZE)}
    bundle = api.authed_request("GET", f"/fhir/R4/{resource_type}", params=params).json()
    found += [e["resource"] for e in bundle.get("entry", []) if "resource" in e]
    return found


def open_chart_outside_locations(
    api: ServerApi, db: ChartDatabase, patient_id: str, reason: str
) -> BreakGlassGrant:
    grant = api.authed_request(
        "POST", "/auth/break-glass", json={"patient": f"Patient/{patient_id}", "reason": reason}
    ).json()
    patient = api.authed_request("GET", f"/fhir/R4/Patient/{patient_id}").json()
    resources = [patient]
    for resource_type in CHART_TYPES:
        resources += _search(api, resource_type, patient_id)
    cursor = sync_state.cursor(db.connection())
    apply_remote_page(db, [_change(r) for r in resources], cursor)
    return BreakGlassGrant(patient_id, str(grant.get("expires_at", "")), len(resources))
