"""Helpers of the sync tests: a clinic seeded from the Synthea sample, signed-in HTTP clients.

Two locations (`loc-main`, `loc-sat`); four Synthea patients, the first two cared
for at the main clinic, the third at the satellite, the fourth nowhere yet; the first has allergies
(their Encounters are the patients' own first Synthea encounter, pointed at our
Locations). Each patient's Synthea conditions, allergies and medication
requests come along (the first few of each).
"""

from __future__ import annotations

import copy
import itertools
import json
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from identity_support import TestUser, bearer, login, make_user, system_repository
from sqlalchemy import text
from sqlalchemy.orm import Session

LOCATIONS = ("loc-main", "loc-sat")
_SAMPLE = "fhir-synthea/bulk-ndjson-10-patients"
_CLINICAL = ("Condition", "AllergyIntolerance", "MedicationRequest")
_PER_PATIENT = 8


@dataclass
class Clinic:
    patients: list[str]
    #: Every resource seeded, by (type, id).
    resources: dict[tuple[str, str], dict[str, Any]]


def ndjson(shared_data: Path, resource_type: str) -> list[dict[str, Any]]:
    path = shared_data / _SAMPLE / f"{resource_type}.000.ndjson"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def location(location_id: str) -> dict[str, Any]:
    return {"resourceType": "Location", "id": location_id, "name": f"Clinic {location_id}"}


def encounter_at(template: dict[str, Any], patient: str, location_id: str) -> dict[str, Any]:
    encounter = copy.deepcopy(template)
    encounter["id"] = str(uuid.uuid4())
    encounter["subject"] = {"reference": f"Patient/{patient}"}
    encounter["location"] = [{"location": {"reference": f"Location/{location_id}"}}]
    return encounter


def seed_clinic(engine: Any, shared_data: Path) -> Clinic:
    allergic = {a["patient"]["reference"] for a in ndjson(shared_data, "AllergyIntolerance")}
    everyone = ndjson(shared_data, "Patient")
    patients = sorted(everyone, key=lambda p: f"Patient/{p['id']}" not in allergic)[:4]
    ids = [p["id"] for p in patients]
    encounters = ndjson(shared_data, "Encounter")
    template = next(e for e in encounters if e.get("location"))
    writes: list[dict[str, Any]] = [location(loc) for loc in LOCATIONS] + patients
    for patient, loc in zip(ids, ("loc-main", "loc-main", "loc-sat"), strict=False):
        writes.append(encounter_at(template, patient, loc))
    for resource_type in _CLINICAL:  # a few of each per patient keep the fixture quick
        taken: dict[str, int] = {}
        for resource in ndjson(shared_data, resource_type):
            subject = (resource.get("subject") or resource.get("patient") or {}).get("reference")
            if subject in {f"Patient/{i}" for i in ids} and taken.get(subject, 0) < _PER_PATIENT:
                taken[subject] = taken.get(subject, 0) + 1
                writes.append(resource)
    with Session(engine) as session:
        repo = system_repository(session)
        for resource in writes:
            repo.update(resource["resourceType"], resource["id"], resource)
        session.commit()
    return Clinic(ids, {(r["resourceType"], r["id"]): r for r in writes})


def write_as_system(engine: Any, resource: dict[str, Any]) -> int:
    """Write one resource as the server's tools do; returns the new version."""
    with Session(engine) as session:
        stored = system_repository(session).update(
            resource["resourceType"], resource["id"], resource
        )
        session.commit()
    return stored.stored.version_id


def current(server: Any, resource_type: str, resource_id: str) -> tuple[int, dict[str, Any]]:
    """The server's current version number and resource, read from the database."""
    with server.engine.connect() as conn:
        row = conn.execute(
            text("SELECT version_id, resource FROM resources WHERE resource_type = :t AND id = :i"),
            {"t": resource_type, "i": resource_id},
        ).one()
    return row[0], row[1]


def conditions_of(clinic: Clinic, patient_index: int) -> list[dict[str, Any]]:
    """Copies of the seeded Conditions of the clinic's patient at `patient_index`."""
    patient = f"Patient/{clinic.patients[patient_index]}"
    return [
        copy.deepcopy(r)
        for (t, _), r in clinic.resources.items()
        if t == "Condition" and r["subject"]["reference"] == patient
    ]


_counter = itertools.count()


class SyncClient:
    """A signed-in workstation talking the sync protocol over real HTTP."""

    def __init__(self, server: Any, user: TestUser, workstation: str) -> None:
        self.http = httpx.Client(base_url=server.url, timeout=60)
        self.user = user
        self.workstation = workstation
        self.headers = bearer(login(self.http, user, workstation)["access_token"])

    def pull(
        self, cursor: str = "0", limit: int = 500, *, estimate: bool = False
    ) -> httpx.Response:
        params: dict[str, Any] = {"cursor": cursor, "limit": limit}
        if estimate:
            params["estimate"] = "true"
        return self.http.get("/sync/pull", params=params, headers=self.headers)

    def pull_all(self, cursor: str = "0", limit: int = 500) -> tuple[list[dict[str, Any]], str]:
        """Every page until `has_more` is false: the changes in order, and the last cursor."""
        changes: list[dict[str, Any]] = []
        while True:
            response = self.pull(cursor, limit)
            assert response.status_code == 200, response.text
            page = response.json()
            changes += page["changes"]
            cursor = page["cursor"]
            if not page["has_more"]:
                return changes, cursor

    def push(self, changes: list[dict[str, Any]]) -> httpx.Response:
        return self.http.post(
            "/sync/push",
            json={"client_id": self.workstation, "changes": changes},
            headers=self.headers,
        )

    def close(self) -> None:
        self.http.close()


def signed_in(server: Any, role: str, locations: list[str]) -> SyncClient:
    user = make_user(server, f"{role}.{next(_counter)}.{uuid.uuid4().hex[:6]}", [role], locations)
    return SyncClient(server, user, f"ws-{uuid.uuid4().hex[:8]}")


def upsert(resource: dict[str, Any], base_version: int | None) -> dict[str, Any]:
    return {
        "change_id": str(uuid.uuid4()),
        "resourceType": resource["resourceType"],
        "id": resource["id"],
        "op": "upsert",
        "base_version": base_version,
        "resource": resource,
    }


def delete(resource_type: str, resource_id: str, base_version: int) -> dict[str, Any]:
    return {
        "change_id": str(uuid.uuid4()),
        "resourceType": resource_type,
        "id": resource_id,
        "op": "delete",
        "base_version": base_version,
        "resource": None,
    }
